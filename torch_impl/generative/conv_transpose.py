r"""Day 30: transposed convolution — the backward of a convolution, used as a layer that upsamples —
and fixed upsampling (nearest, bilinear), its parameter-free alternative (``Upsample`` below).

A convolution maps a large image to a small one with ``y = W x`` (``W`` the sparse matrix of the
sliding kernel); its *transpose* maps small to large with ``y = W^T x`` and the same kernel. Every
input pixel scatters a weighted copy of the kernel into the output, ``s`` pixels apart (Zeiler et
al., 2010; Dumoulin & Visin, 2016, "A guide to convolution arithmetic"):

.. math::  y_{n,\,o + gO_g,\; i s + u d - p,\; j s + v d - p} \mathrel{+}= \sum_c x_{n,\,c + gC_g,\,i,\,j}\; W_{c + gC_g,\,o,\,u,\,v},
           \qquad y \mathrel{+}= b

with the weight in PyTorch's layout ``(C_in, C_out/G, k_h, k_w)`` (input channels first: it is the
weight of the convolution ``C_out -> C_in`` being transposed). Output size:
:math:`H_o = (H - 1)s - 2p + d(k - 1) + \text{output\_padding} + 1`; ``output_padding`` (< max(s, d))
picks which of the ``s`` input sizes that a strided convolution maps to ``H`` is meant.

**Forward = the convolution's backward**: one GEMM, ``cols = W^T x`` (per group,
``(O_g k_h k_w, C_g) @ (C_g, H W)``), then **col2im** adds each column back at its output pixel on a
canvas of ``H_o + 2p`` rows, from which the padding is cropped.

**Backward = a convolution** (the forward of the one being transposed): the output gradient padded
by ``p`` is cut into patches by im2col (day 15's, stride ``s``, dilation ``d``, one patch per input
pixel) and

.. math::  \frac{\partial L}{\partial x_n} = W\,\text{cols}(G_{y,n}),\qquad
           \frac{\partial L}{\partial W} = \textstyle\sum_n x_n\,\text{cols}(G_{y,n})^\top,\qquad
           \frac{\partial L}{\partial b} = \textstyle\sum_{n,i,j} G_{y,n,:,i,j}

Rows of the output that ``output_padding`` adds past the last kernel reach receive only the bias.
Here the GEMM is a matrix product and ``F.fold`` is col2im; autograd derives the backward
(``F.fold``'s backward is ``F.unfold``, im2col) — never ``F.conv_transpose2d``, the reference.
Layout: NCHW images. Initialization is torch's: Kaiming-uniform (a = √5) on the weight shape
``(C_in, C_out/G, k_h, k_w)``, whose "fan_in" is therefore ``C_out/G · k_h k_w`` — the bias bound
is ``1/√`` of it too. Special values follow ``F.conv_transpose2d`` (a NaN or ±inf pixel reaches
exactly the outputs its kernel copy covers); an empty batch maps to an empty batch.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ml100.checks import check_input
from ml100.geometry import (conv_transpose_geometry, conv_transpose_output_size, interpolation_indices, upsample_geometry,
                            upsample_output_size)

from ..foundations import init
from ..module import Module


class ConvTranspose2d(Module):
    """Transposed 2-D convolution on NCHW input; canonical ``weight`` ``(in, out/groups, kh, kw)``, ``bias`` ``(out,)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        (self.kernel_size, self.stride, self.padding, self.output_padding, self.dilation) = conv_transpose_geometry(
            "ConvTranspose2d", in_channels, out_channels, kernel_size, stride, padding, output_padding, dilation, groups)
        rng = np.random.default_rng() if rng is None else rng
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        shape = (in_channels, out_channels // groups, *self.kernel_size)
        # torch's reset_parameters, on this (in, out/G, kh, kw) shape: its "fan_in" is out/G * kh * kw.
        self.weight = nn.Parameter(init.kaiming_uniform(shape, rng, a=math.sqrt(5.0), dtype=dtype))
        self.bias = nn.Parameter(init.uniform((out_channels,), rng, 1.0 / math.sqrt(init.compute_fans(shape)[0]), dtype)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("ConvTranspose2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"ConvTranspose2d: x must have {self.in_channels} channels (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        ho, wo = conv_transpose_output_size("ConvTranspose2d", (h, w), self.kernel_size, self.stride, self.padding,
                                            self.output_padding, self.dilation)
        (kh, kw), (sh, sw), (ph, pw), (oph, opw), (dh, dw) = (self.kernel_size, self.stride, self.padding,
                                                              self.output_padding, self.dilation)
        g, og = self.groups, self.out_channels // self.groups
        weight = self.weight.reshape(g, c // g, og * kh * kw)  # (G, Cg, Og*kh*kw)
        # cols[n, g] = W[g]^T x[n, g]: each input pixel's weighted copy of the kernel, one GEMM.
        cols = weight.transpose(1, 2) @ x.reshape(n, g, c // g, h * w)  # (N, G, Og*kh*kw, H*W)
        # col2im onto the canvas the kernel copies reach exactly ((H-1)s + d(k-1) + 1 rows), so that
        # fold's block count is H*W whatever output_padding is.
        canvas = ((h - 1) * sh + dh * (kh - 1) + 1, (w - 1) * sw + dw * (kw - 1) + 1)
        image = F.fold(cols.reshape(n, self.out_channels * kh * kw, h * w), canvas, self.kernel_size,
                       dilation=self.dilation, stride=self.stride)  # (N, O, Hc, Wc)
        # Crop the padding p from each side and add output_padding zero rows at the bottom/right
        # (F.pad's negative widths crop; it lists the last axis first).
        y = F.pad(image, (-pw, opw - pw, -ph, oph - ph))  # (N, O, Ho, Wo)
        if self.bias is not None:
            y = y + self.bias[:, None, None]
        return y


class Upsample(Module):
    r"""Upsampling of NCHW images without parameters, ``torch.nn.Upsample``'s: ``"nearest"`` (torch's
    floor rule, a gather) or ``"bilinear"`` (``align_corners`` False: half-pixel centres; True:
    corners on corners), one axis at a time — bilinear is separable,
    :math:`y = (1-\lambda_h)(1-\lambda_w)x_{00} + \dots` is a lerp along H then a lerp along W.
    The positions and weights are computed once in ``ml100.geometry.interpolation_indices``.
    Autograd derives the backward (index_select's is a scatter-add); never ``F.interpolate``, the reference."""

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners=None, dtype="float32"):
        super().__init__(dtype)
        self.size, self.scale_factor, self.align_corners = upsample_geometry("Upsample", size, scale_factor, mode, align_corners)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("Upsample", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        (h, w), factors = tuple(x.shape[2:]), self.scale_factor or (None, None)
        out = upsample_output_size("Upsample", (h, w), self.size, self.scale_factor)
        rows = interpolation_indices(h, out[0], factors[0], self.mode, self.align_corners, self.dtype)
        columns = interpolation_indices(w, out[1], factors[1], self.mode, self.align_corners, self.dtype)
        return _lerp(_lerp(x, 2, *rows), 3, *columns)  # (N, C, Ho, Wo)


def _lerp(x: torch.Tensor, axis: int, low: np.ndarray, high: np.ndarray, weight: np.ndarray | None) -> torch.Tensor:
    """``(1 - weight) x[low] + weight x[high]`` along ``axis``; a plain gather when ``weight`` is None
    (nearest: no 0 * x term, so an inf pixel stays inf, as in torch)."""
    if weight is None:
        return x.index_select(axis, torch.from_numpy(low))
    shape = [1] * x.ndim
    shape[axis] = -1
    weight = torch.from_numpy(weight).reshape(shape)  # broadcast along the other axes
    return x.index_select(axis, torch.from_numpy(low)) * (1 - weight) + x.index_select(axis, torch.from_numpy(high)) * weight
