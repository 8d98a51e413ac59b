"""Train a small GPT (day 49) with the day-48 byte-level BPE on the standard library's docstrings.

    python examples/train_gpt.py --backend numpy|torch|tf [--save gpt.safetensors]
    python examples/train_gpt.py --compare --dtype float64 --epochs 1 --corpus-chars 30000 --plot gpt.png
    python examples/train_gpt.py --generate gpt.safetensors --backend tf --prompt "return the "

The text is gathered at run time from docstrings of the Python standard library (``ml100.text``:
nothing is downloaded). Its first 90% of characters trains, the rest validates; a BPE of
``--vocab-size`` tokens is learned from the training part alone (deterministic: ``--generate``
learns the same one again) and encodes both. One epoch is as many random windows of
``--seq-len + 1`` tokens (starts drawn from ``--seed``) as cover the training tokens once; every
backend starts from the same canonical weights and sees the same windows; gradients are clipped to
a total norm of ``--max-norm``. The model is ``GPTConfig``'s GPT with this script's smaller
defaults; dropout is off (its three probabilities are fixed to 0: the trainer passes no masks).

After training, each backend continues each prompt by ``--sample-length`` tokens with the day-50
decoding — ``warp(temperature=0.8, top_k=40)``, then ``sample`` with uniform draws seeded by
``--seed`` — through day 51's KV cache, so every tree writes the same text until float32 rounding
flips a draw. ``--save`` writes the trained weights (safetensors, canonical names: Hugging Face's);
``--generate FILE`` skips training and samples from saved weights. The last line of a training run
is ``validation loss: X``, the mean cross-entropy per token in nats.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ml100.backends import BACKENDS, get_module
from ml100.bpe import BPE
from ml100.cli_args import (OneLineErrorParser, add_training_arguments, check_training_arguments, positive_float,
                            positive_int, weights_file)
from ml100.configs import GPTConfig, add_config_arguments, config_from_args
from ml100.runs import curve_difference, save_curves_plot, shared_initial_weights, to_backend, training_progress
from ml100.text import TRAIN_FRACTION, random_windows, sequential_windows, stdlib_corpus
from ml100.weights import save_weights

#: The texts the samples continue (without --prompt), and the decoding settings.
PROMPTS = ("the ", "return ", "if the ")
TEMPERATURE, TOP_K = 0.8, 40
#: Dropout is off: the Trainer calls the model without dropout masks.
NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    parser.set_defaults(epochs=6, batch_size=16, lr=3e-3)
    # --vocab-size is the BPE's and the model's; the other GPTConfig fields get small defaults here.
    add_config_arguments(parser, GPTConfig, skip=tuple(NO_DROPOUT))
    parser.set_defaults(vocab_size=300, n_positions=128, n_embd=128, n_layer=4, n_head=4)
    parser.add_argument("--seq-len", type=positive_int, default=64, help="tokens per training window")
    parser.add_argument("--max-norm", type=positive_float, default=1.0, help="clip the gradients' total 2-norm to this")
    parser.add_argument("--corpus-chars", type=positive_int, help="use only the corpus's first N characters (quick runs)")
    parser.add_argument("--sample-length", type=positive_int, default=48, help="tokens per printed sample")
    parser.add_argument("--prompt", action="append", help="a text to continue (repeatable; default: three fixed prompts)")
    parser.add_argument("--save", type=str, help="write the trained weights to this safetensors file")
    parser.add_argument("--generate", type=weights_file, help="no training: sample from the weights in this safetensors file")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args) -> argparse.Namespace:
    """The training checks, and those of this script's own options (before any data or framework)."""
    args = check_training_arguments(parser, args)
    if args.generate and (args.compare or args.save or args.weights):
        parser.error("--generate samples from saved weights: --compare, --save and --weights would be ignored")
    if args.save and args.compare:
        parser.error("--save writes one backend's weights: give --backend instead of --compare")
    if args.save and not args.save.endswith(".safetensors"):
        parser.error(f"argument --save: expected a .safetensors file name, got {args.save!r}")
    # Refused now rather than after minutes of training.
    if args.save and not Path(args.save).resolve().parent.is_dir():
        parser.error(f"argument --save: folder {str(Path(args.save).parent)!r} does not exist")
    if args.seq_len > args.n_positions:
        parser.error(f"argument --seq-len: {args.seq_len} tokens do not fit the position table (--n-positions {args.n_positions})")
    args.prompts = tuple(args.prompt or PROMPTS)
    if any(not prompt for prompt in args.prompts):
        parser.error("argument --prompt: a prompt must hold at least one character")
    return args


