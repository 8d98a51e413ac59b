r"""Days 55-56: the Vision Transformer (Dosovitskiy et al., 2021), Hugging Face's ``ViTModel`` and
``ViTForImageClassification``.

An image ``(B, H, W, C)`` (channels-last, as TF on CPU wants; the other trees take ``(B, C, H, W)``)
is cut into :math:`N = (H/P)^2` square patches of :math:`P \times P` pixels; each patch becomes a
``hidden_size`` vector through one linear map, written as a convolution with kernel = stride =
:math:`P` (day 15's ``Conv2d``, ``patch_embeddings.projection``, whose kernel is stored HWIO and
exported OIHW).
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

``tf.GradientTape`` derives the backward that the NumPy tree writes out. With :math:`G = \partial L/\partial z^L`,
each layer in reverse gives
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
import tensorflow as tf

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
    """``(B, H, W, C)`` -> ``(B, N, D)``: a ``Conv2d`` with kernel = stride = ``patch_size`` (``projection``),
    its ``(H/P, W/P)`` map read row by row."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTPatchEmbeddings", rng)
        self.projection = Conv2d(config.num_channels, config.hidden_size, config.patch_size, stride=config.patch_size,
                                 dtype=dtype, rng=rng)

    def forward(self, pixel_values: tf.Tensor) -> tf.Tensor:
        features = self.projection(pixel_values)  # (B, H/P, W/P, D)
        _, rows, cols, width = features.shape
        # Channels-last: reading the map row by row already gives (B, N, D); the batch from the runtime
        # shape (a traced call may not know it, and -1 is ambiguous when empty).
        return tf.reshape(features, (tf.shape(features)[0], rows * cols, width))  # (B, N, D)



class ViTEmbeddings(Module):
    """``[cls_token; patches] + position_embeddings``: ``(B, H, W, C)`` -> ``(B, N+1, D)``."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTEmbeddings", rng)
        self.cls_token = self.add_param("cls_token", init.normal((1, 1, config.hidden_size), rng,
                                                                config.initializer_range, dtype))
        self.patch_embeddings = ViTPatchEmbeddings(config, dtype, rng)
        self.position_embeddings = self.add_param("position_embeddings", init.normal(
            (1, config.num_patches + 1, config.hidden_size), rng, config.initializer_range, dtype))

    def forward(self, pixel_values: tf.Tensor) -> tf.Tensor:
        patches = self.patch_embeddings(pixel_values)  # (B, N, D)
        batch, width = tf.shape(patches)[0], patches.shape[2]
        cls_tokens = tf.broadcast_to(self.cls_token, (batch, 1, width))  # (B, 1, D)
        return tf.concat([cls_tokens, patches], axis=1) + self.position_embeddings  # (B, N+1, D)



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

    def forward(self, hidden_states: tf.Tensor) -> tf.Tensor:
        # (B, H, S, d) each, S = N + 1 tokens
        query, key, value = (split_heads(layer(hidden_states), self.num_heads)
                             for layer in (self.query, self.key, self.value))
        attended, _ = self.attention(query, key, value)  # (B, H, S, d)
        return merge_heads(attended)  # (B, S, D)



class ViTDenseOutput(Module):
    """One ``dense`` ``nn.Linear``: Hugging Face's ``ViTSelfOutput`` (``attention.output``) and ``ViTOutput``
    (``output``), without the residual add, which :class:`ViTLayer` does."""

    def __init__(self, in_features: int, out_features: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTDenseOutput", rng)
        self.dense = Linear(in_features, out_features, dtype=dtype, rng=rng)

    def forward(self, hidden_states: tf.Tensor) -> tf.Tensor:
        return self.dense(hidden_states)  # (B, S, out)



class ViTAttention(Module):
    """Hugging Face's ``ViTAttention``: ``attention`` (self-attention), then ``output.dense``."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTAttention", rng)
        self.attention = ViTSelfAttention(config, dtype, rng)
        self.output = ViTDenseOutput(config.hidden_size, config.hidden_size, dtype, rng)

    def forward(self, hidden_states: tf.Tensor) -> tf.Tensor:
        return self.output(self.attention(hidden_states))  # (B, S, D)



class ViTIntermediate(Module):
    """Hugging Face's ``ViTIntermediate``: ``dense`` (D -> F), then exact-erf GELU."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTIntermediate", rng)
        self.dense = Linear(config.hidden_size, config.intermediate_size, dtype=dtype, rng=rng)
        # hidden_act "gelu" is the exact form, Phi(x) by erf.
        self.intermediate_act_fn = GELU("none", dtype)

    def forward(self, hidden_states: tf.Tensor) -> tf.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))  # (B, S, F)



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

    def forward(self, hidden_states: tf.Tensor) -> tf.Tensor:
        attended = hidden_states + self.attention(self.layernorm_before(hidden_states))  # (B, S, D)
        return attended + self.output(self.intermediate(self.layernorm_after(attended)))  # (B, S, D)



class ViTEncoder(Module):
    """Hugging Face's ``ViTEncoder``: the layers ``layer.0 .. layer.{L-1}`` in order."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ViTEncoder", rng)
        self.layer = ModuleList([ViTLayer(config, dtype, rng) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states: tf.Tensor) -> tf.Tensor:
        for layer in self.layer:
            hidden_states = layer(hidden_states)  # (B, S, D)
        return hidden_states



class ViTModel(Module):
    """Hugging Face's ``ViTModel(config, add_pooling_layer=False)``: ``forward(pixel_values (B, H, W, C))``
    returns ``last_hidden_state (B, N+1, D)``."""

    def __init__(self, config: ViTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        check_config("ViTModel", config, ViTConfig)
        rng = check_rng("ViTModel", rng)
        self.config = config
        self.embeddings = ViTEmbeddings(config, dtype, rng)
        self.encoder = ViTEncoder(config, dtype, rng)
        self.layernorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype)

    def forward(self, pixel_values: tf.Tensor) -> tf.Tensor:
        check_vit_pixels("ViTModel", self.config, pixel_values, self.dtype, channels_last=True)
        return self.layernorm(self.encoder(self.embeddings(pixel_values)))  # (B, N+1, D)



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

    def forward(self, pixel_values: tf.Tensor) -> tf.Tensor:
        hidden = self.vit(pixel_values)  # (B, N+1, D)
        return self.classifier(hidden[:, 0])  # (B, num_labels)
