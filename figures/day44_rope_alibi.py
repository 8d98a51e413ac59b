"""Day 44's figure: RoPE scores depend only on the offset between positions; ALiBi's bias per head.

Left, one query vector ``q`` and one key vector ``k`` (fixed seed), rotated by the NumPy tree's
``RotaryEmbedding`` + ``apply_rotary`` at every query position m and key position n in 0..63: the
score ``RoPE(q, m) . RoPE(k, n)`` is constant along every diagonal (it depends on n - m only).
Right, ``alibi_bias`` for 6 heads (not a power of two: 4 geometric slopes, then 2 from the
8-head sequence), 12 queries x 12 keys: 0 on the diagonal, falling linearly with distance at each
head's slope (each head drawn on its own scale, +-11 m_h).

    python figures/day44_rope_alibi.py [--out DIR]   # writes DIR/day44_rope_alibi.png
"""
import sys

from make_all import start_figure

PATH = start_figure(__file__)

import matplotlib.pyplot as plt  # noqa: E402 (start_figure chooses the backend first)
import numpy as np  # noqa: E402

from ml100.positions import alibi_slopes  # noqa: E402
from numpy_impl.modern.rope import RotaryEmbedding, alibi_bias, apply_rotary  # noqa: E402

POSITIONS, HEAD_DIM, HEADS, STEPS = 64, 16, 6, 12


def rope_scores() -> np.ndarray:
    """``(L, L)`` scores of the rotated q at every row position against the rotated k at every column."""
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 1, 1, 1, HEAD_DIM))  # (1, 1, 1, d) each
    cos, sin = RotaryEmbedding(HEAD_DIM, POSITIONS, dtype="float64")(np.arange(POSITIONS, dtype=np.int64)[None])  # (1, L, d)
    # The same vector at every position: a (1, 1, L, d) batch of copies.
    q_rot, k_rot = apply_rotary(np.repeat(q, POSITIONS, axis=2), np.repeat(k, POSITIONS, axis=2), cos, sin)
    return q_rot[0, 0] @ k_rot[0, 0].T  # (L, L)


def main() -> int:
    bias = alibi_bias(HEADS, STEPS, STEPS, dtype="float64")  # (H, L, S)
    slopes = alibi_slopes(HEADS)
    figure = plt.figure(figsize=(13, 4.8))
    grid = figure.add_gridspec(2, 4, width_ratios=(2.2, 1, 1, 1))
    left = figure.add_subplot(grid[:, 0])
    image = left.imshow(rope_scores(), cmap="RdBu_r", interpolation="nearest")
    left.set_title("RoPE(q, m) · RoPE(k, n): constant along diagonals", fontsize=10)
    left.set_xlabel("key position n")
    left.set_ylabel("query position m")
    figure.colorbar(image, ax=left, shrink=0.8)
    for head in range(HEADS):
        ax = figure.add_subplot(grid[head // 3, 1 + head % 3])
        # Each head on its own scale, +-(L - 1) m_h: the slopes span 2^-8 .. 2^-1.
        reach = (STEPS - 1) * slopes[head]
        ax.imshow(bias[head], cmap="RdBu_r", vmin=-reach, vmax=reach, interpolation="nearest")
        ax.set_title(f"ALiBi head {head}: m = 2^{np.log2(slopes[head]):.0f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.savefig(PATH, dpi=100, bbox_inches="tight")
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
