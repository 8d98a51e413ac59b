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

Backward, with :math:`G = \partial L/\partial C_h` (from ``out_proj``'s backward, split into
heads) and :math:`\bar P` the cotangent of the dropped weights (:math:`G V_h^\top` plus the
returned weights' cotangent, divided by :math:`H` when averaged):

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

from ml100.checks import check_bool, check_divisible, check_fraction, check_int, check_multihead_inputs, check_rng

from ..foundations import init
from ..foundations.linear import Linear
from ..module import Module
from .attention import ScaledDotProductAttention


def split_heads(x: np.ndarray, num_heads: int) -> np.ndarray:
    """``(B, T, E)`` -> ``(B, H, T, d)``: feature ``h*d + j`` becomes head ``h``'s feature ``j``."""
    batch, steps, width = x.shape
    return x.reshape(batch, steps, num_heads, width // num_heads).transpose(0, 2, 1, 3)  # (B, H, T, d)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """``(B, H, T, d)`` -> ``(B, T, E)``, the inverse of :func:`split_heads`."""
    batch, heads, steps, head_dim = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch, steps, heads * head_dim)  # (B, T, E)


def additive_mask(mask, dtype) -> np.ndarray | None:
    """A boolean mask (True = ignore) as ``0``/``-inf``; a float mask as it is; ``None`` stays ``None``."""
    if mask is None or mask.dtype != np.bool_:
        return mask
    return np.where(mask, -np.inf, 0.0).astype(dtype)


def merged_mask(key_padding_mask, attn_mask, num_heads: int, dtype) -> np.ndarray | None:
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
        self.params["in_proj_weight"] = init.xavier_uniform((3 * self.embed_dim, self.embed_dim), rng, dtype=dtype)
        if bias:
            self.params["in_proj_bias"] = np.zeros(3 * self.embed_dim, dtype=self.dtype)  # (3E,)
        self.out_proj = Linear(self.embed_dim, self.embed_dim, bias=bias, dtype=dtype, rng=rng)
        if bias:
            # torch's _reset_parameters zeroes the output bias that Linear drew.
            self.out_proj.params["bias"][...] = 0.0
        self.attention = ScaledDotProductAttention(dtype)
        self.zero_grad()

    def forward(self, query: np.ndarray, key: np.ndarray, value: np.ndarray, key_padding_mask: np.ndarray | None = None,
                need_weights: bool = True, attn_mask: np.ndarray | None = None, average_attn_weights: bool = True,
                is_causal: bool = False, dropout_mask: np.ndarray | None = None):
        dropout_on = self.training and self.dropout > 0.0
        check_multihead_inputs("MultiheadAttention", self.dtype, self.embed_dim, self.num_heads, self.batch_first, query,
                               key, value, key_padding_mask, attn_mask, is_causal, dropout_mask, dropout_on)
        need_weights = check_bool("MultiheadAttention", "need_weights", need_weights)
        average_attn_weights = check_bool("MultiheadAttention", "average_attn_weights", average_attn_weights)
        if not self.batch_first:
            # Batch first inside: (T, B, E) -> (B, T, E).
            query, key, value = query.swapaxes(0, 1), key.swapaxes(0, 1), value.swapaxes(0, 1)
        weights_qkv = np.split(self.params["in_proj_weight"], 3)  # 3 x (E, E)
        biases_qkv = np.split(self.params["in_proj_bias"], 3) if "in_proj_bias" in self.params else (0.0, 0.0, 0.0)
        q, k, v = (split_heads(x @ w.T + b, self.num_heads)
                   for x, w, b in zip((query, key, value), weights_qkv, biases_qkv))  # 3 x (B, H, ., d)
        mask = merged_mask(key_padding_mask, attn_mask, self.num_heads, self.dtype)
        # Kept weights scaled by 1/(1-p) (p = 1 keeps nothing), as torch's dropout.
        keep = dropout_mask.astype(self.dtype) * dropout_scale(self.dropout) if dropout_on else None  # (B, H, T, S)
        # Day 41's attention, every head at once: the heads are a batch axis.
        context, dropped = self.attention(q, k, v, attn_mask=mask, dropout_mask=keep)  # (B, H, T, d), (B, H, T, S)
        output = self.out_proj(merge_heads(context))  # (B, T, E)
        self.save_for_backward(query, key, value, average_attn_weights)
        if not self.batch_first:
            output = output.swapaxes(0, 1)  # (T, B, E)
        if not need_weights:
            return output, None
        return output, dropped.mean(axis=1) if average_attn_weights else dropped

    def backward(self, grad_output: np.ndarray, grad_weights: np.ndarray | None = None):
        query, key, value, averaged = self.saved_for_backward()
        if not self.batch_first:
            grad_output = grad_output.swapaxes(0, 1)  # (B, T, E)
        grad_context = split_heads(self.out_proj.backward(grad_output), self.num_heads)  # (B, H, T, d)
        if grad_weights is not None and averaged:
            # The mean over heads spreads its cotangent evenly: 1/H to each head.
            grad_weights = grad_weights[:, None] / self.num_heads  # (B, 1, T, S), broadcast over the heads
        # The additive mask is a constant here: its gradient is dropped.
        grad_q, grad_k, grad_v, _ = self.attention.backward(grad_context, grad_weights)  # (B, H, ., d) each
        grads_qkv = [merge_heads(g) for g in (grad_q, grad_k, grad_v)]  # 3 x (B, ., E)
        weights_qkv = np.split(self.params["in_proj_weight"], 3)  # 3 x (E, E)
        # Each block of the packed weight sees only its own input; stacked as the weight is.
        self.grads["in_proj_weight"] += np.concatenate(
            [np.einsum("bte,btf->ef", g, x) for g, x in zip(grads_qkv, (query, key, value))])  # (3E, E)
        if "in_proj_bias" in self.params:
            self.grads["in_proj_bias"] += np.concatenate([g.sum(axis=(0, 1)) for g in grads_qkv])  # (3E,)
        grad_inputs = [g @ w for g, w in zip(grads_qkv, weights_qkv)]  # 3 x (B, ., E)
        if not self.batch_first:
            grad_inputs = [g.swapaxes(0, 1) for g in grad_inputs]  # 3 x (., B, E)
        return tuple(grad_inputs)
