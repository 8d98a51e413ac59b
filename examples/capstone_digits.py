"""Day 70 capstone: MLP vs CNN vs ViT vs MLP-Mixer on scikit-learn's 8x8 digits, per backend.

    python examples/capstone_digits.py --backend numpy|torch|tf [--epochs 10] [--plot capstone.png]
    python examples/capstone_digits.py --all-backends --models mlp cnn --epochs 2

Each model is trained exactly as its own example trains it — day 7's MLP by ``train_mlp.py``, day
17's CNN by ``train_cnn.py``, day 55's ViT by ``train_vit.py`` (each example's ``train``, with that
example's default architecture) — and day 57's MLP-Mixer (2x2 patches, ``embed_dim`` 32, 2 blocks) by
day 11's ``Trainer.fit``, all with Adam, the same epochs, batch size, learning rate and seed, on the
same seeded split. For every (model, backend) it measures the test accuracy, the parameter count
(the canonical state's size) and the training wall time, prints one table, and with ``--plot``
draws test accuracy against parameters. The last line is ``best test accuracy: 0.9xx (model, backend)``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# The examples are scripts, not a package: their folder on the path makes them importable by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_cnn  # noqa: E402
import train_mlp  # noqa: E402
import train_vit  # noqa: E402

from ml100.backends import BACKENDS, FrameworkNotInstalledError, check_installed, get_module  # noqa: E402
from ml100.cli_args import OneLineErrorParser, non_negative_int, plot_file, positive_float, positive_int  # noqa: E402
from ml100.configs import CNNConfig, MixerConfig, ViTConfig, config_from_args  # noqa: E402
from ml100.data import load_digits_split  # noqa: E402
from ml100.runs import shared_initial_weights, training_progress  # noqa: E402

MODELS = ("mlp", "cnn", "vit", "mixer")
NCHW_TO_NHWC = (0, 2, 3, 1)
#: The day-57 Mixer for 8x8 digits: 2x2 patches (16 tokens), width 32, two blocks, timm's MLP ratios.
MIXER = MixerConfig(img_size=8, patch_size=2, in_chans=1, num_classes=10, num_blocks=2, embed_dim=32)
#: The training options every model's own example parser receives from the capstone's.
SHARED_OPTIONS = ("dtype", "epochs", "batch_size", "lr", "seed")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--backend", choices=list(BACKENDS), help="the one tree to train with (default: numpy)")
    parser.add_argument("--all-backends", action="store_true", help="train every model with all three backends")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="which models to compare")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--lr", type=positive_float, default=2e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the initial weights and the batch order")
    parser.add_argument("--plot", type=plot_file, help="save test accuracy vs parameters to this image (.png, ...)")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Refuse --backend with --all-backends, repeated models and backends not installed; fill the default backend."""
    if args.all_backends and args.backend:
        parser.error(f"--all-backends trains every backend, so --backend {args.backend} would be ignored: "
                     "give one or the other")
    if len(set(args.models)) != len(args.models):
        parser.error(f"argument --models: each model once, got {' '.join(args.models)}")
    args.backends = list(BACKENDS) if args.all_backends else [args.backend or "numpy"]
    try:
        for backend in args.backends:
            check_installed(backend)
    except FrameworkNotInstalledError as error:
        parser.error(str(error))
    return args


def example_args(example, args: argparse.Namespace) -> argparse.Namespace:
    """The example's own parsed defaults, with the capstone's shared training options."""
    parser = example.build_parser()
    argv = [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in SHARED_OPTIONS]
    parsed = parser.parse_args(argv)
    parsed.parser = parser
    return parsed


def build_mixer(backend: str, args, rng=None):
    return get_module(backend, "modern.mlp_mixer").MlpMixer(MIXER, dtype=args.dtype, rng=rng)


