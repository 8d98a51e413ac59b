r"""Day 46: the Transformer decoder layer, as ``torch.nn.TransformerDecoderLayer``.

Three residual blocks over the target :math:`x` (``tgt``), the second one reading the encoder's
output :math:`m` (``memory``): masked self-attention (day 42's ``MultiheadAttention``, its ``attn_mask``
the causal mask when decoding), cross-attention (queries from :math:`x`, keys and values from
:math:`m`) and the feed-forward network :math:`f(x) = W_2\,\delta(\phi(W_1 x + b_1)) + b_2`
(:math:`\phi` ReLU or exact GELU). Post-LN (``norm_first=False``, the 2017 paper):

.. math::  x \leftarrow \mathrm{LN}_1(x + \delta_1(\mathrm{SA}(x))), \quad
           x \leftarrow \mathrm{LN}_2(x + \delta_2(\mathrm{CA}(x, m))), \quad
           x \leftarrow \mathrm{LN}_3(x + \delta_3(f(x)))

Pre-LN (``norm_first=True``): :math:`x \leftarrow x + \delta_1(\mathrm{SA}(\mathrm{LN}_1 x))`,
:math:`x \leftarrow x + \delta_2(\mathrm{CA}(\mathrm{LN}_2 x, m))`, :math:`x \leftarrow x +
\delta_3(f(\mathrm{LN}_3 x))`.

Dropout is an input: in training with ``dropout > 0``, ``dropout_masks`` is a dict of bool keep-masks
(True = keep): ``self_attn`` ``(B, H, T, T)`` and ``multihead_attn`` ``(B, H, T, S)`` on the attention
weights, ``dropout1``/``dropout2``/``dropout3`` shaped like ``tgt`` on each block's branch before its
residual sum, ``dropout`` like ``tgt`` with width F after the activation — torch's six sites (the
residual ones in ``tgt``'s layout, as the day-45 encoder's follow ``src``).

Backward: a residual sum passes its cotangent to both terms, so with :math:`\bar y` arriving at a
post-LN block :math:`y = \mathrm{LN}(x + g(x))`, :math:`\bar s = \mathrm{LN}^\top \bar y` and
:math:`\bar x = \bar s + J_g^\top \bar s`; a pre-LN block :math:`y = x + g(\mathrm{LN}\,x)` gives
:math:`\bar x = \bar y + \mathrm{LN}^\top J_g^\top \bar y`. Self-attention feeds :math:`x` as query,
key and value, so its three input gradients add; cross-attention's key and value gradients add into
:math:`\bar m`, its query gradient into :math:`\bar x`. The pieces' own backwards (Linear, LayerNorm,
activation, dropout, attention) are the earlier days'.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import (DECODER_ATTENTION_SITES, check_bool, check_choice, check_decoder_inputs, check_int, check_positive,
                          check_range, check_rng)

from ..foundations.linear import Linear
from ..foundations.mlp import make_activation
from ..foundations.normalization import LayerNorm
from ..foundations.regularization import Dropout
from ..module import Module
from .multihead import MultiheadAttention

#: The activations torch's decoder layer accepts by name.
DECODER_ACTIVATIONS = ("relu", "gelu")


class TransformerDecoderLayer(Module):
    """``nn.TransformerDecoderLayer``: ``forward(tgt, memory, ...)`` returns the new target; canonical
    names ``self_attn.*``, ``multihead_attn.*``, ``linear1.*``, ``linear2.*``, ``norm1.*`` .. ``norm3.*``."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.0,
                 activation: str = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        owner = "TransformerDecoderLayer"
        rng = check_rng(owner, rng)
        self.d_model = check_int(owner, "d_model", d_model, 1)
        self.nhead = check_int(owner, "nhead", nhead, 1)
        self.dim_feedforward = check_int(owner, "dim_feedforward", dim_feedforward, 1)
        # p = 1 would divide by zero in the residual dropouts' 1 / (1 - p).
        check_range(owner, "dropout", dropout, 0.0, 1.0)
        check_choice(owner, "activation", activation, DECODER_ACTIVATIONS)
        layer_norm_eps = check_positive(owner, "layer_norm_eps", layer_norm_eps)
        self.batch_first = check_bool(owner, "batch_first", batch_first)
        self.norm_first = check_bool(owner, "norm_first", norm_first)
        bias = check_bool(owner, "bias", bias)
        self.dropout_p = float(dropout)
        # Batch first inside: the layer transposes once at its boundary.
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first=True, dtype=dtype, rng=rng)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first=True, dtype=dtype, rng=rng)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype, rng=rng)
        self.dropout = Dropout(dropout, dtype=dtype, rng=rng)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype, rng=rng)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout, dtype=dtype, rng=rng)
        self.dropout2 = Dropout(dropout, dtype=dtype, rng=rng)
        self.dropout3 = Dropout(dropout, dtype=dtype, rng=rng)
        self.activation = make_activation(activation, dtype)
        self.zero_grad()

    def forward(self, tgt: np.ndarray, memory: np.ndarray, tgt_mask: np.ndarray | None = None,
                memory_mask: np.ndarray | None = None, tgt_key_padding_mask: np.ndarray | None = None,
                memory_key_padding_mask: np.ndarray | None = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False, dropout_masks: dict | None = None) -> np.ndarray:
        dropout_on = self.training and self.dropout_p > 0.0
        check_decoder_inputs("TransformerDecoderLayer", self.dtype, self.d_model, self.nhead, self.dim_feedforward,
                             self.batch_first, tgt, memory, dropout_masks, dropout_on)
        masks = dropout_masks if dropout_on else dict.fromkeys(DECODER_ATTENTION_SITES)
        if not self.batch_first:
            # Batch first inside: (T, B, E) -> (B, T, E), and the residual sites' masks with them.
            tgt, memory = tgt.swapaxes(0, 1), memory.swapaxes(0, 1)
            masks = {site: mask if site in DECODER_ATTENTION_SITES else mask.swapaxes(0, 1) for site, mask in masks.items()}
        attend_self = lambda x: self.self_attn(
            x, x, x, key_padding_mask=tgt_key_padding_mask, need_weights=False, attn_mask=tgt_mask,
            is_causal=tgt_is_causal, dropout_mask=masks["self_attn"])[0]  # (B, T, E)
        attend_memory = lambda x: self.multihead_attn(
            x, memory, memory, key_padding_mask=memory_key_padding_mask, need_weights=False, attn_mask=memory_mask,
            is_causal=memory_is_causal, dropout_mask=masks["multihead_attn"])[0]  # (B, T, E)
        feed_forward = lambda x: self.linear2(self._drop(self.dropout, self.activation(self.linear1(x)), masks, "dropout"))
        x = tgt  # (B, T, E)
        for branch, norm, site in ((attend_self, self.norm1, "dropout1"), (attend_memory, self.norm2, "dropout2"),
                                   (feed_forward, self.norm3, "dropout3")):
            dropout = getattr(self, site)
            if self.norm_first:
                x = x + self._drop(dropout, branch(norm(x)), masks, site)  # (B, T, E)
            else:
                x = norm(x + self._drop(dropout, branch(x), masks, site))  # (B, T, E)
        self.save_for_backward(dropout_on)
        return x if self.batch_first else x.swapaxes(0, 1)

    def _drop(self, dropout: Dropout, x: np.ndarray, masks: dict, site: str) -> np.ndarray:
        """One dropout site: its keep-mask applied in training with ``dropout > 0``, the identity otherwise."""
        return dropout(x, masks[site]) if site in masks else x

    def _undrop(self, dropout: Dropout, grad: np.ndarray, dropout_on: bool) -> np.ndarray:
        """The backward of :meth:`_drop` (the identity when the site was skipped)."""
        return dropout.backward(grad) if dropout_on else grad

    def backward(self, grad_output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dropout_on = self.saved_for_backward()
        if not self.batch_first:
            grad_output = grad_output.swapaxes(0, 1)  # (B, T, E)
        grad = grad_output  # (B, T, E)
        for block in ("feed_forward", "attend_memory", "attend_self"):
            # Post-LN: the norm came last, so it is undone first; its cotangent reaches both residual terms.
            grad_sum = grad if self.norm_first else self._block_norm(block).backward(grad)  # (B, T, E)
            grad_branch = self._undrop(self._block_dropout(block), grad_sum, dropout_on)  # (B, T, E)
            if block == "feed_forward":
                grad_hidden = self.linear2.backward(grad_branch)  # (B, T, F)
                grad_hidden = self._undrop(self.dropout, grad_hidden, dropout_on)  # (B, T, F)
                grad_hidden = self.activation.backward(grad_hidden)  # (B, T, F)
                grad_in = self.linear1.backward(grad_hidden)  # (B, T, E)
            elif block == "attend_memory":
                grad_in, grad_key, grad_value = self.multihead_attn.backward(grad_branch)  # 3 x (B, ., E)
                # memory is the key and the value: both gradients reach it.
                grad_memory = grad_key + grad_value  # (B, S, E)
            else:
                # x is query, key and value of the self-attention: the three gradients add.
                grad_in = sum(self.self_attn.backward(grad_branch))  # (B, T, E)
            if self.norm_first:
                grad_in = self._block_norm(block).backward(grad_in)  # (B, T, E)
            grad = grad_sum + grad_in  # (B, T, E)
        if not self.batch_first:
            grad, grad_memory = grad.swapaxes(0, 1), grad_memory.swapaxes(0, 1)  # (T, B, E), (S, B, E)
        return grad, grad_memory

    def _block_norm(self, block: str) -> LayerNorm:
        """The LayerNorm of a residual block (``norm1`` self-attention, ``norm2`` cross, ``norm3`` feed-forward)."""
        return {"attend_self": self.norm1, "attend_memory": self.norm2, "feed_forward": self.norm3}[block]

    def _block_dropout(self, block: str) -> Dropout:
        """The dropout on a residual block's branch (``dropout1`` .. ``dropout3``)."""
        return {"attend_self": self.dropout1, "attend_memory": self.dropout2, "feed_forward": self.dropout3}[block]
