r"""Day 16: pooling — max, average and global average over spatial windows of NHWC images,
written from tensor ops (``tf.image.extract_patches`` and reductions; ``tf.nn.max_pool2d`` and
the Keras pooling layers are the test's references).

Layout: TF on CPU works channels-last, so this tree takes ``(N, H, W, C)`` and returns
``(N, Ho, Wo, C)`` (``(N, C)`` for the global pool); the other trees are NCHW.

A pooling layer slides a :math:`k_h\times k_w` window with stride :math:`(s_h, s_w)` over each
channel of a padded image and reduces each window to one number:

.. math::

    y_{nijc} = \operatorname{reduce}_{(a,b)} \tilde x_{n,\,i s_h + a,\,j s_w + b,\,c},
    \qquad H_o = \left\lfloor \frac{H + 2p_h - k_h}{s_h} \right\rfloor + 1

with :math:`\tilde x` padded symmetrically by :math:`-\infty` (max) or 0 (average),
:math:`p \le k/2` — torch's explicit padding, not Keras' ``"same"`` (which pads more at the
bottom/right when the total is odd).

* **Max**: the window's maximum, written as the sum of the window times the one-hot of its FIRST
  maximum (:func:`first_max_mask`), so the tape routes the gradient to that one position — the
  tie rule of ``F.max_pool2d`` (``tf.reduce_max`` would split a tie's gradient evenly).
* **Average**: the window's sum over :math:`k_hk_w` (``count_include_pad``) or over its number
  of real pixels.
* **Global average**: the mean over :math:`H\times W`, ``(N, H, W, C) -> (N, C)``.

The tape's backward of ``extract_patches`` adds overlapping windows' gradients, as the NumPy
tree's hand-written fold does.
"""
from __future__ import annotations

import tensorflow as tf

from ml100.checks import check_input

from ..module import Module
from .conv import pair



def pool_geometry(owner: str, kernel_size, stride, padding) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validated ``(kernel, stride, padding)`` pairs; ``stride=None`` means the kernel size, as in torch."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"{owner}: kernel_size and stride must be >= 1 and padding >= 0, got {kernel}, {stride}, {padding}")
    # torch's rule: a window must never lie wholly in the padding (it would be all -inf / all pad).
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{owner}: padding must be at most half the kernel size, got padding {padding} for kernel {kernel}")
    return kernel, stride, padding


def output_size(owner: str, size: tuple[int, int], kernel, stride, padding) -> tuple[int, int]:
    """``floor((H + 2p - k) / s) + 1`` per spatial axis; an error if the window does not fit."""
    out = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding))
    if min(out) < 1:
        raise ValueError(f"{owner}: input of spatial size {size} is smaller than the kernel {kernel} (padding {padding})")
    return out


def extract_windows(x: tf.Tensor, kernel, stride, padding, pad_value: float) -> tf.Tensor:
    """Every pooling window of NHWC ``x``, flattened row-major: ``(N, Ho, Wo, C, kh*kw)``."""
    (ph, pw), (sh, sw) = padding, stride
    padded = tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]], constant_values=pad_value)  # (N, H+2ph, W+2pw, C)
    # "VALID" patches: whole windows only (the floor). Each patch is flattened (kh, kw, C).
    patches = tf.image.extract_patches(padded, [1, *kernel, 1], [1, sh, sw, 1], [1, 1, 1, 1], "VALID")  # (N, Ho, Wo, K*C)
    n, ho, wo = tf.shape(patches)[0], patches.shape[1], patches.shape[2]
    windows = tf.reshape(patches, [n, ho, wo, kernel[0] * kernel[1], x.shape[-1]])  # (N, Ho, Wo, K, C)
    # Window axis last, as in the other trees, so every reduction below is over axis -1.
    return tf.transpose(windows, [0, 1, 2, 4, 3])  # (N, Ho, Wo, C, K)


def first_max_mask(windows: tf.Tensor) -> tf.Tensor:
    """One-hot over the last axis at the FIRST maximum of each window (torch's tie rule)."""
    k = windows.shape[-1]
    position = tf.range(k)  # (K,)
    # The smallest position holding the maximum; written out rather than trusting an argmax's
    # tie rule (TF documents none), so the three trees pick the same winner by construction.
    is_max = windows == tf.reduce_max(windows, axis=-1, keepdims=True)  # (..., K)
    first = tf.reduce_min(tf.where(is_max, position, k), axis=-1, keepdims=True)  # (..., 1)
    return position == first  # (..., K) bool


class MaxPool2d(Module):
    """Max over ``kernel_size`` windows of NHWC input; padding is ``-inf``."""

    def __init__(self, kernel_size, stride=None, padding=0, dtype="float32"):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding = pool_geometry("MaxPool2d", kernel_size, stride, padding)

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("MaxPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        output_size("MaxPool2d", tuple(x.shape[1:3]), self.kernel_size, self.stride, self.padding)
        windows = extract_windows(x, self.kernel_size, self.stride, self.padding, float("-inf"))  # (N, Ho, Wo, C, K)
        mask = first_max_mask(windows)  # (N, Ho, Wo, C, K)
        # Select the winner with `where` (not a product: -inf * 0 is nan); its gradient flows to
        # the winner alone.
        return tf.reduce_sum(tf.where(mask, windows, tf.zeros_like(windows)), axis=-1)  # (N, Ho, Wo, C)


class AvgPool2d(Module):
    """Mean over ``kernel_size`` windows of NHWC input; padding is 0, counted in the divisor if
    ``count_include_pad`` (torch's default) and left out of it otherwise."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True, dtype="float32"):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding = pool_geometry("AvgPool2d", kernel_size, stride, padding)
        self.count_include_pad = count_include_pad

    def divisor(self, x: tf.Tensor) -> tf.Tensor:
        """How many elements each window's sum is divided by: ``(1, Ho, Wo, 1)`` (or a scalar)."""
        if self.count_include_pad:
            return tf.constant(self.kernel_size[0] * self.kernel_size[1], dtype=x.dtype)
        # Count the real pixels of each window: pool a plane of ones padded with zeros.
        ones = tf.ones((1, *x.shape[1:3], 1), dtype=x.dtype)  # (1, H, W, 1)
        return tf.reduce_sum(extract_windows(ones, self.kernel_size, self.stride, self.padding, 0.0), axis=-1)  # (1, Ho, Wo, 1)

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("AvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        output_size("AvgPool2d", tuple(x.shape[1:3]), self.kernel_size, self.stride, self.padding)
        windows = extract_windows(x, self.kernel_size, self.stride, self.padding, 0.0)  # (N, Ho, Wo, C, K)
        return tf.reduce_sum(windows, axis=-1) / self.divisor(x)  # (N, Ho, Wo, C)


class GlobalAvgPool2d(Module):
    """Mean over all of ``H x W``: ``(N, H, W, C) -> (N, C)``."""

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("GlobalAvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        return tf.reduce_mean(x, axis=(1, 2))  # (N, C)
