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
Here there is no col2im op, so the forward is written as the equivalent *convolution*: the input
is dilated with ``s - 1`` zeros between pixels, padded by ``d(k-1)`` (plus ``output_padding``
after), convolved at stride 1 and dilation ``d`` with the kernel
flipped in space and its channels swapped — day 15's im2col (``tf.image.extract_patches``) and a
GEMM — and the padding ``p`` is cropped from the result; the tape derives the backward. Never ``tf.nn.conv2d_transpose``, the reference.
Layout: TF on CPU wants channels-last, so this tree takes **NHWC** images and keeps the kernel as
``tf.nn.conv2d_transpose`` and Keras' ``Conv2DTranspose`` do, ``(kh, kw, out/G, in)`` — the same
axis permutation ``(2, 3, 1, 0)`` from the canonical weight as day 15's ``HWIO``, so that ``Layout``
converts it at the edge. Initialization is torch's: Kaiming-uniform (a = √5) on the weight shape
``(C_in, C_out/G, k_h, k_w)``, whose "fan_in" is therefore ``C_out/G · k_h k_w`` — the bias bound
is ``1/√`` of it too. Special values follow ``F.conv_transpose2d`` (a NaN or ±inf pixel reaches
exactly the outputs its kernel copy covers); an empty batch maps to an empty batch.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ml100.checks import check_input
from ml100.geometry import (conv_transpose_geometry, conv_transpose_output_size, interpolation_indices, upsample_geometry,
                            upsample_output_size)

from ..foundations import init
from ..foundations.conv import im2col
from ..module import HWIO, Module


def _dilate_and_pad(x: tf.Tensor, stride: tuple[int, int], pads: tuple[tuple[int, int], tuple[int, int]]) -> tf.Tensor:
    """``(N, H, W, C)`` with ``s - 1`` zero rows (columns) between pixels, then zero-padded by
    ``((top, bottom), (left, right))``."""
    n, h, w, c = x.shape
    (sh, sw), (rows, columns) = stride, pads
    # Each pixel followed by s - 1 zeros, the trailing zeros after the last pixel cut off.
    spread = tf.pad(tf.reshape(x, (n, h, 1, w, 1, c)), [(0, 0), (0, 0), (0, sh - 1), (0, 0), (0, sw - 1), (0, 0)])
    dilated = tf.reshape(spread, (n, h * sh, w * sw, c))[:, :(h - 1) * sh + 1, :(w - 1) * sw + 1]  # (N, (H-1)s+1, (W-1)s+1, C)
    return tf.pad(dilated, [(0, 0), rows, columns, (0, 0)])


