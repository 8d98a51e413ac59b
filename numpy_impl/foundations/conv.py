r"""Day 15: 2-D convolution by im2col — stride, padding (symmetric and TF's "same"), dilation, groups.

A convolution slides a ``(C_in/G, k_h, k_w)`` filter over the image; each output pixel is a dot
product between the filter and the patch under it (LeCun et al., 1989; the im2col formulation
is Chellapilla, Puri & Simard, 2006):

.. math::  y_{n,o,i,j} = b_o + \sum_{c,u,v} W_{o,c,u,v}\; x_{n,\,c + gC_g,\; i s + u d - p_t,\; j s + v d - p_l}

**im2col** copies every patch into a column, so the whole layer becomes one matrix product per
image: ``cols`` has shape ``(N, G, C_g k_h k_w, H_o W_o)`` and ``y_n = W cols_n`` with ``W`` reshaped
to ``(G, O_g, C_g k_h k_w)`` — the products come out in NCHW order, so nothing is transposed back.
The backward is two more products and the inverse gather, **col2im**:

.. math::  \frac{\partial L}{\partial W} = \textstyle\sum_n G_{y,n}\,\text{cols}_n^\top,\qquad
           \frac{\partial L}{\partial\,\text{cols}} = W^\top G_y,\qquad
           \frac{\partial L}{\partial x} = \text{col2im}\Big(\frac{\partial L}{\partial\,\text{cols}}\Big)

where col2im *adds* each column entry back at the pixel it was copied from (overlapping patches
accumulate). At stride 1 the input gradient is itself a convolution — of the output gradient,
padded by :math:`d(k-1)-p`, with the kernel flipped in space and its in/out channels swapped — so
``backward`` computes it with one more im2col and GEMM, which is faster than col2im's scattered
adds; strided convolutions use col2im. Output size: :math:`H_o = \lfloor (H + p_t + p_b - d(k-1) - 1)/s \rfloor + 1`.

Padding ``"same"`` follows TensorFlow: the total padding :math:`\max((\lceil H/s\rceil-1)s + d(k-1)+1-H, 0)`
is split with the extra pixel at the bottom/right — at stride 2 on an even size that is (0, 1),
which PyTorch's symmetric ``padding=1`` is not. ``"valid"`` means no padding.

Layout: NCHW images and OIHW (canonical, PyTorch) weights. Only the k×k kernel offsets are looped
over in col2im (9 iterations for 3×3); batch, channels and pixels are all vectorized.

The padding geometry (``conv_padding``, ``conv_output_size``) and the constructor's checks live
once in ``ml100.geometry``: channels >= 1 and divisible by ``groups``; kernel, stride and dilation
>= 1; padding an int or pair >= 0, ``"same"`` or ``"valid"`` — one message per rule in every tree.
Special values follow ``F.conv2d``: a NaN or ±inf pixel reaches exactly the outputs whose windows
hold it (NaN where +inf and -inf terms meet) and the weight gradients that multiply it. An
empty batch (``N = 0``) convolves to an empty batch, with zero parameter gradients.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ml100.checks import check_input
from ml100.geometry import conv_geometry, conv_output_size, conv_padding

from ..module import Module
from . import init


def im2col(x_pad: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
           out_size: tuple[int, int], groups: int) -> np.ndarray:
    """Every patch of the padded ``(N, C, Hp, Wp)`` input as a column: ``(N, G, Cg*kh*kw, Ho*Wo)``,
    rows ordered ``(c, u, v)`` like the weight's ``(Cg, kh, kw)``. One matrix per image and group,
    so the products below come out already in NCHW order (no transpose of the result)."""
    n, c = x_pad.shape[:2]
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_size
    sn, sc, sy, sx = x_pad.strides
    # A view, no copy: element [n, c, u, v, i, j] is x_pad[n, c, i*s + u*d, j*s + v*d].
    patches = as_strided(x_pad, (n, c, kh, kw, ho, wo), (sn, sc, sy * dh, sx * dw, sy * sh, sx * sw))
    # Sizes spelled out: with an empty batch a -1 would be ambiguous.
    return np.ascontiguousarray(patches).reshape(n, groups, c // groups * kh * kw, ho * wo)  # the one copy


class Conv2d(Module):
    """2-D convolution on NCHW input; canonical ``weight`` ``(out, in/groups, kh, kw)``, ``bias`` ``(out,)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding, self.dilation = conv_geometry(
            "Conv2d", in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        rng = np.random.default_rng() if rng is None else rng
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        # PyTorch's default: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        self.params["weight"] = init.kaiming_uniform(shape, rng, a=math.sqrt(5.0), dtype=dtype)
        if bias:
            self.params["bias"] = init.uniform((out_channels,), rng, 1.0 / math.sqrt(init.compute_fans(shape)[0]), dtype)
        self.zero_grad()

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("Conv2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d: x must have {self.in_channels} channels (N, C, H, W), got shape {x.shape}")
        n, _, h, w = x.shape
        pads = conv_padding(self.padding, (h, w), self.kernel_size, self.stride, self.dilation)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ho, wo = conv_output_size(h, pads[0], kh, sh, dh), conv_output_size(w, pads[1], kw, sw, dw)
        if ho < 1 or wo < 1:
            raise ValueError(f"Conv2d: input {h}x{w} is smaller than the dilated kernel after padding")
        x_pad = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))  # (N, C, Hp, Wp)
        g = self.groups
        cols = im2col(x_pad, self.kernel_size, self.stride, self.dilation, (ho, wo), g)  # (N, G, Cg*kh*kw, Ho*Wo)
        weight = self.params["weight"].reshape(g, self.out_channels // g, -1)  # (G, Og, Cg*kh*kw)
        # One GEMM per image and group, broadcast over the batch: y[n, g] = W[g] @ cols[n, g].
        y = (weight @ cols).reshape(n, self.out_channels, ho, wo)  # (N, O, Ho, Wo)
        if "bias" in self.params:
            y = y + self.params["bias"][:, None, None]  # (N, O, Ho, Wo)
        self.save_for_backward(x.shape, x_pad.shape, pads, cols, (ho, wo))
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x_shape, pad_shape, pads, cols, (ho, wo) = self.saved_for_backward()
        n, c = x_shape[:2]
        (kh, kw), (sh, sw), (dh, dw), g = self.kernel_size, self.stride, self.dilation, self.groups
        grad_rows = grad_out.reshape(n, g, self.out_channels // g, ho * wo)  # (N, G, Og, Ho*Wo)
        # dW = sum over images of G_y cols^T; += : a layer used twice sums both uses' gradients
        # (an empty batch adds 0).
        grad_weight = (grad_rows @ cols.transpose(0, 1, 3, 2)).sum(axis=0)  # (G, Og, Cg*kh*kw)
        self.grads["weight"] += grad_weight.reshape(self.params["weight"].shape)  # (O, Cg, kh, kw)
        if "bias" in self.params:
            self.grads["bias"] += grad_out.sum(axis=(0, 2, 3))  # (O,)
        (top, bottom), (left, right) = pads
        # How far the "full" padding d(k-1) exceeds the forward padding on each side.
        full = (dh * (kh - 1) - top, dh * (kh - 1) - bottom), (dw * (kw - 1) - left, dw * (kw - 1) - right)
        if (sh, sw) == (1, 1) and min(*full[0], *full[1]) >= 0:
            return self._input_grad_by_convolution(grad_out, full)
        weight = self.params["weight"].reshape(g, self.out_channels // g, -1)  # (G, Og, Cg*kh*kw)
        grad_cols = (weight.transpose(0, 2, 1) @ grad_rows).reshape(n, c, kh, kw, ho, wo)  # (N, C, kh, kw, Ho, Wo)
        # col2im: add every column entry back where it was copied from; overlapping patches accumulate.
        grad_pad = np.zeros((n, c, pad_shape[2], pad_shape[3]), dtype=grad_out.dtype)  # (N, C, Hp, Wp)
        for u in range(kh):
            for v in range(kw):
                grad_pad[:, :, u * dh:u * dh + sh * (ho - 1) + 1:sh, v * dw:v * dw + sw * (wo - 1) + 1:sw] += grad_cols[:, :, u, v]
        return grad_pad[:, :, top:top + x_shape[2], left:left + x_shape[3]].copy()  # (N, C, H, W)

    def _input_grad_by_convolution(self, grad_out: np.ndarray, full) -> np.ndarray:
        """At stride 1, dL/dx is itself a convolution: of dL/dy, "fully" padded, with the kernel flipped
        in space and its in/out channels swapped — one im2col and one GEMM instead of col2im's k*k
        scattered adds. (Each input pixel collects every output pixel whose window covered it, with
        the weight that connected them: correlation with the flipped kernel.)"""
        n, o, ho, wo = grad_out.shape
        (kh, kw), g, c = self.kernel_size, self.groups, self.in_channels
        og, cg = o // g, c // g
        grad_pad = np.pad(grad_out, ((0, 0), (0, 0), full[0], full[1]))  # (N, O, Ho + 2d(k-1) - p, ...)
        h = ho + full[0][0] + full[0][1] - self.dilation[0] * (kh - 1)
        w = wo + full[1][0] + full[1][1] - self.dilation[1] * (kw - 1)
        cols = im2col(grad_pad, self.kernel_size, (1, 1), self.dilation, (h, w), g)  # (N, G, Og*kh*kw, H*W)
        weight = self.params["weight"].reshape(g, og, cg, kh, kw)[:, :, :, ::-1, ::-1]  # (G, Og, Cg, kh, kw), flipped
        weight = weight.transpose(0, 2, 1, 3, 4).reshape(g, cg, og * kh * kw)  # (G, Cg, Og*kh*kw)
        return (weight @ cols).reshape(n, c, h, w)  # (N, C, H, W)
