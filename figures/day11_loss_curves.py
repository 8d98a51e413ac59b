"""Day 11: the MLP's loss curves on digits from the three backends (float64, same initial weights
and batches) — the figure ``examples/train_mlp.py --compare --plot`` draws, shortened to 3 epochs
(66 Adam steps) so it renders in well under a minute on two busy cores."""
import sys

from make_all import start_figure

if __name__ == "__main__":
    path = start_figure(__file__)
    from examples.train_mlp import main

    sys.exit(main(["--compare", "--dtype", "float64", "--epochs", "3", "--plot", str(path)]))
