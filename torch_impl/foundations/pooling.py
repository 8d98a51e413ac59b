r"""Day 16: pooling — max, average, global average and adaptive average over spatial windows of
NCHW images, written from tensor ops (``unfold``, gathers and reductions; ``F.max_pool2d`` and
friends are the test's references).

A pooling layer slides a :math:`k_h\times k_w` window with stride :math:`(s_h, s_w)` over each
channel of a padded image and reduces each window to one number:

.. math::

    y_{ncij} = \operatorname{reduce}_{(a,b)} \tilde x_{nc,\,i s_h + a,\,j s_w + b},
    \qquad H_o = \left\lfloor \frac{H + 2p_h - k_h}{s_h} \right\rfloor + 1

with :math:`\tilde x` padded by :math:`-\infty` (max) or 0 (average), :math:`p \le k/2`; with
``ceil_mode`` (max) the ceiling, a last partial window included unless it would start past the
image and its left padding (torch's rule).

* **Max**: the window's maximum, written as the sum of the window where the one-hot of its winner
  (:func:`winner_mask`) is set, so autograd routes the gradient to that one position — the one
  ``F.max_pool2d`` picks: the FIRST maximum with ties (``amax`` would split a tie's gradient
  evenly), the LAST NaN if the window holds NaN (so NaN propagates), and never a pad: a window
  whose real pixels are all :math:`-\infty` gives its gradient to its first real pixel.
* **Average**: the window's sum over :math:`k_hk_w` (``count_include_pad``) or over its number
  of real pixels; inf and NaN propagate as summing them does.
* **Global average**: the mean over :math:`H\times W`, ``(N, C, H, W) -> (N, C)``.
* **Adaptive average**: output row :math:`i` averages input rows
  :math:`[\lfloor iH/O_h\rfloor, \lceil (i+1)H/O_h\rceil)` (torch's bins), likewise for columns;
  two 1-D passes (:func:`bin_mean`), since a bin is a rectangle.

Autograd's backward of ``unfold`` and of the gathers adds overlapping windows' gradients, as the
NumPy tree's hand-written folds do. An empty batch (``N = 0``) pools to an empty batch.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ml100.checks import check_input
from ml100.geometry import adaptive_bins, check_output_size, check_spatial_size, pool_geometry, pool_output_size

from ..module import Module, torch_dtype


def extract_windows(x: torch.Tensor, kernel, stride, padding, pad_value: float, out_size) -> torch.Tensor:
    """Every pooling window of NCHW ``x``, flattened row-major: ``(N, C, Ho, Wo, kh*kw)``."""
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = kernel, stride, padding, out_size
    # The far side gets whatever more the last window reaches (ceil_mode's partial window).
    bottom, right = max(ph, (ho - 1) * sh + kh - x.shape[2] - ph), max(pw, (wo - 1) * sw + kw - x.shape[3] - pw)
    # F.pad lists the last axis first: (left, right, top, bottom).
    padded = F.pad(x, (pw, right, ph, bottom), value=pad_value)  # (N, C, Hp, Wp)
    # unfold(axis, size, step) appends a window axis; it takes only whole windows.
    view = padded.unfold(2, kh, sh).unfold(3, kw, sw)[:, :, :ho, :wo]  # (N, C, Ho, Wo, kh, kw)
    return view.reshape(*x.shape[:2], ho, wo, kh * kw)  # (N, C, Ho, Wo, K)


def real_mask(size: tuple[int, int], kernel, stride, padding, out_size) -> torch.Tensor:
    """Which elements of each window are real pixels, not padding: bool ``(1, 1, Ho, Wo, K)``."""
    ones = torch.ones((1, 1, *size))  # (1, 1, H, W)
    return extract_windows(ones, kernel, stride, padding, 0.0, out_size) > 0  # (1, 1, Ho, Wo, K)


def winner_mask(windows: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """One-hot over the last axis at the element ``F.max_pool2d`` picks in each window: the last
    NaN if there is one, else the first maximum among the ``real`` (not padding) elements."""
    k = windows.shape[-1]
    position = torch.arange(k, device=windows.device)  # (K,)
    # torch scans the window in row-major order and takes a value that beats the best so far or
    # is NaN, so the last NaN wins; -1 where the window holds none.
    last_nan = torch.amax(torch.where(torch.isnan(windows), position, -1), dim=-1, keepdim=True)  # (..., 1)
    # Otherwise the smallest real position holding the maximum (written out rather than trusting an
    # argmax's tie rule, which TF does not document). Pads are -inf and could tie an all -inf
    # window: `real` keeps them out, so such a window picks its first real pixel, as torch does.
    is_max = real & (windows == torch.amax(windows, dim=-1, keepdim=True))  # (..., K)
    first_max = torch.amin(torch.where(is_max, position, k), dim=-1, keepdim=True)  # (..., 1)
    return position == torch.where(last_nan >= 0, last_nan, first_max)  # (..., K) bool


def bin_mean(x: torch.Tensor, axis: int, index: np.ndarray, valid: np.ndarray, count: np.ndarray) -> torch.Tensor:
    """The mean of each adaptive bin along ``axis`` (``index``, ``valid``, ``count`` from
    ``ml100.geometry.adaptive_bins``): that axis of length L becomes one of length ``out``."""
    trailing = (1,) * (x.ndim - axis - 1)
    gathered = x[(slice(None),) * axis + (torch.from_numpy(index),)]  # (..., out, K, ...)
    # `where`, not a product with the mask: an inf or NaN outside a bin must not reach it (0 * inf is NaN).
    kept = torch.where(torch.from_numpy(valid).reshape(valid.shape + trailing), gathered, 0.0)  # (..., out, K, ...)
    divisor = torch.from_numpy(count).reshape(count.shape + trailing).to(x.dtype)
    return kept.sum(dim=axis + 1) / divisor  # (..., out, ...)


class MaxPool2d(Module):
    """Max over ``kernel_size`` windows of NCHW input; padding is ``-inf`` and never wins."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, dtype="float32"):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding = pool_geometry("MaxPool2d", kernel_size, stride, padding)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("MaxPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        geometry = (self.kernel_size, self.stride, self.padding)
        out_size = pool_output_size("MaxPool2d", tuple(x.shape[2:]), *geometry, self.ceil_mode)
        windows = extract_windows(x, *geometry, float("-inf"), out_size)  # (N, C, Ho, Wo, K)
        mask = winner_mask(windows, real_mask(tuple(x.shape[2:]), *geometry, out_size))  # (N, C, Ho, Wo, K)
        # Select the winner with `where` (not a product: -inf * 0 is nan); its gradient flows to
        # the winner alone.
        return torch.where(mask, windows, torch.zeros_like(windows)).sum(dim=-1)  # (N, C, Ho, Wo)


