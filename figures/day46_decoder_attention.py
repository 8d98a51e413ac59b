"""Day 46: where one decoder layer looks. The NumPy tree's ``TransformerDecoderLayer(8, 2, 16)``
(torch's default init, seed 0, post-LN) over one target of 6 random tokens and a memory of 7: the
causal self-attention weights ``(T, T)`` (True above the diagonal = ignore the future, so the upper
triangle is exactly 0) beside the cross-attention weights ``(T, S)`` (every target position may
read every memory position), each averaged over the heads. The layer calls its attentions with
``need_weights=False``, as torch's does; the script calls the same submodules on the same inputs
to get the weights.

    python figures/day46_decoder_attention.py [--out DIR]   # writes DIR/day46_decoder_attention.png
"""
import numpy as np

from make_all import start_figure

D_MODEL, NHEAD, FEEDFORWARD, TARGET, SOURCE, SEED = 8, 2, 16, 6, 7, 0


def weights() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Self-attention ``(T, T)`` and cross-attention ``(T, S)`` weights, and the layer's output ``(T, E)``."""
    from numpy_impl.module import no_grad
    from numpy_impl.modern.decoder import TransformerDecoderLayer

    rng = np.random.default_rng(SEED)
    layer = TransformerDecoderLayer(D_MODEL, NHEAD, FEEDFORWARD, batch_first=True, dtype="float64", rng=rng)
    tgt = rng.standard_normal((1, TARGET, D_MODEL))  # (1, T, E)
    memory = rng.standard_normal((1, SOURCE, D_MODEL))  # (1, S, E)
    causal = np.triu(np.ones((TARGET, TARGET), dtype=bool), k=1)  # (T, T): True above the diagonal = ignore
    with no_grad():
        attended, self_weights = layer.self_attn(tgt, tgt, tgt, attn_mask=causal)  # (1, T, E), (1, T, T)
        # Post-LN: the cross-attention's queries are the first block's normalized sum.
        queries = layer.norm1(tgt + attended)  # (1, T, E)
        _, cross_weights = layer.multihead_attn(queries, memory, memory)  # (1, T, S)
        output = layer(tgt, memory, tgt_mask=causal, tgt_is_causal=True)  # (1, T, E)
    return self_weights[0], cross_weights[0], output[0]


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    self_weights, cross_weights, output = weights()
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    panels = [("causal self-attention (T, T)", self_weights, "key t'"),
              ("cross-attention to memory (T, S)", cross_weights, "memory position s")]
    for axis, (title, panel, xlabel) in zip(axes, panels):
        image = axis.imshow(panel, cmap="viridis", vmin=0.0, vmax=1.0)
        axis.set(title=title, xlabel=xlabel, ylabel="target position t")
    figure.colorbar(image, ax=axes, label="weight (mean over heads)")
    figure.savefig(path, dpi=100)
    print(f"wrote {path}; self row 1: {np.round(self_weights[1, :2], 3)}, "
          f"cross row 0 max: {cross_weights[0].max():.3f} at s={cross_weights[0].argmax()}, "
          f"output[0, 0]: {output[0, 0]:.4f}")


if __name__ == "__main__":
    main()
