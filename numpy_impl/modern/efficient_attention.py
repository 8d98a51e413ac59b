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
:math:`i`) — then ELU's backward (day 5) for :math:`q` and :math:`k`.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import (check_bool, check_linear_attention_inputs, check_nonnegative, check_sdpa_inputs,
                          check_sliding_window)

from ..foundations.activations import ELU
from ..module import Module
from .attention import ScaledDotProductAttention


def sliding_window_mask(query_len: int, key_len: int, window: int, symmetric: bool = False) -> np.ndarray:
    """``(L, S)`` boolean, True = take part: ``i - window < j <= i`` (causal, Mistral's meaning) or
    ``|i - j| <= window`` (symmetric, Hugging Face's bidirectional window)."""
    window, symmetric = check_sliding_window("sliding_window_mask", window, symmetric)
    offset = np.arange(query_len)[:, None] - np.arange(key_len)[None, :]  # (L, S): i - j
    if symmetric:
        return np.abs(offset) <= window  # (L, S)
    return (offset >= 0) & (offset < window)  # (L, S)


def _reverse_cumsum(x: np.ndarray, axis: int) -> np.ndarray:
    """:math:`\\sum_{i \\ge j} x_i` along ``axis``: the transpose of a prefix sum."""
    return np.flip(np.cumsum(np.flip(x, axis), axis), axis)


class SlidingWindowAttention(Module):
    """Attention within a window, as masked full attention (day 41): ``forward(query (..., L, E),
    key (..., S, E), value (..., S, Ev), dropout_mask=None, scale=None)`` returns ``output, weights``;
    ``backward(grad_output, grad_weights=None)`` returns ``grad_query, grad_key, grad_value``."""

    def __init__(self, window: int, symmetric: bool = False, dtype="float32"):
        super().__init__(dtype)
        self.window, self.symmetric = check_sliding_window("SlidingWindowAttention", window, symmetric)
        self.attention = ScaledDotProductAttention(dtype)

    def forward(self, query: np.ndarray, key: np.ndarray, value: np.ndarray, dropout_mask: np.ndarray | None = None,
                scale: float | None = None):
        check_sdpa_inputs("SlidingWindowAttention", self.dtype, query, key, value, dropout_mask=dropout_mask, scale=scale)
        mask = sliding_window_mask(query.shape[-2], key.shape[-2], self.window, self.symmetric)  # (L, S)
        return self.attention(query, key, value, attn_mask=mask, dropout_mask=dropout_mask, scale=scale)

    def backward(self, grad_output: np.ndarray | None, grad_weights: np.ndarray | None = None):
        # The window is a constant boolean mask: it has no gradient.
        return self.attention.backward(grad_output, grad_weights)[:3]


class LinearAttention(Module):
    """Linear attention with :math:`\\phi = \\operatorname{elu} + 1`: ``forward(query (..., L, d),
    key (..., S, d), value (..., S, dv))`` returns ``output (..., L, dv)``; ``backward(grad_output)``
    returns ``grad_query, grad_key, grad_value``. ``causal=True`` needs ``L == S``."""

    def __init__(self, causal: bool = False, eps: float = 1e-6, dtype="float32"):
        super().__init__(dtype)
        self.causal = check_bool("LinearAttention", "causal", causal)
        self.eps = check_nonnegative("LinearAttention", "eps", eps)
        self.feature_map = ELU(1.0, dtype)

    def forward(self, query: np.ndarray, key: np.ndarray, value: np.ndarray) -> np.ndarray:
        check_linear_attention_inputs("LinearAttention", self.dtype, query, key, value, self.causal)
        # phi = elu + 1 > 0: the kernel's weights are positive, as softmax's are.
        query_features = self.feature_map(query) + 1.0  # (..., L, d)
        key_features = self.feature_map(key) + 1.0  # (..., S, d)
        if self.causal:
            # U_i and z_i: prefix sums over time of phi(k_j) v_j^T and phi(k_j).
            states = np.cumsum(key_features[..., :, :, None] * value[..., :, None, :], axis=-3)  # (..., T, d, dv)
            normalizers = np.cumsum(key_features, axis=-2)  # (..., T, d)
            numerator = np.einsum("...td,...tde->...te", query_features, states)  # (..., T, dv)
            denominator = np.einsum("...td,...td->...t", query_features, normalizers) + self.eps  # (..., T)
        else:
            # U and z: one sum over every key, shared by every query.
            states = key_features.swapaxes(-1, -2) @ value  # (..., d, dv)
            normalizers = key_features.sum(axis=-2)  # (..., d)
            numerator = query_features @ states  # (..., L, dv)
            denominator = (query_features @ normalizers[..., None])[..., 0] + self.eps  # (..., L)
        output = numerator / denominator[..., None]  # (..., L, dv)
        self.save_for_backward(query_features, key_features, value, states, normalizers, denominator, output)
        return output

    def backward(self, grad_output: np.ndarray):
        query_features, key_features, value, states, normalizers, denominator, output = self.saved_for_backward()
        grad_numerator = grad_output / denominator[..., None]  # (..., L, dv)
        grad_denominator = -(grad_output * output).sum(axis=-1) / denominator  # (..., L)
        if self.causal:
            grad_query_features = (np.einsum("...te,...tde->...td", grad_numerator, states)
                                   + grad_denominator[..., None] * normalizers)  # (..., T, d)
            # Step i's state gradient reaches every j <= i: reverse prefix sums over time.
            grad_states = _reverse_cumsum(query_features[..., :, :, None] * grad_numerator[..., :, None, :], -3)  # (..., T, d, dv)
            grad_normalizers = _reverse_cumsum(grad_denominator[..., None] * query_features, -2)  # (..., T, d)
            grad_key_features = np.einsum("...tde,...te->...td", grad_states, value) + grad_normalizers  # (..., T, d)
            grad_value = np.einsum("...tde,...td->...te", grad_states, key_features)  # (..., T, dv)
        else:
            grad_query_features = (grad_numerator @ states.swapaxes(-1, -2)
                                   + grad_denominator[..., None] * normalizers[..., None, :])  # (..., L, d)
            grad_states = query_features.swapaxes(-1, -2) @ grad_numerator  # (..., d, dv)
            grad_normalizers = (grad_denominator[..., None] * query_features).sum(axis=-2)  # (..., d)
            grad_key_features = value @ grad_states.swapaxes(-1, -2) + grad_normalizers[..., None, :]  # (..., S, d)
            grad_value = key_features @ grad_states  # (..., S, dv)
        # The feature map ran on the query, then the key: its cache pops the key first.
        grad_key = self.feature_map.backward(grad_key_features)  # (..., S, d)
        grad_query = self.feature_map.backward(grad_query_features)  # (..., L, d)
        return grad_query, grad_key, grad_value
