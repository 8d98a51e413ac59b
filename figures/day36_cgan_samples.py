"""Figure: day 36's conditional GAN: one row per requested class.

A seeded run of ``examples/train_gan.py`` (NumPy tree, float32, 30 epochs (660 alternating steps): about a minute on 2 idle cores, several under load); the example's
``--plot`` draws the grid of its first 100 samples and it prints the judge's class histogram (and,
for a conditional model, its accuracy: the share of samples the day-17 CNN assigns to the class asked for).

    python figures/day36_cgan_samples.py [--out DIR]   # writes DIR/day36_cgan_samples.png
"""
import importlib
import sys
from pathlib import Path

from make_all import start_figure


def main(argv=None) -> int:
    path = start_figure(__file__, argv)
    # The examples are scripts, not a package: imported from their folder.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    return importlib.import_module("train_gan").main(["--backend", "numpy", "--epochs", "30", "--samples", "100", "--plot", str(path)])


if __name__ == "__main__":
    sys.exit(main())