def train_mixer(backend: str, args, state, data, progress) -> tuple[list[float], float]:
    """The Mixer with the examples' four objects (model, day 8's loss, Adam, day 11's Trainer) and ``fit``."""
    model = build_mixer(backend, args)
    model.load_canonical_state_dict(state)
    loss_fn = get_module(backend, "foundations.losses").CrossEntropyLoss(dtype=args.dtype)
    optimizer = get_module(backend, "foundations.optim").Adam(dict(model.named_parameters()), lr=args.lr)
    trainer = get_module(backend, "foundations.trainer").Trainer(model, loss_fn, optimizer)
    # TF's tree takes channels-last images.
    to_backend = (lambda x: x.transpose(NCHW_TO_NHWC).copy()) if backend == "tf" else (lambda x: x)
    steps = args.epochs * (len(data.x_train) // args.batch_size)
    task = progress.add_task(f"mixer {backend:5s}", total=steps, loss=float("nan"))
    losses = trainer.fit(to_backend(data.x_train), data.y_train, args.epochs, args.batch_size,
                         np.random.default_rng(args.seed),
                         on_step=lambda step, loss: progress.update(task, completed=step, loss=loss))
    _, accuracy = trainer.evaluate(to_backend(data.x_test), data.y_test)
    return losses, accuracy


def prepare(model: str, args: argparse.Namespace):
    """(train function, its args, the shared initial state, the data in the model's layout) for one model."""
    rng = np.random.default_rng(args.seed)
    if model == "mlp":
        margs = example_args(train_mlp, args)
        numpy_model = get_module("numpy", "foundations.mlp").MLP(train_mlp.IN_FEATURES, margs.hidden,
                                                                 train_mlp.NUM_CLASSES, dtype=args.dtype, rng=rng)
        return train_mlp.train, margs, shared_initial_weights(numpy_model), load_digits_split("flat", args.dtype)
    data = load_digits_split("NCHW", args.dtype)
    if model == "cnn":
        margs = example_args(train_cnn, args)
        margs.config = config_from_args(margs.parser, CNNConfig, margs, **train_cnn.DIGITS)
        return train_cnn.train, margs, shared_initial_weights(train_cnn.build_cnn("numpy", margs, rng)), data
    if model == "vit":
        margs = example_args(train_vit, args)
        margs.config = config_from_args(margs.parser, ViTConfig, margs, **train_vit.DIGITS)
        return train_vit.train, margs, shared_initial_weights(train_vit.build_vit("numpy", margs, rng)), data
    return train_mixer, args, shared_initial_weights(build_mixer("numpy", args, rng)), data


def run(args: argparse.Namespace) -> list[dict]:
    """Train every (model, backend); one row each: model, backend, parameters, accuracy, seconds."""
    rows = []
    # Import every framework first: its import time is not training time.
    for backend in args.backends:
        get_module(backend, "foundations.trainer")
    with training_progress() as progress:
        for model in args.models:
            train, margs, state, data = prepare(model, args)
            parameters = sum(value.size for value in state.values())
            for backend in args.backends:
                start = time.perf_counter()
                _, accuracy = train(backend, margs, state, data, progress)
                rows.append({"model": model, "backend": backend, "parameters": parameters, "accuracy": accuracy,
                             "seconds": time.perf_counter() - start})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'model':6s} {'backend':7s} {'parameters':>10s} {'test acc':>8s} {'train s':>8s}")
    for row in rows:
        print(f"{row['model']:6s} {row['backend']:7s} {row['parameters']:>10,d} {row['accuracy']:>8.3f} "
              f"{row['seconds']:>8.1f}")


def save_plot(path: Path, rows: list[dict], title: str) -> None:
    """Test accuracy against parameter count (log scale): one marker per model, one colour per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = dict(zip(MODELS, "osD^"))
    colours = dict(zip(BACKENDS, ("tab:blue", "tab:orange", "tab:green")))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for row in rows:
        ax.scatter(row["parameters"], row["accuracy"], marker=markers[row["model"]], color=colours[row["backend"]],
                   s=60, alpha=0.8, label=f"{row['model']} ({row['backend']})")
        ax.annotate(row["model"], (row["parameters"], row["accuracy"]), textcoords="offset points", xytext=(6, -3),
                    fontsize=8)
    ax.set(xscale="log", xlabel="parameters", ylabel="test accuracy", title=title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before the data loads or a framework is imported.
    args = check_arguments(parser, parser.parse_args(argv))
    rows = run(args)
    print_table(rows)
    if args.plot:
        save_plot(args.plot, rows, f"digits, {args.epochs} epochs of Adam, {args.dtype}")
        print(f"plot saved to {args.plot}")
    best = max(rows, key=lambda row: row["accuracy"])
    print(f"best test accuracy: {best['accuracy']:.3f} ({best['model']}, {best['backend']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
