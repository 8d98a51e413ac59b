r"""Day 42: multi-head attention with a packed QKV projection, as ``torch.nn.MultiheadAttention``.

One matrix ``in_proj_weight`` :math:`W = [W_q; W_k; W_v]` ``(3E, E)`` (and ``in_proj_bias``
:math:`b = [b_q; b_k; b_v]`) projects the query, key and value; each projection is split into
:math:`H` heads of width :math:`d = E/H`; every head attends on its own (day 41's
``ScaledDotProductAttention``, the heads a batch axis); the heads are joined again and
``out_proj`` mixes them:

.. math::  Q = x_q W_q^\top + b_q,\quad K = x_k W_k^\top + b_k,\quad V = x_v W_v^\top + b_v
           \quad\text{(each (B, T, E) viewed as (B, H, T, d))}

.. math::  S_h = \frac{Q_h}{\sqrt d} K_h^\top + M, \qquad A_h = \operatorname{softmax}(S_h),
           \qquad C_h = (A_h \odot D / (1 - p))\, V_h, \qquad y = [C_1 \dots C_H] W_o^\top + b_o

:math:`M` is the additive mask: a boolean ``attn_mask`` (``(T, S)`` or ``(B·H, T, S)``) or
``key_padding_mask`` ``(B, S)`` puts :math:`-\infty` where it is ``True`` (True = *ignore*, torch's
meaning for this module); a float mask is added as it is. A row with every key masked gets zero
weights (day 41's safe softmax), as ``nn.MultiheadAttention(need_weights=False)``; torch's
``need_weights=True`` path gives NaN there. :math:`D` is the dropout mask ``(B, H, T, S)`` (True =
keep), passed in, used only in training with ``dropout > 0``. The returned weights are the dropped
:math:`A \odot D/(1-p)` averaged over the heads (``average_attn_weights``) or per head
``(B, H, T, S)``, as torch returns them; ``None`` when ``need_weights=False``.

Backward (autograd here; the NumPy tree writes it out), with :math:`G = \partial L/\partial C_h`
(from ``out_proj``'s backward, split into heads) and :math:`\bar P` the cotangent of the dropped
weights (:math:`G V_h^\top` plus the returned weights' cotangent, divided by :math:`H` when
averaged):

.. math::  \bar V_h = \tilde A_h^\top G, \qquad \bar A_h = \bar P \odot D/(1-p), \qquad
           \bar S = A \odot (\bar A - \textstyle\sum_j A_{\cdot j} \bar A_{\cdot j}),

.. math::  \bar Q_h = \bar S K_h / \sqrt d, \qquad \bar K_h = \bar S^\top Q_h / \sqrt d, \qquad
           \bar W_q = \bar Q^\top x_q,\; \bar b_q = \textstyle\sum \bar Q,\; \bar x_q = \bar Q W_q

(the attention's part is day 41's backward; likewise for :math:`k`, :math:`v`; the three blocks of
:math:`\bar W` are stacked as :math:`W` is). Self-attention passes one array as query, key and
value: ``backward`` returns three gradients and the caller adds them.

Initialization, torch's ``_reset_parameters``: Xavier-uniform ``in_proj_weight`` over the whole
``(3E, E)`` matrix, zero ``in_proj_bias`` and ``out_proj.bias``, ``out_proj.weight`` as ``Linear``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ml100.checks import check_bool, check_divisible, check_fraction, check_int, check_multihead_inputs, check_rng

from ..foundations import init
from ..foundations.linear import Linear
from ..module import Module, torch_dtype
from .attention import ScaledDotProductAttention


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, T, E)`` -> ``(B, H, T, d)``: feature ``h*d + j`` becomes head ``h``'s feature ``j``."""
    batch, steps, width = x.shape
    return x.reshape(batch, steps, num_heads, width // num_heads).transpose(1, 2)  # (B, H, T, d)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, d)`` -> ``(B, T, E)``, the inverse of :func:`split_heads`."""
    batch, heads, steps, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, steps, heads * head_dim)  # (B, T, E)


