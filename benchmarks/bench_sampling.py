"""Time DDIM-50 against DDPM-1000 sampling in every tree, side by side (days 39-40).

    python benchmarks/bench_sampling.py [--batch 16] [--train-steps 1000] [--ddim-steps 50] [--threads 1]

The model is the day-38 U-Net (``UNetConfig()``: 8x8 digits, widths 16 and 32, 10 classes, float32,
default seeded weights, the same in every tree), called as ``model(x, timesteps, labels)``. Each tree
runs ``ddpm_sample`` (``T`` = ``--train-steps`` model calls) and ``ddim_sample`` with eta = 0 over
``ddim_timesteps(T, --ddim-steps)`` (one model call per step) from the same ``x_T``; the DDPM noise
is drawn lazily, one batch per step, from one NumPy generator (never all ``T`` at once). Each is
timed once, after a short untimed warm-up (a 2-step DDIM run: first calls, allocations). Printed
per tree: both times, the time per step, and the speed-up DDPM/DDIM (ideally T / n, since a step
costs one model call either way). Eager execution in every tree (no ``tf.function``): the sampler
is the Python loop the examples run. Threads: ``--threads`` for NumPy's BLAS, torch and TF
(``ml100.runs.set_threads``), set before any of them runs an op.
"""
from __future__ import annotations

import os
import time

# CPU timings: TF and torch must not pick up a GPU (set before either is imported).
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np

from ml100.backends import get_module, load_framework
from ml100.cli_args import OneLineErrorParser, positive_int
from ml100.configs import UNetConfig
from ml100.runs import set_threads, to_backend
from ml100.schedules import ddim_timesteps

TREES = ("numpy", "torch", "tf")


def native(tree: str, x: np.ndarray):
    """An NCHW NumPy array as the tree's tensor (NHWC for TF, channels-last as its convolutions need)."""
    return to_backend(tree, np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if tree == "tf" else x)


def lazy_noises(tree: str, shape: tuple, count: int, seed: int):
    """``count`` standard-normal batches drawn one at a time (a generator: the loop asks for each)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield native(tree, rng.standard_normal(shape).astype(np.float32))


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--batch", type=positive_int, default=16)
    parser.add_argument("--train-steps", type=positive_int, default=1000, help="T: DDPM's number of model calls")
    parser.add_argument("--ddim-steps", type=positive_int, default=50, help="DDIM's number of model calls")
    parser.add_argument("--threads", type=positive_int, default=1, help="BLAS, torch and TF intra-op threads")
    # Parsed before the frameworks load, so --help and a bad value answer at once.
    args = parser.parse_args(argv)
    if args.ddim_steps > args.train_steps:
        parser.error(f"--ddim-steps must be <= --train-steps = {args.train_steps}, got {args.ddim_steps}")
    # Thread settings only take effect before TF's first op.
    threads = set_threads(args.threads)
    tf, torch = load_framework("tf"), load_framework("torch")

    config = UNetConfig()
    shape = (args.batch, config.in_channels, config.image_size, config.image_size)
    rng = np.random.default_rng(0)
    x_T = rng.standard_normal(shape).astype(np.float32)  # (N, C, H, W)
    labels = (np.arange(args.batch) % config.num_classes).astype(np.int64)  # (N,)
    unets = {tree: get_module(tree, "generative.unet").UNet(config, rng=np.random.default_rng(1)) for tree in TREES}
    state = unets["numpy"].canonical_state_dict()
    for tree in ("torch", "tf"):
        unets[tree].load_canonical_state_dict(state)
    timesteps = ddim_timesteps(args.train_steps, args.ddim_steps)

    print(f"Sampling with the day-38 U-Net, N={args.batch}, {config.image_size}x{config.image_size}, float32, eager "
          f"(torch {torch.__version__}, TF {tf.__version__}, NumPy {np.__version__}; threads: {threads})")
    print(f"  {'tree':6s} {'DDPM-' + str(args.train_steps):>12s} {'DDIM-' + str(args.ddim_steps):>12s}"
          f" {'ms/step DDPM':>13s} {'ms/step DDIM':>13s} {'DDPM/DDIM':>10s}")
    for tree in TREES:
        schedule = get_module(tree, "generative.diffusion_schedule").DDPMSchedule(args.train_steps)
        ddpm, ddim = get_module(tree, "generative.ddpm"), get_module(tree, "generative.ddim")
        start, tree_labels = native(tree, x_T), to_backend(tree, labels)
        ddim.ddim_sample(unets[tree], start, timesteps[:2], 0.0, None, schedule, tree_labels)
        ddpm_seconds = time_once(lambda: ddpm.ddpm_sample(
            unets[tree], start, lazy_noises(tree, shape, args.train_steps - 1, 2), schedule, tree_labels))
        ddim_seconds = time_once(lambda: ddim.ddim_sample(unets[tree], start, timesteps, 0.0, None, schedule,
                                                          tree_labels))
        print(f"  {tree:6s} {ddpm_seconds:11.2f}s {ddim_seconds:11.2f}s {ddpm_seconds / args.train_steps * 1e3:13.2f}"
              f" {ddim_seconds / args.ddim_steps * 1e3:13.2f} {ddpm_seconds / ddim_seconds:9.1f}x")


if __name__ == "__main__":
    main()
