"""Day 69: where Llama-2-7B's 6,738,415,616 parameters live, next to a GPT-2-style model of the same
width, depth and vocabulary (E = 4096, 32 layers, V = 32000, 4096 positions, the 4E GELU MLP, LayerNorms
with biases, head tied as in GPT-2). Llama's counts come from ``LlamaConfig.parameter_counts()``
(checked here against a tiny NumPy-tree ``LlamaForCausalLM``); GPT's from the day-49 shapes (checked
against a tiny NumPy-tree ``GPT``). Llama spends 64 % in the SwiGLU MLPs (three E x 11008 matrices
where GPT has two E x 4E), has no position table (RoPE has no parameters), no biases, an untied head,
and RMSNorms with only a scale.

    python figures/day69_llama_vs_gpt_parameters.py [--out DIR]   # writes DIR/day69_llama_vs_gpt_parameters.png
"""
import numpy as np

from make_all import start_figure

PARTS = ("embed_tokens / wte", "positions (wpe)", "attention", "mlp", "norms", "lm_head")


def llama_counts(config) -> dict[str, int]:
    """Llama's parts under the figure's labels."""
    counts = config.parameter_counts()
    return {"embed_tokens / wte": counts["embed_tokens"], "positions (wpe)": 0, "attention": counts["attention"],
            "mlp": counts["mlp"], "norms": counts["norms"], "lm_head": counts["lm_head"]}


def gpt_counts(config) -> dict[str, int]:
    """GPT-2's parts from its shapes: c_attn (E, 3E) + c_proj (E, E) with biases, c_fc (E, F) + c_proj
    (F, E) with biases, two LayerNorms per block and ln_f (weight and bias), tied head."""
    width, inner, layers = config.n_embd, config.inner_dim, config.n_layer
    return {"embed_tokens / wte": config.vocab_size * width, "positions (wpe)": config.n_positions * width,
            "attention": layers * (4 * width * width + 4 * width),
            "mlp": layers * (2 * width * inner + inner + width), "norms": (2 * layers + 1) * 2 * width, "lm_head": 0}


def check_against_the_trees() -> None:
    """The two formulas count the canonical states of tiny NumPy-tree models exactly."""
    from ml100.configs import GPTConfig, LlamaConfig
    from numpy_impl.modern.gpt import GPT
    from numpy_impl.modern.llama import LlamaForCausalLM

    tiny_llama = LlamaConfig(vocab_size=11, hidden_size=8, intermediate_size=12, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8)
    tiny_gpt = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2)
    for counts, model in ((llama_counts(tiny_llama), LlamaForCausalLM(tiny_llama, rng=np.random.default_rng(0))),
                          (gpt_counts(tiny_gpt), GPT(tiny_gpt, rng=np.random.default_rng(0)))):
        assert sum(counts.values()) == sum(v.size for v in model.canonical_state_dict().values())


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    from ml100.configs import GPTConfig, LlamaConfig

    check_against_the_trees()
    llama = llama_counts(LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                     num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                                     rms_norm_eps=1e-5))
    gpt = gpt_counts(GPTConfig(vocab_size=32000, n_positions=4096, n_embd=4096, n_layer=32, n_head=32))
    figure, axis = plt.subplots(figsize=(9, 3.8), constrained_layout=True)
    rows = np.arange(len(PARTS))
    for offset, (label, counts, color) in enumerate((("Llama-2-7B", llama, "tab:orange"),
                                                      ("GPT-2 layout, same size", gpt, "tab:blue"))):
        total = sum(counts.values())
        values = [counts[part] / 1e9 for part in PARTS]
        bars = axis.barh(rows + 0.4 * offset, values, height=0.38, color=color, label=f"{label}: {total:,}")
        for bar, part in zip(bars, PARTS):
            axis.text(bar.get_width() + 0.03, bar.get_y() + bar.get_height() / 2,
                      f"{counts[part]:,} ({100 * counts[part] / total:.1f} %)", va="center", fontsize=8)
    axis.set_yticks(rows + 0.2, PARTS)
    axis.invert_yaxis()
    axis.set(xlabel="parameters (billions)", xlim=(0, 5.6),
             title="Parameters by part: Llama-2-7B vs a GPT-2 of its width")
    axis.legend(loc="lower right")
    figure.savefig(path, dpi=100)
    for label, counts in (("llama", llama), ("gpt", gpt)):
        print(f"{label} total {sum(counts.values()):,}; " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
