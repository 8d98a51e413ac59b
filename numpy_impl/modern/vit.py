r"""Days 55-56: the Vision Transformer (Dosovitskiy et al., 2021), Hugging Face's ``ViTModel`` and
``ViTForImageClassification``.

An image ``(B, C, H, W)`` is cut into :math:`N = (H/P)^2` square patches of :math:`P \times P`
pixels; each patch becomes a ``hidden_size`` vector through one linear map, written as a
convolution with kernel = stride = :math:`P` (day 15's ``Conv2d``, ``patch_embeddings.projection``).
A learned class token joins in front, and a learned position table (one row per token) is added:

.. math::  z^0 = [\,c;\ x_1 E;\ \dots;\ x_N E\,] + E_\text{pos} \in \mathbb{R}^{(N+1) \times D}

Then ``num_hidden_layers`` pre-LN encoder layers (bidirectional multi-head attention, no mask;
an MLP with exact-erf GELU), a final LayerNorm, and for classification a linear head on the
class token's row:

.. math::  a^l = z^{l-1} + \mathrm{MSA}(\mathrm{LN}_\text{before}(z^{l-1})), \qquad
           z^l = a^l + W_2\,\mathrm{GELU}(W_1\,\mathrm{LN}_\text{after}(a^l) + b_1) + b_2, \qquad
           y = W_c\, \mathrm{LN}(z^L)_0 + b_c

:math:`\mathrm{MSA}` is day 41's ``ScaledDotProductAttention`` on heads ``(B, H, N+1, d)`` from
``query``, ``key``, ``value`` (``nn.Linear``, biases if ``qkv_bias``), then ``attention.output.dense``.

Backward, with :math:`G = \partial L/\partial z^L`: each layer in reverse gives
:math:`\bar a = G + \mathrm{LN}_\text{after}^\top(\mathrm{MLP}^\top(G))` and
:math:`\bar z^{l-1} = \bar a + \mathrm{LN}_\text{before}^\top(\mathrm{MSA}^\top(\bar a))` (the query,
key and value gradients add: one input feeds all three). The embeddings take :math:`\bar z^0`:

.. math::  \frac{\partial L}{\partial E_\text{pos}} = \textstyle\sum_b \bar z^0_b, \qquad
           \frac{\partial L}{\partial c} = \textstyle\sum_b \bar z^0_{b,0}, \qquad
           \frac{\partial L}{\partial x} = \mathrm{Conv}^\top(\bar z^0_{:,1:})

(the patch rows go back to a ``(B, D, H/P, W/P)`` map and through the convolution's backward).
Canonical names are Hugging Face's (``embeddings.cls_token`` ``(1, 1, D)``,
``embeddings.position_embeddings`` ``(1, N+1, D)``, ``encoder.layer.0.attention.attention.query.weight``,
..., ``layernorm.weight``; ``vit.`` in front and ``classifier.*`` for the classifier). No pooler
(``add_pooling_layer=False``) and no dropout (``ViTConfig`` requires both probabilities 0).
Initialization: the class token and position table from :math:`N(0, \text{initializer\_range}^2)`;
dense and conv layers keep torch.nn's defaults.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_rng, check_vit_pixels
from ml100.configs import ViTConfig, check_config

from ..foundations import init
from ..foundations.activations import GELU
from ..foundations.conv import Conv2d
from ..foundations.linear import Linear
from ..foundations.normalization import LayerNorm
from ..module import Module, ModuleList
from .attention import ScaledDotProductAttention
from .gpt import merge_heads, split_heads


class ViTPatchEmbeddings(Module):
    """``(B, C, H, W)`` -> ``(B, N, D)``: a ``Conv2d`` with kernel = stride = ``patch_size`` (``projection``),
    its ``(H/P, W/P)`` map read row by row."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTPatchEmbeddings", rng)
        self.projection = Conv2d(config.num_channels, config.hidden_size, config.patch_size, stride=config.patch_size,
                                 dtype=dtype, rng=rng)

    def forward(self, pixel_values: np.ndarray) -> np.ndarray:
        features = self.projection(pixel_values)  # (B, D, H/P, W/P)
        batch, width, rows, cols = features.shape
        self.save_for_backward(features.shape)
        # Sizes spelled out: -1 is ambiguous for an empty batch.
        return features.reshape(batch, width, rows * cols).transpose(0, 2, 1)  # (B, N, D)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        features_shape = self.saved_for_backward()
        grad_features = grad_output.transpose(0, 2, 1).reshape(features_shape)  # (B, D, H/P, W/P)
        return self.projection.backward(grad_features)  # (B, C, H, W)


