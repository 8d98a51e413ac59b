"""Day 50: one next-token distribution after each warper, and after the three chained.

Twenty logits drawn from a seeded generator (spread 1.5), sorted from most to least likely, then
``softmax`` of: the raw logits; temperature 0.7; top-k 5; top-p 0.8; and ``warp(temperature=0.7,
top_k=5, top_p=0.8)`` in Hugging Face's order — all from the NumPy tree's ``modern.sampling``.
The title of each panel gives how many tokens survive and the probability of the first.

    python figures/day50_warpers.py [--out DIR]   # writes DIR/day50_warpers.png
"""
import numpy as np

from make_all import start_figure

VOCAB, SEED = 20, 0
PANELS = (
    ("raw logits", {}),
    ("temperature 0.7", {"temperature": 0.7}),
    ("top-k 5", {"top_k": 5}),
    ("top-p 0.8", {"top_p": 0.8}),
    ("all three, in HF's order", {"temperature": 0.7, "top_k": 5, "top_p": 0.8}),
)


def draw(path) -> None:
    import matplotlib.pyplot as plt

    from numpy_impl.modern.sampling import softmax, warp

    logits = np.sort(1.5 * np.random.default_rng(SEED).standard_normal(VOCAB))[::-1][None, :]  # (1, V) most likely first
    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 3.2), sharey=True)
    for ax, (title, options) in zip(axes, PANELS):
        probabilities = softmax(warp(logits, **options))[0]  # (V,) 0 where a warper removed the token
        kept = np.count_nonzero(probabilities)
        ax.bar(range(VOCAB), probabilities)
        ax.set_title(f"{title}\n{kept} tokens kept, p(top-1) = {probabilities[0]:.2f}", fontsize=10)
        ax.set_xlabel("token (by raw probability)")
        print(f"{title}: {kept} kept, p(top-1) {probabilities[0]:.3f}")
    axes[0].set_ylabel("probability")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
