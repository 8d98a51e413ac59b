"""The canonical state dict and its file.

A canonical state is a flat ``dict[str, numpy.ndarray]`` whose names and layouts are those of
the PyTorch reference's own ``state_dict`` (``layers.0.weight`` with shape ``(out, in)``). All
three trees export and import exactly this, so one file of weights serves all of them. Files
are ``.safetensors``: a JSON header and raw little-endian buffers, nothing executable (no pickle).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from safetensors.numpy import load_file, save_file


class StateDictError(ValueError):
    """A state dict does not fit a model: every missing, unexpected and mismatched key is named."""


def save_weights(path: str | os.PathLike, state: Mapping[str, np.ndarray]) -> None:
    """Write a canonical state to ``path`` as safetensors (contiguous copies, names sorted)."""
    arrays = {}
    for name in sorted(state):
        value = state[name]
        if not isinstance(value, np.ndarray):
            raise TypeError(f"save_weights: {name!r} must be a numpy.ndarray, got {type(value).__name__}")
        # reshape: np.ascontiguousarray makes 0-d arrays 1-d (a scalar buffer such as num_batches_tracked).
        arrays[name] = np.ascontiguousarray(value).reshape(value.shape)
    save_file(arrays, os.fspath(path))


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a canonical state from a safetensors file."""
    return dict(load_file(os.fspath(path)))


def check_state_dict(owner: str, expected: Mapping[str, tuple[tuple[int, ...], str]], state: Mapping[str, np.ndarray]) -> None:
    """Strict check of ``state`` against ``expected`` (name -> (shape, dtype name)).

    Raises one :class:`StateDictError` listing all missing keys, unexpected keys, wrong shapes
    and wrong dtypes, so a user fixes a checkpoint in one pass instead of one error at a time.
    """
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    for name in sorted(set(expected) & set(state)):
        want_shape, want_dtype = expected[name]
        value = np.asarray(state[name])
        if tuple(value.shape) != tuple(want_shape):
            problems.append(f"{name}: expected shape {tuple(want_shape)}, got {tuple(value.shape)}")
        elif value.dtype.name != want_dtype:
            problems.append(f"{name}: expected dtype {want_dtype}, got {value.dtype.name}")
    if problems:
        raise StateDictError(f"{owner}.load_canonical_state_dict: " + "; ".join(problems))
