r"""Day 45: the Transformer encoder block, as ``torch.nn.TransformerEncoderLayer``.

Self-attention (day 42's ``MultiheadAttention``) and a position-wise feed-forward block
:math:`f(x) = W_2\, \phi(W_1 x + b_1) + b_2` (:math:`\phi` = ReLU or exact GELU), each inside a
residual connection with a LayerNorm (day 14). Post-LN (``norm_first=False``, Vaswani et al. 2017)
normalizes after each sum; pre-LN (``norm_first=True``, Xiong et al. 2020) normalizes each
branch's input and leaves the residual stream un-normalized:

.. math::  \text{post-LN:}\quad h = \mathrm{LN}_1(x + \mathrm{SA}(x)), \qquad y = \mathrm{LN}_2(h + f(h))

.. math::  \text{pre-LN:}\quad h = x + \mathrm{SA}(\mathrm{LN}_1(x)), \qquad y = h + f(\mathrm{LN}_2(h))

Dropout (inverted, masks passed in, True = keep, only in training with ``dropout > 0``) sits where
torch puts it: ``self_attn`` on the attention weights ``(B, H, T, T)``, ``dropout1`` on
:math:`\mathrm{SA}`'s output, ``dropout`` on :math:`\phi(\cdot)` ``(..., F)``, ``dropout2`` on
:math:`f`'s output; ``dropout_masks`` is a dict with these four keys. ``src_mask`` and
``src_key_padding_mask`` are ``nn.MultiheadAttention``'s ``attn_mask`` and ``key_padding_mask``
(bool True = ignore, or float added).

Backward (``tf.GradientTape`` here; the NumPy tree chains each block's own backward), with
:math:`G = \partial L/\partial y`:

.. math::  \text{post-LN:}\quad \bar h = \bar u + f^\top(\bar u),\ \bar u = \mathrm{LN}_2^\top(G); \qquad
           \bar x = \bar v + \mathrm{SA}^\top(\bar v),\ \bar v = \mathrm{LN}_1^\top(\bar h)

.. math::  \text{pre-LN:}\quad \bar h = G + \mathrm{LN}_2^\top(f^\top(G)); \qquad
           \bar x = \bar h + \mathrm{LN}_1^\top(\mathrm{SA}^\top(\bar h))

where :math:`\cdot^\top(\cdot)` is a block's vector-Jacobian product; :math:`\mathrm{SA}^\top`
sums the query, key and value gradients (one input feeds all three).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import (check_bool, check_choice, check_divisible, check_encoder_dropout_masks, check_fraction,
                          check_input, check_int, check_range, check_rng)

from ..foundations.activations import GELU, ReLU
from ..foundations.linear import Linear
from ..foundations.normalization import LayerNorm
from ..module import Module, tf_dtype
from .attention import drop
from .multihead import MultiheadAttention, dropout_scale

#: The feed-forward nonlinearities torch's encoder layer takes by name.
ENCODER_ACTIVATIONS = ("relu", "gelu")


class TransformerEncoderLayer(Module):
    """``nn.TransformerEncoderLayer``: canonical names ``self_attn.*``, ``linear1.*``, ``linear2.*``,
    ``norm1.*``, ``norm2.*``, as torch's state dict."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.0,
                 activation: str = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("TransformerEncoderLayer", rng)
        d_model = check_int("TransformerEncoderLayer", "d_model", d_model, 1)
        nhead = check_int("TransformerEncoderLayer", "nhead", nhead, 1)
        check_divisible("TransformerEncoderLayer", "d_model", d_model, "nhead", nhead)
        self.dim_feedforward = check_int("TransformerEncoderLayer", "dim_feedforward", dim_feedforward, 1)
        self.dropout = check_fraction("TransformerEncoderLayer", "dropout", dropout)
        check_choice("TransformerEncoderLayer", "activation", activation, ENCODER_ACTIVATIONS)
        self.batch_first = check_bool("TransformerEncoderLayer", "batch_first", batch_first)
        self.norm_first = check_bool("TransformerEncoderLayer", "norm_first", norm_first)
        check_range("TransformerEncoderLayer", "layer_norm_eps", layer_norm_eps)
        # Built in torch's order, so one rng draws the same numbers in every tree.
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            dtype=dtype, rng=rng)
        self.linear1 = Linear(d_model, self.dim_feedforward, bias=bias, dtype=dtype, rng=rng)
        self.linear2 = Linear(self.dim_feedforward, d_model, bias=bias, dtype=dtype, rng=rng)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.activation = ReLU(dtype) if activation == "relu" else GELU(dtype=dtype)

    def forward(self, src: tf.Tensor, src_mask: tf.Tensor | None = None,
                src_key_padding_mask: tf.Tensor | None = None, is_causal: bool = False,
                dropout_masks: dict | None = None) -> tf.Tensor:
        dropout_on = self.training and self.dropout > 0.0
        check_input("TransformerEncoderLayer", "src", src.shape, src.dtype, expected_dtype=self.dtype, ndim=3,
                    last_dim=self.self_attn.embed_dim)
        masks = check_encoder_dropout_masks("TransformerEncoderLayer", dropout_masks, src.shape,
                                            self.self_attn.num_heads, self.batch_first, self.dim_feedforward,
                                            dropout_on)
        # Kept entries scaled by 1/(1-p), as torch's dropout; the attention's mask goes to self_attn as it is.
        keep = {name: tf.cast(mask, tf_dtype(self.dtype)) * dropout_scale(self.dropout) for name, mask in masks.items()
                if name != "self_attn"}
        attend = dict(attn_mask=src_mask, key_padding_mask=src_key_padding_mask, is_causal=is_causal,
                      dropout_mask=masks.get("self_attn"))
        if self.norm_first:
            hidden = src + self._sa_block(self.norm1(src), attend, keep)  # like src
            return hidden + self._ff_block(self.norm2(hidden), keep)  # like src
        hidden = self.norm1(src + self._sa_block(src, attend, keep))  # like src
        return self.norm2(hidden + self._ff_block(hidden, keep))  # like src

    def _sa_block(self, x: tf.Tensor, attend: dict, keep: dict) -> tf.Tensor:
        """Self-attention, then ``dropout1``."""
        attended, _ = self.self_attn(x, x, x, need_weights=False, **attend)  # like x
        return _drop(attended, keep.get("dropout1"))

    def _ff_block(self, x: tf.Tensor, keep: dict) -> tf.Tensor:
        """``linear1``, the activation, ``dropout``, ``linear2``, then ``dropout2``."""
        inner = _drop(self.activation(self.linear1(x)), keep.get("dropout"))  # (..., F)
        return _drop(self.linear2(inner), keep.get("dropout2"))  # (..., E)


def _drop(x: tf.Tensor, keep: tf.Tensor | None) -> tf.Tensor:
    """Inverted dropout with ``keep`` (0 or 1/(1-p)); ``None`` (dropout off) is the identity."""
    return x if keep is None else drop(x, keep)
