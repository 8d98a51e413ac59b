"""Day 41: what each mask does to the attention weights. The NumPy tree's
``ScaledDotProductAttention`` on one random query/key set (``L = 6`` queries, ``S = 4`` keys, seed
0), four ways: no mask; a boolean padding mask (True = take part) hiding the last key, with query 2
seeing no key at all (its row is exactly 0, as torch 2.14 returns); ``is_causal=True``, top-left
aligned as torch's (query ``i`` sees keys ``j <= i``, so queries 3-5 see all four keys); and an
additive float mask (a bias of -2 on key 0).

    python figures/day41_masks.py [--out DIR]   # writes DIR/day41_masks.png
"""
import numpy as np

from make_all import start_figure

QUERIES, KEYS, WIDTH, SEED = 6, 4, 8, 0


def panels() -> dict[str, np.ndarray]:
    """Title -> the weights ``(L, S)`` the module returns for that mask."""
    from numpy_impl.modern.attention import ScaledDotProductAttention

    rng = np.random.default_rng(SEED)
    query, key, value = (rng.standard_normal(s) for s in ((QUERIES, WIDTH), (KEYS, WIDTH), (KEYS, WIDTH)))
    padding = np.ones((QUERIES, KEYS), dtype=bool)  # (L, S)
    padding[:, -1] = False
    padding[2] = False
    bias = np.zeros((QUERIES, KEYS))  # (L, S)
    bias[:, 0] = -2.0
    attention = ScaledDotProductAttention("float64")
    masks = {"no mask\n": {}, "boolean mask: key 3 hidden,\nquery 2 sees nothing": {"attn_mask": padding},
             "is_causal=True\n(top-left: j <= i)": {"is_causal": True}, "additive mask:\n-2 on key 0": {"attn_mask": bias}}
    return {title: attention(query, key, value, **kwargs)[1] for title, kwargs in masks.items()}


def draw(path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.9))
    for ax, (title, weights) in zip(axes, panels().items()):
        image = ax.imshow(weights, vmin=0.0, vmax=1.0, cmap="viridis")
        for (i, j), w in np.ndenumerate(weights):
            ax.text(j, i, f"{w:.2f}", ha="center", va="center", fontsize=7, color="white" if w < 0.6 else "black")
        ax.set(title=title, xlabel="key j", ylabel="query i", xticks=range(KEYS), yticks=range(QUERIES))
        ax.title.set_fontsize(9)
        print(f"{' '.join(title.split())}: row sums {np.round(weights.sum(axis=1), 12).tolist()}")
    fig.colorbar(image, ax=axes, shrink=0.8, label="weight")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
