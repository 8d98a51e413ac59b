"""Day 35: how fast power iteration finds the spectral norm that ``SNLinear`` divides by. The NumPy
tree's ``power_iteration`` (one step at a time, u first, from a random unit v) on two 64x128
matrices: a Gaussian one (``Linear``-like scale), whose top singular values crowd together (the
edge of the Marchenko-Pastur spectrum), and one with the same singular vectors and values except
the largest, raised to twice the second (a dominant direction, ``GAP_RATIO``). The estimate
``sigma = u^T W v`` is compared with ``np.linalg.svd``'s largest singular value; the dashed line
marks the 15 iterations ``SNLinear`` runs when it is built.

    python figures/day35_power_iteration.py [--out DIR]   # writes DIR/day35_power_iteration.png
"""
import numpy as np

from make_all import start_figure

OUT, IN, ITERATIONS, SEED, GAP_RATIO, EPS = 64, 128, 100, 0, 0.5, 1e-12


def matrices() -> dict[str, np.ndarray]:
    """The two ``(OUT, IN)`` matrices, by the ratio of their two largest singular values."""
    rng = np.random.default_rng(SEED)
    gaussian = rng.standard_normal((OUT, IN)) / np.sqrt(IN)  # (OUT, IN)
    left, singular, right = np.linalg.svd(gaussian, full_matrices=False)  # (OUT, OUT), (OUT,), (OUT, IN)
    # Same singular vectors; only the largest singular value moves, away from the second.
    gapped = singular.copy()
    gapped[0] = gapped[1] / GAP_RATIO
    return {f"Gaussian, s2/s1 = {singular[1] / singular[0]:.3f}": gaussian,
            f"top value raised, s2/s1 = {GAP_RATIO}": (left * gapped) @ right}


def estimates(weight: np.ndarray) -> np.ndarray:
    """``u^T W v`` after each of ``ITERATIONS`` power-iteration steps, ``(ITERATIONS,)``."""
    from numpy_impl.generative.wgan import normalize, power_iteration

    rng = np.random.default_rng(SEED + 1)
    u = normalize(rng.standard_normal(OUT), EPS)  # (OUT,)
    v = normalize(rng.standard_normal(IN), EPS)  # (IN,)
    sigmas = np.empty(ITERATIONS)
    for k in range(ITERATIONS):
        u, v = power_iteration(weight, u, v, 1, EPS)
        sigmas[k] = u @ weight @ v
    return sigmas


def draw(path) -> None:
    import matplotlib.pyplot as plt
    from numpy_impl.generative.wgan import INIT_POWER_ITERATIONS

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    steps = np.arange(1, ITERATIONS + 1)
    for label, weight in matrices().items():
        true = np.linalg.svd(weight, compute_uv=False)[0]
        sigmas = estimates(weight)  # (ITERATIONS,)
        relative = np.abs(true - sigmas) / true  # (ITERATIONS,)
        line, = axes[0].plot(steps, sigmas, label=label)
        axes[0].axhline(true, color=line.get_color(), linestyle=":", linewidth=1)
        # An exact 0 (converged to the last bit) cannot be drawn on a log scale.
        axes[1].semilogy(steps, np.maximum(relative, 1e-17), label=label)
        print(f"{label}: true sigma {true:.6f}; relative error after 1, {INIT_POWER_ITERATIONS}, {ITERATIONS} "
              f"iterations: {relative[0]:.2e}, {relative[INIT_POWER_ITERATIONS - 1]:.2e}, {relative[-1]:.2e}")
    axes[0].set(title="estimate u^T W v (dotted: largest singular value)", xlabel="power iterations", ylabel="sigma")
    axes[1].set(title="relative error |sigma_k - sigma| / sigma", xlabel="power iterations")
    for ax in axes:
        ax.axvline(INIT_POWER_ITERATIONS, color="grey", linestyle="--", linewidth=1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
