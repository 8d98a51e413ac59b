r"""Day 29: additive (Bahdanau) and multiplicative (Luong) attention, the seq2seq decoder's look-back.

A decoder state (the query, :math:`q_i`, ``(N, Tq, D)``) scores every encoder output (the key,
:math:`k_j`, ``(N, Tv, Dk)``); softmax turns a row of scores into weights; the context is the
weighted sum of the values :math:`x_j` (``(N, Tv, Dv)``, the key when no key is given):

.. math::  a_{ij} = \operatorname{softmax}_j(s_{ij}), \qquad c_i = \textstyle\sum_j a_{ij}\, x_j .

Scores. Additive (Bahdanau et al., 2015) with ``hidden_size`` :math:`H`, and Keras'
``AdditiveAttention`` when ``hidden_size`` is ``None`` (no projections, :math:`H = D`):

.. math::  s_{ij} = v^\top \tanh(W_q q_i + W_k k_j) \qquad\text{or}\qquad s_{ij} = v^\top \tanh(q_i + k_j),

with :math:`v = \mathbf 1` when ``use_scale=False``. Multiplicative (Luong et al., 2015), scaled by a
learned scalar :math:`\sigma` when ``use_scale`` (Keras' ``Attention``; :math:`\sigma = 1` otherwise):
``"dot"`` :math:`s_{ij} = \sigma\, q_i^\top k_j` and ``"general"`` :math:`s_{ij} = \sigma\, q_i^\top W k_j`.

Masks, as Keras' ``mask=[query_mask, value_mask]``: a ``False`` in ``value_mask`` *subtracts*
``MASK_PENALTY`` (1e9) from that column's scores, so its weight is :math:`e^{-10^9} = 0`; a row
whose keys are all masked is shifted as a whole and gets the unmasked softmax (torch's ``-inf``
fill would give NaN from a plain softmax, and ``F.scaled_dot_product_attention`` returns zeros).
A ``False`` in ``query_mask`` zeroes that context row; the weights are returned unmasked.

Autograd derives what the NumPy tree writes by hand: the softmax Jacobian-vector product
:math:`a \odot (\bar a - \langle \bar a, a\rangle)`, tanh's :math:`1 - h^2`, and the sum of the value's two
gradients when it is also the key.

Canonical names (there is no ``torch.nn`` module to copy): ``query_proj.weight`` ``(H, D)``,
``key_proj.weight`` ``(H, Dk)`` and ``v`` ``(H,)`` (Keras' ``scale``) for the additive form;
``key_proj.weight`` ``(D, Dk)`` (Luong's :math:`W`) and ``scale`` ``()`` for the multiplicative one.
Initialization: projections as torch's ``Linear`` (no bias), ``v`` from
:math:`U(-1/\sqrt H, 1/\sqrt H)`, ``scale`` 1 (Keras' ``ones``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ml100.checks import check_attention_inputs, check_bool, check_choice, check_int, check_rng

from ..foundations import init
from ..foundations.linear import Linear
from ..foundations.softmax_regression import softmax
from ..module import Module, torch_dtype

#: Subtracted from a masked key's scores: Keras' value (1e9 outside float16), not torch's ``-inf``.
MASK_PENALTY = 1.0e9
#: The score functions of ``LuongAttention``.
SCORE_MODES = ("dot", "general")


def attend(scores: torch.Tensor, value: torch.Tensor, query_mask=None, value_mask=None):
    """Masked softmax of ``scores (N, Tq, Tv)`` and the weighted sum of ``value (N, Tv, Dv)``:
    returns ``context (N, Tq, Dv)`` and ``weights (N, Tq, Tv)``."""
    if value_mask is not None:
        # Subtracted, not filled (Keras): a fully masked row keeps its softmax instead of NaN.
        scores = torch.where(value_mask[:, None, :], scores, scores - MASK_PENALTY)  # (N, Tq, Tv)
    weights = softmax(scores)  # (N, Tq, Tv)
    context = weights @ value  # (N, Tq, Dv)
    if query_mask is not None:
        context = torch.where(query_mask[:, :, None], context, 0.0)  # (N, Tq, Dv)
    return context, weights


class AdditiveAttention(Module):
    """Bahdanau's ``v . tanh(W_q q + W_k k)`` (``hidden_size`` set) or Keras' ``AdditiveAttention``
    (``hidden_size=None``); ``forward`` returns ``context, weights``."""

    def __init__(self, embed_dim: int, kdim: int | None = None, hidden_size: int | None = None, use_scale: bool = True,
                 dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("AdditiveAttention", rng)
        self.embed_dim = check_int("AdditiveAttention", "embed_dim", embed_dim, 1)
        self.kdim = self.embed_dim if kdim is None else check_int("AdditiveAttention", "kdim", kdim, 1)
        self.use_scale = check_bool("AdditiveAttention", "use_scale", use_scale)
        self.hidden_size = None if hidden_size is None else check_int("AdditiveAttention", "hidden_size", hidden_size, 1)
        if hidden_size is None:
            # Keras' form adds the query and the key as they are: their widths must agree.
            if self.kdim != self.embed_dim:
                raise ValueError(f"AdditiveAttention: without hidden_size, kdim ({self.kdim}) must equal embed_dim "
                                 f"({self.embed_dim})")
            width = self.embed_dim
        else:
            width = self.hidden_size
            self.query_proj = Linear(self.embed_dim, width, bias=False, dtype=dtype, rng=rng)
            self.key_proj = Linear(self.kdim, width, bias=False, dtype=dtype, rng=rng)
        self.v = nn.Parameter(init.uniform((width,), rng, 1.0 / math.sqrt(width), dtype)) if self.use_scale else None

    def forward(self, query: torch.Tensor, value: torch.Tensor, key: torch.Tensor | None = None,
                query_mask: torch.Tensor | None = None, value_mask: torch.Tensor | None = None):
        check_attention_inputs("AdditiveAttention", self.dtype, self.embed_dim, self.kdim, query, value, key,
                               query_mask, value_mask)
        keys = value if key is None else key  # (N, Tv, Dk)
        if self.hidden_size is not None:
            query, keys = self.query_proj(query), self.key_proj(keys)  # (N, Tq, H), (N, Tv, H)
        # Every query against every key: broadcast to (N, Tq, Tv, H).
        hidden = torch.tanh(query[:, :, None, :] + keys[:, None, :, :])  # (N, Tq, Tv, H)
        scores = (hidden * self.v).sum(dim=-1) if self.use_scale else hidden.sum(dim=-1)  # (N, Tq, Tv)
        return attend(scores, value, query_mask, value_mask)


class LuongAttention(Module):
    """Luong's ``"dot"`` ``q . k`` (Keras' ``Attention``) or ``"general"`` ``q . W k`` scores, times a
    learned scalar when ``use_scale``; ``forward`` returns ``context, weights``."""

    def __init__(self, embed_dim: int, kdim: int | None = None, score_mode: str = "dot", use_scale: bool = False,
                 dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("LuongAttention", rng)
        self.embed_dim = check_int("LuongAttention", "embed_dim", embed_dim, 1)
        self.kdim = self.embed_dim if kdim is None else check_int("LuongAttention", "kdim", kdim, 1)
        check_choice("LuongAttention", "score_mode", score_mode, SCORE_MODES)
        self.score_mode = score_mode
        self.use_scale = check_bool("LuongAttention", "use_scale", use_scale)
        if score_mode == "dot" and self.kdim != self.embed_dim:
            raise ValueError(f"LuongAttention: score_mode 'dot' needs kdim ({self.kdim}) equal to embed_dim ({self.embed_dim})")
        if score_mode == "general":
            # Luong's W maps a key into the query's space: (D, Dk), torch's Linear layout.
            self.key_proj = Linear(self.kdim, self.embed_dim, bias=False, dtype=dtype, rng=rng)
        self.scale = nn.Parameter(torch.ones((), dtype=torch_dtype(dtype))) if self.use_scale else None

    def forward(self, query: torch.Tensor, value: torch.Tensor, key: torch.Tensor | None = None,
                query_mask: torch.Tensor | None = None, value_mask: torch.Tensor | None = None):
        check_attention_inputs("LuongAttention", self.dtype, self.embed_dim, self.kdim, query, value, key,
                               query_mask, value_mask)
        keys = value if key is None else key  # (N, Tv, Dk)
        if self.score_mode == "general":
            keys = self.key_proj(keys)  # (N, Tv, D)
        products = query @ keys.transpose(-1, -2)  # (N, Tq, Tv)
        scores = products * self.scale if self.use_scale else products  # (N, Tq, Tv)
        return attend(scores, value, query_mask, value_mask)
