"""Train a small Vision Transformer on scikit-learn's 8x8 digits with any backend (day 56).

    python examples/train_vit.py --backend numpy|torch|tf [--patch-size 4] [--hidden-size 32]
    python examples/train_vit.py --compare --dtype float64 --epochs 2 --plot vit.png

The model is day 55's ``ViTForImageClassification`` (patches, class token, positions, pre-LN
encoder layers, a classifier on the class token), trained with Adam and day 8's cross-entropy by
each tree's ``Trainer``, as ``examples/train_cnn.py`` trains the day-17 CNN. NumPy and torch train
on NCHW images, TF on NHWC; every backend starts from the same canonical weights and sees the same
batches. The last line is ``test accuracy: 0.9xx``.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ml100.backends import BACKENDS, get_module
from ml100.cli_args import OneLineErrorParser, add_training_arguments, check_batch_size, check_training_arguments
from ml100.configs import ViTConfig, add_config_arguments, config_from_args
from ml100.data import batch_indices, load_digits_split
from ml100.runs import report_comparison, shared_initial_weights, training_progress

NCHW_TO_NHWC = (0, 2, 3, 1)
#: The ViTConfig fields the digits fix (8x8 grey images, ten classes): not options.
DIGITS = {"num_channels": 1, "num_labels": 10, "image_size": 8}
#: A small ViT for 8x8 images (ViTConfig's defaults are ViT-Base's): 4x4 patches, 4 tokens + the class token.
SMALL = {"patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 64, "layer_norm_eps": 1e-6}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    # --patch-size, --hidden-size, ...: one option per other ViTConfig field, defaulting to the small ViT.
    add_config_arguments(parser, ViTConfig, skip=tuple(DIGITS))
    parser.set_defaults(**SMALL)
    return parser


def build_vit(backend: str, args, rng=None):
    return get_module(backend, "modern.vit").ViTForImageClassification(args.config, dtype=args.dtype, rng=rng)


def make_trainer(backend: str, args, state: dict[str, np.ndarray]):
    """The same four objects in every tree: model, loss, optimizer, trainer."""
    model = build_vit(backend, args)
    model.load_canonical_state_dict(state)
    loss_fn = get_module(backend, "foundations.losses").CrossEntropyLoss(dtype=args.dtype)
    optimizer = get_module(backend, "foundations.optim").Adam(dict(model.named_parameters()), lr=args.lr)
    return get_module(backend, "foundations.trainer").Trainer(model, loss_fn, optimizer)


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
            images = data.x_train[index]  # (B, 1, 8, 8)
            losses.append(trainer.train_step(to_backend(images), data.y_train[index]))
            progress.update(task, completed=len(losses), loss=losses[-1])
    _, accuracy = trainer.evaluate(to_backend(data.x_test), data.y_test)
    return losses, accuracy


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before the data loads or a framework is imported.
    args = check_training_arguments(parser, parser.parse_args(argv))
    args.config = config_from_args(parser, ViTConfig, args, **DIGITS)
    data = load_digits_split(layout="NCHW", dtype=args.dtype)
    check_batch_size(parser, args.batch_size, len(data.x_train))
    state = shared_initial_weights(build_vit("numpy", args, np.random.default_rng(args.seed)), args.weights, parser)
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        results = {backend: train(backend, args, state, data, progress) for backend in backends}
    if args.compare:
        report_comparison(results, args.dtype, args.plot, f"ViT on digits, Adam, {args.dtype}: three backends")
    else:
        print(f"test accuracy: {results[args.backend][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
