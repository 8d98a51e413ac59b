r"""Day 41: scaled dot-product attention, ``F.scaled_dot_product_attention`` with its masks.

Every query row :math:`q_i` of ``query (..., L, E)`` scores every key :math:`k_j` of
``key (..., S, E)``; softmax turns a row of scores into weights over the values ``(..., S, Ev)``:

.. math::  s_{ij} = \sigma\, q_i^\top k_j + m_{ij}, \qquad a_{ij} = \operatorname{softmax}_j(s_{ij}),
           \qquad \tilde a_{ij} = a_{ij}\, d_{ij}, \qquad o_i = \textstyle\sum_j \tilde a_{ij}\, v_j ,

with :math:`\sigma` = ``scale`` (default :math:`1/\sqrt E`). As torch's math backend, the query and
the key are each multiplied by :math:`\sqrt{|\sigma|}` (the query carries the sign) before their
product, so large vectors overflow later. Masks, torch's meaning:

- ``attn_mask`` boolean: ``True`` = the key takes part; a ``False`` becomes :math:`m_{ij} = -\infty`
  (added, as torch adds it); a float ``attn_mask`` is :math:`m` itself (additive, differentiable);
- ``is_causal``: query :math:`i` sees keys :math:`j \le i`, top-left aligned (``tril`` of an
  ``(L, S)`` block of ones, as torch), and refuses an ``attn_mask`` beside it;
- ``dropout_mask`` :math:`d`: inverted dropout passed in (0, or :math:`1/(1-p)` to keep), applied
  to the weights; the returned ``weights`` are :math:`\tilde a`, the ones that multiply the
  values (what ``nn.MultiheadAttention`` returns with ``need_weights``).

A **fully masked row** (every score :math:`-\infty`) gets zero weights, a zero output and zero
gradients, as torch 2.14's ``_safe_softmax`` does on CPU (a plain softmax would give NaN).

Autograd derives what the NumPy tree writes by hand: the softmax Jacobian-vector product
:math:`a \odot (\bar a - \langle \bar a, a\rangle)`, the dropout mask's factor, and the sums over
broadcast batch and mask axes. The safe softmax is written so that autograd's derivative of it is
the same row-wise product with :math:`a = 0` on a fully masked row (zero, or NaN for an inf cotangent,
as torch's ``_safe_softmax`` backward): the row is shifted by 0 and divided by 1, never selected.
"""
from __future__ import annotations

import math

import tensorflow as tf

from ml100.checks import check_sdpa_inputs

from ..module import Module


def additive_mask(attn_mask, is_causal: bool, query_len: int, key_len: int, dtype) -> tf.Tensor | None:
    """The mask as a float to add to the scores: a boolean one (or the causal ``tril``) becomes 0
    where ``True`` and ``-inf`` where ``False``; a float one is returned as it is."""
    if is_causal:
        attn_mask = tf.linalg.band_part(tf.ones((query_len, key_len), dtype=tf.bool), -1, 0)  # (L, S)
    if attn_mask is None or attn_mask.dtype != tf.bool:
        return attn_mask
    return tf.where(attn_mask, tf.constant(0.0, dtype), tf.constant(-math.inf, dtype))  # (..., L, S)


def safe_softmax(scores: tf.Tensor) -> tf.Tensor:
    """Softmax over the last axis, zero for a row whose scores are all ``-inf`` (torch's ``_safe_softmax``)."""
    if scores.shape[-1] == 0:
        # No keys: nothing to weigh (the output is an empty sum, 0), and a maximum over nothing is undefined.
        return scores
    fully_masked = tf.reduce_all(scores == -math.inf, axis=-1, keepdims=True)  # (..., L, 1)
    # The row maximum steadies the exponent (a constant: no gradient); a fully masked row is shifted
    # by 0, so its exps are 0, not NaN, and autograd keeps its path (an inf cotangent gives NaN, as torch).
    row_max = tf.reduce_max(scores, axis=-1, keepdims=True)  # (..., L, 1)
    shift = tf.stop_gradient(tf.where(fully_masked, tf.zeros_like(row_max), row_max))  # (..., L, 1)
    exps = tf.exp(scores - shift)  # (..., L, S)
    # A fully masked row divides its zeros by 1: zero weights, never 0/0.
    return exps / (tf.reduce_sum(exps, axis=-1, keepdims=True) + tf.cast(fully_masked, scores.dtype))  # (..., L, S)


def drop(weights: tf.Tensor, dropout_mask: tf.Tensor) -> tf.Tensor:
    """Inverted dropout with the mask passed in: a kept weight times its ``1/(1-p)``, a dropped one
    set to 0 (even a NaN: torch fills, it does not multiply)."""
    return tf.where(dropout_mask == 0, tf.zeros_like(weights), weights * dropout_mask)  # (..., L, S)


class ScaledDotProductAttention(Module):
    """``F.scaled_dot_product_attention`` as a parameter-free module; ``forward`` returns
    ``output (..., L, Ev), weights (..., L, S)``."""

    def __init__(self, dtype="float32"):
        super().__init__(dtype)

    def forward(self, query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, attn_mask: tf.Tensor | None = None,
                dropout_mask: tf.Tensor | None = None, is_causal: bool = False, scale: float | None = None):
        scale = check_sdpa_inputs("ScaledDotProductAttention", self.dtype, query, key, value, attn_mask, dropout_mask,
                                  is_causal, scale)
        # torch's math backend scales both factors by sqrt(|scale|); the query carries the sign.
        key_factor = math.sqrt(abs(scale))
        query_factor = -key_factor if scale < 0 else key_factor
        scaled_query, scaled_key = query * query_factor, key * key_factor  # (..., L, E), (..., S, E)
        scores = tf.matmul(scaled_query, scaled_key, transpose_b=True)  # (..., L, S)
        mask = additive_mask(attn_mask, is_causal, query.shape[-2], key.shape[-2], query.dtype)
        if mask is not None:
            scores = scores + mask  # (..., L, S)
        weights = safe_softmax(scores)  # (..., L, S)
        dropped = weights if dropout_mask is None else drop(weights, dropout_mask)  # (..., L, S)
        output = tf.matmul(dropped, value)  # (..., L, Ev)
        return output, dropped
