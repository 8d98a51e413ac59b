"""Day 16: where a 2x2 max pool (stride 2) sends the gradient when a window holds a tie. The trees'
``MaxPool2d`` (like ``F.max_pool2d`` and ``tf.nn.max_pool2d``) gives all of it to the first maximum
in row-major order; "unfold, then ``torch.amax``" splits it evenly between the tied entries."""
import numpy as np

from make_all import start_figure

#: One 4x4 image, four windows: a clear winner, a two-way tie, a ReLU-zero window (four-way tie),
#: and a tie on the anti-diagonal.
IMAGE = np.array([[1.0, 3.0, 2.0, 2.0],
                  [0.0, 2.0, 1.0, 0.0],
                  [0.0, 0.0, 1.0, 4.0],
                  [0.0, 0.0, 4.0, 1.0]])


def first_winner_gradient() -> np.ndarray:
    """The NumPy tree's MaxPool2d backward of a gradient of ones, (4, 4)."""
    from numpy_impl.foundations.pooling import MaxPool2d

    pool = MaxPool2d(2, dtype="float64")
    out = pool(IMAGE[None, None])  # (1, 1, 2, 2)
    return pool.backward(np.ones_like(out))[0, 0]  # (4, 4)


def split_gradient() -> np.ndarray:
    """autograd of torch.amax over each unfolded window, (4, 4): ties share the gradient."""
    import torch

    x = torch.tensor(IMAGE[None, None], requires_grad=True)  # (1, 1, 4, 4)
    windows = torch.nn.functional.unfold(x, 2, stride=2)  # (1, 4, 4): window entries x windows
    torch.amax(windows, dim=1).sum().backward()
    return x.grad[0, 0].numpy()  # (4, 4)


def show(ax, values, title, cmap, vmax) -> None:
    ax.imshow(values, cmap=cmap, vmin=0, vmax=vmax)
    for (row, col), value in np.ndenumerate(values):
        ax.text(col, row, f"{value:g}", ha="center", va="center", fontsize=11)
    # The window borders of the 2x2, stride-2 pool.
    for edge in (1.5,):
        ax.axhline(edge, color="k", linewidth=2)
        ax.axvline(edge, color="k", linewidth=2)
    ax.set(title=title, xticks=[], yticks=[])


def draw(path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 4.0))
    show(axes[0], IMAGE, "input: four 2x2 windows", "Greys", 8)
    show(axes[1], first_winner_gradient(), "MaxPool2d backward:\nall to the first maximum", "Blues", 1.5)
    show(axes[2], split_gradient(), "unfold + torch.amax backward:\nties split evenly", "Oranges", 1.5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    draw(start_figure(__file__))
