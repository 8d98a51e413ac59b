r"""Day 16: pooling — max, average, global average and adaptive average over spatial windows of
NCHW images.

A pooling layer slides a :math:`k_h\times k_w` window with stride :math:`(s_h, s_w)` over each
channel of a zero- or :math:`-\infty`-padded image and reduces each window to one number:

.. math::

    y_{ncij} = \operatorname{reduce}_{(a,b)\in[0,k_h)\times[0,k_w)} \tilde x_{nc,\,i s_h + a,\,j s_w + b},
    \qquad H_o = \left\lfloor \frac{H + 2p_h - k_h}{s_h} \right\rfloor + 1

where :math:`\tilde x` is :math:`x` padded by :math:`p_h, p_w` on both sides — with
:math:`-\infty` for max pooling, with 0 for average pooling. PyTorch's rule :math:`p \le k/2`
keeps every window overlapping the real image. With ``ceil_mode`` (max pooling) :math:`H_o` takes
the ceiling instead, so a last, partial window covers the leftover rows — unless it would start
past the image and its left padding (torch's rule); past the padding the image is :math:`-\infty`.

* **Max** (Ranzato et al. 2007; Krizhevsky et al. 2012 with overlapping windows):
  :math:`y = \max` of the window. Its derivative routes each output gradient to ONE input: the
  position that won (:func:`winner_mask`), which is the one ``F.max_pool2d`` picks —
  the FIRST maximum in row-major window order when there are ties (as ``tf.nn.max_pool2d`` on
  CPU too); the LAST NaN when the window holds NaN (torch takes a value if it beats the best so
  far *or is NaN*), so a NaN pixel makes its windows NaN; and a pad never wins — a window whose
  real pixels are all :math:`-\infty` gives :math:`-\infty` and its gradient to its first real
  pixel. Overlapping windows can route several gradients to the same input, which add.
* **Average**: :math:`y = \frac1{d}\sum` of the window, :math:`d = k_hk_w` if ``count_include_pad``
  (pads count as zeros), else the number of real pixels in the window. Backward spreads
  :math:`g/d` to every position of the window. An inf makes its windows inf; inf and -inf (or a
  NaN) in one window make it NaN, as summing them does.
* **Global average** (Lin et al. 2013, "Network in Network"): the mean over all of
  :math:`H\times W`, ``(N, C, H, W) -> (N, C)``; backward is :math:`g/(HW)` everywhere.
* **Adaptive average** (``AdaptiveAvgPool2d``): a fixed output size :math:`O_h\times O_w` from
  any input; output row :math:`i` averages input rows
  :math:`[\lfloor iH/O_h\rfloor, \lceil (i+1)H/O_h\rceil)` (torch's bins, which may overlap), and
  likewise for columns. A bin is a rectangle, so its mean is a mean over its columns of the means
  over its rows: two 1-D passes (:func:`bin_mean`).

Backward, for the windowed pools, is the adjoint of window extraction ("fold"): window gradients
``(N, C, Ho, Wo, K)`` are scatter-added back to the padded image with ``np.add.at`` (a plain
``+=`` through a fancy index would drop the repeats of overlapping windows), then the padding is
cropped off. The padded image's windows are a strided view (``sliding_window_view``), so nothing
loops over batch, channels or pixels. An empty batch (``N = 0``) pools to an empty batch.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ml100.checks import check_input
from ml100.geometry import adaptive_bins, check_output_size, check_spatial_size, pool_geometry, pool_output_size

from ..module import Module


def extract_windows(x: np.ndarray, kernel, stride, padding, pad_value: float, out_size) -> np.ndarray:
    """Every pooling window of NCHW ``x``, flattened row-major: ``(N, C, Ho, Wo, kh*kw)``."""
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = kernel, stride, padding, out_size
    # The far side gets whatever more the last window reaches (ceil_mode's partial window).
    bottom, right = max(ph, (ho - 1) * sh + kh - x.shape[2] - ph), max(pw, (wo - 1) * sw + kw - x.shape[3] - pw)
    padded = np.pad(x, ((0, 0), (0, 0), (ph, bottom), (pw, right)), constant_values=pad_value)  # (N, C, Hp, Wp)
    # A view of every kernel-sized window at stride 1, then every s-th one along each axis.
    view = sliding_window_view(padded, kernel, axis=(2, 3))[:, :, ::sh, ::sw]  # (N, C, >=Ho, >=Wo, kh, kw)
    # Crop the windows a stride skips past at the far edge (the floor), then copy them flat.
    return view[:, :, :ho, :wo].reshape(*x.shape[:2], ho, wo, kh * kw)  # (N, C, Ho, Wo, K)


def real_mask(size: tuple[int, int], kernel, stride, padding, out_size) -> np.ndarray:
    """Which elements of each window are real pixels, not padding: bool ``(1, 1, Ho, Wo, K)``."""
    ones = np.ones((1, 1, *size))  # (1, 1, H, W)
    return extract_windows(ones, kernel, stride, padding, 0.0, out_size) > 0  # (1, 1, Ho, Wo, K)


def _fold_windows(grad_windows: np.ndarray, size: tuple[int, int], kernel, stride, padding) -> np.ndarray:
    """The adjoint of :func:`extract_windows`: add each window's gradient back where it came from.

    NumPy-only (hence private, so the mirror test does not look for it elsewhere): autograd
    derives it in the other trees."""
    n, c, ho, wo, _ = grad_windows.shape  # (N, C, Ho, Wo, K)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    # Padded-image row and column of element (a, b) of window (i, j): i*sh + a, j*sw + b.
    rows = (np.arange(ho)[:, None, None] * sh + np.repeat(np.arange(kh), kw)[None, None, :])  # (Ho, 1, K)
    cols = (np.arange(wo)[None, :, None] * sw + np.tile(np.arange(kw), kh)[None, None, :])  # (1, Wo, K)
    rows, cols = np.broadcast_arrays(rows, cols)  # (Ho, Wo, K) each
    height, width = max(size[0] + 2 * ph, rows.max() + 1), max(size[1] + 2 * pw, cols.max() + 1)
    grad_padded = np.zeros((n, c, height, width), dtype=grad_windows.dtype)  # (N, C, Hp, Wp)
    # Unbuffered add: a pixel shared by overlapping windows receives the sum of their gradients.
    np.add.at(grad_padded, (slice(None), slice(None), rows, cols), grad_windows)
    # The padding's share of the gradient has nowhere to go: crop it off.
    return grad_padded[:, :, ph:ph + size[0], pw:pw + size[1]]  # (N, C, H, W)


def winner_mask(windows: np.ndarray, real: np.ndarray) -> np.ndarray:
    """One-hot over the last axis at the element ``F.max_pool2d`` picks in each window: the last
    NaN if there is one, else the first maximum among the ``real`` (not padding) elements."""
    k = windows.shape[-1]
    position = np.arange(k)  # (K,)
    # torch scans the window in row-major order and takes a value that beats the best so far or
    # is NaN, so the last NaN wins; -1 where the window holds none.
    last_nan = np.max(np.where(np.isnan(windows), position, -1), axis=-1, keepdims=True)  # (..., 1)
    # Otherwise the smallest real position holding the maximum (written out rather than trusting an
    # argmax's tie rule, which TF does not document). Pads are -inf and could tie an all -inf
    # window: `real` keeps them out, so such a window picks its first real pixel, as torch does.
    is_max = real & (windows == np.max(windows, axis=-1, keepdims=True))  # (..., K)
    first_max = np.min(np.where(is_max, position, k), axis=-1, keepdims=True)  # (..., 1)
    return position == np.where(last_nan >= 0, last_nan, first_max)  # (..., K) bool


def bin_mean(x: np.ndarray, axis: int, index: np.ndarray, valid: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The mean of each adaptive bin along ``axis`` (``index``, ``valid``, ``count`` from
    ``ml100.geometry.adaptive_bins``): that axis of length L becomes one of length ``out``."""
    trailing = (1,) * (x.ndim - axis - 1)
    gathered = np.take(x, index, axis=axis)  # (..., out, K, ...)
    # `where`, not a product with the mask: an inf or NaN outside a bin must not reach it (0 * inf is NaN).
    kept = np.where(valid.reshape(valid.shape + trailing), gathered, 0.0)  # (..., out, K, ...)
    return np.sum(kept, axis=axis + 1) / count.reshape(count.shape + trailing).astype(x.dtype)  # (..., out, ...)


