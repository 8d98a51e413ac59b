"""Train the LeNet-style CNN on scikit-learn's 8x8 digits with any backend (days 13-17, 20).

    python examples/train_cnn.py --backend numpy|torch|tf [--batch-norm] [--augment]
    python examples/train_cnn.py --compare --dtype float64 --epochs 5

NumPy and torch train on NCHW images, TF on NHWC; every backend starts from the same canonical
weights and sees the same batches. ``--augment`` shifts each training image by up to one pixel
(pad-and-crop) and cuts out a 2x2 square, with parameters drawn from the seeded generator and
applied by the NumPy tree's augmentation ops (so every backend trains on the same pixels).
The last line is ``test accuracy: 0.9xx``.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ml100.augment import draw_crop_offsets, draw_cutout_centers
from ml100.backends import BACKENDS, get_module
from ml100.cli_args import OneLineErrorParser, add_training_arguments, check_batch_size, check_training_arguments
from ml100.configs import CNNConfig, add_config_arguments, config_from_args
from ml100.data import batch_indices, load_digits_split
from ml100.runs import report_comparison, shared_initial_weights, training_progress

NCHW_TO_NHWC = (0, 2, 3, 1)
#: The CNNConfig fields the digits fix (8x8 grey images, ten classes): not options.
DIGITS = {"in_channels": 1, "num_classes": 10, "image_size": 8}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    # --channels, --hidden, --batch-norm/--no-batch-norm: one option per other CNNConfig field.
    add_config_arguments(parser, CNNConfig, skip=tuple(DIGITS))
    parser.add_argument("--augment", action="store_true", help="random 1-pixel shifts and 2x2 cutout while training")
    return parser


def build_cnn(backend: str, args, rng=None):
    return get_module(backend, "foundations.cnn").CNN(args.config, dtype=args.dtype, rng=rng)


def make_trainer(backend: str, args, state: dict[str, np.ndarray]):
    """The same four objects in every tree: model, loss, optimizer, trainer."""
    model = build_cnn(backend, args)
    model.load_canonical_state_dict(state)
    loss_fn = get_module(backend, "foundations.losses").CrossEntropyLoss(dtype=args.dtype)
    optimizer = get_module(backend, "foundations.optim").Adam(dict(model.named_parameters()), lr=args.lr)
    return get_module(backend, "foundations.trainer").Trainer(model, loss_fn, optimizer)


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift by up to one pixel and cut out a 2x2 square (NCHW), parameters drawn from ``rng``."""
    aug = get_module("numpy", "foundations.augmentation")
    n, _, h, w = images.shape
    images = aug.pad_and_crop(images, 1, draw_crop_offsets(n, 1, rng))  # (N, 1, 8, 8)
    return aug.cutout(images, draw_cutout_centers(n, h, w, rng), 2)  # (N, 1, 8, 8)


def train(backend: str, args, state, data, progress) -> tuple[list[float], float]:
    """Train one backend; returns its per-step losses and its test accuracy."""
    trainer = make_trainer(backend, args, state)
    to_backend = (lambda x: x.transpose(NCHW_TO_NHWC).copy()) if backend == "tf" else (lambda x: x)
    rng = np.random.default_rng(args.seed)
    steps = args.epochs * (len(data.x_train) // args.batch_size)
    task = progress.add_task(f"{backend:5s}", total=steps, loss=float("nan"))
    losses = []
    for _ in range(args.epochs):
        for index in batch_indices(len(data.x_train), args.batch_size, rng):
            images = augment(data.x_train[index], rng) if args.augment else data.x_train[index]  # (B, 1, 8, 8)
            losses.append(trainer.train_step(to_backend(images), data.y_train[index]))
            progress.update(task, completed=len(losses), loss=losses[-1])
    _, accuracy = trainer.evaluate(to_backend(data.x_test), data.y_test)
    return losses, accuracy


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before the data loads or a framework is imported.
    args = check_training_arguments(parser, parser.parse_args(argv))
    args.config = config_from_args(parser, CNNConfig, args, **DIGITS)
    data = load_digits_split(layout="NCHW", dtype=args.dtype)
    check_batch_size(parser, args.batch_size, len(data.x_train))
    state = shared_initial_weights(build_cnn("numpy", args, np.random.default_rng(args.seed)), args.weights, parser)
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        results = {backend: train(backend, args, state, data, progress) for backend in backends}
    if args.compare:
        report_comparison(results, args.dtype, args.plot, f"CNN on digits, Adam, {args.dtype}: three backends")
    else:
        print(f"test accuracy: {results[args.backend][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
