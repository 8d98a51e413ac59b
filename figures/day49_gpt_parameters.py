"""Day 49: where GPT-2 small's 124,439,808 parameters live. The NumPy tree's ``GPT`` is built with
``GPTConfig()``'s defaults (GPT-2 small: V = 50257, 1024 positions, E = 768, 12 heads) but one block,
its canonical state is counted by group, and the block's groups are multiplied by 12 (every block
is the same shape). The tied token table (wte, also the output head) holds 31 %, the 12 MLPs
45 %, the 12 attentions 23 %; the LayerNorms 0.03 %.

    python figures/day49_gpt_parameters.py [--out DIR]   # writes DIR/day49_gpt_parameters.png
"""
import numpy as np

from make_all import start_figure

#: Group of a canonical name (its first match, in this order).
GROUPS = (("wte (tied head)", "transformer.wte."), ("wpe", "transformer.wpe."), ("attention", ".attn."),
          ("MLP", ".mlp."), ("LayerNorms", ".ln_"))


def group_counts() -> dict[str, int]:
    """Parameters per group of GPT-2 small, from a one-block NumPy-tree model (blocks multiplied by n_layer)."""
    import dataclasses

    from ml100.configs import GPTConfig
    from numpy_impl.modern.gpt import GPT

    small = GPTConfig()
    state = GPT(dataclasses.replace(small, n_layer=1), rng=np.random.default_rng(0)).canonical_state_dict()
    counts = dict.fromkeys([name for name, _ in GROUPS], 0)
    for name, value in state.items():
        group = next(label for label, part in GROUPS if part in name)
        # Block tensors (under transformer.h.) repeat in each of the n_layer blocks.
        counts[group] += value.size * (small.n_layer if name.startswith("transformer.h.") else 1)
    return counts


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    counts = group_counts()
    total = sum(counts.values())
    figure, axis = plt.subplots(figsize=(8, 3.4), constrained_layout=True)
    bars = axis.barh(list(counts), [value / 1e6 for value in counts.values()], color="tab:blue")
    for bar, value in zip(bars, counts.values()):
        axis.text(bar.get_width() + 0.5, bar.get_y() + bar.get_height() / 2, f"{value:,} ({100 * value / total:.2f} %)",
                  va="center")
    axis.invert_yaxis()
    axis.set(xlabel="parameters (millions)", xlim=(0, 75),
             title=f"GPT-2 small (GPTConfig defaults): {total:,} parameters, lm_head tied to wte")
    figure.savefig(path, dpi=100)
    print(f"total {total:,}; " + ", ".join(f"{k} {v:,} ({100 * v / total:.2f} %)" for k, v in counts.items()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