def _bin_mean_backward(grad: np.ndarray, axis: int, index, valid, count, length: int) -> np.ndarray:
    """The adjoint of :func:`bin_mean`: each bin's gradient, divided by its width, added back to
    every position of the bin (overlapping bins add). NumPy-only: autograd derives it elsewhere."""
    trailing = (1,) * (grad.ndim - axis - 1)
    share = np.expand_dims(grad / count.reshape(count.shape + trailing).astype(grad.dtype), axis + 1)  # (..., out, 1, ...)
    share = np.where(valid.reshape(valid.shape + trailing), share, 0.0)  # (..., out, K, ...)
    grad_x = np.zeros((*grad.shape[:axis], length, *grad.shape[axis + 1:]), dtype=grad.dtype)  # (..., L, ...)
    np.add.at(grad_x, (slice(None),) * axis + (index,), share)
    return grad_x


class MaxPool2d(Module):
    """Max over ``kernel_size`` windows of NCHW input; padding is ``-inf`` and never wins."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, dtype="float32"):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding = pool_geometry("MaxPool2d", kernel_size, stride, padding)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("MaxPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        geometry = (self.kernel_size, self.stride, self.padding)
        out_size = pool_output_size("MaxPool2d", x.shape[2:], *geometry, self.ceil_mode)
        windows = extract_windows(x, *geometry, -np.inf, out_size)  # (N, C, Ho, Wo, K)
        mask = winner_mask(windows, real_mask(x.shape[2:], *geometry, out_size))  # (N, C, Ho, Wo, K)
        # The one-hot winner is all backward needs (besides the input's spatial size).
        self.save_for_backward(mask, x.shape[2:])
        # The maximum propagates NaN: it is the winner's value in every case.
        return np.max(windows, axis=-1)  # (N, C, Ho, Wo)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        mask, size = self.saved_for_backward()
        # Each output's gradient goes to its window's winner only; the rest of the window gets 0.
        grad_windows = np.where(mask, grad_out[..., None], 0.0)  # (N, C, Ho, Wo, K)
        return _fold_windows(grad_windows, size, self.kernel_size, self.stride, self.padding)  # (N, C, H, W)


class AvgPool2d(Module):
    """Mean over ``kernel_size`` windows of NCHW input; padding is 0, counted in the divisor if
    ``count_include_pad`` (torch's default) and left out of it otherwise."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True, dtype="float32"):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding = pool_geometry("AvgPool2d", kernel_size, stride, padding)
        self.count_include_pad = count_include_pad

    def divisor(self, size: tuple[int, int], out_size) -> np.ndarray:
        """How many elements each window's sum is divided by: ``(1, 1, Ho, Wo)`` (or a scalar)."""
        if self.count_include_pad:
            return np.asarray(self.kernel_size[0] * self.kernel_size[1], dtype=self.dtype)
        real = real_mask(size, self.kernel_size, self.stride, self.padding, out_size)  # (1, 1, Ho, Wo, K)
        return np.sum(real, axis=-1).astype(self.dtype)  # (1, 1, Ho, Wo)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("AvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        out_size = pool_output_size("AvgPool2d", x.shape[2:], self.kernel_size, self.stride, self.padding)
        windows = extract_windows(x, self.kernel_size, self.stride, self.padding, 0.0, out_size)  # (N, C, Ho, Wo, K)
        count = self.divisor(x.shape[2:], out_size)  # (1, 1, Ho, Wo) or ()
        self.save_for_backward(count, x.shape[2:])
        return np.sum(windows, axis=-1) / count  # (N, C, Ho, Wo)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        count, size = self.saved_for_backward()
        # d mean / d element = 1/count for every element of the window (pads included, then cropped).
        share = grad_out / count  # (N, C, Ho, Wo)
        k = self.kernel_size[0] * self.kernel_size[1]
        grad_windows = np.broadcast_to(share[..., None], (*share.shape, k))  # (N, C, Ho, Wo, K)
        return _fold_windows(grad_windows, size, self.kernel_size, self.stride, self.padding)  # (N, C, H, W)


class GlobalAvgPool2d(Module):
    """Mean over all of ``H x W``: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("GlobalAvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        check_spatial_size("GlobalAvgPool2d", x.shape[2:])
        self.save_for_backward(x.shape)
        return np.mean(x, axis=(2, 3))  # (N, C)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        shape = self.saved_for_backward()
        h, w = shape[2:]
        # Every pixel contributed 1/(HW) to its channel's mean.
        return np.broadcast_to((grad_out / (h * w))[:, :, None, None], shape).copy()  # (N, C, H, W)


class AdaptiveAvgPool2d(Module):
    """Average over torch's adaptive bins: ``(N, C, H, W) -> (N, C, O_h, O_w)`` for any ``H, W``.

    ``output_size`` is an int, or a pair whose ``None`` keeps that axis's input size."""

    def __init__(self, output_size, dtype="float32"):
        super().__init__(dtype)
        self.output_size = check_output_size("AdaptiveAvgPool2d", output_size)

    def bins(self, size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(index, valid, count)`` of the row bins and of the column bins for an ``H x W`` input."""
        return [adaptive_bins(n, n if out is None else out) for n, out in zip(size, self.output_size)]

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("AdaptiveAvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        check_spatial_size("AdaptiveAvgPool2d", x.shape[2:])
        rows, cols = self.bins(x.shape[2:])
        self.save_for_backward(x.shape[2:])
        # A bin is a rectangle: average its rows within each column, then those column means.
        pooled_rows = bin_mean(x, 2, *rows)  # (N, C, Oh, W)
        return bin_mean(pooled_rows, 3, *cols)  # (N, C, Oh, Ow)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        h, w = self.saved_for_backward()
        rows, cols = self.bins((h, w))
        # The two passes' adjoints, in reverse order.
        grad_rows = _bin_mean_backward(grad_out, 3, *cols, w)  # (N, C, Oh, W)
        return _bin_mean_backward(grad_rows, 2, *rows, h)  # (N, C, H, W)
