"""Time and peak memory of full, sliding-window and linear attention against T (day 68), NumPy tree.

    python benchmarks/bench_efficient_attention.py [--steps 256 512 1024 2048] [--window 64] [--width 32]
                                                   [--heads 2] [--repeats 3] [--threads 1]

Causal self-attention on ``(1, heads, T, width)`` float32 queries, keys and values, forward then
backward with a random cotangent, in the NumPy tree: day 41's ``ScaledDotProductAttention`` with
``is_causal=True`` (full), ``SlidingWindowAttention(window)`` (masked full attention: the same
``T x T`` scores, the window only zeroes most of them) and ``LinearAttention(causal=True)`` (prefix
sums, a ``(T, width, width)`` state per head). Time is the best of ``--repeats``; peak memory is
``tracemalloc``'s peak over one forward+backward (NumPy reports its array buffers to it), not an
analytical count. Each line ends with the implementation's time as a ratio to full attention at
the same T, all measured in this one run.
"""
from __future__ import annotations

from ml100.cli_args import OneLineErrorParser, positive_int
from ml100.runs import best_seconds

#: The three implementations compared, in the order printed and drawn.
IMPLEMENTATIONS = ("full (causal)", "sliding window", "linear (causal)")


def attention_step(name: str, steps: int, window: int, width: int, heads: int):
    """One forward+backward of ``name`` at length ``steps`` on fixed random float32 inputs."""
    import numpy as np

    from numpy_impl.modern.attention import ScaledDotProductAttention
    from numpy_impl.modern.efficient_attention import LinearAttention, SlidingWindowAttention

    rng = np.random.default_rng(0)
    q, k, v, grad = (rng.standard_normal((1, heads, steps, width)).astype(np.float32) for _ in range(4))  # (1, H, T, d)
    if name == "linear (causal)":
        module = LinearAttention(causal=True)
        return lambda: module.backward(module(q, k, v))
    if name == "sliding window":
        module = SlidingWindowAttention(window)
        return lambda: module.backward(module(q, k, v)[0])
    module = ScaledDotProductAttention()
    return lambda: module.backward(module(q, k, v, is_causal=True)[0])


def peak_bytes(step) -> int:
    """``tracemalloc``'s peak over one call of ``step`` (allocations live before it excluded)."""
    import tracemalloc

    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(steps_list, window: int, width: int, heads: int, repeats: int,
            threads: int = 1) -> dict[str, list[tuple[int, float, int]]]:
    """``{implementation: [(T, seconds, peak bytes), ...]}`` for every T of ``steps_list``, with
    ``threads`` BLAS threads (set through threadpoolctl: NumPy is already loaded, so the
    environment variables would come too late)."""
    from threadpoolctl import threadpool_limits

    results = {name: [] for name in IMPLEMENTATIONS}
    with threadpool_limits(limits=threads, user_api="blas"):
        for steps in steps_list:
            for name in IMPLEMENTATIONS:
                step = attention_step(name, steps, window, width, heads)
                results[name].append((steps, best_seconds(step, repeats), peak_bytes(step)))
    return results


def main(argv=None) -> None:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--steps", type=positive_int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--window", type=positive_int, default=64)
    parser.add_argument("--width", type=positive_int, default=32)
    parser.add_argument("--heads", type=positive_int, default=2)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=1)
    # Parsed before any work, so --help and a bad value answer at once.
    args = parser.parse_args(argv)
    import numpy as np

    print(f"causal attention forward+backward, NumPy tree, float32, 1 x {args.heads} heads x T x {args.width}, "
          f"window {args.window} (NumPy {np.__version__}; BLAS threads {args.threads}); peak = tracemalloc")
    results = measure(args.steps, args.window, args.width, args.heads, args.repeats, args.threads)
    for index, steps in enumerate(args.steps):
        full_seconds, full_peak = results[IMPLEMENTATIONS[0]][index][1:]
        for name in IMPLEMENTATIONS:
            _, seconds, peak = results[name][index]
            print(f"  T={steps:5d}  {name:16s} {seconds * 1e3:9.2f} ms  peak {peak / 2**20:8.2f} MiB "
                  f"({peak / full_peak:5.2f}x memory)  {seconds / full_seconds:5.2f}x")


if __name__ == "__main__":
    main()
