"""Day 23: per-step gradient norms of a tanh RNN (spectral radius 0.9 and 3) and the gradient norm
before and after ``clip_grad_norm_`` — the figure ``examples/gradient_norms.py --plot`` draws,
with the arguments that made the page's image (the example's defaults: NumPy tree, seed 0)."""
import sys

from make_all import start_figure

if __name__ == "__main__":
    path = start_figure(__file__)
    from examples.gradient_norms import main

    sys.exit(main(["--backend", "numpy", "--plot", str(path)]))
