"""Train the class-conditional DDPM (days 37-40) on the 8x8 digits and sample it with DDIM and
classifier-free guidance, with any backend (--unconditional: no labels, no guidance).

    python examples/train_diffusion.py --backend numpy|torch|tf [--unconditional] [--plot samples.png]
    python examples/train_diffusion.py --compare --dtype float64 --epochs 1

Training (day 39): each step draws, for a batch of digits scaled to [-1, 1], timesteps ``t`` in
``[0, T)``, the noise ``eps`` and which labels to drop (each with probability ``--label-dropout``,
replaced by the U-Net's null class ``num_classes``: classifier-free guidance trains the conditional
and the unconditional model in one); the day-38 U-Net predicts ``eps`` from
``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`` (day 37's schedule) and Adam minimizes the
mean squared error (``DDPMLoss``). Every random number — batch orders, ``t``, ``eps``, the dropped
labels, the sampling start ``x_T`` — is drawn once with one NumPy generator, so every backend,
started from the same canonical weights, traces the same loss curve.

Sampling (day 40): deterministic DDIM (eta = 0) over ``--ddim-steps`` of the ``T`` timesteps, with
guidance ``eps_null + w (eps_class - eps_null)`` (``--guidance-scale`` w) for the classes 0, 1, ..., 9
in turn; the samples in [-1, 1] become the judge's [0, 1] pixels through ``(x + 1) / 2``
(``ml100.judge.from_signed``). The judge (the day-17 CNN trained on real digits) prints its class
histogram; for the conditional model the last line is ``judge accuracy: X`` (with ``--compare``: the
lowest of the three). ``--unconditional`` trains a U-Net without a class embedding
(``num_classes=None``) and samples it without guidance. ``--plot`` saves a grid of samples, one row
per class (with ``--compare``: the three loss curves).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

from ml100 import judge
from ml100.backends import BACKENDS, get_module
from ml100.cli_args import OneLineErrorParser, add_training_arguments, check_batch_size, positive_float, positive_int
from ml100.configs import UNetConfig, add_config_arguments, config_from_args
from ml100.data import batch_indices, load_digits_split
from ml100.runs import shared_initial_weights, to_backend, to_numpy, training_progress
from ml100.schedules import BETA_SCHEDULES, ddim_timesteps

NCHW_TO_NHWC, NHWC_TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
#: The config fields the digits fix (8x8 grey images, ten classes): not options.
DIGITS = {"in_channels": 1, "image_size": 8, "num_classes": judge.NUM_CLASSES}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    # A U-Net smaller than UNetConfig's default keeps the NumPy run to minutes on 2 cores.
    parser.set_defaults(epochs=60, batch_size=64, lr=2e-3, channels=(8, 16), time_embed_dim=32, groups=4)
    # --channels, --time-embed-dim, --groups: the other UNetConfig fields.
    add_config_arguments(parser, UNetConfig, skip=tuple(DIGITS))
    judge.add_sample_arguments(parser, "a U-Net without class embedding, sampled without guidance")
    parser.add_argument("--train-timesteps", type=positive_int, default=1000, help="T, the noising steps of training (default 1000)")
    parser.add_argument("--beta-schedule", choices=BETA_SCHEDULES, default="squaredcos_cap_v2",
                        help="day 37's noise schedule (default: the cosine one, gentler on tiny images)")
    parser.add_argument("--ddim-steps", type=positive_int, default=25, help="DDIM sampling steps (default 25)")
    parser.add_argument("--guidance-scale", type=positive_float, default=3.0,
                        help="classifier-free guidance weight w (1: the conditional model alone; default 3)")
    parser.add_argument("--label-dropout", type=probability, default=0.1,
                        help="share of training labels replaced by the null class (default 0.1)")
    return parser


def probability(text: str) -> float:
    """A number in [0, 1) (every label keeps some chance of being seen); ``nan`` is refused too."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    # Written so that nan fails it as well.
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """The shared checks, then this script's: DDIM cannot take more steps than training has timesteps."""
    args = judge.check_sample_arguments(parser, args)
    if args.ddim_steps > args.train_timesteps:
        parser.error(f"argument --ddim-steps: {args.ddim_steps} is more than --train-timesteps {args.train_timesteps}")
    return args


def build_unet(backend: str, args, rng=None):
    return get_module(backend, "generative.unet").UNet(args.config, dtype=args.dtype, rng=rng)


def make_step(backend: str, unet, schedule, optimizer):
    """One Adam step on the DDPM loss in the tree's own way of taking gradients:
    ``step(x0, noise, timesteps, labels) -> loss`` (``labels`` ``None`` when unconditional)."""
    module = get_module(backend, "module")
    loss_fn = get_module(backend, "generative.ddpm").DDPMLoss(schedule)

    def forward(x0, noise, timesteps, labels):
        # x_t is data here (nothing upstream to differentiate): no cache is kept for it.
        with module.no_grad():
            x_t = schedule.add_noise(x0, noise, timesteps)  # like x0
        return loss_fn(unet(x_t, timesteps, labels), x0, noise, timesteps)  # ()

    if backend == "numpy":
        def step(x0, noise, timesteps, labels):
            unet.zero_grad()
            loss = forward(x0, noise, timesteps, labels)
            # DDPMLoss hands back the gradients of (model_output, x0, noise): only the first reaches the U-Net.
            unet.backward(loss_fn.backward()[0])
            optimizer.step(dict(unet.named_grads()))
            return float(loss)
        return step
    if backend == "torch":
        def step(x0, noise, timesteps, labels):
            unet.zero_grad()
            loss = forward(x0, noise, timesteps, labels)
            loss.backward()
            optimizer.step({name: param.grad for name, param in unet.named_parameters()})
            return loss.item()
        return step
    import tensorflow as tf

    params = dict(unet.named_parameters())

    # One graph per step (traced once: every batch has one shape), instead of ~30 µs eager ops.
    @tf.function
    def graph_step(x0, noise, timesteps, labels):
        with tf.GradientTape() as tape:
            loss = forward(x0, noise, timesteps, labels)
        optimizer.step(dict(zip(params, tape.gradient(loss, list(params.values())))))
        return loss

    return lambda x0, noise, timesteps, labels: float(graph_step(x0, noise, timesteps, labels))


