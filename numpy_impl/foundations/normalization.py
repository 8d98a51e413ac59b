r"""Day 14: normalization over a set of axes — LayerNorm, RMSNorm, GroupNorm.

All three standardize ``x`` over a set of axes :math:`A` holding :math:`n` elements each, then
apply a learned per-feature scale (and shift). Only the set :math:`A` (and whether the mean is
subtracted) differs, so one helper, :func:`normalize_over_axes`, serves all three classes.

* **LayerNorm** (Ba, Kiros & Hinton, 2016, "Layer Normalization"): :math:`A` = the trailing
  ``normalized_shape`` axes of one sample.

  .. math::  \mu = \tfrac1n\textstyle\sum_A x,\quad \sigma^2 = \tfrac1n\sum_A (x-\mu)^2,\quad
             \hat x = \frac{x-\mu}{\sqrt{\sigma^2+\varepsilon}},\quad y = \gamma\odot\hat x + \beta

* **RMSNorm** (Zhang & Sennrich, 2019, "Root Mean Square Layer Normalization"): no centering,
  :math:`r = \sqrt{\tfrac1n\sum_A x^2 + \varepsilon}`, :math:`\hat x = x / r`, :math:`y = \gamma\odot\hat x`.

* **GroupNorm** (Wu & He, 2018, "Group Normalization"): input ``(N, C, *spatial)``; the ``C``
  channels are split into ``G`` groups of ``C/G`` and :math:`A` = one group's channels and all
  spatial positions. ``G = 1`` is LayerNorm over ``(C, *spatial)`` with per-channel affine;
  ``G = C`` is InstanceNorm.

Intuition: the statistics are per sample, never across the batch (unlike BatchNorm, day 13), so
training and inference compute the same thing and batch size 1 works.

Backward (hand-written here). With :math:`g = \partial L/\partial\hat x = \gamma\odot\partial L/\partial y`
and :math:`\overline{\,\cdot\,}` the mean over :math:`A`:

.. math::  \text{LayerNorm, GroupNorm:}\quad \frac{\partial L}{\partial x} = \frac1\sigma\big(g - \bar g - \hat x\,\overline{g\hat x}\big),
           \qquad \text{RMSNorm:}\quad \frac{\partial L}{\partial x} = \frac1r\big(g - \hat x\,\overline{g\hat x}\big)

(:math:`\sigma` includes :math:`\varepsilon`). The :math:`-\bar g` removes the part of :math:`g`
that a shift of :math:`x` cannot change; :math:`-\hat x\,\overline{g\hat x}` the part a rescaling
cannot change. Parameter gradients: :math:`\partial L/\partial\gamma = \sum (\partial L/\partial y)\odot\hat x`,
:math:`\partial L/\partial\beta = \sum \partial L/\partial y`, summed over every axis that is not a
feature axis of :math:`\gamma`.

Defaults follow PyTorch, except RMSNorm's :math:`\varepsilon`: ``torch.nn.RMSNorm(eps=None)``
uses ``torch.finfo(dtype).eps`` (different in float32 and float64); here the default is an explicit
``1e-6`` (Keras' ``RMSNormalization`` default), so the model is the same in every dtype.
``eps=None`` asks for torch's value, the machine epsilon of the module's dtype (its inputs' dtype).
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import check_bool, check_divisible, check_input, check_int, check_normalized_shape, check_range

from ..module import Module


def _mean_over(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The mean over ``axes`` (keepdims). Over no elements (``LayerNorm(0)``) it is NaN quietly,
    as torch's, where ``np.mean`` would warn; it only ever meets an empty output then."""
    with np.errstate(invalid="ignore"):
        return x.sum(axis=axes, keepdims=True) / math.prod(x.shape[a] for a in axes)


def normalize_over_axes(x: np.ndarray, axes: tuple[int, ...], eps: float, center: bool = True):
    """``(x_hat, inv)``: ``x`` standardized over ``axes`` and ``1 / sqrt(var + eps)`` (keepdims).

    ``center=False`` skips the mean (RMSNorm): the "variance" is then the mean square.
    """
    if center:
        x = x - _mean_over(x, axes)  # (..., A)
    # Biased variance (divide by n, not n - 1): the statistic of these n values, not an estimate.
    inv = 1.0 / np.sqrt(_mean_over(x * x, axes) + eps)  # (..., 1s)
    return x * inv, inv  # (..., A), (..., 1s)


