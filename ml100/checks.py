"""Clear errors for bad input, shared by the three trees.

Every tree calls these with plain shapes and dtype names, so a wrong input gets the same
message whichever backend runs: what was expected, what arrived. Nothing is broadcast or
cast behind the caller's back.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np

#: The floating dtypes every module accepts; float64 is for tight parity, float32 the default.
FLOAT_DTYPES = ("float32", "float64")


def resolve_dtype(dtype) -> str:
    """Normalize ``dtype`` (a name, a NumPy dtype, a torch or TF dtype) to ``"float32"`` or ``"float64"``."""
    name = getattr(dtype, "name", None) or str(dtype)
    name = name.replace("torch.", "").replace("<dtype: '", "").rstrip("'>")
    if name not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype!r}")
    return name


def dtype_name(dtype) -> str:
    """The plain name (``"float32"``, ``"int64"``, …) of a NumPy, torch or TF dtype."""
    name = getattr(dtype, "name", None) or str(dtype)
    return name.replace("torch.", "")


#: Backend -> (the array type its modules take, how to get one from a NumPy array).
ARRAY_TYPES = {
    "numpy": ("numpy.ndarray", "np.asarray(x)"),
    "torch": ("torch.Tensor", "torch.from_numpy(x)"),
    "tf": ("tf.Tensor", "tf.constant(x)"),
}


def check_array_type(owner: str, backend: str, value, expected: type) -> None:
    """A model of ``backend``'s tree called on another framework's array gets a clear ``TypeError``
    (instead of an ``@`` or ``.rank`` failure deep inside the first layer)."""
    if isinstance(value, expected):
        return
    kind = type(value)
    if kind.__module__.split(".")[0] in ("numpy", "torch", "tensorflow") or hasattr(value, "__array__"):
        name, convert = ARRAY_TYPES[backend]
        raise TypeError(f"{owner}: the {backend} tree takes a {name} as its input, got "
                        f"{kind.__module__}.{kind.__name__}; convert it with {convert}")


def check_input(
    owner: str,
    arg: str,
    shape: Sequence[int],
    dtype,
    *,
    expected_dtype: str | None = None,
    ndim: int | Sequence[int] | None = None,
    last_dim: int | None = None,
    shape_like: Sequence[int] | None = None,
) -> None:
    """Raise a ``ValueError``/``TypeError`` naming ``owner``'s argument ``arg`` if it is not as expected.

    ``ndim`` is an int or a set of allowed ranks, ``last_dim`` the required size of the last axis,
    ``shape_like`` a shape the input must equal exactly (targets against predictions).
    """
    shape = tuple(None if s is None else int(s) for s in shape)
    got = dtype_name(dtype)
    if expected_dtype is not None and got != expected_dtype:
        raise TypeError(f"{owner}: {arg} must have dtype {expected_dtype}, got {got} (cast it explicitly)")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(shape) not in allowed:
            raise ValueError(f"{owner}: {arg} must have {' or '.join(map(str, allowed))} dimensions, got shape {shape}")
    if last_dim is not None and (len(shape) == 0 or shape[-1] != last_dim):
        raise ValueError(f"{owner}: {arg} must have shape (..., {last_dim}), got {shape}")
    if shape_like is not None and shape != tuple(shape_like):
        raise ValueError(f"{owner}: {arg} must have shape {tuple(shape_like)}, got {shape}")


def check_labels(owner: str, arg: str, labels: np.ndarray, num_classes: int, batch: int) -> None:
    """Integer class labels: shape ``(batch,)``, an integer dtype, values in ``[0, num_classes)``."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{owner}: {arg} must hold integer class indices, got dtype {labels.dtype}")
    if labels.shape != (batch,):
        raise ValueError(f"{owner}: {arg} must have shape ({batch},), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{owner}: {arg} must lie in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]")


def check_range(owner: str, name: str, value, low: float = 0.0, high: float = math.inf) -> None:
    """A hyperparameter must be a real number with ``low <= value < high`` (``high`` excluded)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    if not low <= value < high:
        raise ValueError(f"{owner}: {name} must be in [{low}, {high}), got {value!r}")