def prepare_data(parser: argparse.ArgumentParser, args) -> dict:
    """The tokenizer, the training ids, the validation windows and the steps per epoch; refuses a
    corpus too short for one batch or one validation window."""
    text = stdlib_corpus()[:args.corpus_chars]
    cut = int(len(text) * TRAIN_FRACTION)
    tokenizer = BPE.train(text[:cut], args.vocab_size)
    train_ids = np.array(tokenizer.encode(text[:cut]), dtype=np.int64)  # (N_train,)
    validation_ids = np.array(tokenizer.encode(text[cut:]), dtype=np.int64)  # (N_validation,)
    steps = len(train_ids) // (args.batch_size * args.seq_len)
    if steps == 0:
        parser.error(f"argument --corpus-chars: {len(train_ids)} training tokens are fewer than one batch of "
                     f"--batch-size {args.batch_size} x --seq-len {args.seq_len}")
    if len(validation_ids) < args.seq_len + 1:
        parser.error(f"argument --corpus-chars: {len(validation_ids)} validation tokens are fewer than one window "
                     f"of --seq-len {args.seq_len} + 1")
    print(f"corpus: {len(text)} characters; BPE of {tokenizer.vocab_size} tokens: {len(train_ids)} training and "
          f"{len(validation_ids)} validation tokens ({len(text[:cut]) / len(train_ids):.2f} characters per token); "
          f"{steps} steps per epoch")
    return {"tokenizer": tokenizer, "train": train_ids, "validation": sequential_windows(validation_ids, args.seq_len),
            "steps": steps}


def build_model(backend: str, args, rng=None):
    return get_module(backend, "modern.gpt").GPT(args.config, dtype=args.dtype, rng=rng)


def make_trainer(backend: str, args, state: dict[str, np.ndarray]):
    """The same four objects in every tree: model, loss (day 27's next-token cross-entropy over every
    position of ``model(x)``'s logits), optimizer, trainer (clipping at --max-norm)."""
    model = build_model(backend, args)
    model.load_canonical_state_dict(state)
    loss_fn = get_module(backend, "generative.char_lm").NextCharLoss(dtype=args.dtype)
    optimizer = get_module(backend, "foundations.optim").Adam(dict(model.named_parameters()), lr=args.lr)
    return get_module(backend, "foundations.trainer").Trainer(model, loss_fn, optimizer, max_norm=args.max_norm)


def validation_loss(backend: str, trainer, windows: np.ndarray, batch_size: int) -> float:
    """Mean cross-entropy per token over the validation windows ``(M, T+1)``, in batches, without gradients."""
    trainer.model.eval()
    total = 0.0
    with get_module(backend, "module").no_grad():
        for start in range(0, len(windows), batch_size):
            batch = windows[start:start + batch_size]  # (b, T+1)
            output = trainer.model(to_backend(backend, batch[:, :-1]))  # (b, T, V), None
            total += float(trainer.loss_fn(output, to_backend(backend, batch[:, 1:]))) * len(batch)
    return total / len(windows)


def continue_text(backend: str, model, tokenizer: BPE, prompt: str, length: int, rng: np.random.Generator) -> str:
    """``prompt`` and ``length`` tokens after it, drawn by day 51's ``generate`` through the KV cache:
    ``sample(warp(...))`` of the last position's logits, one uniform from ``rng`` per token."""
    prompt_ids = np.array([tokenizer.encode(prompt)], dtype=np.int64)  # (1, P)
    uniforms = rng.random((length, 1))  # (length, B=1)
    model.eval()
    ids = get_module(backend, "modern.kv_cache").generate(model, to_backend(backend, prompt_ids), length, TEMPERATURE,
                                                          TOP_K, uniforms=to_backend(backend, uniforms))  # (1, P + length)
    return prompt + tokenizer.decode(np.asarray(ids)[0, prompt_ids.shape[1]:].tolist())


