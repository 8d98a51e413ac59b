"""Day 48: what a byte-level BPE buys. ``BPE.train`` on the first 90% of ``stdlib_corpus()`` (the
stdlib docstrings, ~330 kB, normalized ASCII) at several vocabulary sizes; left, the bytes per token
of the held-out 10% (257 tokens = bytes alone, 1.00); right, one held-out sentence cut into tokens
by three of those vocabularies (each box is one token, a space shown as ``·``). The table of
bytes per token and training seconds is printed (timings are not drawn: the picture is
deterministic).

    python figures/day48_compression.py [--out DIR]   # writes DIR/day48_compression.png
"""
import time

from make_all import start_figure

VOCAB_SIZES = (257, 384, 512, 1024, 2048, 4096)
SHOWN = (512, 1024, 4096)
SENTENCE = "return the number of items in the queue, or raise an exception if it is empty."


def measure():
    """Bytes per held-out token and training seconds for each vocabulary size, and the tokenizers."""
    from ml100.bpe import BPE
    from ml100.text import stdlib_corpus, train_validation_split

    corpus = stdlib_corpus()
    cut = len(train_validation_split(corpus)[0])
    train, held_out = corpus[:cut], corpus[cut:]
    rows, tokenizers = [], {}
    for vocab_size in VOCAB_SIZES:
        start = time.perf_counter()
        tokenizers[vocab_size] = BPE.train(train, vocab_size)
        seconds = time.perf_counter() - start
        ratio = len(held_out.encode("utf-8")) / len(tokenizers[vocab_size].encode(held_out))
        rows.append((vocab_size, ratio, seconds))
        print(f"vocab {vocab_size:5d}: {ratio:.2f} bytes/token held out, trained in {seconds:.2f} s")
    return rows, tokenizers


def draw_tokens(ax, tokenizer, y: float) -> int:
    """The sentence's tokens as boxes on one line at height ``y``; returns the token count."""
    ids = tokenizer.encode(SENTENCE)
    renderer = ax.figure.canvas.get_renderer()
    x = 0.0
    for k, token_id in enumerate(ids):
        text = ax.text(x, y, tokenizer.decode([token_id]).replace(" ", "·"), family="monospace", fontsize=8,
                       va="center", bbox=dict(boxstyle="square,pad=0.15", fc=("#cfe3f7" if k % 2 else "#f7dccf"), ec="none"))
        # The next token starts where this one's drawn text ends (its extent, back in data units).
        x = ax.transData.inverted().transform(text.get_window_extent(renderer).p1)[0]
    return len(ids)


def main():
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    rows, tokenizers = measure()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.2), gridspec_kw={"width_ratios": [1, 2]})
    sizes, ratios = [row[0] for row in rows], [row[1] for row in rows]
    left.plot(sizes, ratios, "o-")
    for size, ratio in zip(sizes, ratios):
        left.annotate(f"{ratio:.2f}", (size, ratio), textcoords="offset points", xytext=(4, -12), fontsize=8)
    left.set_xscale("log", base=2)
    left.set_xlim(220, 6000)
    left.set_xlabel("vocabulary size (256 bytes + <|endoftext|> + merges)")
    left.set_ylabel("held-out bytes per token")
    left.set_title("compression of unseen text")
    right.set_xlim(-0.25, 1.0)
    right.set_ylim(-len(SHOWN) + 0.4, 0.6)
    right.axis("off")
    right.set_title("one held-out sentence, token by token")
    # Lay the axes out first: token boxes are placed by measured text extents, which a later
    # layout change would rescale.
    fig.tight_layout()
    for line, size in enumerate(SHOWN):
        count = draw_tokens(right, tokenizers[size], -line)
        right.text(-0.01, -line, f"{size}: {count} tokens", ha="right", va="center", fontsize=8)
    fig.savefig(path, dpi=120)
    print(path)


if __name__ == "__main__":
    main()
