r"""Day 16: pooling — max, average, global average and adaptive average over spatial windows of
NHWC images, written from tensor ops (``tf.image.extract_patches``, gathers and reductions;
``tf.nn.max_pool2d`` and the Keras pooling layers are the test's references).

Layout: TF on CPU works channels-last, so this tree takes ``(N, H, W, C)`` and returns
``(N, Ho, Wo, C)`` (``(N, C)`` for the global pool); the other trees are NCHW.

A pooling layer slides a :math:`k_h\times k_w` window with stride :math:`(s_h, s_w)` over each
channel of a padded image and reduces each window to one number:

.. math::

    y_{nijc} = \operatorname{reduce}_{(a,b)} \tilde x_{n,\,i s_h + a,\,j s_w + b,\,c},
    \qquad H_o = \left\lfloor \frac{H + 2p_h - k_h}{s_h} \right\rfloor + 1

with :math:`\tilde x` padded symmetrically by :math:`-\infty` (max) or 0 (average),
:math:`p \le k/2` — torch's explicit padding, not Keras' ``"same"`` (which pads more at the
bottom/right when the total is odd); with ``ceil_mode`` (max) the ceiling, a last partial window
included unless it would start past the image and its left padding (torch's rule).

* **Max**: the window's maximum, written as the sum of the window where the one-hot of its winner
  (:func:`winner_mask`) is set, so the tape routes the gradient to that one position — the one
  ``F.max_pool2d`` picks: the FIRST maximum with ties (``tf.reduce_max`` would split a tie's
  gradient evenly), the LAST NaN if the window holds NaN (so NaN propagates), and never a pad: a
  window whose real pixels are all :math:`-\infty` gives its gradient to its first real pixel.
* **Average**: the window's sum over :math:`k_hk_w` (``count_include_pad``) or over its number
  of real pixels; inf and NaN propagate as summing them does.
* **Global average**: the mean over :math:`H\times W`, ``(N, H, W, C) -> (N, C)``.
* **Adaptive average**: output row :math:`i` averages input rows
  :math:`[\lfloor iH/O_h\rfloor, \lceil (i+1)H/O_h\rceil)` (torch's bins), likewise for columns;
  two 1-D passes (:func:`bin_mean`), since a bin is a rectangle.

The tape's backward of ``extract_patches`` and of the gathers adds overlapping windows'
gradients, as the NumPy tree's hand-written folds do. An empty batch (``N = 0``) pools to an
empty batch.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_input
from ml100.geometry import adaptive_bins, check_output_size, check_spatial_size, pool_geometry, pool_output_size

from ..module import Module, tf_dtype


def extract_windows(x: tf.Tensor, kernel, stride, padding, pad_value: float, out_size) -> tf.Tensor:
    """Every pooling window of NHWC ``x``, flattened row-major: ``(N, Ho, Wo, C, kh*kw)``."""
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = kernel, stride, padding, out_size
    # The far side gets whatever more the last window reaches (ceil_mode's partial window).
    bottom, right = max(ph, (ho - 1) * sh + kh - x.shape[1] - ph), max(pw, (wo - 1) * sw + kw - x.shape[2] - pw)
    padded = tf.pad(x, [[0, 0], [ph, bottom], [pw, right], [0, 0]], constant_values=pad_value)  # (N, Hp, Wp, C)
    if x.shape[0] == 0:
        # TF's gradient of extract_patches fails on an empty batch (an UnsortedSegmentSum shape
        # check). There are no windows then: reshaping the empty input is the empty result, and
        # keeps the tape's link to x.
        return tf.reshape(x, (0, ho, wo, x.shape[-1], kh * kw))  # (0, Ho, Wo, C, K)
    # "VALID" patches: whole windows only. Each patch is flattened (kh, kw, C).
    patches = tf.image.extract_patches(padded, [1, kh, kw, 1], [1, sh, sw, 1], [1, 1, 1, 1], "VALID")[:, :ho, :wo]  # (N, Ho, Wo, K*C)
    windows = tf.reshape(patches, [tf.shape(x)[0], ho, wo, kh * kw, x.shape[-1]])  # (N, Ho, Wo, K, C)
    # Window axis last, as in the other trees, so every reduction below is over axis -1.
    return tf.transpose(windows, [0, 1, 2, 4, 3])  # (N, Ho, Wo, C, K)


def real_mask(size: tuple[int, int], kernel, stride, padding, out_size) -> tf.Tensor:
    """Which elements of each window are real pixels, not padding: bool ``(1, Ho, Wo, 1, K)``."""
    ones = tf.ones((1, *size, 1))  # (1, H, W, 1)
    return extract_windows(ones, kernel, stride, padding, 0.0, out_size) > 0  # (1, Ho, Wo, 1, K)


def winner_mask(windows: tf.Tensor, real: tf.Tensor) -> tf.Tensor:
    """One-hot over the last axis at the element ``F.max_pool2d`` picks in each window: the last
    NaN if there is one, else the first maximum among the ``real`` (not padding) elements."""
    k = windows.shape[-1]
    position = tf.range(k)  # (K,)
    # torch scans the window in row-major order and takes a value that beats the best so far or
    # is NaN, so the last NaN wins; -1 where the window holds none.
    last_nan = tf.reduce_max(tf.where(tf.math.is_nan(windows), position, -1), axis=-1, keepdims=True)  # (..., 1)
    # Otherwise the smallest real position holding the maximum (written out rather than trusting an
    # argmax's tie rule, which TF does not document). Pads are -inf and could tie an all -inf
    # window: `real` keeps them out, so such a window picks its first real pixel, as torch does.
    is_max = real & (windows == tf.reduce_max(windows, axis=-1, keepdims=True))  # (..., K)
    first_max = tf.reduce_min(tf.where(is_max, position, k), axis=-1, keepdims=True)  # (..., 1)
    return position == tf.where(last_nan >= 0, last_nan, first_max)  # (..., K) bool


def bin_mean(x: tf.Tensor, axis: int, index: np.ndarray, valid: np.ndarray, count: np.ndarray) -> tf.Tensor:
    """The mean of each adaptive bin along ``axis`` (``index``, ``valid``, ``count`` from
    ``ml100.geometry.adaptive_bins``): that axis of length L becomes one of length ``out``."""
    trailing = (1,) * (x.shape.rank - axis - 1)
    gathered = tf.gather(x, index, axis=axis)  # (..., out, K, ...)
    # `where`, not a product with the mask: an inf or NaN outside a bin must not reach it (0 * inf is NaN).
    kept = tf.where(valid.reshape(valid.shape + trailing), gathered, tf.zeros_like(gathered))  # (..., out, K, ...)
    divisor = tf.constant(count.reshape(count.shape + trailing), dtype=x.dtype)
    return tf.reduce_sum(kept, axis=axis + 1) / divisor  # (..., out, ...)


class MaxPool2d(Module):
    """Max over ``kernel_size`` windows of NHWC input; padding is ``-inf`` and never wins."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, dtype="float32"):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding = pool_geometry("MaxPool2d", kernel_size, stride, padding)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("MaxPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        geometry = (self.kernel_size, self.stride, self.padding)
        out_size = pool_output_size("MaxPool2d", tuple(x.shape[1:3]), *geometry, self.ceil_mode)
        windows = extract_windows(x, *geometry, float("-inf"), out_size)  # (N, Ho, Wo, C, K)
        mask = winner_mask(windows, real_mask(tuple(x.shape[1:3]), *geometry, out_size))  # (N, Ho, Wo, C, K)
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

    def divisor(self, size: tuple[int, int], out_size) -> tf.Tensor:
        """How many elements each window's sum is divided by: ``(1, Ho, Wo, 1)`` (or a scalar)."""
        if self.count_include_pad:
            return tf.constant(self.kernel_size[0] * self.kernel_size[1], dtype=tf_dtype(self.dtype))
        real = real_mask(size, self.kernel_size, self.stride, self.padding, out_size)  # (1, Ho, Wo, 1, K)
        return tf.reduce_sum(tf.cast(real, tf_dtype(self.dtype)), axis=-1)  # (1, Ho, Wo, 1)

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("AvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        out_size = pool_output_size("AvgPool2d", tuple(x.shape[1:3]), self.kernel_size, self.stride, self.padding)
        windows = extract_windows(x, self.kernel_size, self.stride, self.padding, 0.0, out_size)  # (N, Ho, Wo, C, K)
        return tf.reduce_sum(windows, axis=-1) / self.divisor(tuple(x.shape[1:3]), out_size)  # (N, Ho, Wo, C)


class GlobalAvgPool2d(Module):
    """Mean over all of ``H x W``: ``(N, H, W, C) -> (N, C)``."""

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("GlobalAvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        check_spatial_size("GlobalAvgPool2d", tuple(x.shape[1:3]))
        return tf.reduce_mean(x, axis=(1, 2))  # (N, C)


class AdaptiveAvgPool2d(Module):
    """Average over torch's adaptive bins: ``(N, H, W, C) -> (N, O_h, O_w, C)`` for any ``H, W``.

    ``output_size`` is an int, or a pair whose ``None`` keeps that axis's input size."""

    def __init__(self, output_size, dtype="float32"):
        super().__init__(dtype)
        self.output_size = check_output_size("AdaptiveAvgPool2d", output_size)

    def bins(self, size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(index, valid, count)`` of the row bins and of the column bins for an ``H x W`` input."""
        return [adaptive_bins(n, n if out is None else out) for n, out in zip(size, self.output_size)]

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("AdaptiveAvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        check_spatial_size("AdaptiveAvgPool2d", tuple(x.shape[1:3]))
        rows, cols = self.bins(tuple(x.shape[1:3]))
        # A bin is a rectangle: average its rows within each column, then those column means.
        pooled_rows = bin_mean(x, 1, *rows)  # (N, Oh, W, C)
        return bin_mean(pooled_rows, 2, *cols)  # (N, Oh, Ow, C)