def write_samples(backend: str, model, tokenizer: BPE, args) -> list[str]:
    """One sample per prompt, uniforms from ``--seed``: the same text in every tree (up to float32 flips)."""
    rng = np.random.default_rng(args.seed)
    return [continue_text(backend, model, tokenizer, prompt, args.sample_length, rng) for prompt in args.prompts]


def train(backend: str, args, state, data, progress) -> tuple[list[float], float, list[str], dict]:
    """Train one backend; returns its per-step losses, validation loss, samples and trained weights."""
    trainer = make_trainer(backend, args, state)
    rng = np.random.default_rng(args.seed)
    task = progress.add_task(f"{backend:5s}", total=args.epochs * data["steps"], loss=float("nan"))
    losses = []
    for _ in range(args.epochs * data["steps"]):
        windows = random_windows(data["train"], args.batch_size, args.seq_len, rng)  # (N, T+1)
        losses.append(trainer.train_step(windows[:, :-1], windows[:, 1:]))
        progress.update(task, completed=len(losses), loss=losses[-1])
    loss = validation_loss(backend, trainer, data["validation"], args.batch_size)
    samples = write_samples(backend, trainer.model, data["tokenizer"], args)
    return losses, loss, samples, trainer.model.canonical_state_dict()


def check_sample_fits(parser: argparse.ArgumentParser, args, tokenizer: BPE) -> None:
    """Every prompt and its sample must fit the position table (the cache holds n_positions tokens)."""
    longest = max(len(tokenizer.encode(prompt)) for prompt in args.prompts)
    if longest + args.sample_length > args.n_positions:
        parser.error(f"argument --sample-length: a prompt of {longest} tokens plus {args.sample_length} new ones "
                     f"exceed --n-positions {args.n_positions}")


def generate(parser: argparse.ArgumentParser, args, tokenizer: BPE) -> int:
    """``--generate``: load the weights into ``--backend``'s GPT and print one sample per prompt."""
    model = build_model(args.backend, args, np.random.default_rng(args.seed))
    model.load_canonical_state_dict(shared_initial_weights(build_model("numpy", args), args.generate, parser))
    for text_sample in write_samples(args.backend, model, tokenizer, args):
        print(repr(text_sample))
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before the corpus is read or a framework is imported.
    args = check_arguments(parser, parser.parse_args(argv))
    args.config = config_from_args(parser, GPTConfig, args, **NO_DROPOUT)
    data = prepare_data(parser, args)
    check_sample_fits(parser, args, data["tokenizer"])
    if args.generate:
        return generate(parser, args, data["tokenizer"])
    state = shared_initial_weights(build_model("numpy", args, np.random.default_rng(args.seed)), args.weights, parser)
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        results = {backend: train(backend, args, state, data, progress) for backend in backends}
    for backend, (losses, loss, samples, _) in results.items():
        print(f"--- {backend}: final training loss {losses[-1]:.4f}, validation loss {loss:.4f}")
        for text_sample in samples:
            print(repr(text_sample))
    if args.save:
        save_weights(args.save, results[args.backend][3])
        print(f"weights saved to {args.save}")
    if args.compare:
        curves = {backend: losses for backend, (losses, *_) in results.items()}
        if args.plot:
            save_curves_plot(args.plot, curves, f"GPT on BPE tokens, Adam, {args.dtype}: three backends")
            print(f"loss curves saved to {args.plot}")
        abs_diff, rel_diff = curve_difference(curves)
        print(f"largest loss difference between backends over {len(curves['numpy'])} steps: {abs_diff:.3e} "
              f"(relative {rel_diff:.3e}, {args.dtype})")
    print(f"validation loss: {results[backends[0]][1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
