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

import torch

from ml100.checks import check_sdpa_inputs

from ..module import Module


def additive_mask(attn_mask, is_causal: bool, query_len: int, key_len: int, dtype) -> torch.Tensor | None:
    """The mask as a float to add to the scores: a boolean one (or the causal ``tril``) becomes 0
    where ``True`` and ``-inf`` where ``False``; a float one is returned as it is."""
    if is_causal:
        attn_mask = torch.ones(query_len, key_len, dtype=torch.bool).tril()  # (L, S)
    if attn_mask is None or attn_mask.dtype != torch.bool:
        return attn_mask
    return torch.zeros(attn_mask.shape, dtype=dtype).masked_fill(~attn_mask, -math.inf)  # (..., L, S)


def safe_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis, zero for a row whose scores are all ``-inf`` (torch's ``_safe_softmax``)."""
    if scores.shape[-1] == 0:
        # No keys: nothing to weigh (the output is an empty sum, 0), and a maximum over nothing is undefined.
        return scores
    fully_masked = torch.all(scores == -math.inf, dim=-1, keepdim=True)  # (..., L, 1)
    # The row maximum steadies the exponent (a constant: no gradient); a fully masked row is shifted
    # by 0, so its exps are 0, not NaN, and autograd keeps its path (an inf cotangent gives NaN, as torch).
    shift = torch.where(fully_masked, 0.0, scores.amax(dim=-1, keepdim=True)).detach()  # (..., L, 1)
    exps = torch.exp(scores - shift)  # (..., L, S)
    # A fully masked row divides its zeros by 1: zero weights, never 0/0.
    return exps / (exps.sum(dim=-1, keepdim=True) + fully_masked)  # (..., L, S)


def drop(weights: torch.Tensor, dropout_mask: torch.Tensor) -> torch.Tensor:
    """Inverted dropout with the mask passed in: a kept weight times its ``1/(1-p)``, a dropped one
    set to 0 (even a NaN: torch fills, it does not multiply)."""
    return torch.where(dropout_mask == 0, 0.0, weights * dropout_mask)  # (..., L, S)


class ScaledDotProductAttention(Module):
    """``F.scaled_dot_product_attention`` as a parameter-free module; ``forward`` returns
    ``output (..., L, Ev), weights (..., L, S)``."""

    def __init__(self, dtype="float32"):
        super().__init__(dtype)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
                dropout_mask: torch.Tensor | None = None, is_causal: bool = False, scale: float | None = None):
        scale = check_sdpa_inputs("ScaledDotProductAttention", self.dtype, query, key, value, attn_mask, dropout_mask,
                                  is_causal, scale)
        # torch's math backend scales both factors by sqrt(|scale|); the query carries the sign.
        key_factor = math.sqrt(abs(scale))
        query_factor = -key_factor if scale < 0 else key_factor
        scaled_query, scaled_key = query * query_factor, key * key_factor  # (..., L, E), (..., S, E)
        scores = scaled_query @ scaled_key.transpose(-1, -2)  # (..., L, S)
        mask = additive_mask(attn_mask, is_causal, query.shape[-2], key.shape[-2], query.dtype)
        if mask is not None:
            scores = scores + mask  # (..., L, S)
        weights = safe_softmax(scores)  # (..., L, S)
        dropped = weights if dropout_mask is None else drop(weights, dropout_mask)  # (..., L, S)
        output = dropped @ value  # (..., L, Ev)
        return output, dropped
