"""Data with no downloads: scikit-learn's bundled 8x8 digits, and seeded batch orders.

The split and the batch order are fixed by seeds, so every backend trains on the same numbers
in the same order: the precondition for comparing their loss curves.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterator

import numpy as np

from .checks import resolve_dtype

#: Image layouts: flat vectors, channels-first (NumPy, torch) and channels-last (TF).
LAYOUTS = ("flat", "NCHW", "NHWC")


@dataclass(frozen=True)
class Split:
    """Train and test arrays; ``x`` is float in [0, 1], ``y`` holds int64 class indices."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(layout: str = "flat", dtype="float32", test_fraction: float = 0.2, seed: int = 0) -> Split:
    """The 1,797 digits, shuffled by ``seed`` and split ``test_fraction`` into test.

    ``layout="flat"`` gives ``(N, 64)``, ``"NCHW"`` gives ``(N, 1, 8, 8)``, ``"NHWC"`` ``(N, 8, 8, 1)``.
    Pixels (0..16 in the source) are scaled to [0, 1].
    """
    from sklearn.datasets import load_digits

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    digits = load_digits()
    x = (digits.data / 16.0).astype(resolve_dtype(dtype))  # (N, 64)
    y = digits.target.astype(np.int64)  # (N,)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    if layout == "NCHW":
        x = x.reshape(-1, 1, 8, 8)  # (N, 1, 8, 8)
    elif layout == "NHWC":
        x = x.reshape(-1, 8, 8, 1)  # (N, 8, 8, 1)
    return Split(x[train], y[train], x[test], y[test])


def batch_indices(n: int, batch_size: int, rng: np.random.Generator, drop_last: bool = True) -> Iterator[np.ndarray]:
    """One epoch of shuffled index batches drawn from ``rng``.

    ``drop_last`` keeps every batch the same size, which keeps a ``tf.function`` from retracing.
    """
    if batch_size < 1 or batch_size > n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    order = rng.permutation(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]
