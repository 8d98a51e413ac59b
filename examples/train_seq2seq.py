"""Train the GRU encoder-decoder to reverse strings of digits, with any backend (days 28-29).

    python examples/train_seq2seq.py --backend numpy|torch|tf [--attention|--no-attention] [--plot attention.png]
    python examples/train_seq2seq.py --compare --dtype float64 --epochs 1 --train-size 640

The toy task (``ml100.toy_tasks``): ``--min-len``..``--max-len`` digits, then EOS, padded to
``--max-len + 1``; the held-out strings are drawn first and never trained on. Training is teacher
forcing through each tree's day-19 ``Trainer`` (the model wrapped by ``TeacherForcing``, whose
logits are one row per target token); evaluation is greedy decoding. Every backend starts from
the same canonical weights and sees the same batches. ``--plot`` saves the attention weights of
one held-out string as a heat map (with ``--compare``: the three loss curves instead); for
reversal it is the anti-diagonal. The last line is ``sequence accuracy: X`` (exact match of the
whole decoded row on the held-out strings; with ``--compare`` the lowest of the three).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ml100 import toy_tasks
from ml100.backends import BACKENDS, get_module
from ml100.cli_args import OneLineErrorParser, add_training_arguments, check_training_arguments, positive_int
from ml100.configs import Seq2SeqConfig, add_config_arguments, config_from_args
from ml100.data import batch_indices
from ml100.runs import report_comparison, shared_initial_weights, to_backend, training_progress


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    # Measured on 2 cores (see docs/days/day28.md): these reach >= 0.95 with attention in every tree.
    parser.set_defaults(epochs=4, batch_size=64, lr=1e-2)
    # --embedding-dim, --hidden-size, --num-layers, --score-mode; the task fixes vocab_size.
    add_config_arguments(parser, Seq2SeqConfig, skip=("vocab_size",))
    parser.add_argument("--attention", action=argparse.BooleanOptionalAction, default=True,
                        help="day 29's decoder that attends over the encoder outputs (default: --attention)")
    parser.add_argument("--min-len", type=positive_int, default=8, help="shortest digit string")
    parser.add_argument("--max-len", type=positive_int, default=8, help="longest digit string (sequences are max-len + 1 wide)")
    parser.add_argument("--train-size", type=positive_int, default=8000, help="distinct training strings")
    parser.add_argument("--test-size", type=positive_int, default=500, help="held-out strings (never trained on)")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """The shared checks, then this script's: --plot is the attention heat map unless --compare."""
    # The shared check reads --plot as the loss curves of --compare; here it is also the heat map.
    heat_map, args.plot = args.plot, None
    args = check_training_arguments(parser, args)
    args.plot = heat_map
    if args.plot and not args.compare and not args.attention:
        parser.error("--plot draws the attention weights: it needs --attention (or --compare for the loss curves)")
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
    name = "Seq2SeqAttention" if args.attention else "Seq2Seq"
    return getattr(get_module(backend, "generative.seq2seq"), name)(args.config, dtype=args.dtype, rng=rng)


def make_trainer(backend: str, args, state: dict[str, np.ndarray], build=None):
    """The same four objects in every tree: model (as a token classifier), loss, optimizer, trainer;
    ``build(backend, args)`` makes the model (this script's GRU seq2seq unless given: day 47's
    ``train_transformer.py`` passes its Transformer)."""
    model = (build or build_model)(backend, args)
    model.load_canonical_state_dict(state)
    classifier = get_module(backend, "generative.seq2seq").TeacherForcing(model, args.max_len + 1)
    loss_fn = get_module(backend, "foundations.losses").CrossEntropyLoss(dtype=args.dtype)
    optimizer = get_module(backend, "foundations.optim").Adam(dict(classifier.named_parameters()), lr=args.lr)
    return get_module(backend, "foundations.trainer").Trainer(classifier, loss_fn, optimizer)


