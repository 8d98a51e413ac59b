r"""Day 21: the embedding layer — a lookup table of learned vectors, one row per token id.

.. math::  y_{p} = W_{i_p,:}, \qquad W \in \mathbb{R}^{V\times D}, \quad i_p \in \{0,\dots,V-1\}

for every position :math:`p` of an integer tensor of ids of any shape ``(*)``; the output is
``(*, D)``. The lookup is ``tf.gather``, and the tape derives the scatter-add the NumPy tree
writes by hand (:math:`\partial L/\partial W_{k,:} = \sum_{p:\,i_p=k} s_k G_{p,:}`). TF hands that
gradient back as ``tf.IndexedSlices`` (one row per position); the table is read through
:func:`_dense_gradient`, so the gradient is the dense ``(V, D)`` tensor torch's ``sparse=False``
gives and the canonical gradient needs. The padding row's positions are cut from the tape
(:math:`s_k = 0`) and ``scale_grad_by_freq`` scales each position's cotangent by :math:`s_k = 1/n_k`.

The table is stored as Keras' ``Embedding`` stores its ``embeddings``, ``(V, D)``: the canonical
layout already. As ``torch.nn.Embedding``: initialization :math:`N(0, 1)` with the ``padding_idx``
row zeroed; ``padding_idx`` may be negative; ``max_norm`` renormalizes, **in place in the
variable**, every looked-up row whose ``norm_type``-norm exceeds it, to
``row * max_norm / (norm + 1e-7)``, outside the tape; ``sparse=True`` is refused.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_bool, check_ids, check_input, check_int, check_padding_idx, check_positive, check_rng

from ..foundations import init
from ..module import Module

#: Added to the norm before dividing, as torch's ``embedding_renorm_`` does.
RENORM_EPS = 1e-7


class Embedding(Module):
    """``weight[ids]``: ids ``(*)`` int64 -> ``(*, embedding_dim)``; canonical name ``weight`` ``(V, D)``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("Embedding", rng)
        self.num_embeddings = check_int("Embedding", "num_embeddings", num_embeddings, 0)
        self.embedding_dim = check_int("Embedding", "embedding_dim", embedding_dim, 0)
        self.padding_idx = check_padding_idx("Embedding", padding_idx, num_embeddings)
        self.max_norm = None if max_norm is None else check_positive("Embedding", "max_norm", max_norm)
        self.norm_type = check_positive("Embedding", "norm_type", norm_type)
        self.scale_grad_by_freq = check_bool("Embedding", "scale_grad_by_freq", scale_grad_by_freq)
        if check_bool("Embedding", "sparse", sparse):
            raise ValueError("Embedding: sparse=True (a sparse gradient) is not supported; every tree returns the dense "
                             "(num_embeddings, embedding_dim) gradient, as torch does with sparse=False")
        weight = init.normal((num_embeddings, embedding_dim), rng, 1.0, dtype)  # (V, D)
        # torch zeroes the padding row at initialization (a load may overwrite it).
        if self.padding_idx is not None:
            is_padding_row = (tf.range(num_embeddings) == self.padding_idx)[:, None]  # (V, 1)
            weight = tf.where(is_padding_row, tf.zeros_like(weight), weight)  # (V, D)
        # Keras' attribute name, the canonical registered name.
        self.embeddings = self.add_param("weight", weight)  # (V, D)

    def forward(self, ids: tf.Tensor) -> tf.Tensor:
        check_input("Embedding", "ids", ids.shape, ids.dtype, expected_dtype="int64")
        # The values are known in eager calls only; traced, CPU tf.gather still refuses a bad id.
        if tf.executing_eagerly():
            check_ids("Embedding", "ids", ids, self.num_embeddings)
        if self.max_norm is not None:
            self.renorm(ids)
        y = tf.gather(_dense_gradient(self.embeddings), ids)  # (*, D)
        # The padding row gets no gradient: its positions are cut from the tape (values unchanged).
        if self.padding_idx is not None:
            y = tf.where((ids == self.padding_idx)[..., None], tf.stop_gradient(y), y)  # (*, D)
        if self.scale_grad_by_freq:
            y = _scale_gradient(y, _inverse_counts(ids))  # (*, D)
        return y

    def renorm(self, ids: tf.Tensor) -> None:
        """``max_norm``: scale each looked-up row whose norm exceeds it down to ``max_norm``, in place."""
        rows, _ = tf.unique(tf.reshape(ids, [-1]))  # (U,) each row once, however often it is looked up
        norms = tf.norm(tf.gather(self.embeddings, rows), ord=self.norm_type, axis=1)  # (U,)
        # Rows already inside the ball are left bit-for-bit untouched (a NaN norm is not > max_norm).
        over = norms > self.max_norm
        scale = (self.max_norm / (norms[over] + RENORM_EPS))[:, None]  # (O, 1)
        rows_over = rows[over][:, None]  # (O, 1) scatter indices
        self.embeddings.scatter_nd_update(rows_over, tf.gather_nd(self.embeddings, rows_over) * scale)


def _inverse_counts(ids: tf.Tensor) -> tf.Tensor:
    """``1 / n`` at each position, ``n`` the number of positions holding the same id in ``ids``."""
    _, inverse, counts = tf.unique_with_counts(tf.reshape(ids, [-1]))  # inverse (P,), counts (U,)
    return tf.reshape(1.0 / tf.cast(tf.gather(counts, inverse), tf.float64), tf.shape(ids))  # (*)


@tf.custom_gradient
def _scale_gradient(y: tf.Tensor, scale: tf.Tensor):
    """``y`` unchanged forward; backward multiplies each position's cotangent by ``scale`` ``(*)``."""
    def backward(grad):
        return grad * tf.cast(scale, grad.dtype)[..., None], None
    return tf.identity(y), backward


@tf.custom_gradient
def _dense_gradient(table: tf.Tensor):
    """``table`` unchanged forward; backward turns the ``IndexedSlices`` of a gather into a dense tensor."""
    def backward(grad):
        return tf.convert_to_tensor(grad)
    return tf.identity(table), backward
