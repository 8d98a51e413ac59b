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

**Forward = the convolution's backward**: one GEMM, ``cols = W^T x`` (per group, the images side
by side: ``(O_g k_h k_w, C_g) @ (C_g, N H W)``), then **col2im** adds each column back at its output
pixel on a canvas of ``H_o + 2p`` rows, from which the padding is cropped.

**Backward = a convolution** (the forward of the one being transposed): the output gradient padded
by ``p`` is cut into patches by im2col (day 15's, stride ``s``, dilation ``d``, one patch per input
pixel) and

.. math::  \frac{\partial L}{\partial x_n} = W\,\text{cols}(G_{y,n}),\qquad
           \frac{\partial L}{\partial W} = \textstyle\sum_n x_n\,\text{cols}(G_{y,n})^\top,\qquad
           \frac{\partial L}{\partial b} = \textstyle\sum_{n,i,j} G_{y,n,:,i,j}

(with the images side by side, the sum over ``n`` of the weight gradient is inside one product).
Rows of the output that ``output_padding`` adds past the last kernel reach receive only the bias.
Layout: NCHW images. Initialization is torch's: Kaiming-uniform (a = √5) on the weight shape
``(C_in, C_out/G, k_h, k_w)``, whose "fan_in" is therefore ``C_out/G · k_h k_w`` — the bias bound
is ``1/√`` of it too. Special values follow ``F.conv_transpose2d`` (a NaN or ±inf pixel reaches
exactly the outputs its kernel copy covers); an empty batch maps to an empty batch.
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import check_input
from ml100.geometry import (conv_transpose_geometry, conv_transpose_output_size, interpolation_indices, upsample_geometry,
                            upsample_output_size)

from ..foundations import init
from ..foundations.conv import im2col
from ..module import Module


