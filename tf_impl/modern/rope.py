r"""Rotary position embeddings (RoPE) and ALiBi biases (day 44).

**RoPE** rotates every pair of channels :math:`(x_a, x_b)` of a query or key at position
:math:`p` by the angle :math:`\phi = p\,\theta_i` (:math:`\theta_i = \text{base}^{-2i/d}`):

.. math::  y = x \odot \cos\phi + R(x) \odot \sin\phi,

with :math:`R` the quarter turn of each pair, :math:`(x_a, x_b) \mapsto (-x_b, x_a)`. In the
halves layout (Hugging Face Llama) pair :math:`i` is channels :math:`(i, i + d/2)` and
:math:`R` is ``rotate_half``; in the interleaved layout (GPT-J, RoFormer) it is
:math:`(2i, 2i+1)` and :math:`R` is ``rotate_pairs``. ``tf.GradientTape`` supplies the backward
(the NumPy tree writes it out: :math:`g \odot \cos\phi - R(g \odot \sin\phi)`).

Because rotations compose, :math:`\langle \text{RoPE}(q, m), \text{RoPE}(k, n)\rangle` depends on
the positions only through :math:`n - m`. ``cos``/``sin`` ``(B, T, d)`` come from
``RotaryEmbedding(positions)``; positions are an input, so a KV cache passes ``offset + arange``.

**ALiBi** adds :math:`m_h (j - i)` to head :math:`h`'s logit of query :math:`i` and key :math:`j`
(``alibi_bias``, ``(H, L, S)``). BLOOM adds :math:`m_h\,j'` instead, :math:`j'` the key's index
among the real tokens (``alibi_key_bias``, ``(B*H, 1, S)``): per query row it differs by the
constant :math:`-m_h i`, which softmax ignores. Slopes: ``ml100.positions.alibi_slopes``.
"""
from __future__ import annotations

import tensorflow as tf

from ml100.checks import (check_alibi_mask, check_bool, check_int, check_positions, check_rotary_embedding_args,
                          check_rotary_inputs, dtype_name, resolve_dtype)
from ml100.positions import alibi_distances, alibi_slopes, rotary_frequencies

from ..module import Module, tf_dtype


def rotate_half(x: tf.Tensor) -> tf.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last axis' halves: pair ``(i, i + d/2)`` turned a quarter."""
    half = x.shape[-1] // 2
    return tf.concat([-x[..., half:], x[..., :half]], axis=-1)  # (..., d)


def rotate_pairs(x: tf.Tensor) -> tf.Tensor:
    """``(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)``: each adjacent pair turned a quarter."""
    shape = tf.shape(x)
    pairs = tf.reshape(x, tf.concat([shape[:-1], [x.shape[-1] // 2, 2]], axis=0))  # (..., d/2, 2)
    return tf.reshape(tf.stack([-pairs[..., 1], pairs[..., 0]], axis=-1), shape)  # (..., d)


class RotaryEmbedding(Module):
    """Positions ``(B, T)`` int64 -> ``cos, sin`` ``(B, T, head_dim)`` in ``dtype``, as Hugging Face's
    ``LlamaRotaryEmbedding`` (``interleaved=False``; its ``rope_theta`` is ``base``) or GPT-J's
    layout (``interleaved=True``). The angles are formed in float64, then cast. No parameters."""

    def __init__(self, head_dim: int, max_position_embeddings: int = 2048, base: float = 10000.0,
                 interleaved: bool = False, dtype="float32"):
        super().__init__(dtype)
        check_rotary_embedding_args("RotaryEmbedding", head_dim, max_position_embeddings, base, interleaved)
        self.head_dim = int(head_dim)
        self.max_position_embeddings = int(max_position_embeddings)
        self.base = float(base)
        self.interleaved = bool(interleaved)
        # A constant, not a variable, as Hugging Face's non-persistent inv_freq: derived from the arguments, not a weight.
        self.frequencies = tf.constant(rotary_frequencies(self.head_dim, self.base, self.interleaved))  # (d,) float64

    def forward(self, positions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        check_positions("RotaryEmbedding", positions, self.max_position_embeddings)
        angles = tf.cast(positions, tf.float64)[..., None] * self.frequencies  # (B, T, d)
        return tf.cast(tf.cos(angles), tf_dtype(self.dtype)), tf.cast(tf.sin(angles), tf_dtype(self.dtype))  # (B, T, d) twice


class ApplyRotary(Module):
    """``(q, k, cos, sin) -> (q_embed, k_embed)``: RoPE on ``(B, H, T, d)`` queries and keys, as
    Hugging Face's ``apply_rotary_pos_emb`` (halves) or GPT-J's (interleaved). No parameters;
    ``cos``/``sin`` are constants (no gradient)."""

    def __init__(self, interleaved: bool = False, dtype="float32"):
        super().__init__(dtype)
        self.interleaved = check_bool("ApplyRotary", "interleaved", interleaved)
        self.rotate = rotate_pairs if self.interleaved else rotate_half

    def forward(self, q: tf.Tensor, k: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        check_rotary_inputs("ApplyRotary", self.dtype, q, k, cos, sin)
        # One table for every head: a head axis of size 1.
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, d)
        q_embed = q * cos + self.rotate(q) * sin  # (B, H, T, d)
        k_embed = k * cos + self.rotate(k) * sin  # (B, H_k, T, d)
        return q_embed, k_embed


def apply_rotary(q: tf.Tensor, k: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor,
                 interleaved: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """``ApplyRotary(interleaved)`` in ``q``'s dtype, as a function (a GradientTape records it)."""
    return ApplyRotary(interleaved, dtype=dtype_name(q.dtype))(q, k, cos, sin)


def alibi_bias(num_heads: int, query_len: int, key_len: int, offset: int = 0, dtype="float32") -> tf.Tensor:
    """``(H, L, S)`` additive bias ``m_h (j - (i + offset))``: 0 on the diagonal, more negative the
    farther a key lies from its query (``offset``: keys already cached before the first query)."""
    dtype = resolve_dtype(dtype)
    num_heads = check_int("alibi_bias", "num_heads", num_heads, 1)
    distances = tf.constant(alibi_distances(check_int("alibi_bias", "query_len", query_len, 0),
                                            check_int("alibi_bias", "key_len", key_len, 0),
                                            check_int("alibi_bias", "offset", offset, 0)))  # (L, S)
    slopes = tf.constant(alibi_slopes(num_heads))  # (H,)
    return tf.cast(slopes[:, None, None] * distances[None], tf_dtype(dtype))  # (H, L, S)


def alibi_key_bias(attention_mask: tf.Tensor, num_heads: int, dtype="float32") -> tf.Tensor:
    """BLOOM's form: ``(B*H, 1, S)`` bias ``m_h * j'``, ``j'`` a key's index among the real tokens of
    its row (``attention_mask`` ``(B, S)`` int64, 1 = token, 0 = padding, whose bias is 0)."""
    dtype = resolve_dtype(dtype)
    check_alibi_mask("alibi_key_bias", attention_mask)
    num_heads = check_int("alibi_key_bias", "num_heads", num_heads, 1)
    batch, length = attention_mask.shape
    # Running count of real tokens, minus one: the key's index among them; padding reads 0.
    index = tf.cast((tf.cumsum(attention_mask, axis=-1) - 1) * attention_mask, tf.float64)  # (B, S)
    slopes = tf.constant(alibi_slopes(num_heads))  # (H,)
    bias = slopes[None, :, None] * index[:, None, :]  # (B, H, S)
    return tf.cast(tf.reshape(bias, (batch * num_heads, 1, length)), tf_dtype(dtype))  # (B*H, 1, S)