class ConvTranspose2d(Module):
    """Transposed 2-D convolution on NHWC input; canonical ``weight`` ``(in, out/groups, kh, kw)``, ``bias`` ``(out,)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        (self.kernel_size, self.stride, self.padding, self.output_padding, self.dilation) = conv_transpose_geometry(
            "ConvTranspose2d", in_channels, out_channels, kernel_size, stride, padding, output_padding, dilation, groups)
        rng = np.random.default_rng() if rng is None else rng
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        shape = (in_channels, out_channels // groups, *self.kernel_size)
        # torch's reset_parameters, on this (in, out/G, kh, kw) shape: its "fan_in" is out/G * kh * kw.
        weight = init.kaiming_uniform(shape, rng, a=math.sqrt(5.0), dtype=dtype)
        self.kernel = self.add_param("weight", tf.transpose(weight, (2, 3, 1, 0)), layout=HWIO)  # (kh, kw, Og, C)
        self.bias = self.add_param("bias", init.uniform((out_channels,), rng, 1.0 / math.sqrt(init.compute_fans(shape)[0]), dtype)) if bias else None

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("ConvTranspose2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        if x.shape[3] != self.in_channels:
            raise ValueError(f"ConvTranspose2d: x must have {self.in_channels} channels (N, H, W, C), got shape {tuple(x.shape)}")
        n, h, w, c = x.shape
        ho, wo = conv_transpose_output_size("ConvTranspose2d", (h, w), self.kernel_size, self.stride, self.padding,
                                            self.output_padding, self.dilation)
        (kh, kw), (ph, pw), (oph, opw), (dh, dw) = self.kernel_size, self.padding, self.output_padding, self.dilation
        g, og = self.groups, self.out_channels // self.groups
        # The "full" padding d(k-1), plus output_padding's rows after the image: the convolution then
        # yields the whole canvas of H_o + 2p rows, whose padding p is cropped below (computing the
        # cropped border keeps torch's special values: its weight gradient multiplies the zero
        # gradient there by the input, inf * 0 = NaN).
        pads = ((dh * (kh - 1), dh * (kh - 1) + oph), (dw * (kw - 1), dw * (kw - 1) + opw))
        x_pad = _dilate_and_pad(x, self.stride, pads)  # (N, Ho + 2p + d(kh-1), Wo + 2p + d(kw-1), C)
        hc, wc = ho + 2 * ph, wo + 2 * pw
        cols = im2col(x_pad, self.kernel_size, (1, 1), self.dilation, (hc, wc), g)  # (G, N*Hc*Wc, kh*kw*Cg)
        # Flip the kernel in space and swap its channels: (kh, kw, Og, G*Cg) -> (G, kh*kw*Cg, Og).
        kernel = tf.reshape(self.kernel[::-1, ::-1], (kh, kw, og, g, c // g))  # (kh, kw, Og, G, Cg)
        kernel = tf.reshape(tf.transpose(kernel, (3, 0, 1, 4, 2)), (g, kh * kw * (c // g), og))  # (G, kh*kw*Cg, Og)
        y = tf.transpose(cols @ kernel, (1, 0, 2))  # (N*Hc*Wc, G, Og)
        y = tf.reshape(y, (n, hc, wc, self.out_channels))[:, ph:ph + ho, pw:pw + wo]  # (N, Ho, Wo, O), padding cropped
        if self.bias is not None:
            y = y + self.bias
        return y


class Upsample(Module):
    r"""Upsampling of NHWC images without parameters, ``torch.nn.Upsample``'s: ``"nearest"`` (torch's
    floor rule, a gather) or ``"bilinear"`` (``align_corners`` False: half-pixel centres; True:
    corners on corners), one axis at a time — bilinear is separable,
    :math:`y = (1-\lambda_h)(1-\lambda_w)x_{00} + \dots` is a lerp along H then a lerp along W.
    The positions and weights are computed once in ``ml100.geometry.interpolation_indices``.
    The tape derives the backward (gather's is a scatter-add); never ``tf.image.resize``, a reference."""

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners=None, dtype="float32"):
        super().__init__(dtype)
        self.size, self.scale_factor, self.align_corners = upsample_geometry("Upsample", size, scale_factor, mode, align_corners)
        self.mode = mode

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("Upsample", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        (h, w), factors = tuple(x.shape[1:3]), self.scale_factor or (None, None)
        out = upsample_output_size("Upsample", (h, w), self.size, self.scale_factor)
        rows = interpolation_indices(h, out[0], factors[0], self.mode, self.align_corners, self.dtype)
        columns = interpolation_indices(w, out[1], factors[1], self.mode, self.align_corners, self.dtype)
        return _lerp(_lerp(x, 1, *rows), 2, *columns)  # (N, Ho, Wo, C)


def _lerp(x: tf.Tensor, axis: int, low: np.ndarray, high: np.ndarray, weight: np.ndarray | None) -> tf.Tensor:
    """``(1 - weight) x[low] + weight x[high]`` along ``axis``; a plain gather when ``weight`` is None
    (nearest: no 0 * x term, so an inf pixel stays inf, as in torch)."""
    if weight is None:
        return tf.gather(x, low, axis=axis)
    shape = [1] * x.shape.rank
    shape[axis] = -1
    weight = tf.reshape(weight, shape)  # broadcast along the other axes
    return tf.gather(x, low, axis=axis) * (1 - weight) + tf.gather(x, high, axis=axis) * weight
