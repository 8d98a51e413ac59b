"""Day 24: an LSTM's four gates, its cell and its output over one sequence, as heat maps (hidden
unit x step). The NumPy tree's ``LSTM`` (input 2, hidden 8, seeded torch-style initialization,
untrained) reads a two-channel signal: a sine and pulses at steps 5 and 25 (both times 3). The
activations are the ones its forward cached for the backward, so the picture is what the cell
computed: ``i, f, o`` in (0, 1), ``g`` and ``h`` in (-1, 1), ``c`` unbounded.

``sequence()`` and ``show_rows()`` are shared with day 25's GRU figure.

    python figures/day24_lstm_gates.py [--out DIR]   # writes DIR/day24_lstm_gates.png
"""
import numpy as np

from make_all import start_figure

STEPS, HIDDEN, SEED = 40, 8, 0
PULSES, AMPLITUDE = (5, 25), 3.0


def sequence() -> np.ndarray:
    """The input, ``(STEPS, 2)`` unbatched: a sine (period 20 steps) and two pulses, times ``AMPLITUDE``."""
    steps = np.arange(STEPS)
    pulses = np.isin(steps, PULSES).astype(np.float64)  # (T,)
    return AMPLITUDE * np.stack([np.sin(2 * np.pi * steps / 20), pulses], axis=1)  # (T, 2)


def cached_steps(model, x: np.ndarray) -> tuple[tuple, list[tuple]]:
    """Run ``model`` on ``x``: its output, and the per-step cell caches its forward saved for the
    backward, popped (one layer, one direction: the first cache's third entry, one tuple of
    ``(1, H)`` arrays per step)."""
    output = model(x)
    caches = model.saved_for_backward()[0]
    return output, caches[0][2]


def show_rows(path, x: np.ndarray, rows: dict, title: str) -> None:
    """The input on top, then one heat map (unit x step) per entry of ``rows``; saved to ``path``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows) + 1, 1, figsize=(8, 1.2 * (len(rows) + 1)), sharex=True)
    # The input drawn as a heat map too, so that its steps line up with the others' columns.
    rows = {"input": (x, -AMPLITUDE, AMPLITUDE), **rows}
    for ax, (name, (values, low, high)) in zip(axes, rows.items()):
        image = ax.imshow(values.T, aspect="auto", cmap="viridis" if low == 0 else "RdBu_r", vmin=low, vmax=high)
        ax.set_ylabel(name)
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, pad=0.01, aspect=8)
    axes[0].set_yticks([0, 1], ["sine", "pulses"], fontsize=7)
    axes[-1].set_xlabel("step t")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def draw(path) -> None:
    from numpy_impl.generative.lstm import LSTM

    x = sequence()  # (T, 2)
    lstm = LSTM(2, HIDDEN, dtype="float64", rng=np.random.default_rng(SEED))
    (h, (_, c_n)), steps = cached_steps(lstm, x)  # h (T, H)
    # Each step caches (i, f, g, o, c_prev, tanh_c), each (1, H); stack them over time.
    i, f, g, o, c_prev, _ = (np.concatenate(part) for part in zip(*steps))  # (T, H) each
    # c_t is the next step's c_prev; the last one is c_n.
    c = np.concatenate([c_prev[1:], c_n])  # (T, H)
    span = float(np.abs(c).max())
    rows = {"i": (i, 0, 1), "f": (f, 0, 1), "g": (g, -1, 1), "o": (o, 0, 1), "c": (c, -span, span), "h": (h, -1, 1)}
    show_rows(path, x, rows, f"LSTM(2, {HIDDEN}), untrained: gates i, f, o in (0, 1), g and h in (-1, 1)")
    print(f"forget gate range {f.min():.3f}..{f.max():.3f}, |c| max {span:.3f}; wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
