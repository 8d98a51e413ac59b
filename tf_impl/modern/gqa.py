r"""Day 67: multi-query and grouped-query attention (``F.scaled_dot_product_attention(enable_gqa=True)``).

Multi-head attention keeps one key and one value head per query head. Grouped-query attention
(GQA, Ainslie et al. 2023) keeps :math:`H_{kv}` of them for :math:`H_q` query heads, each key/value
head shared by a group of :math:`g = H_q / H_{kv}` consecutive query heads (torch's
``repeat_interleave`` grouping): query head :math:`h` reads key/value head :math:`\lfloor h/g \rfloor`,

.. math::  o_h = \operatorname{softmax}\big(\sigma\, Q_h K_{\lfloor h/g\rfloor}^\top + M\big)\, V_{\lfloor h/g\rfloor} .

Multi-query attention (MQA, Shazeer 2019) is :math:`H_{kv} = 1`; :math:`H_{kv} = H_q` is plain
multi-head attention. The key cache of a decoder shrinks by the factor :math:`g`.

The core repeats each key and value head :math:`g` times and runs day 41's
``ScaledDotProductAttention``. Backward: a head repeated :math:`g` times receives the sum of its
copies' gradients,

.. math::  \frac{\partial L}{\partial K_j} = \sum_{h:\ \lfloor h/g\rfloor = j} \frac{\partial L}{\partial \hat K_h},
           \qquad \frac{\partial L}{\partial V_j} = \sum_{h:\ \lfloor h/g\rfloor = j} \frac{\partial L}{\partial \hat V_h},

with :math:`\hat K, \hat V` the repeated heads and their gradients day 41's; the tape derives this
sum from ``tf.repeat`` (the grouping of ``repeat_interleave``). Key and value may even have
different head counts (each divides :math:`H_q`), as torch allows.

``GroupedQueryAttention`` is the projection layer around it, with Llama's names: ``q_proj``
``(Hq·d, E)``, ``k_proj`` and ``v_proj`` ``(Hkv·d, E)``, ``o_proj`` ``(E, Hq·d)``, ``d = E / Hq``:

.. math::  Q = x W_q^\top,\; K = x W_k^\top,\; V = x W_v^\top \ \text{(heads split)},\qquad
           y = [o_1 \dots o_{H_q}]\, W_o^\top ,

self-attention over ``hidden_states (B, T, E)``, no positional rotation (RoPE is day 69). Its
backward is ``o_proj``'s, the core's, then each projection's; the three input gradients add up.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_bool, check_divisible, check_gqa_inputs, check_gqa_module, check_int, check_rng

from ..foundations.linear import Linear
from ..module import Module
from .attention import ScaledDotProductAttention
from .multihead import merge_heads, split_heads


class GroupedScaledDotProductAttention(Module):
    """``F.scaled_dot_product_attention(..., enable_gqa=True)`` as a parameter-free module:
    ``forward(query (..., Hq, L, E), key (..., Hk, S, E), value (..., Hv, S, Ev), ...)`` returns
    ``output (..., Hq, L, Ev), weights (..., Hq, L, S)``."""

    def __init__(self, dtype="float32"):
        super().__init__(dtype)
        self.attention = ScaledDotProductAttention(dtype)

    def forward(self, query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, attn_mask: tf.Tensor | None = None,
                dropout_mask: tf.Tensor | None = None, is_causal: bool = False, scale: float | None = None):
        _, key_groups, value_groups = check_gqa_inputs("GroupedScaledDotProductAttention", self.dtype, query, key, value,
                                                       attn_mask, dropout_mask, is_causal, scale)
        # Every key/value head serves its group of consecutive query heads (repeat_interleave).
        expanded_key = tf.repeat(key, key_groups, axis=-3)  # (..., Hq, S, E)
        expanded_value = tf.repeat(value, value_groups, axis=-3)  # (..., Hq, S, Ev)
        return self.attention(query, expanded_key, expanded_value, attn_mask, dropout_mask, is_causal, scale)


class GroupedQueryAttention(Module):
    """Self-attention with ``num_key_value_heads`` key/value heads shared by ``num_heads`` query
    heads (Llama's attention without RoPE): ``forward(hidden_states (B, T, E), attn_mask=None,
    is_causal=False)`` returns ``attn_output (B, T, E), attn_weights (B, Hq, T, T)``; canonical names
    ``q_proj.weight``, ``k_proj.weight``, ``v_proj.weight``, ``o_proj.weight`` (and ``.bias`` with
    ``bias=True``, Llama's ``attention_bias``). ``attn_mask`` follows day 41: boolean True = take
    part, or additive; it broadcasts to ``(B, Hq, T, T)``."""

    def __init__(self, embed_dim: int, num_heads: int, num_key_value_heads: int, bias: bool = False, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("GroupedQueryAttention", rng)
        self.embed_dim = check_int("GroupedQueryAttention", "embed_dim", embed_dim, 1)
        self.num_heads = check_int("GroupedQueryAttention", "num_heads", num_heads, 1)
        self.num_key_value_heads = check_int("GroupedQueryAttention", "num_key_value_heads", num_key_value_heads, 1)
        check_divisible("GroupedQueryAttention", "embed_dim", self.embed_dim, "num_heads", self.num_heads)
        check_divisible("GroupedQueryAttention", "num_heads", self.num_heads, "num_key_value_heads",
                        self.num_key_value_heads)
        self.head_dim = self.embed_dim // self.num_heads
        bias = check_bool("GroupedQueryAttention", "bias", bias)
        kv_width = self.num_key_value_heads * self.head_dim
        self.q_proj = Linear(self.embed_dim, self.num_heads * self.head_dim, bias=bias, dtype=dtype, rng=rng)
        self.k_proj = Linear(self.embed_dim, kv_width, bias=bias, dtype=dtype, rng=rng)
        self.v_proj = Linear(self.embed_dim, kv_width, bias=bias, dtype=dtype, rng=rng)
        self.o_proj = Linear(self.num_heads * self.head_dim, self.embed_dim, bias=bias, dtype=dtype, rng=rng)
        self.attention = GroupedScaledDotProductAttention(dtype)

    def forward(self, hidden_states: tf.Tensor, attn_mask: tf.Tensor | None = None, is_causal: bool = False):
        check_gqa_module("GroupedQueryAttention", self.dtype, self.embed_dim, hidden_states)
        q = split_heads(self.q_proj(hidden_states), self.num_heads)  # (B, Hq, T, d)
        k = split_heads(self.k_proj(hidden_states), self.num_key_value_heads)  # (B, Hkv, T, d)
        v = split_heads(self.v_proj(hidden_states), self.num_key_value_heads)  # (B, Hkv, T, d)
        context, weights = self.attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)  # (B, Hq, T, d), (B, Hq, T, T)
        return self.o_proj(merge_heads(context)), weights  # (B, T, E), (B, Hq, T, T)