class ViTEmbeddings(Module):
    """``[cls_token; patches] + position_embeddings``: ``(B, C, H, W)`` -> ``(B, N+1, D)``."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTEmbeddings", rng)
        self.params["cls_token"] = init.normal((1, 1, config.hidden_size), rng, config.initializer_range, dtype)
        self.patch_embeddings = ViTPatchEmbeddings(config, dtype, rng)
        self.params["position_embeddings"] = init.normal((1, config.num_patches + 1, config.hidden_size), rng,
                                                         config.initializer_range, dtype)
        self.zero_grad()

    def forward(self, pixel_values: np.ndarray) -> np.ndarray:
        patches = self.patch_embeddings(pixel_values)  # (B, N, D)
        batch, _, width = patches.shape
        cls_tokens = np.broadcast_to(self.params["cls_token"], (batch, 1, width))  # (B, 1, D)
        return np.concatenate([cls_tokens, patches], axis=1) + self.params["position_embeddings"]  # (B, N+1, D)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        # One table row and one class token serve every image of the batch: their gradients sum over it.
        self.grads["position_embeddings"] += grad_output.sum(axis=0, keepdims=True)  # (1, N+1, D)
        self.grads["cls_token"] += grad_output[:, :1].sum(axis=0, keepdims=True)  # (1, 1, D)
        return self.patch_embeddings.backward(grad_output[:, 1:])  # (B, C, H, W)


class ViTSelfAttention(Module):
    """Bidirectional multi-head attention from ``query``, ``key``, ``value`` (``nn.Linear``)."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTSelfAttention", rng)
        self.num_heads = config.num_attention_heads
        self.query = Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias, dtype=dtype, rng=rng)
        self.key = Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias, dtype=dtype, rng=rng)
        self.value = Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias, dtype=dtype, rng=rng)
        self.attention = ScaledDotProductAttention(dtype)

    def forward(self, hidden_states: np.ndarray) -> np.ndarray:
        # (B, H, S, d) each, S = N + 1 tokens
        query, key, value = (split_heads(layer(hidden_states), self.num_heads)
                             for layer in (self.query, self.key, self.value))
        attended, _ = self.attention(query, key, value)  # (B, H, S, d)
        return merge_heads(attended)  # (B, S, D)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        # (B, H, S, d) each; no mask, so no mask gradient.
        grad_query, grad_key, grad_value, _ = self.attention.backward(split_heads(grad_output, self.num_heads))
        # One input fed the three projections: their input gradients add.
        return (self.query.backward(merge_heads(grad_query)) + self.key.backward(merge_heads(grad_key))
                + self.value.backward(merge_heads(grad_value)))  # (B, S, D)


