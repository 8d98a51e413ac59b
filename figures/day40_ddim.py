"""Day 40's figure: DDIM on day 39's 1-D toy, with the same exact noise predictor.

The NumPy tree's ``ddim_sample`` (linear schedule, T = 1000, "leading" timesteps, no clipping)
from the same 2000 draws of N(0, 1): left, 40 paths of DDIM-50 with eta = 0 — deterministic, smooth,
each x_T lands on one mode; right, the final histograms of DDPM-1000, DDIM-50 (eta = 0 and 1) and
DDIM-10 (eta = 0) against the data density. Seeded.

    python figures/day40_ddim.py [--out DIR]   # writes DIR/day40_ddim.png
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
from day39_reverse_process import SAMPLES, SEED, SHOWN, data_density, exact_noise_predictor  # noqa: E402
from ml100.schedules import ddim_timesteps  # noqa: E402
from numpy_impl.generative.ddim import ddim_sample  # noqa: E402
from numpy_impl.generative.ddpm import ddpm_sample  # noqa: E402
from numpy_impl.generative.diffusion_schedule import DDPMSchedule  # noqa: E402

NAME = "day40_ddim"


def run_ddim(schedule, x_T, steps: int, eta: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """DDIM over ``steps`` leading timesteps: (the path, rows x at each step then x_0; the timesteps)."""
    recorded = []
    timesteps = ddim_timesteps(schedule.num_train_timesteps, steps)
    noises = [rng.standard_normal(x_T.shape) for _ in range(steps)] if eta > 0 else None
    x_0 = ddim_sample(exact_noise_predictor(schedule.alphas_cumprod, recorded), x_T, timesteps, eta, noises, schedule,
                      clip_sample=False)
    return np.stack(recorded + [x_0[:, 0]]), timesteps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "days" / "img", help="folder the PNG is written to")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    schedule = DDPMSchedule(dtype="float64")
    rng = np.random.default_rng(SEED)
    x_T = rng.standard_normal((SAMPLES, 1))
    path, timesteps = run_ddim(schedule, x_T, 50, 0.0, rng)
    noises = (rng.standard_normal(x_T.shape) for _ in range(schedule.num_train_timesteps - 1))
    finals = {"DDPM-1000": ddpm_sample(exact_noise_predictor(schedule.alphas_cumprod, []), x_T, noises, schedule,
                                       clip_sample=False)[:, 0],
              "DDIM-50, eta 0": path[-1],
              "DDIM-50, eta 1": run_ddim(schedule, x_T, 50, 1.0, rng)[0][-1],
              "DDIM-10, eta 0": run_ddim(schedule, x_T, 10, 0.0, rng)[0][-1]}

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]}, sharey=True)
    # Row k is the sample the model saw at timesteps[k]; the last row is x_0 (drawn at t = -1).
    left.plot(np.append(timesteps, -1), path[:, :SHOWN], lw=0.8, alpha=0.8, marker=".", markersize=2)
    left.invert_xaxis()
    left.set_xlabel("timestep t (sampling runs from the left)")
    left.set_ylabel("x")
    left.set_title(f"DDIM, 50 steps, eta = 0 (deterministic): {SHOWN} paths", fontsize=10)
    grid = np.linspace(-2.5, 2.5, 400)
    for label, x_0 in finals.items():
        right.hist(x_0, bins=80, range=(-2.5, 2.5), orientation="horizontal", density=True, histtype="step", label=label)
    right.plot(data_density(grid), grid, "k", lw=0.8, label="data density")
    right.set_xlabel("density")
    right.legend(fontsize=7)
    figure.savefig(args.out / f"{NAME}.png", dpi=100, bbox_inches="tight")
    print(f"wrote {args.out / f'{NAME}.png'}")
    for label, x_0 in finals.items():
        print(f"{label}: share on the +1 mode {np.mean(x_0 > 0):.3f}, mean |x_0| {np.mean(np.abs(x_0)):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
