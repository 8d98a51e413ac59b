r"""Day 38: a small U-Net that predicts the noise of a diffusion step, conditioned on the timestep
(a sinusoidal embedding) and on the class (a learned embedding with a null class for guidance).

**Timestep embedding** (Vaswani et al. 2017's positions, as DDPM and diffusers'
``get_timestep_embedding`` use them for :math:`t`): with :math:`h = \lfloor D/2\rfloor`,

.. math::  \omega_i = \exp\Big(-\ln(P)\,\frac{i}{h - \delta}\Big),\quad i = 0..h-1, \qquad
           e(t) = \big[\sin(s\,t\,\omega_0..\omega_{h-1}),\ \cos(s\,t\,\omega_0..\omega_{h-1})\big]

(:math:`P` = ``max_period``, :math:`\delta` = ``downscale_freq_shift``, :math:`s` = ``scale``);
``flip_sin_to_cos`` puts the cosines first; an odd :math:`D` gets one zero column at the end.

**Conditioning vector**: :math:`c = W_2\,\mathrm{SiLU}(W_1 e(t) + b_1) + b_2 + E_{y}` where
:math:`E` has ``num_classes + 1`` rows: row ``num_classes`` is the *null class*, used for every
sample when ``labels`` is ``None`` (classifier-free guidance mixes the two predictions).

**ResBlock** (diffusers' ``ResnetBlock2D``, names included):

.. math::  h = \mathrm{conv_1}(\mathrm{SiLU}(\mathrm{GN_1}(x))) + \mathrm{proj}(\mathrm{SiLU}(c))_{[:, None, None, :]},\qquad
           y = S(x) + \mathrm{conv_2}(\mathrm{SiLU}(\mathrm{GN_2}(h)))

with :math:`S` a 1×1 convolution when the width changes, else the identity. Backward: the
gradient of the added embedding is the output gradient summed over the pixels,
:math:`\partial L/\partial\,\mathrm{proj} = \sum_{i,j} \partial L/\partial h_{:, i, j, :}`; the two
paths of the sum add at :math:`x`.

**UNet** (8×8 digits, widths ``(c1, c2)``)::

    x (N, 8, 8, C) ─ conv_in ─ down1 (c1) ─┬─ down (3×3 s2) ─ down2 (c2) @4×4 ─ mid (c2) ─ up (4×4 s2 transposed)
                                           └───────────── skip ──────────────── concat [up, skip] (c2 + c1) @8×8
                                                              ─ up1 (c1) ─ GN ─ SiLU ─ conv_out ─ eps (N, 8, 8, C)

The conditioning vector enters all four ResBlocks, so its gradient is the sum of four.
The sinusoid has ``c1`` columns with diffusers' ``UNet2DModel`` defaults (``flip_sin_to_cos=True``,
``freq_shift=0``); GroupNorm's eps is diffusers' 1e-6.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ml100.checks import check_ids, check_input, check_int, check_rng, check_timestep_embedding, resolve_dtype
from ml100.configs import UNetConfig, check_config

from ..foundations.activations import SiLU
from ..foundations.conv import Conv2d
from ..foundations.linear import Linear
from ..foundations.normalization import GroupNorm
from ..module import Module, tf_dtype
from .conv_transpose import ConvTranspose2d
from .embedding import Embedding


def timestep_embedding(timesteps: tf.Tensor, embedding_dim: int, flip_sin_to_cos: bool = False,
                       downscale_freq_shift: float = 1.0, scale: float = 1.0, max_period: float = 10000,
                       dtype="float32") -> tf.Tensor:
    """``(N,)`` timesteps (int64 or float) -> ``(N, embedding_dim)`` sinusoids, as diffusers'
    ``get_timestep_embedding`` with the same flags, computed in ``dtype``."""
    dtype = resolve_dtype(dtype)
    half_dim = check_timestep_embedding("timestep_embedding", dtype, timesteps, embedding_dim, flip_sin_to_cos,
                                        downscale_freq_shift, scale, max_period)
    # The same operations in the same order as diffusers, so float32 rounds as it does there.
    exponent = -math.log(max_period) * tf.range(half_dim, dtype=tf_dtype(dtype))  # (h,)
    exponent = exponent / (half_dim - downscale_freq_shift)  # (h,)
    frequencies = tf.exp(exponent)  # (h,)
    angles = tf.cast(timesteps, tf_dtype(dtype))[:, None] * frequencies[None, :]  # (N, h)
    angles = scale * angles  # (N, h)
    first, second = (tf.cos(angles), tf.sin(angles)) if flip_sin_to_cos else (tf.sin(angles), tf.cos(angles))
    # An odd width leaves one column: zero, at the end.
    padding = tf.zeros((tf.shape(angles)[0], embedding_dim % 2), dtype=tf_dtype(dtype))  # (N, D mod 2)
    return tf.concat([first, second, padding], axis=1)  # (N, D)


class TimestepEmbedding(Module):
    """``linear_2(SiLU(linear_1(sample)))``: the sinusoid ``(N, in_channels)`` -> ``(N, time_embed_dim)``,
    diffusers' ``TimestepEmbedding`` and names."""

    def __init__(self, in_channels: int, time_embed_dim: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("TimestepEmbedding", rng)
        self.linear_1 = Linear(in_channels, time_embed_dim, dtype=dtype, rng=rng)
        self.act = SiLU(dtype=dtype)
        self.linear_2 = Linear(time_embed_dim, time_embed_dim, dtype=dtype, rng=rng)

    def forward(self, sample: tf.Tensor) -> tf.Tensor:
        return self.linear_2(self.act(self.linear_1(sample)))  # (N, E)


class ResBlock(Module):
    """GroupNorm, SiLU, 3×3 conv, + the projected embedding per channel, GroupNorm, SiLU, 3×3 conv,
    plus a skip (1×1 conv when the width changes); diffusers' ``ResnetBlock2D`` and names.
    ``forward(x (N, H, W, in), temb (N, temb_channels)) -> (N, H, W, out)``."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int = 32, eps: float = 1e-6,
                 dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("ResBlock", rng)
        self.in_channels = check_int("ResBlock", "in_channels", in_channels, 1)
        self.out_channels = check_int("ResBlock", "out_channels", out_channels, 1)
        self.temb_channels = check_int("ResBlock", "temb_channels", temb_channels, 1)
        self.norm1 = GroupNorm(groups, in_channels, eps=eps, dtype=dtype)
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1, dtype=dtype, rng=rng)
        self.time_emb_proj = Linear(temb_channels, out_channels, dtype=dtype, rng=rng)
        self.norm2 = GroupNorm(groups, out_channels, eps=eps, dtype=dtype)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, dtype=dtype, rng=rng)
        # One SiLU module for its three uses, as diffusers' `nonlinearity` (no state to keep apart).
        self.nonlinearity = SiLU(dtype=dtype)
        if in_channels != out_channels:
            self.conv_shortcut = Conv2d(in_channels, out_channels, 1, dtype=dtype, rng=rng)
        else:
            self.conv_shortcut = None

    def forward(self, x: tf.Tensor, temb: tf.Tensor) -> tf.Tensor:
        check_input("ResBlock", "temb", temb.shape, temb.dtype, expected_dtype=self.dtype, ndim=2,
                    last_dim=self.temb_channels)
        if temb.shape[0] != x.shape[0]:
            raise ValueError(f"ResBlock: temb must have one row per sample of x ({x.shape[0]}), got shape {tuple(temb.shape)}")
        h = self.conv1(self.nonlinearity(self.norm1(x)))  # (N, H, W, out)
        # The embedding is one vector per sample: added to every pixel of each channel.
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, None, None, :]  # (N, H, W, out)
        h = self.conv2(self.nonlinearity(self.norm2(h)))  # (N, H, W, out)
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)  # (N, H, W, out)
        return shortcut + h  # (N, H, W, out)


class UNet(Module):
    """The noise predictor: ``forward(x (N, H, W, C), timesteps int64 (N,), labels int64 (N,) | None)
    -> eps (N, H, W, C)``, sized by a :class:`ml100.configs.UNetConfig`."""

    def __init__(self, config: UNetConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("UNet", config, UNetConfig)
        super().__init__(dtype)
        rng = check_rng("UNet", rng)
        self.config = config
        c1, c2 = config.channels
        emb, groups = config.time_embed_dim, config.groups
        self.time_embedding = TimestepEmbedding(c1, emb, dtype=dtype, rng=rng)
        if config.num_classes is not None:
            # One row more than the classes: row num_classes is the null class (no label).
            self.class_embedding = Embedding(config.num_classes + 1, emb, dtype=dtype, rng=rng)
        else:
            self.class_embedding = None
        self.conv_in = Conv2d(config.in_channels, c1, 3, padding=1, dtype=dtype, rng=rng)
        self.down1 = ResBlock(c1, c1, emb, groups, dtype=dtype, rng=rng)
        self.down = Conv2d(c1, c1, 3, stride=2, padding=1, dtype=dtype, rng=rng)
        self.down2 = ResBlock(c1, c2, emb, groups, dtype=dtype, rng=rng)
        self.mid = ResBlock(c2, c2, emb, groups, dtype=dtype, rng=rng)
        # Kernel 4, stride 2, padding 1 doubles the size exactly: (H - 1) * 2 - 2 + 4 = 2H.
        self.up = ConvTranspose2d(c2, c2, 4, stride=2, padding=1, dtype=dtype, rng=rng)
        self.up1 = ResBlock(c2 + c1, c1, emb, groups, dtype=dtype, rng=rng)
        self.conv_norm_out = GroupNorm(groups, c1, eps=1e-6, dtype=dtype)
        self.conv_act = SiLU(dtype=dtype)
        self.conv_out = Conv2d(c1, config.in_channels, 3, padding=1, dtype=dtype, rng=rng)

    def condition(self, timesteps: tf.Tensor, labels: tf.Tensor | None, batch: int) -> tf.Tensor:
        """The conditioning vector ``(N, time_embed_dim)``: time MLP of the sinusoid, plus the class row."""
        check_input("UNet", "timesteps", timesteps.shape, timesteps.dtype, expected_dtype="int64", shape_like=(batch,))
        sinusoid = timestep_embedding(timesteps, self.config.channels[0], flip_sin_to_cos=True, downscale_freq_shift=0.0,
                                      dtype=self.dtype)  # (N, c1)
        temb = self.time_embedding(sinusoid)  # (N, E)
        if self.class_embedding is None:
            if labels is not None:
                raise ValueError("UNet: labels must be None for an unconditional model (config.num_classes is None)")
            return temb
        null = self.config.num_classes
        if labels is None:
            labels = tf.fill(tf.shape(timesteps), tf.constant(null, dtype=tf.int64))  # (N,) int64: the null class
        check_input("UNet", "labels", labels.shape, labels.dtype, expected_dtype="int64", shape_like=(batch,))
        # The values are known in eager calls only; traced, CPU tf.gather still refuses a bad id.
        if tf.executing_eagerly():
            check_ids("UNet", "labels", labels, null + 1)
        return temb + self.class_embedding(labels)  # (N, E)

    def forward(self, x: tf.Tensor, timesteps: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        check_input("UNet", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        size, channels = self.config.image_size, self.config.in_channels
        if tuple(x.shape[1:]) != (size, size, channels):
            raise ValueError(f"UNet: x must have shape (N, {size}, {size}, {channels}) (channels last), got {tuple(x.shape)}")
        emb = self.condition(timesteps, labels, x.shape[0])  # (N, E)
        skip = self.down1(self.conv_in(x), emb)  # (N, H, W, c1)
        h = self.down2(self.down(skip), emb)  # (N, H/2, W/2, c2)
        h = self.mid(h, emb)  # (N, H/2, W/2, c2)
        h = tf.concat([self.up(h), skip], axis=-1)  # (N, H, W, c2 + c1)
        h = self.up1(h, emb)  # (N, H, W, c1)
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))  # (N, H, W, C)
