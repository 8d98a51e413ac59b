"""Figure: day 36's conditional VAE: samples, one row per requested class.

A short seeded run of ``examples/train_vae.py`` (NumPy tree, float32, 20 epochs on the digits'
train split, its default seed), decoding ``z ~ N(0, I)`` for the classes 0..9; the example's
``--plot`` draws the grid (row r: ten samples asked for class r) and prints the judge's accuracy
(1.000). About 8 s of CPU.

    python figures/day36_cvae_samples.py [--out DIR]   # writes DIR/day36_cvae_samples.png
"""
import importlib
import sys
from pathlib import Path

from make_all import start_figure


def main(argv=None) -> int:
    path = start_figure(__file__, argv)
    # The examples are scripts, not a package: imported from their folder.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    # 100 samples: exactly the grid (ten per class); 20 epochs keep the figure well under a minute.
    return importlib.import_module("train_vae").main(["--backend", "numpy", "--epochs", "20", "--samples", "100",
                                                      "--plot", str(path)])


if __name__ == "__main__":
    sys.exit(main())
