"""The random parameters of data augmentation (day 20), drawn and validated once for all trees.

Randomness is an input: flip flags, crop offsets, cutout centres, mixup weights, CutMix boxes and
partner permutations are plain NumPy arrays drawn from a ``Generator``, so one seed gives one
augmentation in NumPy, PyTorch and TensorFlow. Each tree's ``foundations/augmentation.py`` applies
them with its own ops and validates them with the checks below (parameters are data, not tensors
that autograd tracks: NumPy arrays, torch tensors and eager TF tensors all convert).
"""
from __future__ import annotations

import numpy as np

from .checks import check_input, dtype_name


# --- drawing the random parameters -------------------------

def draw_flip(n: int, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Which of ``n`` images to flip: a bool array ``(n,)``, ``True`` with probability ``p``."""
    return rng.random(n) < p  # (n,)


def draw_crop_offsets(n: int, padding: int, rng: np.random.Generator) -> np.ndarray:
    """Crop corners ``(top, left)`` in the padded image, uniform on ``[0, 2 padding]``: int64 ``(n, 2)``."""
    return rng.integers(0, 2 * padding + 1, size=(n, 2))  # (n, 2)


def draw_cutout_centers(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Cutout centres ``(row, col)`` uniform over the image: int64 ``(n, 2)``."""
    # An array ``high`` draws the row below h and the column below w in one call.
    return rng.integers(0, (h, w), size=(n, 2))  # (n, 2)


def draw_mixup(n: int, alpha: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mixup weights ``lam ~ Beta(alpha, alpha)`` (float64 ``(n,)``) and a partner permutation ``(n,)``."""
    lam = rng.beta(alpha, alpha, size=n)  # (n,)
    return lam, rng.permutation(n)  # (n,), (n,)


def draw_cutmix(n: int, h: int, w: int, alpha: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CutMix boxes ``(top, left, bottom, right)`` (half-open, clipped; int64 ``(n, 4)``) and a permutation.

    As in the paper's code: ``lam ~ Beta(alpha, alpha)``, a box of sides ``h sqrt(1-lam)`` by
    ``w sqrt(1-lam)`` around a uniform centre, clipped to the image (so the area kept may be larger
    than ``lam`` says; :func:`cutmix` mixes the labels by the clipped area).
    """
    lam = rng.beta(alpha, alpha, size=n)  # (n,)
    cut = np.sqrt(1.0 - lam)  # (n,)
    half_h, half_w = (h * cut).astype(np.int64) // 2, (w * cut).astype(np.int64) // 2  # (n,), (n,)
    centers = rng.integers(0, (h, w), size=(n, 2))  # (n, 2)
    top, bottom = np.clip(centers[:, 0] - half_h, 0, h), np.clip(centers[:, 0] + half_h, 0, h)  # (n,), (n,)
    left, right = np.clip(centers[:, 1] - half_w, 0, w), np.clip(centers[:, 1] + half_w, 0, w)  # (n,), (n,)
    return np.stack([top, left, bottom, right], axis=1), rng.permutation(n)  # (n, 4), (n,)


# --- validating the parameters -----------------------------

def check_params(owner: str, arg: str, value, shape, kind: str) -> np.ndarray:
    """``value`` as a NumPy array of exactly ``shape`` and ``kind`` (``"bool"``, ``"int"``, ``"float"``)."""
    # Parameters are data, not tensors autograd tracks: NumPy, torch and eager TF values all convert.
    array = np.asarray(value)
    ok = {"bool": array.dtype == bool, "int": np.issubdtype(array.dtype, np.integer),
          "float": np.issubdtype(array.dtype, np.floating)}[kind]
    if not ok:
        raise TypeError(f"{owner}: {arg} must have a {kind} dtype, got {dtype_name(array.dtype)}")
    check_input(owner, arg, array.shape, array.dtype, shape_like=shape)
    return array


def check_values_in(owner: str, arg: str, array: np.ndarray, low, high) -> None:
    """Every value of ``array`` in ``[low, high]`` (inclusive)."""
    if array.size and (np.any(array < low) or np.any(array > high)):
        raise ValueError(f"{owner}: {arg} must lie in [{low}, {high}], got values in [{array.min()}, {array.max()}]")


def check_perm(owner: str, perm, n: int) -> np.ndarray:
    """``perm`` must be a permutation of ``0..n-1`` (each image is some image's partner exactly once)."""
    perm = check_params(owner, "perm", perm, (n,), "int")
    if not np.array_equal(np.sort(perm), np.arange(n)):
        raise ValueError(f"{owner}: perm must be a permutation of 0..{n - 1}, got {perm.tolist()}")
    return perm


def check_labels_onehot(owner: str, labels_onehot, n: int, dtype) -> None:
    """Soft or one-hot labels ``(n, K)`` in the images' dtype."""
    check_input(owner, "labels_onehot", labels_onehot.shape, labels_onehot.dtype, expected_dtype=dtype_name(dtype), ndim=2)
    check_input(owner, "labels_onehot", labels_onehot.shape[:1], labels_onehot.dtype, shape_like=(n,))


def check_lam(owner: str, lam, n: int) -> np.ndarray:
    """``lam``: a float scalar or ``(n,)``, every value in ``[0, 1]``."""
    lam = np.asarray(lam)
    lam = check_params(owner, "lam", lam, lam.shape if lam.ndim == 0 else (n,), "float")
    check_values_in(owner, "lam", lam, 0.0, 1.0)
    return lam