class ViTDenseOutput(Module):
    """One ``dense`` ``nn.Linear``: Hugging Face's ``ViTSelfOutput`` (``attention.output``) and ``ViTOutput``
    (``output``), without the residual add, which :class:`ViTLayer` does."""

    def __init__(self, in_features: int, out_features: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTDenseOutput", rng)
        self.dense = Linear(in_features, out_features, dtype=dtype, rng=rng)

    def forward(self, hidden_states: np.ndarray) -> np.ndarray:
        return self.dense(hidden_states)  # (B, S, out)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return self.dense.backward(grad_output)  # (B, S, in)


class ViTAttention(Module):
    """Hugging Face's ``ViTAttention``: ``attention`` (self-attention), then ``output.dense``."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTAttention", rng)
        self.attention = ViTSelfAttention(config, dtype, rng)
        self.output = ViTDenseOutput(config.hidden_size, config.hidden_size, dtype, rng)

    def forward(self, hidden_states: np.ndarray) -> np.ndarray:
        return self.output(self.attention(hidden_states))  # (B, S, D)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return self.attention.backward(self.output.backward(grad_output))  # (B, S, D)


class ViTIntermediate(Module):
    """Hugging Face's ``ViTIntermediate``: ``dense`` (D -> F), then exact-erf GELU."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTIntermediate", rng)
        self.dense = Linear(config.hidden_size, config.intermediate_size, dtype=dtype, rng=rng)
        # hidden_act "gelu" is the exact form, Phi(x) by erf.
        self.intermediate_act_fn = GELU("none", dtype)

    def forward(self, hidden_states: np.ndarray) -> np.ndarray:
        return self.intermediate_act_fn(self.dense(hidden_states))  # (B, S, F)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return self.dense.backward(self.intermediate_act_fn.backward(grad_output))  # (B, S, D)


class ViTLayer(Module):
    """Hugging Face's ``ViTLayer``, pre-LN: ``a = z + attention(layernorm_before(z))``, then
    ``a + output(intermediate(layernorm_after(a)))``."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTLayer", rng)
        self.attention = ViTAttention(config, dtype, rng)
        self.intermediate = ViTIntermediate(config, dtype, rng)
        self.output = ViTDenseOutput(config.intermediate_size, config.hidden_size, dtype, rng)
        self.layernorm_before = LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype)
        self.layernorm_after = LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype)

    def forward(self, hidden_states: np.ndarray) -> np.ndarray:
        attended = hidden_states + self.attention(self.layernorm_before(hidden_states))  # (B, S, D)
        return attended + self.output(self.intermediate(self.layernorm_after(attended)))  # (B, S, D)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        # Each residual sum passes its gradient straight through and into its branch: the two add.
        grad_branch = self.intermediate.backward(self.output.backward(grad_output))  # (B, S, D)
        grad_attended = grad_output + self.layernorm_after.backward(grad_branch)  # (B, S, D)
        grad_branch = self.attention.backward(grad_attended)  # (B, S, D)
        return grad_attended + self.layernorm_before.backward(grad_branch)  # (B, S, D)


class ViTEncoder(Module):
    """Hugging Face's ``ViTEncoder``: the layers ``layer.0 .. layer.{L-1}`` in order."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTEncoder", rng)
        self.layer = ModuleList([ViTLayer(config, dtype, rng) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states: np.ndarray) -> np.ndarray:
        for layer in self.layer:
            hidden_states = layer(hidden_states)  # (B, S, D)
        return hidden_states

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        for layer in reversed(list(self.layer)):
            grad_output = layer.backward(grad_output)  # (B, S, D)
        return grad_output


class ViTModel(Module):
    """Hugging Face's ``ViTModel(config, add_pooling_layer=False)``: ``forward(pixel_values (B, C, H, W))``
    returns ``last_hidden_state (B, N+1, D)``; ``backward`` returns the pixels' gradient."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        check_config("ViTModel", config, ViTConfig)
        rng = check_rng("ViTModel", rng)
        self.config = config
        self.embeddings = ViTEmbeddings(config, dtype, rng)
        self.encoder = ViTEncoder(config, dtype, rng)
        self.layernorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype)
        self.zero_grad()

    def forward(self, pixel_values: np.ndarray) -> np.ndarray:
        check_vit_pixels("ViTModel", self.config, pixel_values, self.dtype, channels_last=False)
        return self.layernorm(self.encoder(self.embeddings(pixel_values)))  # (B, N+1, D)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return self.embeddings.backward(self.encoder.backward(self.layernorm.backward(grad_output)))  # (B, C, H, W)


class ViTForImageClassification(Module):
    """Hugging Face's ``ViTForImageClassification``: ``vit`` (no pooler), then ``classifier`` (D -> num_labels)
    on the class token's final row. ``forward(pixel_values)`` returns ``logits (B, num_labels)``."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        check_config("ViTForImageClassification", config, ViTConfig)
        rng = check_rng("ViTForImageClassification", rng)
        self.config = config
        self.vit = ViTModel(config, dtype, rng)
        self.classifier = Linear(config.hidden_size, config.num_labels, dtype=dtype, rng=rng)
        self.zero_grad()

    def forward(self, pixel_values: np.ndarray) -> np.ndarray:
        hidden = self.vit(pixel_values)  # (B, N+1, D)
        self.save_for_backward(hidden.shape)
        return self.classifier(hidden[:, 0])  # (B, num_labels)

    def backward(self, grad_logits: np.ndarray) -> np.ndarray:
        hidden_shape = self.saved_for_backward()
        # Only the class token's row reached the classifier: every other row's gradient is 0.
        grad_hidden = np.zeros(hidden_shape, dtype=grad_logits.dtype)  # (B, N+1, D)
        grad_hidden[:, 0] = self.classifier.backward(grad_logits)  # (B, D)
        return self.vit.backward(grad_hidden)  # (B, C, H, W)
