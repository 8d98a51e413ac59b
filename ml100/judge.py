"""A judge for generated digits: the day-17 CNN trained on real digits, asked which class a sample shows.

A sample grid only says "looks like digits". The judge turns it into numbers (issue 8):

* :func:`judge_accuracy` — the share of class-conditional samples the judge assigns to the class
  they were asked for (a conditional generator that ignores its label scores ~0.1);
* :func:`class_histogram` — how many samples fall in each class (an unconditional generator that
  collapsed onto a few modes shows it at once).

There is one judge whatever backend made the samples: the NumPy tree's ``CNN`` (no framework to
import, deterministic), trained in float32 on the train split of :func:`ml100.data.load_digits_split`
with a fixed seed, once per process (:func:`get_judge` caches it; ~10 s on 2 cores). Its held-out
accuracy on the real test digits is ``get_judge().test_accuracy`` (``python -m ml100.judge``
prints it: 0.986 with the defaults below).

**Input range.** The judge sees what it was trained on: ``(N, 1, 8, 8)`` pixels in [0, 1]
(channels first, whatever backend made them). Samples in another range are mapped first, by the
example that made them: a tanh output or a diffusion sample in [-1, 1] by :func:`from_signed`
(``(x + 1) / 2``, then clipped: a diffusion sampler without ``clip_sample`` overshoots), a VAE's pixel logits by
:func:`from_logits` (the sigmoid, i.e. the Bernoulli mean). Anything outside [0, 1] is refused,
not clipped behind the caller's back.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .backends import get_module
from .cli_args import check_training_arguments, positive_int
from .configs import CNNConfig
from .data import batch_indices, load_digits_split
from .runs import curve_difference, report_comparison

#: The digits: ten classes of 8x8 grey images.
NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)

#: Training recipe (measured on 2 cores: ~7 s of CPU, held-out accuracy 0.986).
JUDGE_SEED = 0
JUDGE_EPOCHS = 20
JUDGE_BATCH_SIZE = 32
JUDGE_LR = 3e-3


@dataclass(frozen=True)
class Judge:
    """A trained NumPy-tree CNN and its accuracy on the held-out real digits."""

    model: object
    test_accuracy: float

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The class the judge sees in each image, ``(N,)`` int64."""
        check_images(images)
        no_grad = get_module("numpy", "module").no_grad
        self.model.eval()
        with no_grad():
            logits = self.model(images.astype(np.float32))  # (N, 10)
        return np.argmax(logits, axis=-1).astype(np.int64)  # (N,)


def train_judge(seed: int = JUDGE_SEED, epochs: int = JUDGE_EPOCHS) -> Judge:
    """Train the CNN (float32, Adam) on the real training digits; measure it on the test digits."""
    cnn = get_module("numpy", "foundations.cnn")
    losses = get_module("numpy", "foundations.losses")
    optim = get_module("numpy", "foundations.optim")
    trainer_module = get_module("numpy", "foundations.trainer")
    data = load_digits_split(layout="NCHW", dtype="float32")
    rng = np.random.default_rng(seed)
    model = cnn.CNN(CNNConfig(), dtype="float32", rng=rng)
    trainer = trainer_module.Trainer(model, losses.CrossEntropyLoss(dtype="float32"),
                                     optim.Adam(dict(model.named_parameters()), lr=JUDGE_LR))
    for _ in range(epochs):
        for index in batch_indices(len(data.x_train), JUDGE_BATCH_SIZE, rng):
            trainer.train_step(data.x_train[index], data.y_train[index])
    _, accuracy = trainer.evaluate(data.x_test, data.y_test)
    return Judge(model, accuracy)


@functools.cache
def get_judge() -> Judge:
    """The judge, trained once per process with the recipe above (the same judge for every caller)."""
    return train_judge()


