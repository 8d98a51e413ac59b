"""Train the conditional GAN (day 36) — or day 33's GAN with --unconditional — on the 8x8 digits, with any backend.

    python examples/train_gan.py --backend numpy|torch|tf [--unconditional] [--plot samples.png]
    python examples/train_gan.py --compare --dtype float64 --epochs 1

Each step is one round of the game (the tree's ``GANStep``): a discriminator update on a batch of
real digits, scaled to the generator's tanh range [-1, 1], and on ``G(z_d)``, then a generator update
(non-saturating loss) on ``G(z_g)`` through the updated discriminator; the conditional players get
the real batch's labels. Both players use Adam with ``betas = (0.5, 0.999)`` (DCGAN's: a shorter
memory of the first moment, so each player follows the other's moves). Every backend starts from
the same canonical weights and sees the same batches and the same noise ``z_d``, ``z_g`` (all drawn
once with one NumPy generator). With ``--compare`` both players' loss curves are compared.

After training, ``--samples`` images ``G(z)`` (the conditional ones asked for the classes 0, 1, ...,
9 in turn) are mapped from [-1, 1] to the judge's [0, 1] (``ml100.judge.from_signed``); the judge
(the day-17 CNN trained on real digits) prints its class histogram — mode collapse shows there —
and, for the conditional GAN, the last line is ``judge accuracy: X`` (with ``--compare``: the
lowest of the three). ``--plot`` saves a grid of samples, one row per class (with ``--compare``:
the discriminator's three loss curves). ``--weights`` takes both players in one safetensors file,
the generator's canonical names under ``0.``, the discriminator's under ``1.``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

from ml100 import judge
from ml100.backends import BACKENDS, get_module
from ml100.cli_args import OneLineErrorParser, add_training_arguments, check_batch_size
from ml100.configs import CGANConfig, GANConfig, add_config_arguments, config_from_args
from ml100.data import batch_indices, load_digits_split
from ml100.runs import shared_initial_weights, to_backend, to_numpy, training_progress

NCHW_TO_NHWC, NHWC_TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
#: The config fields the digits fix (8x8 grey images, ten classes): not options.
DIGITS = {"in_channels": 1, "image_size": 8, "num_classes": judge.NUM_CLASSES}
#: Adam's moment decays for both players (Radford et al. 2016).
BETAS = (0.5, 0.999)
#: The players, in the order of the shared weights file (its prefixes 0. and 1.).
PLAYERS = ("generator", "discriminator")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    # Measured on 2 cores, NumPy tree: judge accuracy 0.950 after 60 epochs (1320 rounds, ~100 s CPU), 0.927 after 30.
    parser.set_defaults(epochs=60, batch_size=64, lr=1e-3)
    # --latent-dim, --hidden-sizes: the other GANConfig fields.
    add_config_arguments(parser, CGANConfig, skip=tuple(DIGITS))
    judge.add_sample_arguments(parser, "day 33's GAN, without labels (the judge's histogram shows mode collapse)")
    return parser


def build_players(backend: str, args, rng=None) -> list:
    """The generator and the discriminator of the chosen variant, in ``PLAYERS`` order."""
    if args.unconditional:
        topic = get_module(backend, "generative.gan")
        return [topic.Generator(args.config, dtype=args.dtype, rng=rng), topic.Discriminator(args.config, dtype=args.dtype, rng=rng)]
    topic = get_module(backend, "generative.conditional")
    return [topic.ConditionalGenerator(args.config, dtype=args.dtype, rng=rng),
            topic.ConditionalDiscriminator(args.config, dtype=args.dtype, rng=rng)]


def player_state(state: dict[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
    """One player's canonical state out of the shared file (its names without the ``index.`` prefix)."""
    prefix = f"{index}."
    return {name[len(prefix):]: value for name, value in state.items() if name.startswith(prefix)}


