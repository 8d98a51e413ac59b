"""Day 2: training and validation MSE of polynomial ridge regression against the degree, for three
penalties (noisy sin 3x, 20 training points, 200 validation points; the NumPy tree's
``validation_curve``, fitted by the normal equation)."""
import numpy as np

from make_all import start_figure

DEGREES = range(1, 13)
L2S = (0.0, 1e-3, 1e-1)


def data(rng: np.random.Generator):
    """Noisy sin 3x on [-1, 1]: the first 20 rows train, the other 200 validate."""
    x = rng.uniform(-1, 1, (220, 1))  # (220, 1)
    y = np.sin(3 * x) + 0.2 * rng.standard_normal((220, 1))  # (220, 1)
    return x[:20], y[:20], x[20:], y[20:]


def draw(path) -> None:
    import matplotlib.pyplot as plt
    from numpy_impl.foundations.linear_regression import validation_curve

    train, val = validation_curve(*data(np.random.default_rng(0)), degrees=DEGREES, l2s=L2S)  # (12, 3) each
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for column, (l2, color) in enumerate(zip(L2S, ("C0", "C1", "C2"))):
        ax.semilogy(DEGREES, train[:, column], "--", color=color, label=f"train, l2={l2:g}")
        ax.semilogy(DEGREES, val[:, column], "o-", color=color, label=f"validation, l2={l2:g}")
    ax.set(xlabel="polynomial degree", ylabel="MSE (log scale)",
           title="Training error falls with the degree; validation error turns up")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    draw(start_figure(__file__))
