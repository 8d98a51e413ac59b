r"""Day 68: sliding-window attention and linear attention.

**Sliding window** (Longformer, Mistral): query :math:`i` sees only nearby keys. Causal, as
Hugging Face's Mistral reads ``sliding_window`` = :math:`w`: the window holds the current token and
the :math:`w-1` before it,

.. math::  j \text{ visible from } i \iff i - w < j \le i ;

symmetric, as Hugging Face's bidirectional sliding window: :math:`|i - j| \le w` (so :math:`2w+1`
keys). Positions are top-left aligned, as torch's ``is_causal``. Here it *is* masked full attention:
the boolean mask (True = take part) goes to day 41's ``ScaledDotProductAttention``, forward and
backward; the cost stays :math:`O(LS)` — a kernel that skips the masked blocks is what makes it cheap.

**Linear attention** (Katharopoulos et al. 2020): softmax's :math:`e^{q^\top k}` replaced by a kernel
:math:`\phi(q)^\top\phi(k)` with :math:`\phi(x) = \operatorname{elu}(x) + 1 > 0`, so the product
regroups and the :math:`L \times S` matrix is never formed:

.. math::  o_i = \frac{\phi(q_i)^\top \sum_j \phi(k_j) v_j^\top}{\phi(q_i)^\top \sum_j \phi(k_j) + \varepsilon}
           = \frac{\phi(q_i)^\top U}{\phi(q_i)^\top z + \varepsilon},
           \qquad U = \phi(K)^\top V\ (d \times d_v),\quad z = \textstyle\sum_j \phi(k_j)

(:math:`\varepsilon` = ``eps``, 1e-6 as the authors' code). **Causal**: the sums run over
:math:`j \le i`, prefix sums over time, :math:`U_i = \sum_{j \le i}\phi(k_j)v_j^\top` and
:math:`z_i = \sum_{j\le i}\phi(k_j)` (``cumsum``: :math:`O(T d\, d_v)` memory, no Python loop).

Backward, with :math:`G = \partial L/\partial o`, :math:`n_i = \phi(q_i)^\top U_i`,
:math:`m_i = \phi(q_i)^\top z_i + \varepsilon`:

.. math::  \bar n_i = G_i / m_i, \qquad \bar m_i = -\langle G_i, o_i\rangle / m_i, \qquad
           \overline{\phi(q_i)} = U_i \bar n_i + \bar m_i z_i,

.. math::  \bar U_i = \phi(q_i)\,\bar n_i^\top,\quad \bar z_i = \bar m_i \phi(q_i);\qquad
           \overline{\phi(k_j)} = \Big(\sum_{i \ge j}\bar U_i\Big) v_j + \sum_{i\ge j}\bar z_i, \qquad
           \bar v_j = \Big(\sum_{i \ge j}\bar U_i\Big)^\top \phi(k_j)

— the sums over :math:`i \ge j` are **reverse** cumulative sums (non-causal: sums over every
:math:`i`) — then ELU's backward (day 5) for :math:`q` and :math:`k`. Autograd derives them here
from ``tf.cumsum``'s gradient.
"""
from __future__ import annotations

import tensorflow as tf

from ml100.checks import (check_bool, check_linear_attention_inputs, check_nonnegative, check_sdpa_inputs,
                          check_sliding_window)

from ..foundations.activations import ELU
from ..module import Module
from .attention import ScaledDotProductAttention


def sliding_window_mask(query_len: int, key_len: int, window: int, symmetric: bool = False) -> tf.Tensor:
    """``(L, S)`` boolean, True = take part: ``i - window < j <= i`` (causal, Mistral's meaning) or
    ``|i - j| <= window`` (symmetric, Hugging Face's bidirectional window)."""
    window, symmetric = check_sliding_window("sliding_window_mask", window, symmetric)
    offset = tf.range(query_len)[:, None] - tf.range(key_len)[None, :]  # (L, S): i - j
    if symmetric:
        return tf.abs(offset) <= window  # (L, S)
    return (offset >= 0) & (offset < window)  # (L, S)


class SlidingWindowAttention(Module):
    """Attention within a window, as masked full attention (day 41): ``forward(query (..., L, E),
    key (..., S, E), value (..., S, Ev), dropout_mask=None, scale=None)`` returns ``output, weights``."""

    def __init__(self, window: int, symmetric: bool = False, dtype="float32"):
        super().__init__(dtype)
        self.window, self.symmetric = check_sliding_window("SlidingWindowAttention", window, symmetric)
        self.attention = ScaledDotProductAttention(dtype)

    def forward(self, query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, dropout_mask: tf.Tensor | None = None,
                scale: float | None = None):
        check_sdpa_inputs("SlidingWindowAttention", self.dtype, query, key, value, dropout_mask=dropout_mask, scale=scale)
        mask = sliding_window_mask(query.shape[-2], key.shape[-2], self.window, self.symmetric)  # (L, S)
        return self.attention(query, key, value, attn_mask=mask, dropout_mask=dropout_mask, scale=scale)


class LinearAttention(Module):
    """Linear attention with :math:`\\phi = \\operatorname{elu} + 1`: ``forward(query (..., L, d),
    key (..., S, d), value (..., S, dv))`` returns ``output (..., L, dv)``. ``causal=True`` needs ``L == S``."""

    def __init__(self, causal: bool = False, eps: float = 1e-6, dtype="float32"):
        super().__init__(dtype)
        self.causal = check_bool("LinearAttention", "causal", causal)
        self.eps = check_nonnegative("LinearAttention", "eps", eps)
        self.feature_map = ELU(1.0, dtype)

    def forward(self, query: tf.Tensor, key: tf.Tensor, value: tf.Tensor) -> tf.Tensor:
        check_linear_attention_inputs("LinearAttention", self.dtype, query, key, value, self.causal)
        # phi = elu + 1 > 0: the kernel's weights are positive, as softmax's are.
        query_features = self.feature_map(query) + 1.0  # (..., L, d)
        key_features = self.feature_map(key) + 1.0  # (..., S, d)
        if self.causal:
            # U_i and z_i: prefix sums over time of phi(k_j) v_j^T and phi(k_j).
            states = tf.cumsum(key_features[..., :, :, None] * value[..., :, None, :], axis=-3)  # (..., T, d, dv)
            normalizers = tf.cumsum(key_features, axis=-2)  # (..., T, d)
            numerator = tf.einsum("...td,...tde->...te", query_features, states)  # (..., T, dv)
            denominator = tf.einsum("...td,...td->...t", query_features, normalizers) + self.eps  # (..., T)
        else:
            # U and z: one sum over every key, shared by every query.
            states = tf.matmul(key_features, value, transpose_a=True)  # (..., d, dv)
            normalizers = tf.reduce_sum(key_features, axis=-2)  # (..., d)
            numerator = tf.matmul(query_features, states)  # (..., L, dv)
            denominator = tf.matmul(query_features, normalizers[..., None])[..., 0] + self.eps  # (..., L)
        output = numerator / denominator[..., None]  # (..., L, dv)
        return output
