"""Day 64: how much of GPT-2 small LoRA trains, against the rank r. peft's GPT-2 recipe — adapters on
every ``c_attn`` (E -> 3E), everything else frozen — applied with the NumPy tree's ``apply_lora`` to a
one-block GPT with ``GPTConfig()``'s GPT-2 small sizes; ``trainable_parameters`` counts it, and the
block's tensors (base and adapter) are multiplied by the 12 blocks. Each adapter adds r (E + 3E)
parameters: r = 8 trains 294,912 of 124,734,720 (0.24 %).

    python figures/day64_trainable_share.py [--out DIR]   # writes DIR/day64_trainable_share.png
"""
import numpy as np

from make_all import start_figure

RANKS = (1, 2, 4, 8, 16, 32, 64)


def counts(r: int) -> tuple[int, int]:
    """(trainable, total) of GPT-2 small with LoRA rank ``r`` on c_attn, from a one-block NumPy model."""
    import dataclasses

    from ml100.configs import GPTConfig
    from numpy_impl.modern.gpt import GPT
    from numpy_impl.modern.lora import apply_lora, trainable_parameters

    small = GPTConfig()
    model = apply_lora(GPT(dataclasses.replace(small, n_layer=1), rng=np.random.default_rng(0)), ["c_attn"], r, r,
                       rng=np.random.default_rng(1))
    trainable, total = trainable_parameters(model)
    block = sum(value.size for name, value in model.canonical_state_dict().items() if name.startswith("transformer.h."))
    # Every block has the same tensors: the other n_layer - 1 add a block's worth each.
    return trainable * small.n_layer, total + block * (small.n_layer - 1)


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    measured = [counts(r) for r in RANKS]
    shares = [100 * trainable / total for trainable, total in measured]
    figure, axis = plt.subplots(figsize=(7, 3.6), constrained_layout=True)
    axis.plot(RANKS, shares, "o-", color="tab:blue")
    for r, (trainable, _), share in zip(RANKS, measured, shares):
        axis.annotate(f"{trainable:,}", (r, share), textcoords="offset points", xytext=(4, -12), fontsize=8)
    axis.set(xscale="log", yscale="log", xticks=RANKS, xticklabels=[str(r) for r in RANKS], xlabel="LoRA rank r",
             ylabel="trainable share (%)", title="GPT-2 small, LoRA on every c_attn: trainable parameters vs r")
    figure.savefig(path, dpi=100)
    print("; ".join(f"r={r}: {t:,} of {n:,} ({s:.3f} %)" for r, (t, n), s in zip(RANKS, measured, shares)))


if __name__ == "__main__":
    main()
