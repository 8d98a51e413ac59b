"""Day 22: how far back a tanh RNN remembers, at three scales of its recurrent weight. The NumPy
tree's ``RNN`` (input 3, hidden 16, seeded) reads a random sequence twice, the second time with
its first input changed by 1; the distance ``||h_t - h'_t||`` between the two hidden trajectories
is the first input's influence on step ``t``. ``W_hh`` is rescaled to spectral radius 0.5, 0.9 and
1.5: below 1 the influence decays geometrically (the product of Jacobians ``W_hh^T diag(1 - h^2)``
that BPTT multiplies, day 23); above 1 many units saturate near +-1 and the difference decays far
more slowly.

    python figures/day22_rnn_memory.py [--out DIR]   # writes DIR/day22_rnn_memory.png
"""
import numpy as np

from make_all import start_figure

STEPS, INPUT, HIDDEN, SEED = 60, 3, 16, 0
RADII = (0.5, 0.9, 1.5)


def trajectories(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Hidden states ``(STEPS, HIDDEN)`` of the sequence and of the one with its first input nudged."""
    from numpy_impl.generative.rnn import RNN
    from numpy_impl.module import no_grad

    rng = np.random.default_rng(SEED)
    rnn = RNN(INPUT, HIDDEN, dtype="float64", rng=rng)
    w_hh = rnn.params["weight_hh_l0"]  # (H, H)
    # Same directions of W_hh for every radius: only its scale changes.
    rnn.params["weight_hh_l0"] = w_hh * (radius / np.max(np.abs(np.linalg.eigvals(w_hh))))
    x = rng.standard_normal((STEPS, INPUT))  # (T, in) one unbatched sequence
    nudged = x.copy()
    nudged[0] += 1.0
    with no_grad():
        return rnn(x)[0], rnn(nudged)[0]  # (T, H) each


def draw(path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    runs = {radius: trajectories(radius) for radius in RADII}
    for radius, (h, h_nudged) in runs.items():
        distance = np.linalg.norm(h - h_nudged, axis=1)  # (T,)
        axes[0].semilogy(np.arange(1, STEPS + 1), distance, label=f"radius {radius}")
        print(f"radius {radius}: ||h_t - h'_t|| at t=1 {distance[0]:.3g}, t=20 {distance[19]:.3g}, "
              f"t={STEPS} {distance[-1]:.3g}")
    axes[0].set(title="influence of the first input on h_t", xlabel="step t", ylabel="||h_t - h'_t||")
    axes[0].legend()
    for ax, radius in zip(axes[1:], (RADII[0], RADII[-1])):
        image = ax.imshow(runs[radius][0].T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set(title=f"h_t, spectral radius {radius}", xlabel="step t", ylabel="hidden unit")
    fig.colorbar(image, ax=axes[2])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
