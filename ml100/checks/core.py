"""Dtypes, arrays and constructor arguments: the checks every module of every day uses."""
from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

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

# --- constructor arguments: one rule, one message, the same in every tree -----------------------


def is_int(value) -> bool:
    # bool is an Integral too, but True as a kernel size is a bug, not a 1.
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_int(owner: str, name: str, value, low: int) -> int:
    """An int (Python or NumPy) with ``value >= low``, returned as a Python int."""
    if not is_int(value) or value < low:
        raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def check_real(owner: str, name: str, value) -> float:
    """A finite real number (not a bool), returned as a float: a slope or scale of an activation."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    return float(value)


def check_choice(owner: str, name: str, value, choices: tuple) -> None:
    """``value`` must be one of ``choices`` (a string option such as GELU's ``approximate``)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {choices}, got {value!r}")


def check_divisible(owner: str, name: str, value: int, by_name: str, by: int) -> None:
    """``value`` must be a multiple of ``by`` (channels split into groups)."""
    if value % by:
        raise ValueError(f"{owner}: {name} ({value}) must be divisible by {by_name} ({by})")


def pair(owner: str, name: str, value, low: int) -> tuple[int, int]:
    """An int or a pair of ints, each ``>= low`` -> ``(height, width)``."""
    values = (value, value) if is_int(value) else value
    if not isinstance(values, (tuple, list)) or len(values) != 2 or not all(is_int(v) and v >= low for v in values):
        raise ValueError(f"{owner}: {name} must be an int >= {low} or a pair of them, got {value!r}")
    return int(values[0]), int(values[1])


def check_bool(owner: str, name: str, value) -> bool:
    """A flag: ``True`` or ``False`` (NumPy's bool too), never a truthy string or number."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be a bool (True or False), got {value!r}")
    return bool(value)


def check_real_type(owner: str, name: str, value) -> None:
    """``value`` is a real number (not a bool): the type rule under :func:`check_real` and the fractions."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")


def check_fraction(owner: str, name: str, value) -> float:
    """A real number in ``[0, 1]``, both ends included (a momentum, a dampening, a label smoothing)."""
    check_real_type(owner, name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}: {name} must be in [0, 1], got {value!r}")
    return float(value)


def check_positive(owner: str, name: str, value) -> float:
    """A real number ``> 0`` (``inf`` allowed, NaN not): Huber's ``delta``."""
    check_real_type(owner, name, value)
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


def check_unsupported(owner: str, name: str, value, supported, why: str) -> None:
    """An argument the reference accepts but this project does not implement (an RNN's
    ``dropout`` between layers, an LSTM's ``proj_size``): refused unless it equals ``supported``,
    with the reason, rather than silently ignored."""
    if value != supported:
        raise ValueError(f"{owner}: {name}={value!r} is not supported (only {supported!r}): {why}")


def check_attention_inputs(owner: str, dtype: str, embed_dim: int, kdim: int, query, value, key=None,
                           query_mask=None, value_mask=None) -> None:
    """Seq2seq attention's inputs (any framework's tensors; only ``.shape`` and ``.dtype`` are read):
    ``query (N, Tq, embed_dim)``, ``value (N, Tv, Dv)``, ``key (N, Tv, kdim)`` (``None``: the value
    is the key, so ``Dv`` must be ``kdim``), boolean masks ``query_mask (N, Tq)``, ``value_mask (N, Tv)``."""
    check_input(owner, "query", query.shape, query.dtype, expected_dtype=dtype, ndim=3, last_dim=embed_dim)
    batch, query_len = int(query.shape[0]), int(query.shape[1])
    check_input(owner, "value", value.shape, value.dtype, expected_dtype=dtype, ndim=3)
    check_input(owner, "value", value.shape, value.dtype, shape_like=(batch, *value.shape[1:]))
    value_len = int(value.shape[1])
    if key is None:
        check_input(owner, "value (used as the key)", value.shape, value.dtype, last_dim=kdim)
    else:
        check_input(owner, "key", key.shape, key.dtype, expected_dtype=dtype, shape_like=(batch, value_len, kdim))
    for name, mask, length in (("query_mask", query_mask, query_len), ("value_mask", value_mask, value_len)):
        if mask is not None:
            check_input(owner, name, mask.shape, mask.dtype, expected_dtype="bool", shape_like=(batch, length))
