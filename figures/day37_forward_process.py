"""Day 37: alpha_bar_t of the three noise schedules and one digit noised at several t — the figure
``examples/noise_schedules.py --plot`` draws (NumPy tree, seed 0: the example's defaults)."""
import sys

from make_all import start_figure

if __name__ == "__main__":
    path = start_figure(__file__)
    from examples.noise_schedules import main

    sys.exit(main(["--backend", "numpy", "--plot", str(path)]))
