"""Day 68: time and peak memory of full, sliding-window and linear attention against T.

Causal self-attention forward+backward in the NumPy tree, 2 heads of width 32, float32, window 64,
measured by ``benchmarks/bench_efficient_attention.py``'s ``measure`` with one BLAS thread (time: best of 3 runs; peak
memory: ``tracemalloc``, which sees NumPy's buffers). The dashed line is the analytical size of one
``(H, T, T)`` float32 score matrix. The memory panel is deterministic; the time panel is a
measurement and moves a little from run to run (the issue asks for time against T).

    python figures/day68_efficient_attention.py [--out DIR]   # writes DIR/day68_efficient_attention.png
"""
from make_all import start_figure

STEPS, WINDOW, WIDTH, HEADS, REPEATS = (128, 256, 512, 1024, 2048), 64, 32, 2, 3


def draw(path) -> None:
    import matplotlib.pyplot as plt

    from benchmarks.bench_efficient_attention import measure

    results = measure(STEPS, WINDOW, WIDTH, HEADS, REPEATS, threads=1)
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in results.items():
        steps, seconds, peaks = zip(*rows)
        time_ax.plot(steps, [s * 1e3 for s in seconds], "o-", label=name)
        memory_ax.plot(steps, [p / 2**20 for p in peaks], "o-", label=name)
        print(f"{name}: peak MiB {[round(p / 2**20, 2) for p in peaks]}")
    memory_ax.plot(STEPS, [HEADS * t * t * 4 / 2**20 for t in STEPS], "k--", label="one (H, T, T) float32 score matrix")
    time_ax.set(xscale="log", yscale="log", xlabel="T", ylabel="forward+backward (ms, best of 3)",
                title="time (measured)")
    memory_ax.set(xscale="log", yscale="log", xlabel="T", ylabel="peak (MiB, tracemalloc)", title="peak memory")
    for ax in (time_ax, memory_ax):
        ax.minorticks_off()
        ax.set_xticks(STEPS, [str(t) for t in STEPS])
        ax.legend(fontsize=8)
    fig.suptitle(f"causal attention, NumPy tree, {HEADS} heads x width {WIDTH}, window {WINDOW}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
