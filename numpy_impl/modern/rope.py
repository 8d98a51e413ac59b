r"""Rotary position embeddings (RoPE) and ALiBi biases (day 44).

**RoPE** rotates every pair of channels :math:`(x_a, x_b)` of a query or key at position
:math:`p` by the angle :math:`\phi = p\,\theta_i` (:math:`\theta_i = \text{base}^{-2i/d}`):

.. math::  y = x \odot \cos\phi + R(x) \odot \sin\phi,

with :math:`R` the quarter turn of each pair, :math:`(x_a, x_b) \mapsto (-x_b, x_a)`. In the
halves layout (Hugging Face Llama) pair :math:`i` is channels :math:`(i, i + d/2)` and
:math:`R` is ``rotate_half``; in the interleaved layout (GPT-J, RoFormer) it is
:math:`(2i, 2i+1)` and :math:`R` is ``rotate_pairs``. The map is linear and orthogonal, so the
backward is its transpose, :math:`R^\top = -R`:

.. math::  \frac{\partial L}{\partial x} = g \odot \cos\phi - R(g \odot \sin\phi).

Because rotations compose, :math:`\langle \text{RoPE}(q, m), \text{RoPE}(k, n)\rangle` depends on
the positions only through :math:`n - m`. ``cos``/``sin`` ``(B, T, d)`` come from
``RotaryEmbedding(positions)``; positions are an input, so a KV cache passes ``offset + arange``.

**ALiBi** adds :math:`m_h (j - i)` to head :math:`h`'s logit of query :math:`i` and key :math:`j`
(``alibi_bias``, ``(H, L, S)``). BLOOM adds :math:`m_h\,j'` instead, :math:`j'` the key's index
among the real tokens (``alibi_key_bias``, ``(B*H, 1, S)``): per query row it differs by the
constant :math:`-m_h i`, which softmax ignores. Slopes: ``ml100.positions.alibi_slopes``.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import (check_alibi_mask, check_bool, check_int, check_positions, check_rotary_embedding_args,
                          check_rotary_inputs, dtype_name, resolve_dtype)
from ml100.positions import alibi_distances, alibi_slopes, rotary_frequencies

from ..module import Module, no_grad


def rotate_half(x: np.ndarray) -> np.ndarray:
    """``[x1, x2] -> [-x2, x1]`` on the last axis' halves: pair ``(i, i + d/2)`` turned a quarter."""
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)  # (..., d)


def rotate_pairs(x: np.ndarray) -> np.ndarray:
    """``(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)``: each adjacent pair turned a quarter."""
    pairs = x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)  # (..., d/2, 2)
    return np.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)  # (..., d)


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
        self.frequencies = rotary_frequencies(self.head_dim, self.base, self.interleaved)  # (d,) float64

    def forward(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_positions("RotaryEmbedding", positions, self.max_position_embeddings)
        angles = positions.astype(np.float64)[..., None] * self.frequencies  # (B, T, d)
        return np.cos(angles).astype(self.dtype), np.sin(angles).astype(self.dtype)  # (B, T, d) twice


class ApplyRotary(Module):
    """``(q, k, cos, sin) -> (q_embed, k_embed)``: RoPE on ``(B, H, T, d)`` queries and keys, as
    Hugging Face's ``apply_rotary_pos_emb`` (halves) or GPT-J's (interleaved). No parameters;
    ``cos``/``sin`` are constants (no gradient)."""

    def __init__(self, interleaved: bool = False, dtype="float32"):
        super().__init__(dtype)
        self.interleaved = check_bool("ApplyRotary", "interleaved", interleaved)
        self.rotate = rotate_pairs if self.interleaved else rotate_half

    def forward(self, q: np.ndarray, k: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_rotary_inputs("ApplyRotary", self.dtype, q, k, cos, sin)
        # One table for every head: a head axis of size 1.
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, d)
        self.save_for_backward(cos, sin)
        q_embed = q * cos + self.rotate(q) * sin  # (B, H, T, d)
        k_embed = k * cos + self.rotate(k) * sin  # (B, H_k, T, d)
        return q_embed, k_embed

    def backward(self, grad_q_embed: np.ndarray, grad_k_embed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cos, sin = self.saved_for_backward()
        # The quarter turn is antisymmetric (R^T = -R): the transpose of x -> R(x) * sin is g -> -R(g * sin).
        grad_q = grad_q_embed * cos - self.rotate(grad_q_embed * sin)  # (B, H, T, d)
        grad_k = grad_k_embed * cos - self.rotate(grad_k_embed * sin)  # (B, H_k, T, d)
        return grad_q, grad_k


def apply_rotary(q: np.ndarray, k: np.ndarray, cos: np.ndarray, sin: np.ndarray,
                 interleaved: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``ApplyRotary(interleaved)`` in ``q``'s dtype, as a function (no cache: use the module to backpropagate)."""
    with no_grad():
        return ApplyRotary(interleaved, dtype=dtype_name(q.dtype))(q, k, cos, sin)


def alibi_bias(num_heads: int, query_len: int, key_len: int, offset: int = 0, dtype="float32") -> np.ndarray:
    """``(H, L, S)`` additive bias ``m_h (j - (i + offset))``: 0 on the diagonal, more negative the
    farther a key lies from its query (``offset``: keys already cached before the first query)."""
    dtype = resolve_dtype(dtype)
    num_heads = check_int("alibi_bias", "num_heads", num_heads, 1)
    distances = alibi_distances(check_int("alibi_bias", "query_len", query_len, 0),
                                check_int("alibi_bias", "key_len", key_len, 0),
                                check_int("alibi_bias", "offset", offset, 0))  # (L, S)
    slopes = alibi_slopes(num_heads)  # (H,)
    return (slopes[:, None, None] * distances[None]).astype(dtype)  # (H, L, S)


def alibi_key_bias(attention_mask: np.ndarray, num_heads: int, dtype="float32") -> np.ndarray:
    """BLOOM's form: ``(B*H, 1, S)`` bias ``m_h * j'``, ``j'`` a key's index among the real tokens of
    its row (``attention_mask`` ``(B, S)`` int64, 1 = token, 0 = padding, whose bias is 0)."""
    dtype = resolve_dtype(dtype)
    check_alibi_mask("alibi_key_bias", attention_mask)
    num_heads = check_int("alibi_key_bias", "num_heads", num_heads, 1)
    batch, length = attention_mask.shape
    # Running count of real tokens, minus one: the key's index among them; padding reads 0.
    index = ((np.cumsum(attention_mask, axis=-1) - 1) * attention_mask).astype(np.float64)  # (B, S)
    slopes = alibi_slopes(num_heads)  # (H,)
    bias = slopes[None, :, None] * index[:, None, :]  # (B, H, S)
    return bias.reshape(batch * num_heads, 1, length).astype(dtype)  # (B*H, 1, S)
