"""Command-line arguments shared by the example scripts and benchmarks.

The training options every example has (backend, comparison, dtype, epochs, batch size, learning
rate, seed, weights, plot) are added once by :func:`add_training_arguments` and their combinations
checked once by :func:`check_training_arguments`; model options stay in each example.

The value checks are argparse ``type=`` functions: with :class:`OneLineErrorParser` a bad value
is one line on stderr and exit code 2, before any data is loaded or any framework imported
(``--epochs 0`` is refused, not trained for zero steps). They import nothing heavy, so ``--help`` stays instant.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from .backends import BACKENDS, FrameworkNotInstalledError, check_installed


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse's parser, with its module docstring as help, whose errors are one line: argparse would
    print the whole usage (five lines here) above the one line that says what is wrong."""

    def __init__(self, description: str | None = None, **kwargs):
        super().__init__(description=description, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by the training examples, each with its value check."""
    # No default: --compare must tell whether --backend was given (it trains every backend).
    parser.add_argument("--backend", choices=list(BACKENDS), help="which tree to train with (default: numpy)")
    parser.add_argument("--compare", action="store_true", help="train with all three backends and compare the loss curves")
    parser.add_argument("--plot", type=plot_file, help="with --compare: save the three loss curves to this image (.png, .pdf, .svg, ...)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--epochs", type=positive_int, default=30)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--lr", type=positive_float, default=2e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the initial weights, the batch order and any augmentation")
    parser.add_argument("--weights", type=weights_file, help="start from this safetensors file instead of --seed's weights")


def check_training_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Refuse combinations that would be silently ignored and backends whose framework is not
    installed; fill in the default backend."""
    if args.compare and args.backend:
        parser.error(f"--compare trains every backend, so --backend {args.backend} would be ignored: give one or the other")
    if args.plot and not args.compare:
        parser.error("--plot needs --compare")
    args.backend = args.backend or "numpy"
    try:
        for backend in BACKENDS if args.compare else [args.backend]:
            check_installed(backend)
    except FrameworkNotInstalledError as error:
        parser.error(str(error))
    return args


def check_batch_size(parser: argparse.ArgumentParser, batch_size: int, n_train: int) -> None:
    """Refuse a batch larger than the training set (an epoch of it would be no step at all)."""
    if batch_size > n_train:
        parser.error(f"argument --batch-size: {batch_size} is more than the {n_train} training examples")


def positive_int(text: str) -> int:
    """An integer >= 1 (epochs, batch size, layer widths, channels)."""
    value = _parse(int, text, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a NumPy seed: NumPy takes no negative seeds)."""
    value = _parse(int, text, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0 (a learning rate): ``nan``, ``inf``, zero and negatives are refused."""
    value = _parse(float, text, "a number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def weights_file(text: str) -> Path:
    """An existing safetensors file (its header is read, not its buffers)."""
    # Imported here: safetensors is not needed by --help.
    from .weights import check_safetensors_file

    try:
        return check_safetensors_file(text)
    except (OSError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def plot_file(text: str) -> Path:
    """A file matplotlib can write: an extension it supports and a folder that exists.

    matplotlib would add ``.png`` to a name without an extension (so the printed path would not be
    the file written) and fails only after training on a missing folder: both are refused up front.
    """
    path = Path(text)
    formats = _plot_formats()
    if path.suffix.lower().lstrip(".") not in formats:
        raise argparse.ArgumentTypeError(f"{text!r} needs one of matplotlib's extensions: {', '.join('.' + f for f in formats)}")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} of {text!r} does not exist")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} of {text!r} is not writable")
    return path


def _plot_formats() -> list[str]:
    """The file extensions matplotlib's savefig accepts (png, pdf, svg, ...), sorted."""
    # Imported here: matplotlib is loaded only when a plot is asked for.
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def _parse(kind: type, text: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
