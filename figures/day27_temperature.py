"""Day 27: what the sampling temperature does to the character LM's next-character distribution.
A short seeded training of a small ``CharLM`` (embedding 32, hidden 64; ``STEPS`` Adam steps at
lr 1e-2 on batches of 16 windows of 32 characters, gradients clipped to norm 1) with ``examples/train_char_lm.py``'s own
corpus, trainer and windows, in the NumPy tree; then, after the prompt ``PROMPT``,
``softmax(z / tau)`` of the last position's logits at three temperatures (the distribution that
``ml100.text.choose_next`` samples from), and the training loss curve.

    python figures/day27_temperature.py [--out DIR]   # writes DIR/day27_temperature.png
"""
import numpy as np

from make_all import start_figure

BACKEND, STEPS, SEED = "numpy", 600, 0
ARGS = ["--backend", BACKEND, "--hidden-size", "64", "--seq-len", "32", "--batch-size", "16", "--lr", "1e-2",
        "--seed", str(SEED)]
PROMPT, TEMPERATURES, SHOWN = "the ", (0.2, 0.8, 1.5), 12


def train():
    """The trained model, its vocabulary, the per-step training losses and the validation loss."""
    from examples.train_char_lm import build_model, build_parser, make_trainer, validation_loss
    from ml100.cli_args import check_training_arguments
    from ml100.configs import CharLMConfig, config_from_args
    from ml100.runs import shared_initial_weights
    from ml100.text import CharVocab, random_windows, sequential_windows, stdlib_corpus, train_validation_split

    parser = build_parser()
    args = check_training_arguments(parser, parser.parse_args(ARGS))
    text = stdlib_corpus()
    vocab = CharVocab(text)
    args.config = config_from_args(parser, CharLMConfig, args, vocab_size=len(vocab))
    train_ids, validation_ids = train_validation_split(vocab.encode(text))
    state = shared_initial_weights(build_model(BACKEND, args, np.random.default_rng(SEED)), args.weights, parser)
    trainer = make_trainer(BACKEND, args, state)
    rng = np.random.default_rng(SEED)
    losses = []
    for _ in range(STEPS):
        windows = random_windows(train_ids, args.batch_size, args.seq_len, rng)  # (N, T+1)
        losses.append(trainer.train_step(windows[:, :-1], windows[:, 1:]))
    validation = validation_loss(BACKEND, trainer, sequential_windows(validation_ids, args.seq_len))
    return trainer.model, vocab, losses, validation


def draw(path) -> None:
    import matplotlib.pyplot as plt

    from numpy_impl.foundations.softmax_regression import softmax
    from numpy_impl.module import no_grad

    model, vocab, losses, validation = train()
    with no_grad():
        logits, _ = model(vocab.encode(PROMPT)[None, :])  # (1, P, V)
    last = logits[0, -1].astype(np.float64)  # (V,)
    # The characters most likely at temperature 1, in that order, for every panel.
    shown = np.argsort(-last, kind="stable")[:SHOWN]  # (SHOWN,)
    # A space would be an invisible tick label; a newline prints as \n.
    labels = [repr(vocab.decode(np.array([k])))[1:-1].replace(" ", "␣") for k in shown]

    fig, axes = plt.subplots(1, len(TEMPERATURES) + 1, figsize=(13, 3.4))
    axes[0].plot(losses)
    axes[0].set_title(f"training loss (validation {validation:.2f})", fontsize=10)
    axes[0].set(xlabel="Adam step", ylabel="cross-entropy (nats/char)")
    for ax, temperature in zip(axes[1:], TEMPERATURES):
        probabilities = softmax(last[None, :] / temperature)[0]  # (V,)
        ax.bar(range(SHOWN), probabilities[shown])
        ax.set_xticks(range(SHOWN), labels, family="monospace")
        ax.set_title(f"tau = {temperature}: top-1 {probabilities.max():.2f},\n"
                     f"these {SHOWN} {probabilities[shown].sum():.2f}", fontsize=10)
        ax.set_ylim(0, 0.6)
        print(f"tau {temperature}: p(top-1 {labels[0]!r}) = {probabilities.max():.3f}, top-{SHOWN} mass "
              f"{probabilities[shown].sum():.3f}")
    axes[1].set_ylabel(f"p(next char | {PROMPT!r})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"training loss {losses[0]:.3f} -> {losses[-1]:.3f}, validation {validation:.3f}; wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
