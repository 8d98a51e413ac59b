"""Figure: day 32's VAE (unconditional): 100 samples decoded from z ~ N(0, I).

A seeded run of ``examples/train_vae.py`` (NumPy tree, float32, 20 epochs: ~15 s on 2 idle cores); the example's
``--plot`` draws the grid of its first 100 samples and it prints the judge's class histogram (and,
for a conditional model, its accuracy: the share of samples the day-17 CNN assigns to the class asked for).

    python figures/day32_vae_samples.py [--out DIR]   # writes DIR/day32_vae_samples.png
"""
import importlib
import sys
from pathlib import Path

from make_all import start_figure


def main(argv=None) -> int:
    path = start_figure(__file__, argv)
    # The examples are scripts, not a package: imported from their folder.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    return importlib.import_module("train_vae").main(["--unconditional", "--backend", "numpy", "--epochs", "20", "--samples", "100", "--plot", str(path)])


if __name__ == "__main__":
    sys.exit(main())
