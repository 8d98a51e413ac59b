"""Native layouts, once: the canonical layout is PyTorch's (channels first: NCHW, NCL); the TF tree
is channels-last (NHWC, NLC). Tests build canonical NumPy arrays and convert at the tree's edge
with these helpers instead of spelling permutations out.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import torch

#: Axis permutation NCHW -> NHWC (canonical -> the TF tree's images) and back.
NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


def channels_last(ndim: int) -> tuple[int, ...]:
    """The permutation NC* -> N*C for an ``ndim``-dimensional array, e.g. ``(0, 2, 3, 1)`` for 4-D."""
    return (0, *range(2, ndim), 1)


def channels_first(ndim: int) -> tuple[int, ...]:
    """The permutation N*C -> NC*, the inverse of :func:`channels_last`."""
    return (0, ndim - 1, *range(1, ndim - 1))


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    """A canonical NC* NumPy array in channels-last order (contiguous, as TF copies it anyway)."""
    return np.ascontiguousarray(np.transpose(x, channels_last(np.ndim(x))))


def nhwc_to_nchw(x) -> np.ndarray:
    """A channels-last array (NumPy, or a TF tensor) back in canonical NC* order, as NumPy."""
    x = np.asarray(x)
    return np.ascontiguousarray(np.transpose(x, channels_first(x.ndim)))


def to_tree(tree: str, array):
    """A NumPy array as the tree's own tensor type, in the same layout (no permutation); a copy,
    so that nothing a tree does in place reaches the caller's array."""
    if tree == "torch":
        return torch.from_numpy(np.array(array))
    if tree == "tf":
        return tf.constant(array)
    return np.array(array)


def to_native(tree: str, array):
    """A canonical (channels-first) array as the tree's forward takes it: in the TF tree, a batch
    with spatial axes (``ndim >= 3``) goes channels-last; ``(N, C)`` features stay as they are."""
    if tree == "tf" and np.ndim(array) >= 3:
        array = nchw_to_nhwc(array)
    return to_tree(tree, array)


def to_canonical(tree: str, tensor) -> np.ndarray:
    """A tree's output (its own tensor type and layout) as a canonical NumPy array."""
    array = tensor.detach().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    return nhwc_to_nchw(array) if tree == "tf" and array.ndim >= 3 else array
