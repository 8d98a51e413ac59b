"""Day 28: attention weights of one held-out string after training the seq2seq model with
attention to reverse digit strings — the figure ``examples/train_seq2seq.py --plot`` draws, with
the page's arguments (NumPy tree, the example's defaults: 4 epochs, 8-digit strings)."""
import sys

from make_all import start_figure

if __name__ == "__main__":
    path = start_figure(__file__)
    from examples.train_seq2seq import main

    sys.exit(main(["--backend", "numpy", "--plot", str(path)]))