def _col2im(cols: np.ndarray, canvas: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
           dilation: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Add every column entry of ``cols`` ``(O, kh, kw, N, H, W)`` back at its pixel of an
    ``(O, N, *canvas)`` image: entry ``[o, u, v, n, i, j]`` lands on ``(i s + u d, j s + v d)``;
    overlapping kernel copies accumulate. Only the ``kh*kw`` offsets are looped over."""
    o, n = cols.shape[0], cols.shape[3]
    (kh, kw), (sh, sw), (dh, dw), (h, w) = kernel, stride, dilation, size
    image = np.zeros((o, n, *canvas), dtype=cols.dtype)  # (O, N, Hc, Wc)
    for u in range(kh):
        for v in range(kw):
            image[:, :, u * dh:u * dh + sh * (h - 1) + 1:sh, v * dw:v * dw + sw * (w - 1) + 1:sw] += cols[:, u, v]
    return image


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
        self.params["weight"] = init.kaiming_uniform(shape, rng, a=math.sqrt(5.0), dtype=dtype)
        if bias:
            self.params["bias"] = init.uniform((out_channels,), rng, 1.0 / math.sqrt(init.compute_fans(shape)[0]), dtype)
        self.zero_grad()

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("ConvTranspose2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"ConvTranspose2d: x must have {self.in_channels} channels (N, C, H, W), got shape {x.shape}")
        n, c, h, w = x.shape
        ho, wo = conv_transpose_output_size("ConvTranspose2d", (h, w), self.kernel_size, self.stride, self.padding,
                                            self.output_padding, self.dilation)
        (kh, kw), (ph, pw), g = self.kernel_size, self.padding, self.groups
        og = self.out_channels // g
        weight = self.params["weight"].reshape(g, c // g, og * kh * kw)  # (G, Cg, Og*kh*kw)
        # The images side by side, channels first: one GEMM per group for the whole batch (a few
        # large products run far faster than one small product per image).
        x_cols = np.ascontiguousarray(x.reshape(n, g, c // g, h * w).transpose(1, 2, 0, 3)).reshape(g, c // g, n * h * w)  # (G, Cg, N*H*W)
        # cols[g] = W[g]^T x[g]: each input pixel's weighted copy of the kernel.
        cols = weight.transpose(0, 2, 1) @ x_cols  # (G, Og*kh*kw, N*H*W)
        cols = cols.reshape(self.out_channels, kh, kw, n, h, w)  # (O, kh, kw, N, H, W)
        image = _col2im(cols, (ho + 2 * ph, wo + 2 * pw), self.kernel_size, self.stride, self.dilation, (h, w))  # (O, N, Ho+2p, Wo+2p)
        y = image[:, :, ph:ph + ho, pw:pw + wo].transpose(1, 0, 2, 3)  # (N, O, Ho, Wo), padding cropped
        if "bias" in self.params:
            y = y + self.params["bias"][:, None, None]
        self.save_for_backward(x_cols, (n, h, w))
        return np.ascontiguousarray(y)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x_cols, (n, h, w) = self.saved_for_backward()
        c = self.in_channels
        (kh, kw), (ph, pw), g = self.kernel_size, self.padding, self.groups
        og = self.out_channels // g
        # Back onto the canvas the forward cropped: the cropped border had no effect, its gradient is 0.
        grad_canvas = np.pad(grad_out, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, O, Ho+2p, Wo+2p)
        # The convolution being transposed: one (Og, kh, kw) patch per input pixel.
        cols = im2col(grad_canvas, self.kernel_size, self.stride, self.dilation, (h, w), g)  # (N, G, Og*kh*kw, H*W)
        # Images side by side, as the forward's x_cols, so each gradient is one GEMM per group.
        cols = np.ascontiguousarray(cols.transpose(1, 2, 0, 3)).reshape(g, og * kh * kw, n * h * w)  # (G, Og*kh*kw, N*H*W)
        # dW = x cols^T, the sum over images and pixels done by the product; += : a layer used
        # twice sums both uses' gradients.
        grad_weight = x_cols @ cols.transpose(0, 2, 1)  # (G, Cg, Og*kh*kw)
        self.grads["weight"] += grad_weight.reshape(self.params["weight"].shape)  # (C, Og, kh, kw)
        if "bias" in self.params:
            self.grads["bias"] += grad_out.sum(axis=(0, 2, 3))  # (O,)
        weight = self.params["weight"].reshape(g, c // g, og * kh * kw)  # (G, Cg, Og*kh*kw)
        grad_x = (weight @ cols).reshape(c, n, h, w)  # (C, N, H, W)
        return np.ascontiguousarray(grad_x.transpose(1, 0, 2, 3))  # (N, C, H, W)


class Upsample(Module):
    r"""Upsampling of NCHW images without parameters, ``torch.nn.Upsample``'s: ``"nearest"`` (torch's
    floor rule, a gather) or ``"bilinear"`` (``align_corners`` False: half-pixel centres; True:
    corners on corners), one axis at a time — bilinear is separable,
    :math:`y = (1-\lambda_h)(1-\lambda_w)x_{00} + \dots` is a lerp along H then a lerp along W.
    The positions and weights are computed once in ``ml100.geometry.interpolation_indices``.
    Backward: each lerp is linear, its adjoint the transposed interpolation matrix ``A`` ``(H_o, H)``
    (weights ``1-λ`` at ``low`` and ``λ`` at ``high``): :math:`\partial L/\partial x = A_h^\top G_y A_w`."""

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners=None, dtype="float32"):
        super().__init__(dtype)
        self.size, self.scale_factor, self.align_corners = upsample_geometry("Upsample", size, scale_factor, mode, align_corners)
        self.mode = mode

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("Upsample", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        (h, w), factors = x.shape[2:], self.scale_factor or (None, None)
        out = upsample_output_size("Upsample", (h, w), self.size, self.scale_factor)
        rows = interpolation_indices(h, out[0], factors[0], self.mode, self.align_corners, self.dtype)
        columns = interpolation_indices(w, out[1], factors[1], self.mode, self.align_corners, self.dtype)
        self.save_for_backward((h, w), rows, columns)
        return _lerp(_lerp(x, 2, *rows), 3, *columns)  # (N, C, Ho, Wo)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        (h, w), rows, columns = self.saved_for_backward()
        a_h = _interpolation_matrix(*rows, h, grad_out.dtype)  # (Ho, H)
        a_w = _interpolation_matrix(*columns, w, grad_out.dtype)  # (Wo, W)
        return a_h.T @ grad_out @ a_w  # (N, C, H, W)


def _lerp(x: np.ndarray, axis: int, low: np.ndarray, high: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """``(1 - weight) x[low] + weight x[high]`` along ``axis``; a plain gather when ``weight`` is None
    (nearest: no 0 * x term, so an inf pixel stays inf, as in torch)."""
    if weight is None:
        return np.take(x, low, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    weight = weight.reshape(shape)  # broadcast along the other axes
    return np.take(x, low, axis=axis) * (1 - weight) + np.take(x, high, axis=axis) * weight


def _interpolation_matrix(low: np.ndarray, high: np.ndarray, weight: np.ndarray | None, size: int, dtype) -> np.ndarray:
    """The ``(out, size)`` matrix of one axis' interpolation (its transpose scatters the gradient back)."""
    matrix = np.zeros((low.size, size), dtype=dtype)  # (out, size)
    rows = np.arange(low.size)
    if weight is None:
        matrix[rows, low] = 1
        return matrix
    # += twice: at the last pixel low == high, and both weights land there.
    np.add.at(matrix, (rows, low), 1 - weight)
    np.add.at(matrix, (rows, high), weight)
    return matrix