def make_data(args) -> dict[str, np.ndarray]:
    """Held-out strings first, then training strings disjoint from them, all encoded."""
    rng = np.random.default_rng(args.seed)
    test = toy_tasks.draw_strings(args.test_size, args.min_len, args.max_len, rng)
    train = toy_tasks.draw_strings(args.train_size, args.min_len, args.max_len, rng, exclude=frozenset(test))
    src, tgt_in, tgt_out = toy_tasks.encode_reversal(train, args.max_len)
    test_src, _, test_out = toy_tasks.encode_reversal(test, args.max_len)
    # The Trainer's input is [src | tgt_in], its labels one per target token.
    return {"x": np.concatenate([src, tgt_in], axis=1), "y": tgt_out, "test_src": test_src, "test_out": test_out}


def fit_reversal(backend: str, args, state, data, progress, build=None):
    """Train one backend's model (made by ``build``, see :func:`make_trainer`) on digit reversal with
    teacher forcing; returns its per-step losses, its held-out sequence accuracy (greedy decoding)
    and the trained model."""
    trainer = make_trainer(backend, args, state, build)
    rng = np.random.default_rng(args.seed)
    steps_per_epoch = len(data["x"]) // args.batch_size
    task = progress.add_task(f"{backend:5s}", total=args.epochs * steps_per_epoch, loss=float("nan"))
    losses = []
    start = time.perf_counter()
    for _ in range(args.epochs):
        for index in batch_indices(len(data["x"]), args.batch_size, rng):
            losses.append(trainer.train_step(data["x"][index], data["y"][index].reshape(-1)))
            progress.update(task, completed=len(losses), loss=losses[-1])
    seconds = time.perf_counter() - start
    model = trainer.model.model
    model.eval()
    predicted = np.asarray(model.greedy_decode(to_backend(backend, data["test_src"]), args.max_len + 1,
                                               toy_tasks.BOS_ID))  # (M, T)
    accuracy = toy_tasks.sequence_accuracy(predicted, data["test_out"])
    progress.console.print(f"{backend}: {len(losses)} steps in {seconds:.1f} s, sequence accuracy {accuracy:.3f}")
    return losses, accuracy, model


def train(backend: str, args, state, data, progress) -> tuple[list[float], float]:
    """Train one backend; returns its per-step losses and its held-out sequence accuracy (and draws
    the attention map when asked for one run)."""
    losses, accuracy, model = fit_reversal(backend, args, state, data, progress)
    if args.plot and not args.compare:
        save_attention_plot(args.plot, backend, model, data)
    return losses, accuracy


def save_attention_plot(path: Path, backend: str, model, data) -> None:
    """The attention weights of the first held-out string (teacher-forced) as a heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src, tgt_out = data["test_src"][:1], data["test_out"][:1]  # (1, S), (1, T)
    tgt_in = np.concatenate([[[toy_tasks.BOS_ID]], tgt_out[:, :-1]], axis=1)  # (1, T)
    with get_module(backend, "module").no_grad():
        _, weights = model(to_backend(backend, src), to_backend(backend, tgt_in))
    weights = np.asarray(weights)[0]  # (T, S)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set(xticks=range(src.shape[1]), xticklabels=[token_text(t) for t in src[0]],
           yticks=range(tgt_out.shape[1]), yticklabels=[token_text(t) for t in tgt_out[0]],
           xlabel="source (encoder step)", ylabel="emitted token (decoder step)",
           title=f"Seq2SeqAttention ({backend}): reversal")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"attention heat map saved to {path}")


def token_text(token: int) -> str:
    """A token id as its digit, or EOS/PAD/BOS."""
    names = {toy_tasks.PAD_ID: "PAD", toy_tasks.BOS_ID: "BOS", toy_tasks.EOS_ID: "EOS"}
    return names.get(int(token), str(int(token) - toy_tasks.FIRST_DIGIT_ID))


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before the data is drawn or a framework is imported.
    args = check_arguments(parser, parser.parse_args(argv))
    args.config = config_from_args(parser, Seq2SeqConfig, args, vocab_size=toy_tasks.VOCAB_SIZE)
    data = make_data(args)
    state = shared_initial_weights(build_model("numpy", args, np.random.default_rng(args.seed)), args.weights, parser)
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        results = {backend: train(backend, args, state, data, progress) for backend in backends}
    if args.compare:
        report_comparison(results, args.dtype, args.plot, f"Seq2Seq reversal, Adam, {args.dtype}: three backends")
    print(f"sequence accuracy: {min(accuracy for _, accuracy in results.values()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
