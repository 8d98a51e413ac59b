"""Day 39's figure: DDPM's reverse process on a 1-D toy, with the exact noise predictor.

The data are a two-point mixture (``±1``, equal weights, spread ``SPREAD``); for it the ideal
noise predictor has a closed form (:func:`exact_noise_predictor`), so no training is needed to see
what ancestral sampling does. The NumPy tree's ``ddpm_sample`` (linear schedule, T = 1000,
``fixed_small``, no clipping) carries 2000 draws of N(0, 1) to the data; left, 40 of the paths
over t; right, the histogram of the final samples against the data density. Seeded.

    python figures/day39_reverse_process.py [--out DIR]   # writes DIR/day39_reverse_process.png
"""
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from numpy_impl.generative.ddpm import ddpm_sample  # noqa: E402
from numpy_impl.generative.diffusion_schedule import DDPMSchedule  # noqa: E402

NAME = "day39_reverse_process"
MEANS, SPREAD = np.array([-1.0, 1.0]), 0.05
SAMPLES, SHOWN, SEED = 2000, 40, 0


def exact_noise_predictor(alphas_cumprod: np.ndarray, recorded: list):
    r"""``model(x (N, 1), timesteps (N,), labels)`` returning the exact :math:`\varepsilon^*(x_t, t)` of the
    mixture: per component :math:`x_t \sim \mathcal N(\sqrt{\bar\alpha}\mu_k, \bar\alpha s^2 + 1 - \bar\alpha)`, the
    posterior mean :math:`\mathbb E[x_0 \mid x_t]` by Bayes over the components, then
    :math:`\varepsilon^* = (x_t - \sqrt{\bar\alpha}\,\mathbb E[x_0 \mid x_t]) / \sqrt{1 - \bar\alpha}`. Each call's ``x`` is
    appended to ``recorded`` (the path)."""
    def model(x, timesteps, labels):
        recorded.append(x[:, 0].copy())
        alpha_bar = alphas_cumprod[timesteps][:, None]  # (N, 1)
        scale, variance = np.sqrt(alpha_bar), alpha_bar * SPREAD**2 + 1 - alpha_bar  # (N, 1) each
        log_weights = -((x - scale * MEANS) ** 2) / (2 * variance)  # (N, K)
        weights = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))  # (N, K)
        weights /= weights.sum(axis=1, keepdims=True)
        component_means = MEANS + scale * SPREAD**2 / variance * (x - scale * MEANS)  # (N, K)
        posterior_mean = (weights * component_means).sum(axis=1, keepdims=True)  # (N, 1)
        return (x - scale * posterior_mean) / np.sqrt(1 - alpha_bar)  # (N, 1)
    return model


def data_density(x: np.ndarray) -> np.ndarray:
    return sum(np.exp(-((x - mu) ** 2) / (2 * SPREAD**2)) for mu in MEANS) / (len(MEANS) * SPREAD * np.sqrt(2 * np.pi))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "days" / "img", help="folder the PNG is written to")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    schedule = DDPMSchedule(dtype="float64")
    rng = np.random.default_rng(SEED)
    x_T = rng.standard_normal((SAMPLES, 1))
    noises = (rng.standard_normal((SAMPLES, 1)) for _ in range(schedule.num_train_timesteps - 1))
    recorded = []
    x_0 = ddpm_sample(exact_noise_predictor(schedule.alphas_cumprod, recorded), x_T, noises, schedule,
                      clip_sample=False)
    paths = np.stack(recorded + [x_0[:, 0]])  # (T + 1, N): x_T ... x_0
    # Row k is the sample the model saw at t = T-1-k; the last row, after the step at t = 0, is x_0 (t = -1).
    steps = np.arange(schedule.num_train_timesteps - 1, -2, -1)  # (T + 1,)

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]}, sharey=True)
    left.plot(steps, paths[:, :SHOWN], lw=0.6, alpha=0.7)
    left.invert_xaxis()
    left.set_xlabel("timestep t (sampling runs from T - 1 on the left to 0)")
    left.set_ylabel("x")
    left.set_title(f"DDPM ancestral sampling, T = {schedule.num_train_timesteps}: {SHOWN} paths", fontsize=10)
    grid = np.linspace(-2.5, 2.5, 400)
    right.hist(x_0[:, 0], bins=80, range=(-2.5, 2.5), orientation="horizontal", density=True, alpha=0.6,
               label=f"{SAMPLES} samples")
    right.plot(data_density(grid), grid, "k", lw=1, label="data density")
    right.set_xlabel("density")
    right.legend(fontsize=8)
    figure.savefig(args.out / f"{NAME}.png", dpi=100, bbox_inches="tight")
    print(f"wrote {args.out / f'{NAME}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