def additive_mask(mask, dtype) -> torch.Tensor | None:
    """A boolean mask (True = ignore) as ``0``/``-inf``; a float mask as it is; ``None`` stays ``None``."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=torch_dtype(dtype)).masked_fill(mask, -torch.inf)


def merged_mask(key_padding_mask, attn_mask, num_heads: int, dtype) -> torch.Tensor | None:
    """Both masks as one additive mask broadcastable to the scores ``(B, H, T, S)``."""
    padding, attention = additive_mask(key_padding_mask, dtype), additive_mask(attn_mask, dtype)
    if attention is not None:
        # (T, S) is shared by every sample and head; (B*H, T, S) is torch's batch-major packing.
        attention = attention.reshape(-1, num_heads, *attention.shape[-2:]) if attention.ndim == 3 \
            else attention[None, None]  # (B or 1, H or 1, T, S)
    if padding is None:
        return attention
    padding = padding[:, None, None, :]  # (B, 1, 1, S)
    return padding if attention is None else attention + padding


def dropout_scale(p: float) -> float:
    """What a kept weight is multiplied by: ``1/(1-p)``, and 0 at ``p = 1`` (nothing is kept)."""
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


class MultiheadAttention(Module):
    """``nn.MultiheadAttention`` (same width for query, key and value): ``forward`` returns
    ``attn_output, attn_weights``; canonical names ``in_proj_weight`` ``(3E, E)``, ``in_proj_bias``,
    ``out_proj.weight``, ``out_proj.bias``."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, batch_first: bool = False,
                 dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("MultiheadAttention", rng)
        self.embed_dim = check_int("MultiheadAttention", "embed_dim", embed_dim, 1)
        self.num_heads = check_int("MultiheadAttention", "num_heads", num_heads, 1)
        check_divisible("MultiheadAttention", "embed_dim", self.embed_dim, "num_heads", self.num_heads)
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = check_fraction("MultiheadAttention", "dropout", dropout)
        self.batch_first = check_bool("MultiheadAttention", "batch_first", batch_first)
        bias = check_bool("MultiheadAttention", "bias", bias)
        # Xavier over the packed (3E, E) matrix, as torch: fan_in E, fan_out 3E.
        self.in_proj_weight = nn.Parameter(init.xavier_uniform((3 * self.embed_dim, self.embed_dim), rng, dtype=dtype))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * self.embed_dim, dtype=torch_dtype(dtype))) if bias else None
        self.out_proj = Linear(self.embed_dim, self.embed_dim, bias=bias, dtype=dtype, rng=rng)
        if bias:
            # torch's _reset_parameters zeroes the output bias that Linear drew.
            with torch.no_grad():
                self.out_proj.bias.zero_()
        self.attention = ScaledDotProductAttention(dtype)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True, is_causal: bool = False,
                dropout_mask: torch.Tensor | None = None):
        dropout_on = self.training and self.dropout > 0.0
        check_multihead_inputs("MultiheadAttention", self.dtype, self.embed_dim, self.num_heads, self.batch_first, query,
                               key, value, key_padding_mask, attn_mask, is_causal, dropout_mask, dropout_on)
        need_weights = check_bool("MultiheadAttention", "need_weights", need_weights)
        average_attn_weights = check_bool("MultiheadAttention", "average_attn_weights", average_attn_weights)
        if not self.batch_first:
            # Batch first inside: (T, B, E) -> (B, T, E).
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        weights_qkv = self.in_proj_weight.chunk(3)  # 3 x (E, E)
        biases_qkv = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (0.0, 0.0, 0.0)
        q, k, v = (split_heads(x @ w.T + b, self.num_heads)
                   for x, w, b in zip((query, key, value), weights_qkv, biases_qkv))  # 3 x (B, H, ., d)
        mask = merged_mask(key_padding_mask, attn_mask, self.num_heads, self.dtype)
        # Kept weights scaled by 1/(1-p) (p = 1 keeps nothing), as torch's dropout.
        keep = dropout_mask.to(q.dtype) * dropout_scale(self.dropout) if dropout_on else None  # (B, H, T, S)
        # Day 41's attention, every head at once: the heads are a batch axis.
        context, dropped = self.attention(q, k, v, attn_mask=mask, dropout_mask=keep)  # (B, H, T, d), (B, H, T, S)
        output = self.out_proj(merge_heads(context))  # (B, T, E)
        if not self.batch_first:
            output = output.transpose(0, 1)  # (T, B, E)
        if not need_weights:
            return output, None
        return output, dropped.mean(dim=1) if average_attn_weights else dropped
