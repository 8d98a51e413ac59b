"""Day 70: the capstone's picture. Runs ``examples/capstone_digits.py`` with the NumPy backend and its
defaults (four models, 10 epochs of Adam, batch 64, seed 0, float32) and saves test accuracy against
parameter count. The NumPy tree alone keeps it fast and deterministic; the other backends reach the
same float32 accuracies to within a test digit or two (the page's table).

    python figures/day70_capstone.py [--out DIR]   # writes DIR/day70_capstone.png
"""
from make_all import start_figure


def main() -> None:
    path = start_figure(__file__)
    from examples.capstone_digits import main as capstone

    capstone(["--backend", "numpy", "--plot", str(path)])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
