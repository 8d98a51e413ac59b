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
from pathlib import Path

import numpy as np

from ml100.backends import BACKENDS, get_module
from ml100.data import load_digits_split
from ml100.runs import report_comparison, shared_initial_weights, training_progress

IN_FEATURES, NUM_CLASSES = 64, 10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=list(BACKENDS), default="numpy", help="which tree to train with")
    parser.add_argument("--compare", action="store_true", help="train with all three backends and compare the loss curves")
    parser.add_argument("--plot", type=Path, help="with --compare: save the three loss curves to this PNG")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128], help="hidden layer widths")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the batch order")
    parser.add_argument("--weights", type=Path, help="start from this safetensors file instead of --seed's weights")
    args = parser.parse_args(argv)
    if args.plot and not args.compare:
        parser.error("--plot needs --compare")
    return args


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
    args = parse_args(argv)
    data = load_digits_split(layout="flat", dtype=args.dtype)
    numpy_model = get_module("numpy", "foundations.mlp").MLP(IN_FEATURES, args.hidden, NUM_CLASSES, dtype=args.dtype,
                                                             rng=np.random.default_rng(args.seed))
    state = shared_initial_weights(numpy_model, args.weights)
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
