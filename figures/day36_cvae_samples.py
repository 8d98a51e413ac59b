"""Day 36's figure: samples of the conditional VAE, one row per requested class.

A short seeded run of ``examples/train_vae.py`` (NumPy tree, float32, 20 epochs on the digits'
train split, its default seed), decoding ``z ~ N(0, I)`` for the classes 0..9; the example's
``--plot`` draws the grid (row r: ten samples asked for class r) and prints the judge's accuracy.

    python figures/day36_cvae_samples.py [--out DIR]   # writes DIR/day36_cvae_samples.png
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "day36_cvae_samples"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "days" / "img", help="folder the PNG is written to")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # The examples are scripts, not a package: import train_vae from its folder.
    sys.path.insert(0, str(ROOT / "examples"))
    import train_vae

    # 100 samples: exactly the grid (ten per class); 20 epochs keep the figure well under a minute.
    return train_vae.main(["--backend", "numpy", "--epochs", "20", "--samples", "100",
                           "--plot", str(args.out / f"{NAME}.png")])


if __name__ == "__main__":
    sys.exit(main())
