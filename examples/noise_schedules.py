"""The DDPM forward process q(x_t | x_0) (day 37): the three noise schedules, and a digit noised.

    python examples/noise_schedules.py --backend numpy|torch|tf --plot docs/days/img/day37_forward_process.png

Left: alpha_bar_t (the share of x_0's variance left at step t) for "linear", "scaled_linear" and
"squaredcos_cap_v2" (T = 1000, diffusers' defaults). Right: one 8x8 digit from ml100.data noised
at several t with the chosen backend's generative/diffusion_schedule.py, one noise draw (seeded)
for every t, so only the schedule changes along a row. Prints alpha_bar at those t.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ml100.backends import BACKENDS, FrameworkNotInstalledError, check_installed, get_module
from ml100.cli_args import OneLineErrorParser, plot_file
from ml100.data import load_digits_split
from ml100.runs import to_backend, to_numpy
from ml100.schedules import BETA_SCHEDULES

#: The timesteps shown along each row of the figure.
SHOWN_STEPS = (0, 50, 100, 250, 500, 750, 999)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--backend", choices=list(BACKENDS), default="numpy", help="whose add_noise noises (default: numpy)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise draw")
    parser.add_argument("--plot", type=plot_file, default=None, help="write the figure to this file")
    return parser


def noised_digits(backend: str, seed: int) -> dict[str, np.ndarray]:
    """For each schedule, ``(len(SHOWN_STEPS), 8, 8)``: one digit (pixels scaled to [-1, 1], as
    DDPM does) noised at each shown t with the same noise."""
    module = get_module(backend, "generative.diffusion_schedule")
    digit = load_digits_split("NCHW", dtype="float64").x_train[:1] * 2 - 1  # (1, 1, 8, 8)
    x0 = np.repeat(digit, len(SHOWN_STEPS), axis=0)  # (S, 1, 8, 8)
    # One draw repeated: every t sees the same epsilon.
    noise = np.repeat(np.random.default_rng(seed).standard_normal(digit.shape), len(SHOWN_STEPS), axis=0)  # (S, 1, 8, 8)
    timesteps = np.array(SHOWN_STEPS, dtype=np.int64)  # (S,)
    rows = {}
    for schedule in BETA_SCHEDULES:
        model = module.DDPMSchedule(beta_schedule=schedule, dtype="float64")
        x_t = model.add_noise(*(to_backend(backend, a) for a in (x0, noise, timesteps)))  # (S, 1, 8, 8)
        rows[schedule] = to_numpy(x_t)[:, 0]  # (S, 8, 8)
    return rows


def plot(path, backend: str, rows: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    module = get_module(backend, "generative.diffusion_schedule")
    fig = plt.figure(figsize=(12, 4.2))
    grid = fig.add_gridspec(len(rows), 1 + len(SHOWN_STEPS), width_ratios=[5] + [1] * len(SHOWN_STEPS))
    curve = fig.add_subplot(grid[:, 0])
    for schedule in rows:
        alpha_bar = to_numpy(module.DDPMSchedule(beta_schedule=schedule, dtype="float64").alphas_cumprod)  # (T,)
        curve.plot(alpha_bar, label=schedule)
    curve.set(xlabel="t", ylabel=r"$\bar\alpha_t$", title=r"$\bar\alpha_t$, T = 1000")
    curve.legend()
    for r, (schedule, images) in enumerate(rows.items()):
        for c, image in enumerate(images):
            ax = fig.add_subplot(grid[r, 1 + c])
            ax.imshow(image, cmap="gray", vmin=-2, vmax=2)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={SHOWN_STEPS[c]}", fontsize=9)
            if c == 0:
                ax.set_ylabel(schedule, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_installed(args.backend)
    except FrameworkNotInstalledError as error:
        print(error, file=sys.stderr)
        return 2
    rows = noised_digits(args.backend, args.seed)
    module = get_module(args.backend, "generative.diffusion_schedule")
    for schedule in rows:
        alpha_bar = to_numpy(module.DDPMSchedule(beta_schedule=schedule, dtype="float64").alphas_cumprod)  # (T,)
        print(f"{schedule:>18}: " + "  ".join(f"t={t}: {alpha_bar[t]:.4f}" for t in SHOWN_STEPS))
    if args.plot is not None:
        plot(args.plot, args.backend, rows)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
