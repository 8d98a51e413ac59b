"""Day 38's figure: the sinusoidal timestep embedding as a heat map over t.

The NumPy tree's ``timestep_embedding`` for t = 0..999 and 32 columns, with diffusers' defaults
(sines first, ``downscale_freq_shift=1``) and with the flags the day-38 U-Net uses (cosines first,
``downscale_freq_shift=0``): the first columns turn fastest, the last ones barely move over the
1000 steps. Nothing is random.

    python figures/day38_timestep_embedding.py [--out DIR]   # writes DIR/day38_timestep_embedding.png
"""
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from numpy_impl.generative.unet import timestep_embedding  # noqa: E402

NAME = "day38_timestep_embedding"
STEPS, WIDTH = 1000, 32


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "days" / "img", help="folder the PNG is written to")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t = np.arange(STEPS, dtype=np.int64)
    panels = {"diffusers' defaults: sin | cos, shift 1": timestep_embedding(t, WIDTH, dtype="float64"),
              "the U-Net's: cos | sin (flip_sin_to_cos), shift 0": timestep_embedding(
                  t, WIDTH, flip_sin_to_cos=True, downscale_freq_shift=0.0, dtype="float64")}
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (title, embedding) in zip(axes, panels.items()):
        image = ax.imshow(embedding, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("embedding column")
    axes[0].set_ylabel("timestep t")
    figure.colorbar(image, ax=axes, shrink=0.8)
    figure.savefig(args.out / f"{NAME}.png", dpi=100, bbox_inches="tight")
    print(f"wrote {args.out / f'{NAME}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
