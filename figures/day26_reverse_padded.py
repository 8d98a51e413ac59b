"""Day 26: a padded batch of four words, its step mask, what ``reverse_padded`` makes of it (each
word reversed within its own length, the padding left in place) and, for contrast, the whole time
axis flipped (the classic bug: the reverse pass of a short word starts on padding). Drawn
batch-major (one word a row) from the NumPy tree's ``lengths_to_mask`` and ``reverse_padded``,
which work time-major ``(T, N, ...)``.

    python figures/day26_reverse_padded.py [--out DIR]   # writes DIR/day26_reverse_padded.png
"""
import numpy as np

from make_all import start_figure

WORDS = ("padding", "rnn", "masks", "ab")
PAD = "·"


def padded_batch() -> tuple[np.ndarray, np.ndarray]:
    """The words as a time-major ``(T, N)`` array of characters, ``PAD`` after each word's end,
    and their ``(N,)`` int64 lengths."""
    lengths = np.array([len(word) for word in WORDS], dtype=np.int64)  # (N,)
    batch = np.full((int(lengths.max()), len(WORDS)), PAD)  # (T, N)
    for column, word in enumerate(WORDS):
        batch[:len(word), column] = list(word)
    return batch, lengths


def show(ax, letters, shade, title, cmap) -> None:
    """One batch-major grid: ``letters`` and ``shade`` are ``(N, T)``."""
    ax.imshow(shade, cmap=cmap, vmin=0, vmax=2.5)
    for (row, col), letter in np.ndenumerate(letters):
        ax.text(col, row, letter, ha="center", va="center", fontsize=12, family="monospace")
    ax.set_title(title, fontsize=10)
    ax.set_xticks(range(letters.shape[1]))
    ax.set_yticks(range(letters.shape[0]), [f"L={len(word)}" for word in WORDS])
    ax.set_xlabel("step t")


def draw(path) -> None:
    import matplotlib.pyplot as plt

    from numpy_impl.generative.bidirectional import lengths_to_mask, reverse_padded

    batch, lengths = padded_batch()  # (T, N), (N,)
    mask = lengths_to_mask(lengths, batch.shape[0])  # (T, N)
    reversed_within = reverse_padded(batch, lengths)  # (T, N)
    flipped = batch[::-1]  # (T, N) the bug
    real = mask.T.astype(float)  # (N, T) shade the real steps
    fig, axes = plt.subplots(2, 2, figsize=(10, 5.2))
    show(axes[0, 0], batch.T, real, "padded batch (T = 7), padding ·", "Blues")
    show(axes[0, 1], np.where(mask, "1", "0").T, real, "lengths_to_mask: m[t, n] = t < L_n", "Blues")
    show(axes[1, 0], reversed_within.T, real, "reverse_padded: reversed within each length", "Greens")
    show(axes[1, 1], flipped.T, (flipped != PAD).T.astype(float), "x[::-1], whole axis flipped (wrong):\n"
         "the reverse pass of 'ab' would start on 5 steps of padding", "Reds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