def draw_randomness(args, n_train: int) -> dict[str, np.ndarray]:
    """Every random number of a run, drawn once: the batch orders, each step's ``z_d`` and ``z_g``, the sampling ``z``."""
    rng = np.random.default_rng(args.seed + 1)
    batches = np.array([index for _ in range(args.epochs) for index in batch_indices(n_train, args.batch_size, rng)])
    shape = (len(batches), args.batch_size, args.config.latent_dim)
    z_d = rng.standard_normal(shape).astype(args.dtype)  # (S, B, D)
    z_g = rng.standard_normal(shape).astype(args.dtype)  # (S, B, D)
    z = rng.standard_normal((args.samples, args.config.latent_dim)).astype(args.dtype)  # (M, D)
    return {"batches": batches, "z_d": z_d, "z_g": z_g, "z": z}


def train(backend: str, args, state, data, randomness, progress) -> tuple[dict[str, list[float]], np.ndarray]:
    """Train one backend; returns both players' per-step losses and its samples as the judge's pixels."""
    generator, discriminator = build_players(backend, args)
    for index, player in enumerate((generator, discriminator)):
        player.load_canonical_state_dict(player_state(state, index))
    adam = get_module(backend, "foundations.optim").Adam
    gan_step = get_module(backend, "generative.gan").GANStep(
        generator, discriminator, adam(dict(generator.named_parameters()), lr=args.lr, betas=BETAS),
        adam(dict(discriminator.named_parameters()), lr=args.lr, betas=BETAS))
    # The generator's range: pixels in [0, 1] -> [-1, 1].
    real = 2.0 * data.x_train - 1.0  # (N, 1, 8, 8)
    real = real.transpose(NCHW_TO_NHWC).copy() if backend == "tf" else real  # TF: (N, 8, 8, 1)
    task = progress.add_task(f"{backend:5s}", total=len(randomness["batches"]), loss=float("nan"))
    curves = {"discriminator": [], "generator": []}
    for index, z_d, z_g in zip(randomness["batches"], randomness["z_d"], randomness["z_g"]):
        condition = () if args.unconditional else (to_backend(backend, data.y_train[index]),)
        d_loss, g_loss = gan_step(to_backend(backend, real[index]), to_backend(backend, z_d), to_backend(backend, z_g), *condition)
        curves["discriminator"].append(d_loss)
        curves["generator"].append(g_loss)
        progress.update(task, completed=len(curves["generator"]), loss=g_loss)
    generator.eval()
    condition = () if args.unconditional else (to_backend(backend, judge.requested_labels(args.samples)),)
    with get_module(backend, "module").no_grad():
        images = to_numpy(generator(to_backend(backend, randomness["z"]), *condition))
    images = images.transpose(NHWC_TO_NCHW) if backend == "tf" else images  # (M, 1, 8, 8)
    return curves, judge.from_signed(images)


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before the data loads or a framework is imported.
    args = judge.check_sample_arguments(parser, parser.parse_args(argv))
    config = config_from_args(parser, CGANConfig, args, **DIGITS)
    # Day 33's GAN takes the same fields but the number of classes.
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(GANConfig)}
    args.config = GANConfig(**fields) if args.unconditional else config
    data = load_digits_split(layout="NCHW", dtype=args.dtype)
    check_batch_size(parser, args.batch_size, len(data.x_train))
    # Both players in one canonical state (prefixes 0. and 1.): one file, one --weights.
    players = get_module("numpy", "module").ModuleList(build_players("numpy", args, np.random.default_rng(args.seed)))
    state = shared_initial_weights(players, args.weights, parser)
    randomness = draw_randomness(args, len(data.x_train))
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        runs = {backend: train(backend, args, state, data, randomness, progress) for backend in backends}
    variant = "GAN" if args.unconditional else "conditional GAN"
    return judge.finish_run(runs, args, f"{variant} on digits, Adam, {args.dtype}")


if __name__ == "__main__":
    sys.exit(main())
