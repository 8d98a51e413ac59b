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

.. math::  h = \mathrm{conv_1}(\mathrm{SiLU}(\mathrm{GN_1}(x))) + \mathrm{proj}(\mathrm{SiLU}(c))_{[:, :, None, None]},\qquad
           y = S(x) + \mathrm{conv_2}(\mathrm{SiLU}(\mathrm{GN_2}(h)))

with :math:`S` a 1×1 convolution when the width changes, else the identity. Backward: the
gradient of the added embedding is the output gradient summed over the pixels,
:math:`\partial L/\partial\,\mathrm{proj} = \sum_{i,j} \partial L/\partial h_{:, :, i, j}`; the two
paths of the sum add at :math:`x`.

**UNet** (8×8 digits, widths ``(c1, c2)``)::

    x (N, C, 8, 8) ─ conv_in ─ down1 (c1) ─┬─ down (3×3 s2) ─ down2 (c2) @4×4 ─ mid (c2) ─ up (4×4 s2 transposed)
                                           └───────────── skip ──────────────── concat [up, skip] (c2 + c1) @8×8
                                                              ─ up1 (c1) ─ GN ─ SiLU ─ conv_out ─ eps (N, C, 8, 8)

The conditioning vector enters all four ResBlocks, so its gradient is the sum of four.
The sinusoid has ``c1`` columns with diffusers' ``UNet2DModel`` defaults (``flip_sin_to_cos=True``,
``freq_shift=0``); GroupNorm's eps is diffusers' 1e-6.
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import check_ids, check_input, check_int, check_rng, check_timestep_embedding, resolve_dtype
from ml100.configs import UNetConfig, check_config

from ..foundations.activations import SiLU
from ..foundations.conv import Conv2d
from ..foundations.linear import Linear
from ..foundations.normalization import GroupNorm
from ..module import Module
from .conv_transpose import ConvTranspose2d
from .embedding import Embedding


def timestep_embedding(timesteps: np.ndarray, embedding_dim: int, flip_sin_to_cos: bool = False,
                       downscale_freq_shift: float = 1.0, scale: float = 1.0, max_period: float = 10000,
                       dtype="float32") -> np.ndarray:
    """``(N,)`` timesteps (int64 or float) -> ``(N, embedding_dim)`` sinusoids, as diffusers'
    ``get_timestep_embedding`` with the same flags, computed in ``dtype``."""
    dtype = resolve_dtype(dtype)
    half_dim = check_timestep_embedding("timestep_embedding", dtype, timesteps, embedding_dim, flip_sin_to_cos,
                                        downscale_freq_shift, scale, max_period)
    # The same operations in the same order as diffusers, so float32 rounds as it does there.
    exponent = -math.log(max_period) * np.arange(half_dim, dtype=dtype)  # (h,)
    exponent = exponent / (half_dim - downscale_freq_shift)  # (h,)
    frequencies = np.exp(exponent)  # (h,)
    angles = timesteps.astype(dtype)[:, None] * frequencies[None, :]  # (N, h)
    angles = scale * angles  # (N, h)
    first, second = (np.cos(angles), np.sin(angles)) if flip_sin_to_cos else (np.sin(angles), np.cos(angles))
    # An odd width leaves one column: zero, at the end.
    padding = np.zeros((angles.shape[0], embedding_dim % 2), dtype=dtype)  # (N, D mod 2)
    return np.concatenate([first, second, padding], axis=1)  # (N, D)