class AvgPool2d(Module):
    """Mean over ``kernel_size`` windows of NCHW input; padding is 0, counted in the divisor if
    ``count_include_pad`` (torch's default) and left out of it otherwise."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True, dtype="float32"):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding = pool_geometry("AvgPool2d", kernel_size, stride, padding)
        self.count_include_pad = count_include_pad

    def divisor(self, size: tuple[int, int], out_size) -> torch.Tensor:
        """How many elements each window's sum is divided by: ``(1, 1, Ho, Wo)`` (or a scalar)."""
        if self.count_include_pad:
            return torch.tensor(self.kernel_size[0] * self.kernel_size[1], dtype=torch_dtype(self.dtype))
        real = real_mask(size, self.kernel_size, self.stride, self.padding, out_size)  # (1, 1, Ho, Wo, K)
        return real.sum(dim=-1).to(torch_dtype(self.dtype))  # (1, 1, Ho, Wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("AvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        out_size = pool_output_size("AvgPool2d", tuple(x.shape[2:]), self.kernel_size, self.stride, self.padding)
        windows = extract_windows(x, self.kernel_size, self.stride, self.padding, 0.0, out_size)  # (N, C, Ho, Wo, K)
        return windows.sum(dim=-1) / self.divisor(tuple(x.shape[2:]), out_size)  # (N, C, Ho, Wo)


class GlobalAvgPool2d(Module):
    """Mean over all of ``H x W``: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("GlobalAvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        check_spatial_size("GlobalAvgPool2d", tuple(x.shape[2:]))
        return x.mean(dim=(2, 3))  # (N, C)


class AdaptiveAvgPool2d(Module):
    """Average over torch's adaptive bins: ``(N, C, H, W) -> (N, C, O_h, O_w)`` for any ``H, W``.

    ``output_size`` is an int, or a pair whose ``None`` keeps that axis's input size."""

    def __init__(self, output_size, dtype="float32"):
        super().__init__(dtype)
        self.output_size = check_output_size("AdaptiveAvgPool2d", output_size)

    def bins(self, size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(index, valid, count)`` of the row bins and of the column bins for an ``H x W`` input."""
        return [adaptive_bins(n, n if out is None else out) for n, out in zip(size, self.output_size)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("AdaptiveAvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        check_spatial_size("AdaptiveAvgPool2d", tuple(x.shape[2:]))
        rows, cols = self.bins(tuple(x.shape[2:]))
        # A bin is a rectangle: average its rows within each column, then those column means.
        pooled_rows = bin_mean(x, 2, *rows)  # (N, C, Oh, W)
        return bin_mean(pooled_rows, 3, *cols)  # (N, C, Oh, Ow)
