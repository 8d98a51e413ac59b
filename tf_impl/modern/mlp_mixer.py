r"""Day 57: MLP-Mixer (Tolstikhin et al., 2021), timm's ``MlpMixer``: vision with MLPs only.

An image ``(B, C, H, W)`` is cut into :math:`N = (H/P)^2` patches; each becomes an ``embed_dim``
vector through one linear map, written as day 15's ``Conv2d`` with kernel = stride = :math:`P`
(``stem.proj``). The table :math:`X \in \mathbb{R}^{N \times D}` then goes through ``num_blocks``
blocks that alternate two MLPs (each ``fc1``, exact-erf GELU, ``fc2``), with pre-LayerNorm
(eps 1e-6, timm's ``partial(nn.LayerNorm, eps=1e-6)``) and residual adds:

.. math::  U = X + \big(\mathrm{MLP}_\text{tok}(\mathrm{LN}_1(X)^\top)\big)^\top, \qquad
           Y = U + \mathrm{MLP}_\text{ch}(\mathrm{LN}_2(U))

The token MLP mixes the :math:`N` positions of each channel (it acts on the transposed table, so
its ``fc1`` is ``(tokens_dim, N)``: the only layer whose width depends on the image size); the
channel MLP mixes the :math:`D` channels of each position. There is no attention and no position
embedding: the token MLP's weights are the position-dependent part. A final ``norm``, the mean over
the :math:`N` tokens, and a linear ``head`` give the logits: :math:`y = W_h\,\tfrac1N\sum_n \mathrm{LN}(X^L)_n + b_h`.

Backward, with :math:`G = \partial L/\partial Y`: the channel branch gives
:math:`\bar U = G + \mathrm{LN}_2^\top(\mathrm{MLP}_\text{ch}^\top(G))`, then the token branch, on
transposed tables, :math:`\bar X = \bar U + \mathrm{LN}_1^\top\big((\mathrm{MLP}_\text{tok}^\top(\bar U^\top))^\top\big)`.
The mean sends :math:`\partial L/\partial \bar h / N` to every token, and the stem takes the
``(B, D, H/P, W/P)`` map of the patch rows' gradients through the convolution's backward. Each
MLP's weight gradient sums over every row it saw (tokens for ``mlp_channels``, channels for
``mlp_tokens``) and over the batch.

Canonical names are timm's ``state_dict`` (``stem.proj.weight`` ``(D, C, P, P)``,
``blocks.0.norm1.weight``, ``blocks.0.mlp_tokens.fc1.weight`` ``(tokens_dim, N)``, ...,
``blocks.0.mlp_channels.fc2.bias``, ``norm.weight``, ``head.weight``), so a timm model's state loads
unchanged. No dropout, no drop-path, no stem norm (timm's defaults). Initialization keeps torch.nn's
layer defaults (timm re-initializes with its own scheme: weights travel through the state dict).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_mixer_pixels, check_rng
from ml100.configs import MixerConfig, check_config

from ..foundations.activations import GELU
from ..foundations.conv import Conv2d
from ..foundations.linear import Linear
from ..foundations.normalization import LayerNorm
from ..module import Module, ModuleList

#: timm's ``partial(nn.LayerNorm, eps=1e-6)`` in every block and in the final ``norm``.
LAYER_NORM_EPS = 1e-6


class PatchEmbed(Module):
    """timm's ``PatchEmbed`` (``flatten=True``, no norm): ``(B, H, W, C)`` -> ``(B, N, D)`` through ``proj``,
    a ``Conv2d`` with kernel = stride = ``patch_size``, its ``(H/P, W/P)`` map read row by row."""

    def __init__(self, config: MixerConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("PatchEmbed", rng)
        self.proj = Conv2d(config.in_chans, config.embed_dim, config.patch_size, stride=config.patch_size,
                           dtype=dtype, rng=rng)

    def forward(self, pixel_values: tf.Tensor) -> tf.Tensor:
        features = self.proj(pixel_values)  # (B, H/P, W/P, D)
        _, rows, cols, width = features.shape
        # Channels-last: reading the map row by row already gives (B, N, D); the batch from the runtime
        # shape (a traced call may not know it, and -1 is ambiguous when empty).
        return tf.reshape(features, (tf.shape(features)[0], rows * cols, width))  # (B, N, D)



class Mlp(Module):
    """timm's ``Mlp``: ``fc2(GELU(fc1(x)))`` over the last axis, exact-erf GELU (``nn.GELU()``)."""

    def __init__(self, in_features: int, hidden_features: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("Mlp", rng)
        self.fc1 = Linear(in_features, hidden_features, dtype=dtype, rng=rng)
        self.act = GELU("none", dtype)
        self.fc2 = Linear(hidden_features, in_features, dtype=dtype, rng=rng)

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (..., in)



class MixerBlock(Module):
    """timm's ``MixerBlock``: ``u = x + mlp_tokens(norm1(x)^T)^T``, then ``u + mlp_channels(norm2(u))``.
    ``mlp_ratio`` scales ``dim`` for both hidden widths, as timm does."""

    def __init__(self, dim: int, seq_len: int, mlp_ratio=(0.5, 4.0), dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("MixerBlock", rng)
        tokens_dim, channels_dim = (int(ratio * dim) for ratio in mlp_ratio)
        self.norm1 = LayerNorm(dim, eps=LAYER_NORM_EPS, dtype=dtype)
        self.mlp_tokens = Mlp(seq_len, tokens_dim, dtype, rng)
        self.norm2 = LayerNorm(dim, eps=LAYER_NORM_EPS, dtype=dtype)
        self.mlp_channels = Mlp(dim, channels_dim, dtype, rng)

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        # The token MLP reads each channel's N positions: it runs on the transposed table.
        mixed = tf.transpose(self.mlp_tokens(tf.transpose(self.norm1(x), (0, 2, 1))), (0, 2, 1))  # (B, N, D)
        x = x + mixed  # (B, N, D)
        return x + self.mlp_channels(self.norm2(x))  # (B, N, D)



class MlpMixer(Module):
    """timm's ``MlpMixer(global_pool="avg")``: ``stem``, ``blocks.0 .. blocks.{L-1}``, ``norm``, the mean over
    tokens, ``head``. ``forward(pixel_values (B, H, W, C))`` returns ``logits (B, num_classes)``."""

    def __init__(self, config: MixerConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        check_config("MlpMixer", config, MixerConfig)
        rng = check_rng("MlpMixer", rng)
        self.config = config
        self.stem = PatchEmbed(config, dtype, rng)
        self.blocks = ModuleList([MixerBlock(config.embed_dim, config.num_patches, config.mlp_ratio, dtype, rng)
                                  for _ in range(config.num_blocks)])
        self.norm = LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS, dtype=dtype)
        self.head = Linear(config.embed_dim, config.num_classes, dtype=dtype, rng=rng)

    def forward(self, pixel_values: tf.Tensor) -> tf.Tensor:
        check_mixer_pixels("MlpMixer", self.config, pixel_values, self.dtype, channels_last=True)
        x = self.stem(pixel_values)  # (B, N, D)
        for block in self.blocks:
            x = block(x)  # (B, N, D)
        return self.head(tf.reduce_mean(self.norm(x), axis=1))  # (B, num_classes)