def judge_accuracy(images: np.ndarray, requested_labels: np.ndarray) -> float:
    """The share of ``images`` (``(N, 1, 8, 8)`` in [0, 1]) the judge assigns to ``requested_labels``
    (``(N,)`` int64, the classes the samples were asked for)."""
    labels = np.asarray(requested_labels)
    if labels.dtype != np.int64 or labels.shape != (len(images),):
        raise ValueError(f"judge_accuracy: requested_labels must be int64 of shape ({len(images)},) (one per image), "
                         f"got {labels.dtype} of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"judge_accuracy: requested_labels must be in [0, {NUM_CLASSES}), "
                         f"got values in [{labels.min()}, {labels.max()}]")
    if len(labels) == 0:
        raise ValueError("judge_accuracy: no images to judge (an accuracy over zero samples is undefined)")
    return float(np.mean(get_judge().predict(images) == labels))


def class_histogram(images: np.ndarray) -> np.ndarray:
    """How many of ``images`` (``(N, 1, 8, 8)`` in [0, 1]) the judge puts in each class: ``(10,)`` int64."""
    return np.bincount(get_judge().predict(images), minlength=NUM_CLASSES).astype(np.int64)  # (10,)


def format_histogram(counts: np.ndarray) -> str:
    """``class histogram: 0:51 1:48 ...`` — one line, the judge's count per class."""
    return "class histogram: " + " ".join(f"{digit}:{int(count)}" for digit, count in enumerate(counts))


def from_signed(images: np.ndarray) -> np.ndarray:
    """Images in [-1, 1] (tanh outputs, diffusion samples) as the judge's [0, 1] pixels.

    ``(x + 1) / 2`` is the inverse of the examples' ``2x - 1`` scaling of the data; a diffusion
    sample can land outside [-1, 1] (a sampler run without ``clip_sample``), so the result is clipped.
    """
    return np.clip((np.asarray(images) + 1.0) / 2.0, 0.0, 1.0)


def from_logits(logits: np.ndarray) -> np.ndarray:
    """Pixel logits (a VAE's Bernoulli decoder) as the judge's [0, 1] pixels: the sigmoid, the mean
    of each pixel's Bernoulli."""
    logits = np.asarray(logits)
    # 1 / (1 + exp(-x)) overflows (with a warning) for large negative logits; the tanh form never does.
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


def requested_labels(n: int) -> np.ndarray:
    """The classes ``n`` conditional samples are asked for: 0, 1, ..., 9, 0, 1, ... ``(n,)`` int64 (balanced)."""
    return np.arange(n, dtype=np.int64) % NUM_CLASSES  # (n,)


