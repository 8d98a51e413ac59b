"""Day 51: what the KV cache saves. For a small GPT (V = 256, E = 64, 4 layers of 4 heads, F = 256,
512 positions), the multiply-adds the NumPy tree's matrix products perform to produce the token
after a sequence of length S: with the cache, one new position through every layer (projections
and MLP once, attention over S cached keys) plus the head; without it, the whole sequence again
(every projection and MLP S times, an S x S score matrix per head, the head on all S positions).
Counted from the shapes the code multiplies, so the picture is exact and the same every run: at
S = 512 the cache does 512x less work (0.48 M vs 243.3 M multiply-adds: every term of the
recomputation is S times the cached step's). The script also times both
on this machine (NumPy, float32, the median of 3; printed, not drawn, since timings vary).

    python figures/day51_kv_cache_cost.py [--out DIR]   # writes DIR/day51_kv_cache_cost.png
"""
import time

import numpy as np

from make_all import start_figure

VOCAB, POSITIONS, WIDTH, LAYERS, HEADS = 256, 512, 64, 4, 4
TIMED_LENGTHS = (32, 128, 512)


def config():
    from ml100.configs import GPTConfig

    return GPTConfig(vocab_size=VOCAB, n_positions=POSITIONS, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def multiply_adds(new: int, total: int, cfg) -> int:
    """Multiply-adds of one forward feeding ``new`` positions that attend to ``total`` keys."""
    width, inner = cfg.n_embd, cfg.inner_dim
    # c_attn (E -> 3E), c_proj (E -> E), c_fc (E -> F), mlp.c_proj (F -> E), per new position and layer.
    dense = new * (3 * width * width + width * width + 2 * width * inner)
    # Scores q k^T and the weighted sum of values: new x total x d per head, H heads, twice.
    attention = 2 * new * total * width
    return cfg.n_layer * (dense + attention) + new * width * cfg.vocab_size


def timings(cfg) -> dict[int, tuple[float, float]]:
    """Seconds per token (median of 3) at each length in ``TIMED_LENGTHS``: cached step, full recomputation."""
    from numpy_impl.modern.gpt import GPT
    from numpy_impl.modern.kv_cache import KVCache
    from numpy_impl.module import no_grad

    gpt = GPT(cfg, rng=np.random.default_rng(0)).eval()
    ids = np.random.default_rng(1).integers(0, cfg.vocab_size, (1, max(TIMED_LENGTHS)))
    out = {}
    with no_grad():
        # One untimed forward first: NumPy's first products pay for their buffers.
        gpt(ids)
        for length in TIMED_LENGTHS:
            cached, full = [], []
            for _ in range(3):
                cache = KVCache(cfg.n_layer, length)
                gpt(ids[:, :length - 1], cache=cache)
                start = time.perf_counter()
                gpt(ids[:, length - 1:length], cache=cache)
                cached.append(time.perf_counter() - start)
                start = time.perf_counter()
                gpt(ids[:, :length])
                full.append(time.perf_counter() - start)
            out[length] = (float(np.median(cached)), float(np.median(full)))
    return out


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    cfg = config()
    lengths = np.arange(1, cfg.n_positions + 1)
    with_cache = np.array([multiply_adds(1, s, cfg) for s in lengths]) / 1e6
    without_cache = np.array([multiply_adds(s, s, cfg) for s in lengths]) / 1e6
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for axis in (left, right):
        axis.plot(lengths, without_cache, label="no cache: re-run the whole sequence")
        axis.plot(lengths, with_cache, label="KV cache: one new position")
        axis.set(xlabel="sequence length S (tokens so far)", ylabel="multiply-adds per new token (millions)")
    right.set_yscale("log")
    left.set_title("work per generated token")
    right.set_title("the same, log scale")
    left.legend()
    figure.savefig(path, dpi=100)
    print(f"multiply-adds at S = {cfg.n_positions}: {with_cache[-1]:.2f} M with the cache, {without_cache[-1]:.1f} M "
          f"without ({without_cache[-1] / with_cache[-1]:.0f}x)")
    for length, (cached, full) in timings(cfg).items():
        print(f"S = {length}: {1e3 * cached:.2f} ms per token with the cache, {1e3 * full:.2f} ms without "
              f"({full / cached:.1f}x)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