def draw_randomness(args, n_train: int) -> dict[str, np.ndarray]:
    """Every random number of a run, drawn once: batch orders, each step's timesteps, noise and
    dropped labels, and the sampling start ``x_T``."""
    rng = np.random.default_rng(args.seed + 1)
    batches = np.array([index for _ in range(args.epochs) for index in batch_indices(n_train, args.batch_size, rng)])
    steps, batch = batches.shape
    timesteps = rng.integers(0, args.train_timesteps, size=(steps, batch), dtype=np.int64)  # (S, B)
    noise = rng.standard_normal((steps, batch, *judge.IMAGE_SHAPE)).astype(args.dtype)  # (S, B, 1, 8, 8)
    dropped = rng.random((steps, batch)) < args.label_dropout  # (S, B)
    x_T = rng.standard_normal((args.samples, *judge.IMAGE_SHAPE)).astype(args.dtype)  # (M, 1, 8, 8)
    return {"batches": batches, "timesteps": timesteps, "noise": noise, "dropped": dropped, "x_T": x_T}


def train(backend: str, args, state, data, randomness, progress) -> tuple[dict[str, list[float]], np.ndarray]:
    """Train one backend; returns its per-step losses and its DDIM samples as the judge's pixels."""
    native = (lambda x: to_backend(backend, x.transpose(NCHW_TO_NHWC).copy())) if backend == "tf" else (
        lambda x: to_backend(backend, x))
    unet = build_unet(backend, args)
    unet.load_canonical_state_dict(state)
    schedule = get_module(backend, "generative.diffusion_schedule").DDPMSchedule(
        args.train_timesteps, beta_schedule=args.beta_schedule, dtype=args.dtype)
    step = make_step(backend, unet, schedule, get_module(backend, "foundations.optim").Adam(
        dict(unet.named_parameters()), lr=args.lr))
    # The U-Net's range: pixels in [0, 1] -> [-1, 1].
    x0 = 2.0 * data.x_train - 1.0  # (N, 1, 8, 8)
    task = progress.add_task(f"{backend:5s}", total=len(randomness["batches"]), loss=float("nan"))
    unet.train()
    losses = []
    for index, timesteps, noise, dropped in zip(*(randomness[key] for key in ("batches", "timesteps", "noise", "dropped"))):
        # A dropped label is the null class, id num_classes (the unconditional model of guidance).
        labels = None if args.unconditional else to_backend(backend, np.where(dropped, judge.NUM_CLASSES, data.y_train[index]))
        losses.append(step(native(x0[index]), native(noise), to_backend(backend, timesteps), labels))
        progress.update(task, completed=len(losses), loss=losses[-1])
    unet.eval()
    sample_labels = None if args.unconditional else to_backend(backend, judge.requested_labels(args.samples))
    guidance = {} if args.unconditional else {"guidance_scale": args.guidance_scale, "null_label": judge.NUM_CLASSES}
    samples = get_module(backend, "generative.ddim").ddim_sample(
        unet, native(randomness["x_T"]), ddim_timesteps(args.train_timesteps, args.ddim_steps), 0.0, None, schedule,
        sample_labels, **guidance)
    samples = to_numpy(samples)
    samples = samples.transpose(NHWC_TO_NCHW) if backend == "tf" else samples  # (M, 1, 8, 8)
    return {"DDPM loss": losses}, judge.from_signed(samples)


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before the data loads or a framework is imported.
    args = check_arguments(parser, parser.parse_args(argv))
    config = config_from_args(parser, UNetConfig, args, **DIGITS)
    args.config = dataclasses.replace(config, num_classes=None) if args.unconditional else config
    data = load_digits_split(layout="NCHW", dtype=args.dtype)
    check_batch_size(parser, args.batch_size, len(data.x_train))
    state = shared_initial_weights(build_unet("numpy", args, np.random.default_rng(args.seed)), args.weights, parser)
    randomness = draw_randomness(args, len(data.x_train))
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        runs = {backend: train(backend, args, state, data, randomness, progress) for backend in backends}
    sampler = f"DDIM-{args.ddim_steps}" if args.unconditional else f"DDIM-{args.ddim_steps}, guidance {args.guidance_scale:g}"
    variant = "DDPM" if args.unconditional else "conditional DDPM"
    return judge.finish_run(runs, args, f"{variant} on digits ({sampler}), {args.dtype}")


if __name__ == "__main__":
    sys.exit(main())
