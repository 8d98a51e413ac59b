"""Days 9-10: the paths of all seven optimizers of ``numpy_impl/foundations/optim.py`` on the
ill-conditioned quadratic L = (theta_0^2 + 100 theta_1^2) / 2 (condition number 100), 100 steps
each from the same start."""
import numpy as np

from make_all import start_figure

#: The Hessian's diagonal: curvature 1 along theta_0, 100 along theta_1.
CURVATURE = np.array([1.0, 100.0])
START = np.array([-4.5, 0.7])
STEPS = 100


def loss(theta: np.ndarray) -> np.ndarray:
    """(theta_0^2 + 100 theta_1^2) / 2 over the last axis."""
    return 0.5 * np.sum(CURVATURE * theta**2, axis=-1)


def optimizers():
    """(panel, label, constructor) for the seven; learning rates picked to be stable and fast.
    SGD's must stay below 2/100 (the largest curvature); with momentum 0.9 heavy ball is stable
    below 2(1 + 0.9)/100 = 0.038, Nesterov only below 2(1 + 0.9)/(100 (1 + 2 * 0.9)) = 0.0136."""
    from numpy_impl.foundations import optim

    return [
        ("day 9", "SGD lr=0.019", lambda p: optim.SGD(p, lr=0.019)),
        ("day 9", "momentum 0.9, lr=0.01", lambda p: optim.SGD(p, lr=0.01, momentum=0.9)),
        ("day 9", "Nesterov 0.9, lr=0.01", lambda p: optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True)),
        ("day 10", "AdaGrad lr=1", lambda p: optim.Adagrad(p, lr=1.0)),
        ("day 10", "RMSprop lr=0.05", lambda p: optim.RMSprop(p, lr=0.05)),
        ("day 10", "Adam lr=0.3", lambda p: optim.Adam(p, lr=0.3)),
        ("day 10", "AdamW lr=0.3, wd=0.5", lambda p: optim.AdamW(p, lr=0.3, weight_decay=0.5)),
    ]


def path(make_optimizer) -> np.ndarray:
    """The iterates theta_0..theta_STEPS, shape (STEPS + 1, 2)."""
    theta = START.copy()
    optimizer = make_optimizer({"theta": theta})
    points = [theta.copy()]
    for _ in range(STEPS):
        # The optimizer updates theta in place from the exact gradient, curvature * theta.
        optimizer.step({"theta": CURVATURE * theta})
        points.append(theta.copy())
    return np.array(points)  # (STEPS + 1, 2)


def draw(out) -> None:
    import matplotlib.pyplot as plt

    grid = np.stack(np.meshgrid(np.linspace(-5, 1.5, 200), np.linspace(-1, 1, 200)), axis=-1)  # (200, 200, 2)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for panel, ax in zip(("day 9", "day 10"), axes):
        ax.contour(grid[..., 0], grid[..., 1], loss(grid), levels=np.geomspace(1e-3, 60, 12), colors="0.8", linewidths=0.8)
        for index, (where, label, make) in enumerate(optimizers()):
            if where == panel:
                points = path(make)
                ax.plot(points[:, 0], points[:, 1], ".-", markersize=3, linewidth=1, color=f"C{index}",
                        label=f"{label}: L={loss(points[-1]):.1e}")
        ax.plot(*START, "k*", markersize=10)
        ax.plot(0, 0, "k+", markersize=10)
        ax.set(xlim=(-5, 1.5), ylim=(-1, 1), xlabel=r"$\theta_0$ (curvature 1)", title=f"{panel}: {STEPS} steps from the star")
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel(r"$\theta_1$ (curvature 100)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    draw(start_figure(__file__))
