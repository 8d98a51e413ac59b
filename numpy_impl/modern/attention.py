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

Backward, with :math:`G = \partial L/\partial o` and :math:`\bar A` the cotangent of the returned
weights: :math:`\partial L/\partial v = \tilde A^\top G`, :math:`\partial L/\partial \tilde a = G V^\top
+ \bar A`, :math:`\partial L/\partial a = d \odot \partial L/\partial \tilde a`, softmax's row-wise
Jacobian-vector product

.. math::  \bar s_{ij} = a_{ij}\Big(\frac{\partial L}{\partial a_{ij}} - \sum_l a_{il}\frac{\partial L}{\partial a_{il}}\Big),

:math:`\partial L/\partial m = \bar S` (summed over the axes the mask was broadcast along),
:math:`\partial L/\partial Q = \sigma\, \bar S K`, :math:`\partial L/\partial K = \sigma\, \bar S^\top Q`
(summed over broadcast batch axes).
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import check_sdpa_inputs

from ..module import Module


def additive_mask(attn_mask, is_causal: bool, query_len: int, key_len: int, dtype) -> np.ndarray | None:
    """The mask as a float to add to the scores: a boolean one (or the causal ``tril``) becomes 0
    where ``True`` and ``-inf`` where ``False``; a float one is returned as it is."""
    if is_causal:
        attn_mask = np.tril(np.ones((query_len, key_len), dtype=bool))  # (L, S)
    if attn_mask is None or attn_mask.dtype != bool:
        return attn_mask
    return np.where(attn_mask, 0.0, -np.inf).astype(dtype)  # (..., L, S)


def safe_softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, zero for a row whose scores are all ``-inf`` (torch's ``_safe_softmax``)."""
    if scores.shape[-1] == 0:
        # No keys: nothing to weigh (the output is an empty sum, 0), and a maximum over nothing is undefined.
        return scores
    fully_masked = np.all(scores == -np.inf, axis=-1, keepdims=True)  # (..., L, 1)
    # The row maximum steadies the exponent; a fully masked row is shifted by 0, so its exps are 0, not NaN.
    shift = np.where(fully_masked, 0.0, scores.max(axis=-1, keepdims=True))  # (..., L, 1)
    exps = np.exp(scores - shift)  # (..., L, S)
    # A fully masked row divides its zeros by 1: zero weights, never 0/0.
    return exps / (exps.sum(axis=-1, keepdims=True) + fully_masked)  # (..., L, S)


def drop(weights: np.ndarray, dropout_mask: np.ndarray) -> np.ndarray:
    """Inverted dropout with the mask passed in: a kept weight times its ``1/(1-p)``, a dropped one
    set to 0 (even a NaN: torch fills, it does not multiply). The same map takes a gradient back."""
    return np.where(dropout_mask == 0, 0.0, weights * dropout_mask)  # (..., L, S)


def _sum_to_shape(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """The gradient of an array broadcast from ``shape`` to ``grad.shape``: sum the broadcast axes."""
    leading = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(leading)))
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1 and grad.shape[axis] != 1)
    return grad.sum(axis=stretched, keepdims=True).reshape(shape)


class ScaledDotProductAttention(Module):
    """``F.scaled_dot_product_attention`` as a parameter-free module; ``forward`` returns
    ``output (..., L, Ev), weights (..., L, S)``; ``backward(grad_output, grad_weights=None)``
    returns ``grad_query, grad_key, grad_value, grad_attn_mask`` (the last ``None`` unless the
    mask is a float one)."""

    def __init__(self, dtype="float32"):
        super().__init__(dtype)

    def forward(self, query: np.ndarray, key: np.ndarray, value: np.ndarray, attn_mask: np.ndarray | None = None,
                dropout_mask: np.ndarray | None = None, is_causal: bool = False, scale: float | None = None):
        scale = check_sdpa_inputs("ScaledDotProductAttention", self.dtype, query, key, value, attn_mask, dropout_mask,
                                  is_causal, scale)
        # torch's math backend scales both factors by sqrt(|scale|); the query carries the sign.
        key_factor = math.sqrt(abs(scale))
        query_factor = -key_factor if scale < 0 else key_factor
        scaled_query, scaled_key = query * query_factor, key * key_factor  # (..., L, E), (..., S, E)
        scores = scaled_query @ scaled_key.swapaxes(-1, -2)  # (..., L, S)
        mask = additive_mask(attn_mask, is_causal, query.shape[-2], key.shape[-2], self.dtype)
        if mask is not None:
            scores = scores + mask  # (..., L, S)
        weights = safe_softmax(scores)  # (..., L, S)
        dropped = weights if dropout_mask is None else drop(weights, dropout_mask)  # (..., L, S)
        output = dropped @ value  # (..., L, Ev)
        float_mask_shape = None if attn_mask is None or attn_mask.dtype == bool else attn_mask.shape
        self.save_for_backward(scaled_query, scaled_key, value, weights, dropped, dropout_mask, float_mask_shape,
                               query_factor, key_factor)
        return output, dropped

    def backward(self, grad_output: np.ndarray | None, grad_weights: np.ndarray | None = None):
        (scaled_query, scaled_key, value, weights, dropped, dropout_mask, float_mask_shape,
         query_factor, key_factor) = self.saved_for_backward()
        grad_dropped = 0.0 if grad_weights is None else grad_weights  # (..., L, S)
        if grad_output is not None:
            grad_dropped = grad_dropped + grad_output @ value.swapaxes(-1, -2)  # (..., L, S)
            grad_value = dropped.swapaxes(-1, -2) @ grad_output  # (..., S, Ev)
        else:
            grad_value = np.zeros(dropped.shape[:-2] + value.shape[-2:], dtype=value.dtype)  # (..., S, Ev)
        grad_weights_in = grad_dropped if dropout_mask is None else drop(grad_dropped, dropout_mask)  # (..., L, S)
        # Softmax's Jacobian-vector product, row by row: a * (g - <g, a>); a fully masked row has a = 0.
        grad_scores = weights * (grad_weights_in - (grad_weights_in * weights).sum(axis=-1, keepdims=True))  # (..., L, S)
        grad_query = (grad_scores @ scaled_key) * query_factor  # (..., L, E)
        grad_key = (grad_scores.swapaxes(-1, -2) @ scaled_query) * key_factor  # (..., S, E)
        grad_mask = None if float_mask_shape is None else _sum_to_shape(grad_scores, float_mask_shape)  # mask's shape
        return (_sum_to_shape(grad_query, scaled_query.shape), _sum_to_shape(grad_key, scaled_key.shape),
                _sum_to_shape(grad_value, value.shape), grad_mask)