def save_sample_grid(path, images: np.ndarray, columns: int, title: str, class_rows: bool) -> None:
    """``images`` ``(rows * columns, 1, 8, 8)`` in [0, 1] as a grey grid, row by row, saved to ``path``
    (checked by ``ml100.cli_args.plot_file``); ``class_rows``: row ``r`` holds class ``r`` and says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(images) // columns
    # A blank (0 = white) pixel around each sample: digits touching top to bottom would merge into strips.
    framed = np.pad(images[:rows * columns, 0], ((0, 0), (1, 1), (1, 1)))  # (R*C, 10, 10)
    side = framed.shape[-1]
    # (R*C, 10, 10) -> (R, 10, C, 10) -> one (R*10, C*10) picture, rows of samples stacked.
    tiles = framed.reshape(rows, columns, side, side).transpose(0, 2, 1, 3).reshape(rows * side, columns * side)
    fig, ax = plt.subplots(figsize=(columns * 0.45 + 0.6, rows * 0.45 + 0.6))
    ax.imshow(tiles, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set(xticks=[], yticks=np.arange(rows) * side + (side - 1) / 2 if class_rows else [])
    ax.set_title(title, fontsize=9)
    if class_rows:
        ax.set_yticklabels([str(r) for r in range(rows)])
    ax.tick_params(length=0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"sample grid saved to {path}")


# The generative examples (train_vae.py, train_gan.py, train_diffusion.py) share their sample
# options and their ending: written once here.

#: Samples per row of the grid (the ten classes: one column of each class per sample drawn).
GRID_COLUMNS = 10


def add_sample_arguments(parser, unconditional_help: str) -> None:
    """``--unconditional`` (the day's unlabelled variant) and ``--samples`` (how many the judge sees)."""
    parser.add_argument("--unconditional", action="store_true", help=unconditional_help)
    parser.add_argument("--samples", type=positive_int, default=1000,
                        help="samples the judge scores (conditional: the classes 0..9 in turn; default 1000)")


def check_sample_arguments(parser, args):
    """The shared checks, with ``--plot`` as the sample grid unless ``--compare`` (then the loss
    curves); the grid shows the first 100 samples, ten per class."""
    # The shared check reads --plot as the loss curves of --compare; here it is also the grid.
    grid, args.plot = args.plot, None
    args = check_training_arguments(parser, args)
    args.plot = grid
    if args.plot and not args.compare and args.samples < GRID_COLUMNS * NUM_CLASSES:
        parser.error(f"argument --plot: the sample grid shows {GRID_COLUMNS * NUM_CLASSES} samples, "
                     f"but --samples is {args.samples}")
    return args


def finish_run(runs: dict[str, tuple[dict[str, list[float]], np.ndarray]], args, title: str) -> int:
    """End a generative example: each backend's samples ``(M, 1, 8, 8)`` in [0, 1] judged (class
    histogram; accuracy against the requested classes unless ``args.unconditional``), the sample
    grid or, with ``--compare``, the loss curves compared (every named curve, e.g. both GAN players'),
    and ``judge accuracy: X`` last (the lowest over the backends) for the conditional variants."""
    labels = None if args.unconditional else requested_labels(args.samples)
    accuracies = {}
    for backend, (_, images) in runs.items():
        prefix = f"{backend:5s} " if len(runs) > 1 else ""
        print(prefix + format_histogram(class_histogram(images)))
        accuracies[backend] = None if labels is None else judge_accuracy(images, labels)
    if args.plot and not args.compare:
        first = images[:GRID_COLUMNS * NUM_CLASSES]  # (100, 1, 8, 8): sample i asked for class i % 10
        # Conditional: (column, class) -> (class, column), one row per class.
        grid = first.reshape(GRID_COLUMNS, NUM_CLASSES, *IMAGE_SHAPE).swapaxes(0, 1).reshape(first.shape) if labels is not None else first
        save_sample_grid(args.plot, grid, GRID_COLUMNS, f"{title} ({args.backend})", class_rows=labels is not None)
    if args.compare:
        names = list(next(iter(runs.values()))[0])
        first_curves = {backend: (curves[names[0]], accuracies[backend]) for backend, (curves, _) in runs.items()}
        report_comparison(first_curves, args.dtype, args.plot, f"{title}: {names[0]}, three backends", metric="judge accuracy")
        for name in names[1:]:
            abs_diff, rel_diff = curve_difference({backend: curves[name] for backend, (curves, _) in runs.items()})
            print(f"largest {name} loss difference between backends: {abs_diff:.3e} (relative {rel_diff:.3e}, {args.dtype})")
    if labels is not None:
        print(f"judge accuracy: {min(accuracies.values()):.3f}")
    return 0


def check_images(images: np.ndarray) -> None:
    """The judge takes a NumPy float array ``(N, 1, 8, 8)`` with finite values in [0, 1]."""
    if not isinstance(images, np.ndarray) or images.dtype.kind != "f":
        raise TypeError(f"judge: images must be a NumPy float array (N, 1, 8, 8) in [0, 1], got "
                        f"{type(images).__name__} of dtype {getattr(images, 'dtype', None)}")
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"judge: images must have shape (N, 1, 8, 8) (channels first, as the digits), got {images.shape}")
    if images.size and not (np.all(np.isfinite(images)) and images.min() >= 0.0 and images.max() <= 1.0):
        raise ValueError(f"judge: images must be finite pixels in [0, 1] (map [-1, 1] samples with from_signed, "
                         f"logits with from_logits), got values in [{images.min()}, {images.max()}]")


if __name__ == "__main__":
    print(f"judge (day-17 CNN, NumPy tree) held-out accuracy on real test digits: {get_judge().test_accuracy:.3f}")
