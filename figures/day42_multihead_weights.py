"""Day 42: what ``need_weights`` returns. The NumPy tree's ``MultiheadAttention(8, 4)`` (torch's
default init, seed 0) over one sequence of 6 random tokens in self-attention, with a causal
``attn_mask`` (True = ignore the future) and the last key padded (``key_padding_mask``): the four
heads' weights (``average_attn_weights=False``, ``(H, T, S)``) beside their mean over heads (the
default, ``(T, S)``). Masked entries are exactly 0 in every head; the heads differ because each
sees its own quarter of the projected features.

    python figures/day42_multihead_weights.py [--out DIR]   # writes DIR/day42_multihead_weights.png
"""
import numpy as np

from make_all import start_figure

EMBED_DIM, NUM_HEADS, STEPS, SEED = 8, 4, 6, 0


def weights() -> tuple[np.ndarray, np.ndarray]:
    """Per-head weights ``(H, T, S)`` and their mean ``(T, S)`` for the one sequence."""
    from numpy_impl.module import no_grad
    from numpy_impl.modern.multihead import MultiheadAttention

    rng = np.random.default_rng(SEED)
    model = MultiheadAttention(EMBED_DIM, NUM_HEADS, batch_first=True, dtype="float64", rng=rng)
    x = rng.standard_normal((1, STEPS, EMBED_DIM))  # (1, T, E)
    causal = np.triu(np.ones((STEPS, STEPS), dtype=bool), k=1)  # (T, S): True above the diagonal = ignore
    padding = np.zeros((1, STEPS), dtype=bool)  # (1, S)
    padding[0, -1] = True
    with no_grad():
        _, per_head = model(x, x, x, key_padding_mask=padding, attn_mask=causal, average_attn_weights=False)
        _, mean = model(x, x, x, key_padding_mask=padding, attn_mask=causal)
    return per_head[0], mean[0]


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    per_head, mean = weights()
    figure, axes = plt.subplots(1, NUM_HEADS + 1, figsize=(13, 3.0), constrained_layout=True)
    panels = [(f"head {h}", per_head[h]) for h in range(NUM_HEADS)] + [("mean over heads (default)", mean)]
    for axis, (title, panel) in zip(axes, panels):
        image = axis.imshow(panel, cmap="viridis", vmin=0.0, vmax=1.0)
        axis.set(title=title, xlabel="key s", ylabel="query t")
    figure.colorbar(image, ax=axes, label="weight")
    figure.savefig(path, dpi=100)
    print(f"wrote {path}; head 0 row 1: {np.round(per_head[0, 1, :2], 3)}, mean row 1: {np.round(mean[1, :2], 3)}")


if __name__ == "__main__":
    main()
