"""Checks of constructor arguments and class targets, written once for the three trees.

:mod:`ml100.validate` checks sizes and geometry, :mod:`ml100.checks` hyperparameter ranges; this
module adds what the layers, losses and optimizers of days 3-14 need besides: flags that must be
bools, fractions in ``[0, 1]``, the random generator, a ``normalized_shape``, constant weight
arrays (a loss' class weights) and cross-entropy's integer targets with ``ignore_index``. Every
rule raises one message, so a bad argument reads the same whichever backend runs.

What is accepted follows PyTorch where PyTorch is well defined (``Linear(0, 5)`` is a valid layer
whose output is its bias); what PyTorch refuses, or accepts and then turns into garbage (a
negative ``eps`` gives NaN, a ``momentum`` of ``None`` fails later with a ``NoneType`` error), is
refused here, at construction.
"""
from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np

from ml100.validate import check_int


def check_bool(owner: str, name: str, value) -> bool:
    """A flag: ``True`` or ``False`` (NumPy's bool too), never a truthy string or number."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be a bool (True or False), got {value!r}")
    return bool(value)


def _check_real(owner: str, name: str, value) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")


def check_fraction(owner: str, name: str, value) -> float:
    """A real number in ``[0, 1]``, both ends included (a momentum, a dampening, a label smoothing)."""
    _check_real(owner, name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}: {name} must be in [0, 1], got {value!r}")
    return float(value)


def check_positive(owner: str, name: str, value) -> float:
    """A real number ``> 0`` (``inf`` allowed, NaN not): Huber's ``delta``."""
    _check_real(owner, name, value)
    if not value > 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    return float(value)


def check_rng(owner: str, rng) -> np.random.Generator:
    """``None`` (a fresh, unseeded generator) or a ``numpy.random.Generator``, returned as one."""
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{owner}: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, "
                        f"got {type(rng).__name__}")
    return rng


def check_normalized_shape(owner: str, value) -> tuple[int, ...]:
    """An int or a non-empty sequence of ints, each ``>= 0``, as a tuple: the trailing axes a norm
    covers (``torch.nn.LayerNorm`` refuses ``()`` and accepts a size of 0, an empty output)."""
    sizes = (value,) if not isinstance(value, Sequence) else tuple(value)
    if not sizes:
        raise ValueError(f"{owner}: normalized_shape must be an int >= 0 or a non-empty sequence of them, got {value!r}")
    for size in sizes:
        try:
            check_int(owner, "normalized_shape", size, 0)
        except ValueError:
            raise ValueError(f"{owner}: normalized_shape must be an int >= 0 or a non-empty sequence of them, "
                             f"got {value!r}") from None
    return tuple(int(size) for size in sizes)


def check_weight_array(owner: str, name: str, value, dtype: str, ndim: int | None = None) -> np.ndarray | None:
    """``None``, or real weights (any array-like: list, NumPy, a CPU torch or eager TF tensor) that
    are finite and ``>= 0``, returned as a NumPy array of ``dtype``; ``ndim`` fixes the rank.

    A negative or NaN weight makes a weighted mean meaningless (torch accepts them silently)."""
    if value is None:
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError):
        array = None
    if array is None or array.dtype.kind not in "fiub" or array.dtype.kind == "b":
        raise TypeError(f"{owner}: {name} must be None or an array of real numbers, got {type(value).__name__}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{owner}: {name} must have {ndim} dimension(s), got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{owner}: {name} must hold finite values >= 0, got {array.tolist()!r}")
    return array.astype(dtype)


def check_class_targets(owner: str, target: np.ndarray, num_classes: int, ignore_index: int) -> None:
    """Integer class indices, each in ``[0, num_classes)`` or equal to ``ignore_index``
    (the shape is checked by the caller, who knows the logits' layout)."""
    target = np.asarray(target)
    if not np.issubdtype(target.dtype, np.integer):
        raise TypeError(f"{owner}: target must hold integer class indices, got dtype {target.dtype}")
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if np.any(bad):
        values = np.unique(target[bad])
        raise ValueError(f"{owner}: target must lie in [0, {num_classes}) or equal ignore_index ({ignore_index}), "
                         f"got {values[:5].tolist()}")


def check_index(owner: str, name: str, value) -> int:
    """Any int, negative included (not a bool), returned as a Python int: an ``ignore_index``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise ValueError(f"{owner}: {name} must be an int, got {value!r}")
    return int(value)


def check_trailing_shape(owner: str, name: str, shape, input_shape) -> None:
    """A weight broadcast over the input's leading axes: its shape must equal the input's trailing
    axes (``(C,)`` against ``(N, C)``), nothing else is broadcast."""
    shape, input_shape = tuple(shape), tuple(input_shape)
    if len(shape) > len(input_shape) or input_shape[len(input_shape) - len(shape):] != shape:
        raise ValueError(f"{owner}: {name} must have the shape of the input's trailing axes (a suffix of {input_shape}), "
                         f"got {shape}")
