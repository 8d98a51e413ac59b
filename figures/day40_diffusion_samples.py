"""Figure: day 40's DDIM sampling with classifier-free guidance from the class-conditional DDPM: one row per requested class.

A seeded run of ``examples/train_diffusion.py`` (NumPy tree, float32, the example's defaults: about 4 minutes of CPU on 2 cores, the slowest figure); the example's
``--plot`` draws the grid of its first 100 samples and it prints the judge's class histogram (and,
for a conditional model, its accuracy: the share of samples the day-17 CNN assigns to the class asked for).

    python figures/day40_diffusion_samples.py [--out DIR]   # writes DIR/day40_diffusion_samples.png
"""
import importlib
import sys
from pathlib import Path

from make_all import start_figure


def main(argv=None) -> int:
    path = start_figure(__file__, argv)
    # The examples are scripts, not a package: imported from their folder.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    return importlib.import_module("train_diffusion").main(["--backend", "numpy", "--samples", "100", "--plot", str(path)])


if __name__ == "__main__":
    sys.exit(main())
