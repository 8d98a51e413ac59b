"""Train the MLP on scikit-learn's 8x8 digits with any backend (days 7-11).

    python examples/train_mlp.py --backend numpy|torch|tf
    python examples/train_mlp.py --compare --dtype float64 --plot loss_curves.png

Every backend starts from the same canonical weights (drawn from ``--seed``, passed through a
safetensors file) and sees the same batches in the same order, so ``--compare`` can show that the
three loss curves are one curve: the largest difference is printed at the end.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ml100.backends import BACKENDS, get_module
from ml100.cli_args import OneLineErrorParser, add_training_arguments, check_batch_size, check_training_arguments, positive_int
from ml100.data import load_digits_split
from ml100.runs import report_comparison, shared_initial_weights, training_progress

IN_FEATURES, NUM_CLASSES = 64, 10


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=[128], help="hidden layer widths")
    return parser


def make_trainer(backend: str, args, state: dict[str, np.ndarray]):
    """The same four objects in every tree: model, loss, optimizer, trainer."""
    model = get_module(backend, "foundations.mlp").MLP(IN_FEATURES, args.hidden, NUM_CLASSES, dtype=args.dtype)
    model.load_canonical_state_dict(state)
    loss_fn = get_module(backend, "foundations.losses").CrossEntropyLoss(dtype=args.dtype)
    optimizer = get_module(backend, "foundations.optim").Adam(dict(model.named_parameters()), lr=args.lr)
    return get_module(backend, "foundations.trainer").Trainer(model, loss_fn, optimizer)


def train(backend: str, args, state, data, progress) -> tuple[list[float], float]:
    """Train one backend; returns its per-step losses and its test accuracy."""
    trainer = make_trainer(backend, args, state)
    steps = args.epochs * (len(data.x_train) // args.batch_size)
    task = progress.add_task(f"{backend:5s}", total=steps, loss=float("nan"))
    losses = trainer.fit(data.x_train, data.y_train, args.epochs, args.batch_size, np.random.default_rng(args.seed),
                         on_step=lambda step, loss: progress.update(task, completed=step, loss=loss))
    _, accuracy = trainer.evaluate(data.x_test, data.y_test)
    return losses, accuracy


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before the data loads or a framework is imported.
    args = check_training_arguments(parser, parser.parse_args(argv))
    data = load_digits_split(layout="flat", dtype=args.dtype)
    check_batch_size(parser, args.batch_size, len(data.x_train))
    numpy_model = get_module("numpy", "foundations.mlp").MLP(IN_FEATURES, args.hidden, NUM_CLASSES, dtype=args.dtype,
                                                             rng=np.random.default_rng(args.seed))
    state = shared_initial_weights(numpy_model, args.weights, parser)
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        results = {backend: train(backend, args, state, data, progress) for backend in backends}
    if args.compare:
        report_comparison(results, args.dtype, args.plot, f"MLP on digits, Adam, {args.dtype}: three backends")
    else:
        print(f"test accuracy: {results[args.backend][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
