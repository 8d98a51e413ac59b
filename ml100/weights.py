"""The canonical state dict and its file.

A canonical state is a flat ``dict[str, numpy.ndarray]`` whose names and layouts are those of
the PyTorch reference's own ``state_dict`` (``layers.0.weight`` with shape ``(out, in)``). All
three trees export and import exactly this, so one file of weights serves all of them. Files
are ``.safetensors``: a JSON header and raw little-endian buffers, nothing executable (no pickle).
"""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

#: First bytes of files people mistake for weights files -> what the file is.
KNOWN_FORMATS = {
    b"PK\x03\x04": "a zip archive (torch.save's .pt and NumPy's .npz files are zip archives)",
    b"\x93NUMPY": "a NumPy .npy file",
    b"\x89HDF": "an HDF5 file (Keras .h5 weights)",
    b"\x80": "a pickle (torch.save's legacy format, pickle.dump)",
}


class StateDictError(ValueError):
    """A state dict does not fit a model: every missing, unexpected and mismatched key is named."""


class NotSafetensorsError(ValueError):
    """A weights file that is not safetensors: the message names the path and what it holds instead."""


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
    """Read a canonical state from a safetensors file (checked first by :func:`check_safetensors_file`)."""
    path = check_safetensors_file(path)
    try:
        return dict(load_file(os.fspath(path)))
    except SafetensorError as error:
        # The header was sound but the buffers it describes are not (a truncated copy, a bad offset).
        raise NotSafetensorsError(f"{path}: damaged safetensors file: {error}") from error


def check_safetensors_file(path: str | os.PathLike) -> Path:
    """Return ``path`` if it exists and starts as a safetensors file, else raise an error naming it.

    A safetensors file is an 8-byte little-endian length ``n``, then ``n`` bytes of JSON object
    (the header), then the buffers. Raises ``FileNotFoundError`` or ``IsADirectoryError`` for a
    wrong path and :class:`NotSafetensorsError` (saying what the file looks like) for other content.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"weights file {path} is a directory, not a safetensors file")
    size = path.stat().st_size
    with path.open("rb") as file:
        start = file.read(8)
        header_len = struct.unpack("<Q", start)[0] if len(start) == 8 else 0
        # Only read a header that fits in the file: random bytes give absurd lengths.
        header = file.read(header_len) if 0 < header_len <= size - 8 else b""
    if not _is_json_object(header):
        raise NotSafetensorsError(f"{path} is not a safetensors file: it looks like {_describe(start, size)}; "
                                  "load it with the library that wrote it and save the arrays with ml100.weights.save_weights")
    return path


def _is_json_object(header: bytes) -> bool:
    try:
        return isinstance(json.loads(header), dict)
    except ValueError:
        return False


def _describe(start: bytes, size: int) -> str:
    """A guess at a non-safetensors file's format, from its first bytes."""
    if size == 0:
        return "an empty file"
    for magic, description in KNOWN_FORMATS.items():
        if start.startswith(magic):
            return description
    return f"an unknown format ({size} bytes starting {start[:8].hex(' ')})"


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
