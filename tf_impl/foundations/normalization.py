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

* **GroupNorm** (Wu & He, 2018, "Group Normalization"): the ``C`` channels are split into ``G``
  groups of ``C/G`` and :math:`A` = one group's channels and all spatial positions. **In this tree
  the input is channels-last** ``(N, *spatial, C)``, as Keras' ``GroupNormalization`` and TF's
  CPU convolutions expect; the parity test transposes the canonical ``(N, C, *spatial)`` input
  (and output and input gradient) around it. ``weight`` and ``bias`` are ``(C,)`` either way.

Intuition: the statistics are per sample, never across the batch (unlike BatchNorm, day 13), so
training and inference compute the same thing and batch size 1 works.

The tape derives what the NumPy tree writes by hand: with :math:`g = \gamma\odot\partial L/\partial y`,
:math:`\partial L/\partial x = \frac1\sigma(g - \bar g - \hat x\,\overline{g\hat x})` (RMSNorm: no
:math:`\bar g`, :math:`r` for :math:`\sigma`). Keras calls ``weight``/``bias`` ``gamma``/``beta``
(``scale`` in ``RMSNormalization``); Keras' layers are the references in the tests, never called here.

Defaults follow PyTorch, except RMSNorm's :math:`\varepsilon`: ``torch.nn.RMSNorm(eps=None)``
uses ``torch.finfo(dtype).eps`` (different in float32 and float64); here the default is an explicit
``1e-6`` (Keras' ``RMSNormalization`` default), so the model is the same in every dtype.
``eps=None`` asks for torch's value, the machine epsilon of the module's dtype (its inputs' dtype).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_bool, check_divisible, check_input, check_int, check_normalized_shape, check_range

from ..module import Module


def normalize_over_axes(x: tf.Tensor, axes: tuple[int, ...], eps: float, center: bool = True):
    """``(x_hat, inv)``: ``x`` standardized over ``axes`` and ``1 / sqrt(var + eps)`` (keepdims).

    ``center=False`` skips the mean (RMSNorm): the "variance" is then the mean square.
    """
    if center:
        x = x - tf.reduce_mean(x, axis=axes, keepdims=True)  # (..., A)
    # Biased variance (divide by n, not n - 1): the statistic of these n values, not an estimate.
    inv = tf.math.rsqrt(tf.reduce_mean(x * x, axis=axes, keepdims=True) + eps)  # (..., 1s)
    return x * inv, inv  # (..., A), (..., 1s)


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
        self.weight = self.add_param("weight", np.ones(self.normalized_shape)) if elementwise_affine else None
        self.bias = self.add_param("bias", np.zeros(self.normalized_shape)) if elementwise_affine and bias else None

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("LayerNorm", "x", x.shape, x.dtype, expected_dtype=self.dtype)
        _check_trailing("LayerNorm", x.shape, self.normalized_shape)
        x_hat, inv = normalize_over_axes(x, self.axes, self.eps)  # (..., *S), (..., 1s)
        y = x_hat  # (..., *S)
        if self.weight is not None:
            y = y * self.weight  # (..., *S)
        if self.bias is not None:
            y = y + self.bias  # (..., *S)
        return y


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
        self.weight = self.add_param("weight", np.ones(self.normalized_shape)) if elementwise_affine else None

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("RMSNorm", "x", x.shape, x.dtype, expected_dtype=self.dtype)
        _check_trailing("RMSNorm", x.shape, self.normalized_shape)
        # No mean subtracted: RMSNorm only rescales, it does not re-center.
        x_hat, inv = normalize_over_axes(x, self.axes, self.eps, center=False)  # (..., *S), (..., 1s)
        y = x_hat  # (..., *S)
        if self.weight is not None:
            y = y * self.weight  # (..., *S)
        return y


class GroupNorm(Module):
    """Normalize each of ``num_groups`` channel groups of channels-last ``(N, *spatial, C)`` input; canonical ``weight``, ``bias`` ``(C,)``."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, dtype="float32"):
        super().__init__(dtype)
        self.num_groups = check_int("GroupNorm", "num_groups", num_groups, 1)
        # torch builds GroupNorm(G, 0) but cannot run it: at least one channel.
        self.num_channels = check_int("GroupNorm", "num_channels", num_channels, 1)
        check_divisible("GroupNorm", "num_channels", num_channels, "num_groups", num_groups)
        check_range("GroupNorm", "eps", eps)
        self.eps = eps
        affine = check_bool("GroupNorm", "affine", affine)
        self.weight = self.add_param("weight", np.ones((num_channels,))) if affine else None
        self.bias = self.add_param("bias", np.zeros((num_channels,))) if affine else None

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("GroupNorm", "x", x.shape, x.dtype, expected_dtype=self.dtype)
        if x.shape.rank < 2 or x.shape[-1] != self.num_channels:
            raise ValueError(f"GroupNorm: x must have shape (N, *spatial, {self.num_channels}) (channels last), got {tuple(x.shape)}")
        c = x.shape[-1]
        # Split the channel axis into (groups, channels per group); a group is then a set of axes.
        grouped = tf.reshape(x, [-1, *x.shape[1:-1], self.num_groups, c // self.num_groups])  # (N, *sp, G, C/G)
        # Spatial axes and the channels-in-group axis; the group axis (second to last) is kept.
        group_axes = (*range(1, grouped.shape.rank - 2), grouped.shape.rank - 1)
        x_hat, inv = normalize_over_axes(grouped, group_axes, self.eps)  # (N, *sp, G, C/G), (N, 1s, G, 1)
        x_hat = tf.reshape(x_hat, tf.shape(x))  # (N, *sp, C)
        y = x_hat  # (N, *sp, C)
        if self.weight is not None:
            # Per-channel affine: (C,) broadcasts against the last axis, no reshape needed.
            y = y * self.weight + self.bias  # (N, *sp, C)
        return y
