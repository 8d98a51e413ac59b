"""Day 21: the gradient of an ``Embedding`` weight for a padded batch with repeated ids. With a
cotangent of ones, every row of ``dL/dW`` holds how many positions read it (a scatter-add); the
``padding_idx`` row stays 0 however often it is read; ``scale_grad_by_freq`` divides each row by
its count, so every id seen gets the same total step.

    python figures/day21_embedding_gradient.py [--out DIR]   # writes DIR/day21_embedding_gradient.png
"""
import numpy as np

from make_all import start_figure

#: Two padded sentences of ids (0 is the padding id): id 3 is read three times, 1 twice, 0 four times.
IDS = np.array([[3, 1, 3, 4, 0, 0],
                [5, 3, 1, 2, 0, 0]], dtype=np.int64)
VOCAB, DIM, PADDING_IDX, SEED = 6, 4, 0, 0


def weight_gradient(scale_grad_by_freq: bool) -> np.ndarray:
    """The NumPy tree's ``Embedding`` backward of a cotangent of ones, ``(VOCAB, DIM)``."""
    from numpy_impl.generative.embedding import Embedding

    table = Embedding(VOCAB, DIM, padding_idx=PADDING_IDX, scale_grad_by_freq=scale_grad_by_freq,
                      dtype="float64", rng=np.random.default_rng(SEED))
    out = table(IDS)  # (2, 6, DIM)
    table.backward(np.ones_like(out))
    return table.grads["weight"]  # (VOCAB, DIM)


def show(ax, values, title, cmap, vmax, ylabel=None) -> None:
    ax.imshow(values, cmap=cmap, vmin=0, vmax=vmax)
    for (row, col), value in np.ndenumerate(values):
        ax.text(col, row, f"{value:g}", ha="center", va="center", fontsize=10)
    ax.set(title=title, xticks=[])
    ax.set_yticks(range(values.shape[0]))
    if ylabel:
        ax.set_ylabel(ylabel)


def draw(path) -> None:
    import matplotlib.pyplot as plt

    plain, scaled = weight_gradient(False), weight_gradient(True)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), gridspec_kw={"width_ratios": [6, 4, 4]})
    show(axes[0], IDS, f"ids (2, 6), padding_idx={PADDING_IDX}", "Greys", 12, "sentence")
    axes[0].set_xlabel("position")
    show(axes[1], plain, "dL/dW, cotangent of ones:\nrow k = count of id k", "Blues", 4, "row (id)")
    show(axes[2], scaled, "scale_grad_by_freq=True:\nrow k / count of id k", "Blues", 4)
    for ax in axes[1:]:
        ax.set_xlabel("embedding dim")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"row sums of dL/dW: {plain.sum(axis=1).tolist()}; wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
