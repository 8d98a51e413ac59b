"""Day 28: attention weights of one held-out string after training the seq2seq model with
attention to reverse digit strings — the figure ``examples/train_seq2seq.py --plot`` draws, with
the example's defaults (4 epochs, 8-digit strings) on the TF tree, whose traced step keeps it
under a minute (the page's table: every tree reaches 1.000 held-out accuracy)."""
import sys

from make_all import start_figure

if __name__ == "__main__":
    path = start_figure(__file__)
    from examples.train_seq2seq import main

    sys.exit(main(["--backend", "tf", "--plot", str(path)]))
