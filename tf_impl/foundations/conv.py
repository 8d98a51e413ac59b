r"""Day 15: 2-D convolution by im2col — stride, padding (symmetric and TF's "same"), dilation, groups.

A convolution slides a ``(C_in/G, k_h, k_w)`` filter over the image; each output pixel is a dot
product between the filter and the patch under it (LeCun et al., 1989; the im2col formulation
is Chellapilla, Puri & Simard, 2006):

.. math::  y_{n,o,i,j} = b_o + \sum_{c,u,v} W_{o,c,u,v}\; x_{n,\,c + gC_g,\; i s + u d - p_t,\; j s + v d - p_l}

**im2col** copies every patch into a column, so the whole layer becomes one matrix product:
``cols`` has shape ``(G, C_g k_h k_w, N H_o W_o)`` and ``y = W cols`` with ``W`` reshaped to
``(G, O_g, C_g k_h k_w)``. The backward is two more products and the inverse gather, **col2im**:

.. math::  \frac{\partial L}{\partial W} = G_y\,\text{cols}^\top,\qquad
           \frac{\partial L}{\partial\,\text{cols}} = W^\top G_y,\qquad
           \frac{\partial L}{\partial x} = \text{col2im}\Big(\frac{\partial L}{\partial\,\text{cols}}\Big)

where col2im *adds* each column entry back at the pixel it was copied from (overlapping patches
accumulate). Here ``tf.image.extract_patches`` is im2col and the tape derives the rest — the
convolution itself is the matrix product below, never ``tf.nn.conv2d``. Output size: :math:`H_o = \lfloor (H + p_t + p_b - d(k-1) - 1)/s \rfloor + 1`.

Padding ``"same"`` follows TensorFlow: the total padding :math:`\max((\lceil H/s\rceil-1)s + d(k-1)+1-H, 0)`
is split with the extra pixel at the bottom/right — at stride 2 on an even size that is (0, 1),
which PyTorch's symmetric ``padding=1`` is not. ``"valid"`` means no padding.

Layout: TF on CPU wants channels-last, so this tree takes **NHWC** images and keeps the kernel
**HWIO** ``(kh, kw, in/groups, out)`` as ``tf.nn.conv2d`` and Keras do; the canonical ``weight`` is
OIHW, converted at the edge (``Layout HWIO``).

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
import tensorflow as tf

from ml100.checks import check_input
from ml100.geometry import conv_geometry, conv_output_size, conv_padding

from ..module import HWIO, Module
from . import init


def im2col(x_pad: tf.Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
           out_size: tuple[int, int], groups: int) -> tf.Tensor:
    """Every patch of the padded ``(N, Hp, Wp, C)`` input as a row: ``(G, N*Ho*Wo, kh*kw*Cg)``,
    columns ordered ``(u, v, c)`` like the HWIO kernel (``tf.image.extract_patches``)."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_size
    n, cg = x_pad.shape[0], x_pad.shape[3] // groups
    if n == 0:
        # TF's gradient of extract_patches fails on an empty batch (an UnsortedSegmentSum shape
        # check). There are no patches then: reshaping the empty input is the empty result, and
        # keeps the tape's link to x.
        return tf.reshape(x_pad, (groups, 0, kh * kw * cg))
    patches = tf.image.extract_patches(x_pad, sizes=[1, kh, kw, 1], strides=[1, sh, sw, 1],
                                       rates=[1, dh, dw, 1], padding="VALID")  # (N, Ho, Wo, kh*kw*C)
    # Split the channels into groups and bring the group axis first: one matrix product per group.
    # The batch is -1, not n: under a tf.function traced for any batch size, n is unknown (None).
    rows = tf.transpose(tf.reshape(patches, (-1, ho, wo, kh, kw, groups, cg)), (5, 0, 1, 2, 3, 4, 6))  # (G, N, Ho, Wo, kh, kw, Cg)
    return tf.reshape(rows, (groups, -1, kh * kw * cg))


class Conv2d(Module):
    """2-D convolution on NHWC input; canonical ``weight`` ``(out, in/groups, kh, kw)``, ``bias`` ``(out,)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding, self.dilation = conv_geometry(
            "Conv2d", in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        rng = np.random.default_rng() if rng is None else rng
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        # PyTorch's default: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        weight = init.kaiming_uniform(shape, rng, a=math.sqrt(5.0), dtype=dtype)
        self.kernel = self.add_param("weight", tf.transpose(weight, (2, 3, 1, 0)), layout=HWIO)  # (kh, kw, Cg, O)
        self.bias = self.add_param("bias", init.uniform((out_channels,), rng, 1.0 / math.sqrt(init.compute_fans(shape)[0]), dtype)) if bias else None

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("Conv2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        if x.shape[3] != self.in_channels:
            raise ValueError(f"Conv2d: x must have {self.in_channels} channels (N, H, W, C), got shape {tuple(x.shape)}")
        _, h, w, _ = x.shape
        pads = conv_padding(self.padding, (h, w), self.kernel_size, self.stride, self.dilation)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ho, wo = conv_output_size(h, pads[0], kh, sh, dh), conv_output_size(w, pads[1], kw, sw, dw)
        if ho < 1 or wo < 1:
            raise ValueError(f"Conv2d: input {h}x{w} is smaller than the dilated kernel after padding")
        x_pad = tf.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])  # (N, Hp, Wp, C)
        g, cg = self.groups, self.in_channels // self.groups
        cols = im2col(x_pad, self.kernel_size, self.stride, self.dilation, (ho, wo), g)  # (G, N*Ho*Wo, kh*kw*Cg)
        kernel = tf.transpose(tf.reshape(self.kernel, (kh * kw * cg, g, self.out_channels // g)), (1, 0, 2))  # (G, kh*kw*Cg, Og)
        y = tf.transpose(cols @ kernel, (1, 0, 2))  # (N*Ho*Wo, G, Og)
        y = tf.reshape(y, (-1, ho, wo, self.out_channels))  # (N, Ho, Wo, O); N may be unknown while tracing
        if self.bias is not None:
            y = y + self.bias
        return y
