"""Fine-tune a small pre-trained GPT with LoRA (days 64-65): only the low-rank adapters train.

    python examples/train_lora.py --backend numpy|torch|tf
    python examples/train_lora.py --compare --dtype float64 --plot lora.png

Two texts, both gathered at run time (nothing downloaded): the GPT (day 49) is first pre-trained,
every parameter, on the standard library's docstrings (``ml100.text.stdlib_corpus``, its first
``--corpus-chars`` characters) with the day-48 BPE learned from that text; then day 64's
``apply_lora`` wraps every ``--target-modules`` layer (peft's GPT-2 recipe: ``c_attn``) with rank
``--r`` adapters, freezes the rest, and fine-tunes on a text the pre-training never saw: the
docstrings of the ``turtle`` module (``--finetune-chars`` characters; turtle graphics — pens, headings,
canvases). Each text's first 90% trains and the rest validates. The fine-tune validation loss is
printed before and after the fine-tuning (the mean cross-entropy per token in nats, on the turtle
text's held-out part), and the last line reads ``fine-tune validation loss: before X, after Y``.

Every backend starts from the same canonical weights and sees the same windows (drawn from
``--seed``), through its own day-11 ``Trainer`` and Adam; the fine-tuning optimizer gets only the
trainable parameters (``named_trainable_parameters``). The validation loss and the dropout settings
are ``examples/train_gpt.py``'s own (imported from it). GPT dropout and LoRA dropout are off (the
trainers pass no masks). ``--compare`` trains the three backends and reports the largest difference
between their loss curves (pre-training then fine-tuning, one curve); ``--plot`` draws them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ml100.backends import BACKENDS, get_module
from ml100.bpe import BPE
from ml100.cli_args import (OneLineErrorParser, add_training_arguments, check_training_arguments, positive_float,
                            positive_int)
from ml100.configs import GPTConfig, add_config_arguments, config_from_args
from ml100.runs import curve_difference, save_curves_plot, shared_initial_weights, training_progress
from ml100.text import TRAIN_FRACTION, module_docstrings, normalize, random_windows, sequential_windows, stdlib_corpus

# The examples are scripts, not a package: day 49's example is imported from this folder for its pieces.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_gpt import NO_DROPOUT, validation_loss  # noqa: E402 - needs the folder on the path first

#: The fine-tuning text: docstrings of a standard-library module outside the pre-training corpus.
FINETUNE_MODULE = "turtle"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    parser.set_defaults(epochs=2, batch_size=16, lr=3e-3)
    add_config_arguments(parser, GPTConfig, skip=tuple(NO_DROPOUT))
    parser.set_defaults(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4)
    parser.add_argument("--seq-len", type=positive_int, default=32, help="tokens per training window")
    parser.add_argument("--max-norm", type=positive_float, default=1.0, help="clip the gradients' total 2-norm to this")
    parser.add_argument("--corpus-chars", type=positive_int, default=120_000,
                        help="pre-train on the stdlib corpus's first N characters")
    parser.add_argument("--finetune-chars", type=positive_int, default=40_000,
                        help=f"fine-tune on the first N characters of the {FINETUNE_MODULE} docstrings")
    parser.add_argument("--finetune-epochs", type=positive_int, default=3, help="passes over the fine-tuning tokens")
    parser.add_argument("--finetune-lr", type=positive_float, default=1e-2, help="Adam learning rate of the adapters")
    parser.add_argument("--target-modules", nargs="+", default=["c_attn"],
                        help="layers to adapt, by name suffix (peft's target_modules)")
    parser.add_argument("--r", type=positive_int, default=4, help="LoRA rank")
    parser.add_argument("--lora-alpha", type=positive_float, default=8.0,
                        help="LoRA alpha (the update is scaled by alpha/r)")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args) -> argparse.Namespace:
    """The training checks, and those of this script's own options (before any text or framework)."""
    args = check_training_arguments(parser, args)
    if args.seq_len > args.n_positions:
        parser.error(f"argument --seq-len: {args.seq_len} tokens do not fit the position table "
                     f"(--n-positions {args.n_positions})")
    return args


def token_split(parser: argparse.ArgumentParser, tokenizer: BPE, text: str, args, what: str) -> dict:
    """``text``'s training ids, validation windows and steps per epoch; refuses a text too short."""
    cut = int(len(text) * TRAIN_FRACTION)
    train_ids = np.array(tokenizer.encode(text[:cut]), dtype=np.int64)  # (N_train,)
    validation_ids = np.array(tokenizer.encode(text[cut:]), dtype=np.int64)  # (N_validation,)
    steps = len(train_ids) // (args.batch_size * args.seq_len)
    if steps == 0 or len(validation_ids) < args.seq_len + 1:
        parser.error(f"argument --{what}-chars: {len(train_ids)} training and {len(validation_ids)} validation tokens "
                     f"are fewer than one batch of --batch-size {args.batch_size} x --seq-len {args.seq_len} "
                     f"and one window of --seq-len + 1")
    return {"train": train_ids, "validation": sequential_windows(validation_ids, args.seq_len), "steps": steps}


