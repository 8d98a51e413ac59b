"""Time one MLP training step (forward, backward, Adam update) in every backend, side by side.

    python benchmarks/bench_mlp_step.py [--batch-size 64] [--hidden 256] [--repeats 7]

Batch 64, MLP 64-256-10, float32, on digits. Each backend is timed in the same process, on the
same batch and from the same weights; the figures are the best of ``--repeats`` runs of
``--steps`` steps, printed as ratios to torch. TF is timed twice: eager (every op dispatched from
Python, ~30 µs each) and with the gradient computation traced once by ``tf.function``.
The goal for NumPy is <= 1.5x torch: with hand-written backward passes and no autograd
bookkeeping, the NumPy tree pays only for its GEMMs and a few elementwise passes.
"""
from __future__ import annotations

import os
import time

# CPU timings: TF and torch must not pick up a GPU (set before either is imported).
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np

from ml100.backends import get_module, load_framework
from ml100.cli_args import OneLineErrorParser, positive_int
from ml100.data import load_digits_split


def make_trainer(backend, hidden, state, lr=1e-3):
    model = get_module(backend, "foundations.mlp").MLP(64, (hidden,), 10, dtype="float32")
    model.load_canonical_state_dict(state)
    loss_fn = get_module(backend, "foundations.losses").CrossEntropyLoss(dtype="float32")
    optimizer = get_module(backend, "foundations.optim").Adam(dict(model.named_parameters()), lr=lr)
    return get_module(backend, "foundations.trainer").Trainer(model, loss_fn, optimizer)


def tf_eager_step(trainer):
    """The TF trainer's step without tf.function: the tape runs op by op from Python."""
    tf = load_framework("tf")
    params = trainer.params

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = trainer.loss_fn(trainer.model(tf.constant(x)), tf.constant(y))
        trainer.optimizer.step(dict(zip(params, tape.gradient(loss, list(params.values())))))
        return float(loss)

    return step


def time_steps(step, x, y, steps, repeats) -> float:
    """Best (least disturbed) seconds per step over ``repeats`` timed runs, after a warm-up run."""
    for _ in range(3):
        step(x, y)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step(x, y)
        runs.append((time.perf_counter() - start) / steps)
    return min(runs)


def main(argv=None) -> None:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--hidden", type=positive_int, default=256)
    parser.add_argument("--steps", type=positive_int, default=50)
    parser.add_argument("--repeats", type=positive_int, default=7)
    # Parsed before the frameworks load, so --help and a bad value answer at once.
    args = parser.parse_args(argv)
    tf, torch = load_framework("tf"), load_framework("torch")

    data = load_digits_split(dtype="float32")
    x, y = data.x_train[: args.batch_size], data.y_train[: args.batch_size]
    state = get_module("numpy", "foundations.mlp").MLP(64, (args.hidden,), 10, rng=np.random.default_rng(0)).canonical_state_dict()
    steps = {
        "numpy": make_trainer("numpy", args.hidden, state).train_step,
        "torch": make_trainer("torch", args.hidden, state).train_step,
        "tf eager": tf_eager_step(make_trainer("tf", args.hidden, state)),
        "tf.function": make_trainer("tf", args.hidden, state).train_step,
    }
    print(f"MLP 64-{args.hidden}-10 training step, batch {args.batch_size}, float32, Adam "
          f"(torch {torch.__version__}, TF {tf.__version__}, NumPy {np.__version__}; "
          f"torch threads {torch.get_num_threads()})")
    times = {name: time_steps(step, x, y, args.steps, args.repeats) for name, step in steps.items()}
    for name, seconds in times.items():
        print(f"  {name:12s} {seconds * 1e6:9.1f} us/step   {seconds / times['torch']:5.2f}x torch")


if __name__ == "__main__":
    main()
