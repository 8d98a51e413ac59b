"""Day 25: a GRU's gates r, z, the candidate n and the state h over one sequence, as heat maps
(hidden unit x step). The NumPy tree's ``GRU`` (input 2, hidden 8, seeded torch-style
initialization, untrained) reads day 24's input (a sine and pulses at steps 5 and 25); the
activations are those its forward cached for the backward. The input, the layout and the cache
reading are day 24's figure's (imported, not repeated).

    python figures/day25_gru_gates.py [--out DIR]   # writes DIR/day25_gru_gates.png
"""
import numpy as np

from day24_lstm_gates import HIDDEN, SEED, cached_steps, sequence, show_rows
from make_all import start_figure


def draw(path) -> None:
    from numpy_impl.generative.gru import GRU

    x = sequence()  # (T, 2)
    gru = GRU(2, HIDDEN, dtype="float64", rng=np.random.default_rng(SEED))
    (h, _), steps = cached_steps(gru, x)  # h (T, H)
    # Each step caches (h_prev, r, z, n, a_hn), each (1, H); stack them over time.
    _, r, z, n, _ = (np.concatenate(part) for part in zip(*steps))  # (T, H) each
    rows = {"r": (r, 0, 1), "z": (z, 0, 1), "n": (n, -1, 1), "h": (h, -1, 1)}
    show_rows(path, x, rows, f"GRU(2, {HIDDEN}), untrained: h' = (1 - z) n + z h; gates r, z in (0, 1)")
    print(f"update gate range {z.min():.3f}..{z.max():.3f}, mean {z.mean():.3f}; wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
