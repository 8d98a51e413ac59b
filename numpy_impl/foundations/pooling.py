r"""Day 16: pooling — max, average and global average over spatial windows of NCHW images.

A pooling layer slides a :math:`k_h\times k_w` window with stride :math:`(s_h, s_w)` over each
channel of a zero- or :math:`-\infty`-padded image and reduces each window to one number:

.. math::

    y_{ncij} = \operatorname{reduce}_{(a,b)\in[0,k_h)\times[0,k_w)} \tilde x_{nc,\,i s_h + a,\,j s_w + b},
    \qquad H_o = \left\lfloor \frac{H + 2p_h - k_h}{s_h} \right\rfloor + 1

(no ``ceil_mode``), where :math:`\tilde x` is :math:`x` padded by :math:`p_h, p_w` on both sides —
with :math:`-\infty` for max pooling (a pad never wins), with 0 for average pooling. PyTorch's
rule :math:`p \le k/2` keeps every window overlapping the real image.

* **Max** (Ranzato et al. 2007; Krizhevsky et al. 2012 with overlapping windows):
  :math:`y = \max` of the window. Its derivative routes each output gradient to ONE input: the
  position that won. With ties, like ``F.max_pool2d`` (and ``tf.nn.max_pool2d``), the winner is
  the FIRST maximum in row-major window order (:func:`first_max_mask`); overlapping windows can
  route several gradients to the same input, which add.
* **Average**: :math:`y = \frac1{d}\sum` of the window, :math:`d = k_hk_w` if ``count_include_pad``
  (pads count as zeros), else the number of real pixels in the window. Backward spreads
  :math:`g/d` to every position of the window.
* **Global average** (Lin et al. 2013, "Network in Network"): the mean over all of
  :math:`H\times W`, ``(N, C, H, W) -> (N, C)``; backward is :math:`g/(HW)` everywhere.

Backward, for both windowed pools, is the adjoint of window extraction ("fold"): window gradients
``(N, C, Ho, Wo, K)`` are scatter-added back to the padded image with ``np.add.at`` (a plain
``+=`` through a fancy index would drop the repeats of overlapping windows), then the padding is
cropped off. The padded image's windows are a strided view (``sliding_window_view``), so nothing
loops over batch, channels or pixels.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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


def extract_windows(x: np.ndarray, kernel, stride, padding, pad_value: float) -> np.ndarray:
    """Every pooling window of NCHW ``x``, flattened row-major: ``(N, C, Ho, Wo, kh*kw)``."""
    (ph, pw), (sh, sw) = padding, stride
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)  # (N, C, H+2ph, W+2pw)
    # A view of every kernel-sized window at stride 1, then every s-th one along each axis.
    view = sliding_window_view(padded, kernel, axis=(2, 3))[:, :, ::sh, ::sw]  # (N, C, >=Ho, >=Wo, kh, kw)
    ho, wo = output_size("pool", x.shape[2:], kernel, stride, padding)
    # Crop the windows a stride skips past at the far edge (the floor), then copy them flat.
    return view[:, :, :ho, :wo].reshape(*x.shape[:2], ho, wo, kernel[0] * kernel[1])  # (N, C, Ho, Wo, K)


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
    grad_padded = np.zeros((n, c, size[0] + 2 * ph, size[1] + 2 * pw), dtype=grad_windows.dtype)  # (N, C, Hp, Wp)
    # Unbuffered add: a pixel shared by overlapping windows receives the sum of their gradients.
    np.add.at(grad_padded, (slice(None), slice(None), rows, cols), grad_windows)
    # The padding's share of the gradient has nowhere to go: crop it off.
    return grad_padded[:, :, ph:ph + size[0], pw:pw + size[1]]  # (N, C, H, W)


def first_max_mask(windows: np.ndarray) -> np.ndarray:
    """One-hot over the last axis at the FIRST maximum of each window (torch's tie rule)."""
    k = windows.shape[-1]
    position = np.arange(k)  # (K,)
    # The smallest position holding the maximum; written out rather than trusting an argmax's
    # tie rule (TF documents none), so the three trees pick the same winner by construction.
    is_max = windows == np.max(windows, axis=-1, keepdims=True)  # (..., K)
    first = np.min(np.where(is_max, position, k), axis=-1, keepdims=True)  # (..., 1)
    return position == first  # (..., K) bool


class MaxPool2d(Module):
    """Max over ``kernel_size`` windows of NCHW input; padding is ``-inf``."""

    def __init__(self, kernel_size, stride=None, padding=0, dtype="float32"):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding = pool_geometry("MaxPool2d", kernel_size, stride, padding)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("MaxPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        output_size("MaxPool2d", x.shape[2:], self.kernel_size, self.stride, self.padding)
        windows = extract_windows(x, self.kernel_size, self.stride, self.padding, -np.inf)  # (N, C, Ho, Wo, K)
        # The cached one-hot winner is all backward needs (besides the input's spatial size).
        self.mask = first_max_mask(windows)  # (N, C, Ho, Wo, K)
        self.size = x.shape[2:]
        return np.max(windows, axis=-1)  # (N, C, Ho, Wo)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        # Each output's gradient goes to its window's winner only; the rest of the window gets 0.
        grad_windows = self.mask * grad_out[..., None]  # (N, C, Ho, Wo, K)
        return _fold_windows(grad_windows, self.size, self.kernel_size, self.stride, self.padding)  # (N, C, H, W)


class AvgPool2d(Module):
    """Mean over ``kernel_size`` windows of NCHW input; padding is 0, counted in the divisor if
    ``count_include_pad`` (torch's default) and left out of it otherwise."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True, dtype="float32"):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding = pool_geometry("AvgPool2d", kernel_size, stride, padding)
        self.count_include_pad = count_include_pad

    def divisor(self, x: np.ndarray) -> np.ndarray:
        """How many elements each window's sum is divided by: ``(1, 1, Ho, Wo)`` (or a scalar)."""
        if self.count_include_pad:
            return np.asarray(self.kernel_size[0] * self.kernel_size[1], dtype=x.dtype)
        # Count the real pixels of each window: pool a plane of ones padded with zeros.
        ones = np.ones((1, 1, *x.shape[2:]), dtype=x.dtype)  # (1, 1, H, W)
        return np.sum(extract_windows(ones, self.kernel_size, self.stride, self.padding, 0.0), axis=-1)  # (1, 1, Ho, Wo)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("AvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        output_size("AvgPool2d", x.shape[2:], self.kernel_size, self.stride, self.padding)
        windows = extract_windows(x, self.kernel_size, self.stride, self.padding, 0.0)  # (N, C, Ho, Wo, K)
        self.count = self.divisor(x)  # (1, 1, Ho, Wo) or ()
        self.size = x.shape[2:]
        return np.sum(windows, axis=-1) / self.count  # (N, C, Ho, Wo)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        # d mean / d element = 1/count for every element of the window (pads included, then cropped).
        share = grad_out / self.count  # (N, C, Ho, Wo)
        k = self.kernel_size[0] * self.kernel_size[1]
        grad_windows = np.broadcast_to(share[..., None], (*share.shape, k))  # (N, C, Ho, Wo, K)
        return _fold_windows(grad_windows, self.size, self.kernel_size, self.stride, self.padding)  # (N, C, H, W)


class GlobalAvgPool2d(Module):
    """Mean over all of ``H x W``: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("GlobalAvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        self.shape = x.shape
        return np.mean(x, axis=(2, 3))  # (N, C)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        h, w = self.shape[2:]
        # Every pixel contributed 1/(HW) to its channel's mean.
        return np.broadcast_to((grad_out / (h * w))[:, :, None, None], self.shape).copy()  # (N, C, H, W)
