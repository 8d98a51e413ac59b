"""Day 67: which key/value head each query head reads, and what that saves in the KV cache.

Left: the NumPy tree's ``GroupedScaledDotProductAttention`` with 8 query heads and 8 (MHA), 2
(GQA) or 1 (MQA) key/value heads, each value head filled with its own index: query head ``h``'s
output is the index of the value head it reads (``h // (8 / Hkv)``, torch's ``repeat_interleave``
grouping), drawn as a one-hot map. Right: KV-cache bytes per token, ``2 * layers * Hkv * head_dim *
bytes``, for a Llama-2-70B-sized stack (80 layers, 64 query heads of width 128, float16).

    python figures/day67_gqa.py [--out DIR]   # writes DIR/day67_gqa.png
"""
import numpy as np

from make_all import start_figure

QUERY_HEADS, STEPS, WIDTH = 8, 3, 4
LAYERS, LLAMA_HEADS, HEAD_DIM, BYTES = 80, 64, 128, 2


def grouping(key_value_heads: int) -> np.ndarray:
    """``(Hq, Hkv)`` one-hot: row ``h`` marks the key/value head that query head ``h`` reads."""
    from numpy_impl.modern.gqa import GroupedScaledDotProductAttention

    rng = np.random.default_rng(0)
    query = rng.standard_normal((1, QUERY_HEADS, STEPS, WIDTH))  # (1, Hq, L, d)
    key = rng.standard_normal((1, key_value_heads, STEPS, WIDTH))  # (1, Hkv, S, d)
    # Value head j holds the number j everywhere: the weights sum to 1, so the output is j.
    value = np.broadcast_to(np.arange(key_value_heads, dtype=float)[None, :, None, None], key.shape).copy()
    output, _ = GroupedScaledDotProductAttention("float64")(query, key, value)  # (1, Hq, L, d)
    read = np.rint(output[0, :, 0, 0]).astype(int)  # (Hq,)
    return np.eye(key_value_heads)[read]  # (Hq, Hkv)


def cache_bytes_per_token(key_value_heads: int) -> int:
    """Keys and values of one token across the stack: ``2 * layers * Hkv * head_dim * bytes``."""
    return 2 * LAYERS * key_value_heads * HEAD_DIM * BYTES


def draw(path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), gridspec_kw={"width_ratios": [2.2, 1, 1, 3]})
    for ax, (name, heads) in zip(axes, (("MHA", 8), ("GQA", 2), ("MQA", 1))):
        ax.imshow(grouping(heads), cmap="Greys", vmin=0, vmax=1, aspect="auto")
        ax.set(title=f"{name}: Hkv = {heads}", xlabel="key/value head", ylabel="query head",
               xticks=range(heads), yticks=range(QUERY_HEADS))
    names = {"MHA (64)": LLAMA_HEADS, "GQA (8)": 8, "MQA (1)": 1}
    sizes = {name: cache_bytes_per_token(heads) for name, heads in names.items()}
    bars = axes[3].bar(list(sizes), [size / 1024 for size in sizes.values()], color=["C0", "C1", "C2"])
    axes[3].bar_label(bars, labels=[f"{size / 1024:,.0f} KiB" for size in sizes.values()])
    axes[3].set(yscale="log", ylabel="KV cache per token (KiB, log)",
                title=f"{LAYERS} layers, head_dim {HEAD_DIM}, float16")
    for name, size in sizes.items():
        print(f"{name}: {size} bytes per token")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
