r"""Day 16: pooling — max, average and global average over spatial windows of NCHW images,
written from tensor ops (``unfold`` and reductions; ``F.max_pool2d`` is the test's reference).

A pooling layer slides a :math:`k_h\times k_w` window with stride :math:`(s_h, s_w)` over each
channel of a padded image and reduces each window to one number:

.. math::

    y_{ncij} = \operatorname{reduce}_{(a,b)} \tilde x_{nc,\,i s_h + a,\,j s_w + b},
    \qquad H_o = \left\lfloor \frac{H + 2p_h - k_h}{s_h} \right\rfloor + 1

with :math:`\tilde x` padded by :math:`-\infty` (max) or 0 (average), :math:`p \le k/2`.

* **Max**: the window's maximum, written as the sum of the window times the one-hot of its FIRST
  maximum (:func:`first_max_mask`), so autograd routes the gradient to that one position — the
  tie rule of ``F.max_pool2d``. (``amax`` would split a tie's gradient evenly.)
* **Average**: the window's sum over :math:`k_hk_w` (``count_include_pad``) or over its number
  of real pixels.
* **Global average**: the mean over :math:`H\times W`, ``(N, C, H, W) -> (N, C)``.

Autograd's backward of ``unfold`` adds overlapping windows' gradients, as the NumPy tree's
hand-written fold does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

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


def extract_windows(x: torch.Tensor, kernel, stride, padding, pad_value: float) -> torch.Tensor:
    """Every pooling window of NCHW ``x``, flattened row-major: ``(N, C, Ho, Wo, kh*kw)``."""
    (ph, pw), (sh, sw) = padding, stride
    # F.pad lists the last axis first: (left, right, top, bottom).
    padded = F.pad(x, (pw, pw, ph, ph), value=pad_value)  # (N, C, H+2ph, W+2pw)
    # unfold(axis, size, step) appends a window axis; it takes only whole windows (the floor).
    view = padded.unfold(2, kernel[0], sh).unfold(3, kernel[1], sw)  # (N, C, Ho, Wo, kh, kw)
    return view.reshape(*view.shape[:4], kernel[0] * kernel[1])  # (N, C, Ho, Wo, K)


def first_max_mask(windows: torch.Tensor) -> torch.Tensor:
    """One-hot over the last axis at the FIRST maximum of each window (torch's tie rule)."""
    k = windows.shape[-1]
    position = torch.arange(k, device=windows.device)  # (K,)
    # The smallest position holding the maximum; written out rather than trusting an argmax's
    # tie rule (TF documents none), so the three trees pick the same winner by construction.
    is_max = windows == torch.amax(windows, dim=-1, keepdim=True)  # (..., K)
    first = torch.amin(torch.where(is_max, position, k), dim=-1, keepdim=True)  # (..., 1)
    return position == first  # (..., K) bool


class MaxPool2d(Module):
    """Max over ``kernel_size`` windows of NCHW input; padding is ``-inf``."""

    def __init__(self, kernel_size, stride=None, padding=0, dtype="float32"):
        super().__init__(dtype)
        self.kernel_size, self.stride, self.padding = pool_geometry("MaxPool2d", kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("MaxPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        output_size("MaxPool2d", tuple(x.shape[2:]), self.kernel_size, self.stride, self.padding)
        windows = extract_windows(x, self.kernel_size, self.stride, self.padding, float("-inf"))  # (N, C, Ho, Wo, K)
        mask = first_max_mask(windows)  # (N, C, Ho, Wo, K)
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

    def divisor(self, x: torch.Tensor) -> torch.Tensor:
        """How many elements each window's sum is divided by: ``(1, 1, Ho, Wo)`` (or a scalar)."""
        if self.count_include_pad:
            return torch.tensor(self.kernel_size[0] * self.kernel_size[1], dtype=x.dtype)
        # Count the real pixels of each window: pool a plane of ones padded with zeros.
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)  # (1, 1, H, W)
        return extract_windows(ones, self.kernel_size, self.stride, self.padding, 0.0).sum(dim=-1)  # (1, 1, Ho, Wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("AvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        output_size("AvgPool2d", tuple(x.shape[2:]), self.kernel_size, self.stride, self.padding)
        windows = extract_windows(x, self.kernel_size, self.stride, self.padding, 0.0)  # (N, C, Ho, Wo, K)
        return windows.sum(dim=-1) / self.divisor(x)  # (N, C, Ho, Wo)


class GlobalAvgPool2d(Module):
    """Mean over all of ``H x W``: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("GlobalAvgPool2d", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        return x.mean(dim=(2, 3))  # (N, C)