def prepare_data(parser: argparse.ArgumentParser, args) -> dict:
    """The BPE (learned from the pre-training text alone) and both texts' splits."""
    pretrain_text = stdlib_corpus()[:args.corpus_chars]
    finetune_text = normalize("\n\n".join(module_docstrings(FINETUNE_MODULE)))[:args.finetune_chars]
    tokenizer = BPE.train(pretrain_text[:int(len(pretrain_text) * TRAIN_FRACTION)], args.vocab_size)
    data = {"pretrain": token_split(parser, tokenizer, pretrain_text, args, "corpus"),
            "finetune": token_split(parser, tokenizer, finetune_text, args, "finetune")}
    print(f"BPE of {tokenizer.vocab_size} tokens; pre-training: {len(data['pretrain']['train'])} tokens "
          f"({data['pretrain']['steps']} steps per epoch); fine-tuning ({FINETUNE_MODULE}): "
          f"{len(data['finetune']['train'])} tokens ({data['finetune']['steps']} steps per epoch)")
    return data


class TrainableView:
    """The model as a day-11 ``Trainer`` sees it, listing only the trainable parameters (and, in the
    NumPy tree, their gradients): the Trainers build their updates from ``named_parameters``."""

    def __init__(self, model, lora):
        self.model, self.lora = model, lora
        self.names = {name for name, _ in lora.named_trainable_parameters(model)}

    def __call__(self, *args):
        return self.model(*args)

    def named_parameters(self):
        return self.lora.named_trainable_parameters(self.model)

    def named_grads(self):
        return ((name, grad) for name, grad in self.model.named_grads() if name in self.names)

    def __getattr__(self, name):
        return getattr(self.model, name)


def make_trainer(backend: str, model, lr: float, args):
    """Day 11's Trainer with day 27's next-token loss and Adam over ``model.named_parameters()``."""
    loss_fn = get_module(backend, "generative.char_lm").NextCharLoss(dtype=args.dtype)
    optimizer = get_module(backend, "foundations.optim").Adam(dict(model.named_parameters()), lr=lr)
    return get_module(backend, "foundations.trainer").Trainer(model, loss_fn, optimizer, max_norm=args.max_norm)


def run_phase(backend: str, trainer, split: dict, epochs: int, args, rng, progress, label: str) -> list[float]:
    """``epochs`` passes of random windows over ``split``'s training ids; returns every step's loss."""
    task = progress.add_task(f"{backend:5s} {label}", total=epochs * split["steps"], loss=float("nan"))
    losses = []
    for _ in range(epochs * split["steps"]):
        windows = random_windows(split["train"], args.batch_size, args.seq_len, rng)  # (N, T+1)
        losses.append(trainer.train_step(windows[:, :-1], windows[:, 1:]))
        progress.update(task, completed=len(losses), loss=losses[-1])
    return losses


def train(backend: str, args, state, data, progress) -> dict:
    """Pre-train every parameter, wrap the targets with LoRA, fine-tune the adapters only."""
    lora = get_module(backend, "modern.lora")
    model = get_module(backend, "modern.gpt").GPT(args.config, dtype=args.dtype)
    model.load_canonical_state_dict(state)
    rng = np.random.default_rng(args.seed)
    trainer = make_trainer(backend, model, args.lr, args)
    losses = run_phase(backend, trainer, data["pretrain"], args.epochs, args, rng, progress, "pre-train")
    pretrain_loss = validation_loss(backend, trainer, data["pretrain"]["validation"], args.batch_size)
    before = validation_loss(backend, trainer, data["finetune"]["validation"], args.batch_size)
    # The adapters draw A from their own generator: the same numbers in every tree.
    lora.apply_lora(model, args.target_modules, args.r, args.lora_alpha, 0.0, np.random.default_rng(args.seed + 1))
    trainer = make_trainer(backend, TrainableView(model, lora), args.finetune_lr, args)
    losses += run_phase(backend, trainer, data["finetune"], args.finetune_epochs, args, rng, progress, "LoRA")
    after = validation_loss(backend, trainer, data["finetune"]["validation"], args.batch_size)
    return {"losses": losses, "pretrain": pretrain_loss, "before": before, "after": after,
            "counts": lora.trainable_parameters(model)}


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before any text is read.
    args = check_arguments(parser, parser.parse_args(argv))
    args.config = config_from_args(parser, GPTConfig, args, **NO_DROPOUT)
    numpy_model = get_module("numpy", "modern.gpt").GPT(args.config, dtype=args.dtype,
                                                        rng=np.random.default_rng(args.seed))
    state = shared_initial_weights(numpy_model, args.weights, parser)
    # A target that is not a dense layer of the GPT is refused before the texts are read.
    try:
        get_module("numpy", "modern.lora").apply_lora(numpy_model, args.target_modules, args.r, args.lora_alpha)
    except (TypeError, ValueError) as error:
        parser.error(f"argument --target-modules: {error}")
    data = prepare_data(parser, args)
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        results = {backend: train(backend, args, state, data, progress) for backend in backends}
    for backend, result in results.items():
        print(f"--- {backend}: pre-training validation loss {result['pretrain']:.4f} (stdlib docstrings); "
              f"fine-tune validation loss {result['before']:.4f} -> {result['after']:.4f} ({FINETUNE_MODULE})")
    trainable, total = results[backends[0]]["counts"]
    print(f"trainable: {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%)")
    if args.compare:
        curves = {backend: result["losses"] for backend, result in results.items()}
        if args.plot:
            save_curves_plot(args.plot, curves, f"GPT pre-training, then LoRA (r={args.r}) fine-tuning, {args.dtype}")
            print(f"loss curves saved to {args.plot}")
        abs_diff, rel_diff = curve_difference(curves)
        print(f"largest loss difference between backends over {len(curves['numpy'])} steps: {abs_diff:.3e} "
              f"(relative {rel_diff:.3e}, {args.dtype})")
    first = results[backends[0]]
    print(f"fine-tune validation loss: before {first['before']:.4f}, after {first['after']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