def _normalize_backward(g: np.ndarray, x_hat: np.ndarray, inv: np.ndarray, axes: tuple[int, ...], center: bool):
    """``dL/dx`` from ``g = dL/dx_hat``: project out what a shift (if centered) and a rescaling cannot change."""
    dx = g - x_hat * _mean_over(g * x_hat, axes)  # (..., A)
    if center:
        dx = dx - _mean_over(g, axes)  # (..., A)
    return inv * dx  # (..., A)


def _check_trailing(owner: str, x_shape, normalized_shape: tuple[int, ...]) -> None:
    """The last ``len(normalized_shape)`` axes of ``x`` must be exactly ``normalized_shape``."""
    k = len(normalized_shape)
    if len(x_shape) < k or tuple(x_shape[len(x_shape) - k:]) != normalized_shape:
        raise ValueError(f"{owner}: x must have shape (..., {', '.join(map(str, normalized_shape))}), got {tuple(x_shape)}")


class LayerNorm(Module):
    """Normalize over the trailing ``normalized_shape`` axes; canonical ``weight``, ``bias`` of that shape."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 dtype="float32"):
        super().__init__(dtype)
        self.normalized_shape = check_normalized_shape("LayerNorm", normalized_shape)
        check_range("LayerNorm", "eps", eps)
        self.eps = eps
        # The trailing axes, counted from the end so any number of leading axes works.
        self.axes = tuple(range(-len(self.normalized_shape), 0))
        elementwise_affine = check_bool("LayerNorm", "elementwise_affine", elementwise_affine)
        bias = check_bool("LayerNorm", "bias", bias)
        if elementwise_affine:
            self.params["weight"] = np.ones(self.normalized_shape, dtype=self.dtype)
            if bias:
                self.params["bias"] = np.zeros(self.normalized_shape, dtype=self.dtype)
        self.zero_grad()

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("LayerNorm", "x", x.shape, x.dtype, expected_dtype=self.dtype)
        _check_trailing("LayerNorm", x.shape, self.normalized_shape)
        x_hat, inv = normalize_over_axes(x, self.axes, self.eps)  # (..., *S), (..., 1s)
        self.save_for_backward(x_hat, inv)
        y = x_hat  # (..., *S)
        if "weight" in self.params:
            y = y * self.params["weight"]  # (..., *S)
        if "bias" in self.params:
            y = y + self.params["bias"]  # (..., *S)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        # weight and bias are shared by every leading position: sum their gradients over those axes.
        x_hat, inv = self.saved_for_backward()  # (..., *S), (..., 1s)
        leading = tuple(range(grad_out.ndim - len(self.normalized_shape)))
        g = grad_out  # (..., *S)
        if "weight" in self.params:
            self.grads["weight"] += (grad_out * x_hat).sum(axis=leading)  # (*S)
            g = grad_out * self.params["weight"]  # (..., *S)
        if "bias" in self.params:
            self.grads["bias"] += grad_out.sum(axis=leading)  # (*S)
        return _normalize_backward(g, x_hat, inv, self.axes, center=True)  # (..., *S)


class RMSNorm(Module):
    """``x / sqrt(mean(x**2) + eps) * weight`` over the trailing ``normalized_shape`` axes; canonical ``weight``."""

    def __init__(self, normalized_shape, eps: float | None = 1e-6, elementwise_affine: bool = True, dtype="float32"):
        super().__init__(dtype)
        self.normalized_shape = check_normalized_shape("RMSNorm", normalized_shape)
        if eps is not None:
            check_range("RMSNorm", "eps", eps)
        # torch's eps=None: the machine epsilon of the input's dtype, which is the module's here.
        self.eps = float(np.finfo(self.dtype).eps) if eps is None else eps
        self.axes = tuple(range(-len(self.normalized_shape), 0))
        elementwise_affine = check_bool("RMSNorm", "elementwise_affine", elementwise_affine)
        if elementwise_affine:
            self.params["weight"] = np.ones(self.normalized_shape, dtype=self.dtype)
        self.zero_grad()

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("RMSNorm", "x", x.shape, x.dtype, expected_dtype=self.dtype)
        _check_trailing("RMSNorm", x.shape, self.normalized_shape)
        # No mean subtracted: RMSNorm only rescales, it does not re-center.
        x_hat, inv = normalize_over_axes(x, self.axes, self.eps, center=False)  # (..., *S), (..., 1s)
        self.save_for_backward(x_hat, inv)
        y = x_hat  # (..., *S)
        if "weight" in self.params:
            y = y * self.params["weight"]  # (..., *S)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x_hat, inv = self.saved_for_backward()  # (..., *S), (..., 1s)
        leading = tuple(range(grad_out.ndim - len(self.normalized_shape)))
        g = grad_out  # (..., *S)
        if "weight" in self.params:
            self.grads["weight"] += (grad_out * x_hat).sum(axis=leading)  # (*S)
            g = grad_out * self.params["weight"]  # (..., *S)
        return _normalize_backward(g, x_hat, inv, self.axes, center=False)  # (..., *S)


class GroupNorm(Module):
    """Normalize each of ``num_groups`` channel groups of ``(N, C, *spatial)`` input; canonical ``weight``, ``bias`` ``(C,)``."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, dtype="float32"):
        super().__init__(dtype)
        self.num_groups = check_int("GroupNorm", "num_groups", num_groups, 1)
        # torch builds GroupNorm(G, 0) but cannot run it: at least one channel.
        self.num_channels = check_int("GroupNorm", "num_channels", num_channels, 1)
        check_divisible("GroupNorm", "num_channels", num_channels, "num_groups", num_groups)
        check_range("GroupNorm", "eps", eps)
        self.eps = eps
        affine = check_bool("GroupNorm", "affine", affine)
        if affine:
            self.params["weight"] = np.ones((num_channels,), dtype=self.dtype)
            self.params["bias"] = np.zeros((num_channels,), dtype=self.dtype)
        self.zero_grad()

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("GroupNorm", "x", x.shape, x.dtype, expected_dtype=self.dtype)
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: x must have shape (N, {self.num_channels}, *spatial) (channels first), got {x.shape}")
        n, c = x.shape[:2]
        # Split the channel axis into (groups, channels per group); a group is then a set of axes.
        grouped = x.reshape(n, self.num_groups, c // self.num_groups, *x.shape[2:])  # (N, G, C/G, *sp)
        group_axes = tuple(range(2, grouped.ndim))
        x_hat, inv = normalize_over_axes(grouped, group_axes, self.eps)  # (N, G, C/G, *sp), (N, G, 1s)
        x_hat = x_hat.reshape(x.shape)  # (N, C, *sp)
        self.save_for_backward(x_hat, inv, group_axes)
        y = x_hat  # (N, C, *sp)
        if "weight" in self.params:
            # Per-channel affine: (C,) broadcast against axis 1 of (N, C, *spatial).
            per_channel = (c,) + (1,) * (x.ndim - 2)
            y = y * self.params["weight"].reshape(per_channel) + self.params["bias"].reshape(per_channel)  # (N, C, *sp)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x_hat, inv, group_axes = self.saved_for_backward()  # (N, C, *sp), (N, G, 1s)
        n, c = grad_out.shape[:2]
        # Every axis except the channel axis: batch and spatial positions share each channel's weight.
        shared = (0, *range(2, grad_out.ndim))
        g = grad_out  # (N, C, *sp)
        if "weight" in self.params:
            self.grads["weight"] += (grad_out * x_hat).sum(axis=shared)  # (C,)
            self.grads["bias"] += grad_out.sum(axis=shared)  # (C,)
            g = grad_out * self.params["weight"].reshape((c,) + (1,) * (grad_out.ndim - 2))  # (N, C, *sp)
        grouped = (n, self.num_groups, c // self.num_groups, *grad_out.shape[2:])
        dx = _normalize_backward(g.reshape(grouped), x_hat.reshape(grouped), inv, group_axes, center=True)  # (N, G, C/G, *sp)
        return dx.reshape(grad_out.shape)  # (N, C, *sp)
