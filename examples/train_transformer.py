"""Train the encoder-decoder Transformer to reverse strings of digits, with any backend (day 47).

    python examples/train_transformer.py --backend numpy|torch|tf [--plot loss.png]
    python examples/train_transformer.py --compare --dtype float64 --epochs 1 --train-size 640

The toy task is day 28's (``ml100.toy_tasks``): ``--min-len``..``--max-len`` digits, then EOS,
padded to ``--max-len + 1``; the held-out strings are drawn first and never trained on. The model is
``Seq2SeqTransformer`` (``TransformerConfig``: sinusoidal positions, ``nn.Transformer``'s layers, a
Linear head), trained by teacher forcing through each tree's day-19 ``Trainer`` (wrapped by day 28's
``TeacherForcing``) and evaluated by greedy decoding. Every backend starts from the same canonical
weights and sees the same batches. ``--plot`` saves the loss curve (with ``--compare``: the three).
The last line is ``sequence accuracy: X`` (exact match of the whole decoded row on the held-out
strings; with ``--compare`` the lowest of the three).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ml100 import toy_tasks
from ml100.backends import BACKENDS, get_module
from ml100.cli_args import OneLineErrorParser, add_training_arguments, check_training_arguments, positive_int
from ml100.configs import TransformerConfig, add_config_arguments, config_from_args
from ml100.runs import report_comparison, save_curves_plot, shared_initial_weights, training_progress

# Day 28's example trains and scores the same task: its data and loop are reused, not copied.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_seq2seq import fit_reversal, make_data  # noqa: E402 - needs the folder on the path first


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    # Measured on 2 cores (see docs/days/day47.md): these reach >= 0.95 in every tree.
    parser.set_defaults(epochs=12, batch_size=64, lr=1e-3)
    # --d-model, --nhead, --num-encoder-layers, ...; the task fixes vocab_size and the table's max_len.
    add_config_arguments(parser, TransformerConfig, skip=("vocab_size", "max_len"))
    parser.add_argument("--min-len", type=positive_int, default=8, help="shortest digit string")
    parser.add_argument("--max-len", type=positive_int, default=8, help="longest digit string (sequences are max-len + 1 wide)")
    parser.add_argument("--train-size", type=positive_int, default=8000, help="distinct training strings")
    parser.add_argument("--test-size", type=positive_int, default=500, help="held-out strings (never trained on)")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """The shared checks, then this script's: --plot is one backend's loss curve unless --compare."""
    # The shared check reads --plot as the curves of --compare only; here one backend may plot its own.
    plot, args.plot = args.plot, None
    args = check_training_arguments(parser, args)
    args.plot = plot
    if args.min_len > args.max_len:
        parser.error(f"argument --min-len: {args.min_len} is more than --max-len {args.max_len}")
    available = toy_tasks.count_strings(args.min_len, args.max_len)
    if args.train_size + args.test_size > available:
        parser.error(f"argument --train-size: {args.train_size} + --test-size {args.test_size} strings are more than "
                     f"the {available} digit strings of lengths {args.min_len}-{args.max_len}")
    if args.batch_size > args.train_size:
        parser.error(f"argument --batch-size: {args.batch_size} is more than the {args.train_size} training strings")
    return args


def build_model(backend: str, args, rng=None):
    return get_module(backend, "modern.transformer").Seq2SeqTransformer(args.config, dtype=args.dtype, rng=rng)


def train(backend: str, args, state, data, progress) -> tuple[list[float], float]:
    """Train one backend through day 28's reversal loop (teacher forcing, each tree's Trainer,
    greedy decoding); returns its per-step losses and its held-out sequence accuracy."""
    losses, accuracy, _ = fit_reversal(backend, args, state, data, progress, build=build_model)
    return losses, accuracy


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before the data is drawn or a framework is imported.
    args = check_arguments(parser, parser.parse_args(argv))
    # The sinusoidal table needs one row per position of the widest sequence (max-len digits and EOS).
    args.config = config_from_args(parser, TransformerConfig, args, vocab_size=toy_tasks.VOCAB_SIZE,
                                   max_len=args.max_len + 1)
    data = make_data(args)
    state = shared_initial_weights(build_model("numpy", args, np.random.default_rng(args.seed)), args.weights, parser)
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        results = {backend: train(backend, args, state, data, progress) for backend in backends}
    if args.compare:
        report_comparison(results, args.dtype, args.plot, f"Transformer reversal, Adam, {args.dtype}: three backends",
                          metric="sequence accuracy")
    elif args.plot:
        save_curves_plot(args.plot, {args.backend: results[args.backend][0]},
                         f"Transformer reversal ({args.backend}), Adam, {args.dtype}")
        print(f"loss curve saved to {args.plot}")
    print(f"sequence accuracy: {min(accuracy for _, accuracy in results.values()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
