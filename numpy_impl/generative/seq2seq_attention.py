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

Backward, with :math:`G = \partial L/\partial c` (query-masked rows zeroed) and :math:`\bar A`
the cotangent of the returned weights: :math:`\partial L/\partial x = A^\top G`,
:math:`\partial L/\partial A = G X^\top + \bar A`, and the softmax Jacobian-vector product

.. math::  \frac{\partial L}{\partial s_{ij}} = a_{ij}\Big(\frac{\partial L}{\partial a_{ij}} - \sum_l a_{il}\frac{\partial L}{\partial a_{il}}\Big)

(the mask's shift is a constant). Additive, with :math:`h_{ijk} = \tanh(\cdot)`:
:math:`\partial L/\partial v = \sum_{ij} \bar s_{ij} h_{ij}`, the pre-activation gradient
:math:`\bar s_{ij} v \odot (1 - h_{ij}^2)` summed over :math:`j` for the projected query and over
:math:`i` for the projected key. Dot: :math:`\bar Q = \sigma \bar S K`, :math:`\bar K = \sigma \bar S^\top Q`,
:math:`\bar\sigma = \sum \bar S \odot Q K^\top`. When the value is the key, its two gradients add.

Canonical names (there is no ``torch.nn`` module to copy): ``query_proj.weight`` ``(H, D)``,
``key_proj.weight`` ``(H, Dk)`` and ``v`` ``(H,)`` (Keras' ``scale``) for the additive form;
``key_proj.weight`` ``(D, Dk)`` (Luong's :math:`W`) and ``scale`` ``()`` for the multiplicative one.
Initialization: projections as torch's ``Linear`` (no bias), ``v`` from
:math:`U(-1/\sqrt H, 1/\sqrt H)`, ``scale`` 1 (Keras' ``ones``).
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import check_attention_inputs, check_bool, check_choice, check_int, check_rng

from ..foundations import init
from ..foundations.linear import Linear
from ..foundations.softmax_regression import softmax
from ..module import Module

#: Subtracted from a masked key's scores: Keras' value (1e9 outside float16), not torch's ``-inf``.
MASK_PENALTY = 1.0e9
#: The score functions of ``LuongAttention``.
SCORE_MODES = ("dot", "general")


def attend(scores: np.ndarray, value: np.ndarray, query_mask=None, value_mask=None):
    """Masked softmax of ``scores (N, Tq, Tv)`` and the weighted sum of ``value (N, Tv, Dv)``:
    returns ``context (N, Tq, Dv)`` and ``weights (N, Tq, Tv)``."""
    if value_mask is not None:
        # Subtracted, not filled (Keras): a fully masked row keeps its softmax instead of NaN.
        scores = np.where(value_mask[:, None, :], scores, scores - MASK_PENALTY)  # (N, Tq, Tv)
    weights = softmax(scores)  # (N, Tq, Tv)
    context = weights @ value  # (N, Tq, Dv)
    if query_mask is not None:
        context = np.where(query_mask[:, :, None], context, 0.0)  # (N, Tq, Dv)
    return context, weights


def _attend_backward(grad_context, grad_weights, value, weights, query_mask):
    """The gradients of the scores and of the value, from those of ``attend``'s two outputs
    (``None`` meaning zeros)."""
    if grad_context is None:
        grad_context = np.zeros(weights.shape[:2] + value.shape[2:], dtype=value.dtype)  # (N, Tq, Dv)
    if query_mask is not None:
        # A masked query row was replaced by 0: nothing flows back through it.
        grad_context = np.where(query_mask[:, :, None], grad_context, 0.0)  # (N, Tq, Dv)
    grad_probs = grad_context @ value.swapaxes(-1, -2)  # (N, Tq, Tv)
    if grad_weights is not None:
        grad_probs = grad_probs + grad_weights  # (N, Tq, Tv)
    grad_value = weights.swapaxes(-1, -2) @ grad_context  # (N, Tv, Dv)
    # Softmax's Jacobian-vector product, row by row: a * (g - <g, a>).
    grad_scores = weights * (grad_probs - (grad_probs * weights).sum(axis=-1, keepdims=True))  # (N, Tq, Tv)
    return grad_scores, grad_value


def _input_grads(grad_query, grad_value, grad_key, value_is_key: bool):
    """One gradient per input given: the value used as the key gets both gradients."""
    if value_is_key:
        return grad_query, grad_value + grad_key
    return grad_query, grad_value, grad_key


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
        if self.use_scale:
            self.params["v"] = init.uniform((width,), rng, 1.0 / math.sqrt(width), dtype)
        self.zero_grad()

    def forward(self, query: np.ndarray, value: np.ndarray, key: np.ndarray | None = None,
                query_mask: np.ndarray | None = None, value_mask: np.ndarray | None = None):
        check_attention_inputs("AdditiveAttention", self.dtype, self.embed_dim, self.kdim, query, value, key,
                               query_mask, value_mask)
        keys = value if key is None else key  # (N, Tv, Dk)
        if self.hidden_size is not None:
            query, keys = self.query_proj(query), self.key_proj(keys)  # (N, Tq, H), (N, Tv, H)
        # Every query against every key: broadcast to (N, Tq, Tv, H).
        hidden = np.tanh(query[:, :, None, :] + keys[:, None, :, :])  # (N, Tq, Tv, H)
        scores = (hidden * self.params["v"]).sum(axis=-1) if self.use_scale else hidden.sum(axis=-1)  # (N, Tq, Tv)
        context, weights = attend(scores, value, query_mask, value_mask)
        self.save_for_backward(hidden, value, weights, query_mask, key is None)
        return context, weights

    def backward(self, grad_context: np.ndarray | None, grad_weights: np.ndarray | None = None):
        hidden, value, weights, query_mask, value_is_key = self.saved_for_backward()
        grad_scores, grad_value = _attend_backward(grad_context, grad_weights, value, weights, query_mask)
        if self.use_scale:
            self.grads["v"] += np.einsum("nqt,nqth->h", grad_scores, hidden)  # (H,)
            grad_hidden = grad_scores[..., None] * self.params["v"]  # (N, Tq, Tv, H)
        else:
            grad_hidden = np.broadcast_to(grad_scores[..., None], hidden.shape)  # (N, Tq, Tv, H)
        # tanh' = 1 - tanh^2, from the saved output.
        grad_pre = grad_hidden * (1.0 - hidden * hidden)  # (N, Tq, Tv, H)
        # The query was broadcast over the keys and the key over the queries: sum those axes.
        grad_query, grad_key = grad_pre.sum(axis=2), grad_pre.sum(axis=1)  # (N, Tq, H), (N, Tv, H)
        if self.hidden_size is not None:
            grad_query, grad_key = self.query_proj.backward(grad_query), self.key_proj.backward(grad_key)
        return _input_grads(grad_query, grad_value, grad_key, value_is_key)


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
        if self.use_scale:
            self.params["scale"] = np.ones((), dtype=self.dtype)
        self.zero_grad()

    def forward(self, query: np.ndarray, value: np.ndarray, key: np.ndarray | None = None,
                query_mask: np.ndarray | None = None, value_mask: np.ndarray | None = None):
        check_attention_inputs("LuongAttention", self.dtype, self.embed_dim, self.kdim, query, value, key,
                               query_mask, value_mask)
        keys = value if key is None else key  # (N, Tv, Dk)
        if self.score_mode == "general":
            keys = self.key_proj(keys)  # (N, Tv, D)
        products = query @ keys.swapaxes(-1, -2)  # (N, Tq, Tv)
        scores = products * self.params["scale"] if self.use_scale else products  # (N, Tq, Tv)
        context, weights = attend(scores, value, query_mask, value_mask)
        self.save_for_backward(query, keys, products, value, weights, query_mask, key is None)
        return context, weights

    def backward(self, grad_context: np.ndarray | None, grad_weights: np.ndarray | None = None):
        query, keys, products, value, weights, query_mask, value_is_key = self.saved_for_backward()
        grad_scores, grad_value = _attend_backward(grad_context, grad_weights, value, weights, query_mask)
        if self.use_scale:
            self.grads["scale"] += (grad_scores * products).sum()  # ()
            grad_scores = grad_scores * self.params["scale"]  # (N, Tq, Tv)
        grad_query = grad_scores @ keys  # (N, Tq, D)
        grad_key = grad_scores.swapaxes(-1, -2) @ query  # (N, Tv, D)
        if self.score_mode == "general":
            grad_key = self.key_proj.backward(grad_key)  # (N, Tv, Dk)
        return _input_grads(grad_query, grad_value, grad_key, value_is_key)
