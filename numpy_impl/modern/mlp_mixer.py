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
    """timm's ``PatchEmbed`` (``flatten=True``, no norm): ``(B, C, H, W)`` -> ``(B, N, D)`` through ``proj``,
    a ``Conv2d`` with kernel = stride = ``patch_size``, its ``(H/P, W/P)`` map read row by row."""

    def __init__(self, config: MixerConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("PatchEmbed", rng)
        self.proj = Conv2d(config.in_chans, config.embed_dim, config.patch_size, stride=config.patch_size,
                           dtype=dtype, rng=rng)

    def forward(self, pixel_values: np.ndarray) -> np.ndarray:
        features = self.proj(pixel_values)  # (B, D, H/P, W/P)
        batch, width, rows, cols = features.shape
        self.save_for_backward(features.shape)
        # Sizes spelled out: -1 is ambiguous for an empty batch.
        return features.reshape(batch, width, rows * cols).transpose(0, 2, 1)  # (B, N, D)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        features_shape = self.saved_for_backward()
        grad_features = grad_output.transpose(0, 2, 1).reshape(features_shape)  # (B, D, H/P, W/P)
        return self.proj.backward(grad_features)  # (B, C, H, W)


class Mlp(Module):
    """timm's ``Mlp``: ``fc2(GELU(fc1(x)))`` over the last axis, exact-erf GELU (``nn.GELU()``)."""

    def __init__(self, in_features: int, hidden_features: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("Mlp", rng)
        self.fc1 = Linear(in_features, hidden_features, dtype=dtype, rng=rng)
        self.act = GELU("none", dtype)
        self.fc2 = Linear(hidden_features, in_features, dtype=dtype, rng=rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fc2(self.act(self.fc1(x)))  # (..., in)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return self.fc1.backward(self.act.backward(self.fc2.backward(grad_output)))  # (..., in)


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

    def forward(self, x: np.ndarray) -> np.ndarray:
        # The token MLP reads each channel's N positions: it runs on the transposed table.
        mixed = self.mlp_tokens(self.norm1(x).transpose(0, 2, 1)).transpose(0, 2, 1)  # (B, N, D)
        x = x + mixed  # (B, N, D)
        return x + self.mlp_channels(self.norm2(x))  # (B, N, D)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        # Each residual sum passes its gradient straight through and into its branch: the two add.
        grad_branch = self.norm2.backward(self.mlp_channels.backward(grad_output))  # (B, N, D)
        grad_mixed = grad_output + grad_branch  # (B, N, D)
        grad_tokens = self.mlp_tokens.backward(grad_mixed.transpose(0, 2, 1))  # (B, D, N)
        return grad_mixed + self.norm1.backward(grad_tokens.transpose(0, 2, 1))  # (B, N, D)


class MlpMixer(Module):
    """timm's ``MlpMixer(global_pool="avg")``: ``stem``, ``blocks.0 .. blocks.{L-1}``, ``norm``, the mean over
    tokens, ``head``. ``forward(pixel_values (B, C, H, W))`` returns ``logits (B, num_classes)``."""

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
        self.zero_grad()

    def forward(self, pixel_values: np.ndarray) -> np.ndarray:
        check_mixer_pixels("MlpMixer", self.config, pixel_values, self.dtype, channels_last=False)
        x = self.stem(pixel_values)  # (B, N, D)
        for block in self.blocks:
            x = block(x)  # (B, N, D)
        return self.head(self.norm(x).mean(axis=1))  # (B, num_classes)

    def backward(self, grad_logits: np.ndarray) -> np.ndarray:
        grad_pooled = self.head.backward(grad_logits)  # (B, D)
        tokens = self.config.num_patches
        # The mean hands each of the N tokens 1/N of the pooled gradient.
        grad_x = np.repeat(grad_pooled[:, None, :] / tokens, tokens, axis=1)  # (B, N, D)
        grad_x = self.norm.backward(grad_x)  # (B, N, D)
        for block in reversed(list(self.blocks)):
            grad_x = block.backward(grad_x)  # (B, N, D)
        return self.stem.backward(grad_x)  # (B, C, H, W)
