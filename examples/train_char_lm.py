"""Train the character-level LSTM language model on the standard library's docstrings (day 27).

    python examples/train_char_lm.py --backend numpy|torch|tf
    python examples/train_char_lm.py --compare --dtype float64 --epochs 1 --corpus-chars 20000 --plot char_lm.png

The text is gathered at run time from docstrings of the Python standard library (``ml100.text``:
nothing is downloaded), lower-cased and reduced to a small character set; the first 90% trains,
the rest validates. One epoch is as many random windows of ``--seq-len + 1`` characters (starts
drawn from ``--seed``) as cover the training text once. Every backend starts from the same
canonical weights and sees the same windows; gradients are clipped to a total norm of ``--max-norm``.
At the end each backend writes a few samples at temperature 0.8 from uniform draws seeded by
``--seed``; the last line is ``validation loss: X`` in nats per character.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ml100.backends import BACKENDS, get_module
from ml100.cli_args import (OneLineErrorParser, add_training_arguments, check_training_arguments, non_negative_int,
                            positive_float, positive_int)
from ml100.configs import CharLMConfig, add_config_arguments, config_from_args
from ml100.runs import curve_difference, save_curves_plot, shared_initial_weights, to_backend, training_progress
from ml100.text import CharVocab, random_windows, sequential_windows, stdlib_corpus, train_validation_split

#: The text each sample continues, and the sampling temperature.
PROMPTS = ("the ", "return ", "if the ")
TEMPERATURE = 0.8


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    # A few epochs of windows suffice here (the shared defaults suit the digits).
    parser.set_defaults(epochs=4, batch_size=32, lr=3e-3)
    # --embedding-dim, --hidden-size, --num-layers; the corpus fixes vocab_size.
    add_config_arguments(parser, CharLMConfig, skip=("vocab_size",))
    parser.add_argument("--seq-len", type=positive_int, default=64, help="characters per training window (BPTT length)")
    parser.add_argument("--max-norm", type=positive_float, default=1.0, help="clip the gradients' total 2-norm to this")
    parser.add_argument("--corpus-chars", type=positive_int, help="use only the corpus's first N characters (quick runs)")
    parser.add_argument("--sample-length", type=non_negative_int, default=120, help="characters per printed sample")
    return parser


def check_corpus_size(parser: argparse.ArgumentParser, args, n_train: int, n_validation: int) -> int:
    """Steps per epoch; refuses a corpus too short for one batch or one validation window."""
    steps = n_train // (args.batch_size * args.seq_len)
    if steps == 0:
        parser.error(f"argument --corpus-chars: {n_train} training characters are fewer than one batch of "
                     f"--batch-size {args.batch_size} x --seq-len {args.seq_len}")
    if n_validation < args.seq_len + 1:
        parser.error(f"argument --corpus-chars: {n_validation} validation characters are fewer than one window "
                     f"of --seq-len {args.seq_len} + 1")
    return steps




def build_model(backend: str, args, rng=None):
    return get_module(backend, "generative.char_lm").CharLM(args.config, dtype=args.dtype, rng=rng)


def make_trainer(backend: str, args, state: dict[str, np.ndarray]):
    """The same four objects in every tree: model, loss, optimizer, trainer (clipping at --max-norm)."""
    model = build_model(backend, args)
    model.load_canonical_state_dict(state)
    loss_fn = get_module(backend, "generative.char_lm").NextCharLoss(dtype=args.dtype)
    optimizer = get_module(backend, "foundations.optim").Adam(dict(model.named_parameters()), lr=args.lr)
    return get_module(backend, "foundations.trainer").Trainer(model, loss_fn, optimizer, max_norm=args.max_norm)


def validation_loss(backend: str, trainer, windows: np.ndarray) -> float:
    """Mean cross-entropy per character over the validation windows ``(M, T+1)``, without gradients."""
    trainer.model.eval()
    with get_module(backend, "module").no_grad():
        output = trainer.model(to_backend(backend, windows[:, :-1]))  # (M, T, V), state
        return float(trainer.loss_fn(output, to_backend(backend, windows[:, 1:])))


def write_samples(backend: str, model, vocab: CharVocab, args) -> list[str]:
    """One sample per prompt at temperature 0.8, uniform draws from ``--seed``: the same text in every tree."""
    sample = get_module(backend, "generative.char_lm").sample
    rng = np.random.default_rng(args.seed)
    return [prompt + vocab.decode(sample(model, vocab.encode(prompt), args.sample_length, TEMPERATURE,
                                         rng.random(args.sample_length)))
            for prompt in PROMPTS]


def train(backend: str, args, state, data, progress) -> tuple[list[float], float, list[str]]:
    """Train one backend; returns its per-step losses, its validation loss and its samples."""
    trainer = make_trainer(backend, args, state)
    rng = np.random.default_rng(args.seed)
    task = progress.add_task(f"{backend:5s}", total=args.epochs * data["steps"], loss=float("nan"))
    losses = []
    for _ in range(args.epochs * data["steps"]):
        windows = random_windows(data["train"], args.batch_size, args.seq_len, rng)  # (N, T+1)
        losses.append(trainer.train_step(windows[:, :-1], windows[:, 1:]))
        progress.update(task, completed=len(losses), loss=losses[-1])
    return losses, validation_loss(backend, trainer, data["validation"]), write_samples(backend, trainer.model,
                                                                                        data["vocab"], args)


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before the corpus is read or a framework is imported.
    args = check_training_arguments(parser, parser.parse_args(argv))
    text = stdlib_corpus()[:args.corpus_chars]
    vocab = CharVocab(text)
    args.config = config_from_args(parser, CharLMConfig, args, vocab_size=len(vocab))
    train_ids, validation_ids = train_validation_split(vocab.encode(text))
    steps = check_corpus_size(parser, args, len(train_ids), len(validation_ids))
    data = {"train": train_ids, "validation": sequential_windows(validation_ids, args.seq_len), "vocab": vocab,
            "steps": steps}
    state = shared_initial_weights(build_model("numpy", args, np.random.default_rng(args.seed)), args.weights, parser)
    print(f"corpus: {len(text)} characters, {len(vocab)} distinct; {steps} steps per epoch")
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        results = {backend: train(backend, args, state, data, progress) for backend in backends}
    for backend, (losses, loss, samples) in results.items():
        print(f"--- {backend}: final training loss {losses[-1]:.4f}, validation loss {loss:.4f}")
        for text_sample in samples:
            print(repr(text_sample))
    if args.compare:
        curves = {backend: losses for backend, (losses, _, _) in results.items()}
        if args.plot:
            save_curves_plot(args.plot, curves, f"char LSTM LM, Adam, {args.dtype}: three backends")
            print(f"loss curves saved to {args.plot}")
        abs_diff, rel_diff = curve_difference(curves)
        print(f"largest loss difference between backends over {len(curves['numpy'])} steps: {abs_diff:.3e} "
              f"(relative {rel_diff:.3e}, {args.dtype})")
    print(f"validation loss: {results[backends[0]][1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