class TimestepEmbedding(Module):
    """``linear_2(SiLU(linear_1(sample)))``: the sinusoid ``(N, in_channels)`` -> ``(N, time_embed_dim)``,
    diffusers' ``TimestepEmbedding`` and names."""

    def __init__(self, in_channels: int, time_embed_dim: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("TimestepEmbedding", rng)
        self.linear_1 = Linear(in_channels, time_embed_dim, dtype=dtype, rng=rng)
        self.act = SiLU(dtype=dtype)
        self.linear_2 = Linear(time_embed_dim, time_embed_dim, dtype=dtype, rng=rng)

    def forward(self, sample: np.ndarray) -> np.ndarray:
        return self.linear_2(self.act(self.linear_1(sample)))  # (N, E)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        grad = self.linear_2.backward(grad_out)  # (N, E)
        grad = self.act.backward(grad)  # (N, E)
        return self.linear_1.backward(grad)  # (N, in)


class ResBlock(Module):
    """GroupNorm, SiLU, 3×3 conv, + the projected embedding per channel, GroupNorm, SiLU, 3×3 conv,
    plus a skip (1×1 conv when the width changes); diffusers' ``ResnetBlock2D`` and names.
    ``forward(x (N, in, H, W), temb (N, temb_channels)) -> (N, out, H, W)``."""

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

    def forward(self, x: np.ndarray, temb: np.ndarray) -> np.ndarray:
        check_input("ResBlock", "temb", temb.shape, temb.dtype, expected_dtype=self.dtype, ndim=2,
                    last_dim=self.temb_channels)
        if temb.shape[0] != x.shape[0]:
            raise ValueError(f"ResBlock: temb must have one row per sample of x ({x.shape[0]}), got shape {temb.shape}")
        h = self.conv1(self.nonlinearity(self.norm1(x)))  # (N, out, H, W)
        # The embedding is one vector per sample: added to every pixel of each channel.
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]  # (N, out, H, W)
        h = self.conv2(self.nonlinearity(self.norm2(h)))  # (N, out, H, W)
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)  # (N, out, H, W)
        return shortcut + h  # (N, out, H, W)

    def backward(self, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grad_skip = grad_out if self.conv_shortcut is None else self.conv_shortcut.backward(grad_out)  # (N, in, H, W)
        # The shared SiLU pops its three uses in reverse: after norm2, on temb, after norm1.
        g = self.conv2.backward(grad_out)  # (N, out, H, W)
        g = self.nonlinearity.backward(g)  # (N, out, H, W)
        grad_h = self.norm2.backward(g)  # (N, out, H, W)
        # Broadcast over pixels forward is a sum over pixels backward.
        grad_proj = grad_h.sum(axis=(2, 3))  # (N, out)
        grad_temb = self.time_emb_proj.backward(grad_proj)  # (N, temb)
        grad_temb = self.nonlinearity.backward(grad_temb)  # (N, temb)
        g = self.conv1.backward(grad_h)  # (N, in, H, W)
        g = self.nonlinearity.backward(g)  # (N, in, H, W)
        grad_x = self.norm1.backward(g) + grad_skip  # (N, in, H, W)
        return grad_x, grad_temb


class UNet(Module):
    """The noise predictor: ``forward(x (N, C, H, W), timesteps int64 (N,), labels int64 (N,) | None)
    -> eps (N, C, H, W)``, sized by a :class:`ml100.configs.UNetConfig`; ``backward(grad_eps) -> grad_x``."""

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

    def condition(self, timesteps: np.ndarray, labels: np.ndarray | None, batch: int) -> np.ndarray:
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
            labels = np.full_like(timesteps, null)  # (N,) int64: the null class
        check_input("UNet", "labels", labels.shape, labels.dtype, expected_dtype="int64", shape_like=(batch,))
        check_ids("UNet", "labels", labels, null + 1)
        return temb + self.class_embedding(labels)  # (N, E)

    def forward(self, x: np.ndarray, timesteps: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        check_input("UNet", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        size, channels = self.config.image_size, self.config.in_channels
        if x.shape[1:] != (channels, size, size):
            raise ValueError(f"UNet: x must have shape (N, {channels}, {size}, {size}), got {x.shape}")
        emb = self.condition(timesteps, labels, x.shape[0])  # (N, E)
        skip = self.down1(self.conv_in(x), emb)  # (N, c1, H, W)
        h = self.down2(self.down(skip), emb)  # (N, c2, H/2, W/2)
        h = self.mid(h, emb)  # (N, c2, H/2, W/2)
        h = np.concatenate([self.up(h), skip], axis=1)  # (N, c2 + c1, H, W)
        h = self.up1(h, emb)  # (N, c1, H, W)
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))  # (N, C, H, W)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        c2 = self.config.channels[1]
        g = self.conv_out.backward(grad_out)  # (N, c1, H, W)
        g = self.conv_act.backward(g)  # (N, c1, H, W)
        g = self.conv_norm_out.backward(g)  # (N, c1, H, W)
        g, grad_emb = self.up1.backward(g)  # (N, c2 + c1, H, W), (N, E)
        # The concatenation splits the gradient back: the first c2 channels came from `up`.
        grad_up, grad_skip = g[:, :c2], g[:, c2:]  # (N, c2, H, W), (N, c1, H, W)
        g = self.up.backward(grad_up)  # (N, c2, H/2, W/2)
        g, grad_emb_mid = self.mid.backward(g)  # (N, c2, H/2, W/2), (N, E)
        g, grad_emb_down2 = self.down2.backward(g)  # (N, c1, H/2, W/2), (N, E)
        # The skip tensor fed both `down` and the concatenation: the two gradients add.
        grad_skip = grad_skip + self.down.backward(g)  # (N, c1, H, W)
        g, grad_emb_down1 = self.down1.backward(grad_skip)  # (N, c1, H, W), (N, E)
        grad_x = self.conv_in.backward(g)  # (N, C, H, W)
        # The conditioning vector fed four blocks: its gradient is the sum of the four.
        grad_emb = grad_emb + grad_emb_mid + grad_emb_down2 + grad_emb_down1  # (N, E)
        if self.class_embedding is not None:
            self.class_embedding.backward(grad_emb)
        self.time_embedding.backward(grad_emb)
        return grad_x
