r"""Day 13: batch normalization (Ioffe & Szegedy, 2015, arXiv:1502.03167).

Each channel :math:`c` is normalized over every other axis — the batch, and for images the
spatial positions — so :math:`n = N` for ``(N, C)`` inputs and :math:`n = NHW` for ``(N, C, H, W)``:

.. math::  \mu_c = \frac1n\sum_i x_{ic}, \qquad \sigma^2_c = \frac1n\sum_i (x_{ic}-\mu_c)^2, \qquad
           \hat x_{ic} = \frac{x_{ic}-\mu_c}{\sqrt{\sigma^2_c+\varepsilon}}, \qquad
           y_{ic} = \gamma_c\,\hat x_{ic} + \beta_c

Training uses the batch's mean and BIASED variance, and updates running estimates PyTorch's way,
with the UNBIASED variance: :math:`r \leftarrow (1-m)\,r + m\,s` for ``momentum`` :math:`m`, where
:math:`s` is :math:`\mu` for ``running_mean`` and :math:`\frac{n}{n-1}\sigma^2` for ``running_var``;
``num_batches_tracked`` counts the updates. ``momentum=None`` is torch's cumulative moving
average instead: :math:`m = 1/t` at the :math:`t`-th update (``num_batches_tracked`` after it is
counted), so the estimate is the plain mean of every batch's statistic so far. Evaluation
normalizes with the running estimates.

Intuition: whatever the previous layer does to the scale and offset of a channel, the next layer
sees zero mean and unit variance; :math:`\gamma, \beta` give back the freedom to choose both.

Backward, train mode, with :math:`g = \partial L/\partial y`, :math:`\hat g = \gamma g` and sums over
the :math:`n` positions of a channel (:math:`\mu` and :math:`\sigma` depend on every :math:`x`):

.. math::  \frac{\partial L}{\partial x} = \frac{1}{n\sqrt{\sigma^2+\varepsilon}}
           \Big(n\,\hat g - \textstyle\sum\hat g - \hat x\sum \hat g\,\hat x\Big), \qquad
           \frac{\partial L}{\partial\gamma} = \textstyle\sum g\,\hat x, \qquad
           \frac{\partial L}{\partial\beta} = \textstyle\sum g

In eval mode the statistics are constants and the layer is affine:
:math:`\partial L/\partial x = \hat g/\sqrt{\sigma^2_\text{run}+\varepsilon}`.

Names and shapes are ``torch.nn.BatchNorm1d/2d``'s: ``weight`` (γ) and ``bias`` (β) of shape
``(C,)``, buffers ``running_mean``, ``running_var`` ``(C,)`` and ``num_batches_tracked`` (int64,
shape ``()``), so a torchvision state dict loads as it is.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_bool, check_fraction, check_input, check_int, check_range

from ..module import Module


class _BatchNorm(Module):
    """Normalize over every axis but the channel axis (1); subclasses fix the input rank."""

    #: The rank of the input: 2 for ``(N, C)``, 4 for ``(N, C, H, W)``.
    input_ndim = 0

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype="float32"):
        super().__init__(dtype)
        owner = type(self).__name__
        # torch builds BatchNorm(0) but cannot run it: at least one feature.
        self.num_features = check_int(owner, "num_features", num_features, 1)
        # A negative eps makes var + eps negative: NaN everywhere (torch accepts it silently in eval).
        check_range(owner, "eps", eps)
        self.eps = eps
        self.momentum = None if momentum is None else check_fraction(owner, "momentum", momentum)
        self.affine = check_bool(owner, "affine", affine)
        self.track_running_stats = check_bool(owner, "track_running_stats", track_running_stats)
        # γ = 1, β = 0: the layer starts as a pure normalization (torch's reset_parameters).
        if affine:
            self.params["weight"] = np.ones(num_features, dtype=self.dtype)  # (C,)
            self.params["bias"] = np.zeros(num_features, dtype=self.dtype)  # (C,)
        if track_running_stats:
            self.buffers["running_mean"] = np.zeros(num_features, dtype=self.dtype)  # (C,)
            self.buffers["running_var"] = np.ones(num_features, dtype=self.dtype)  # (C,)
            self.buffers["num_batches_tracked"] = np.zeros((), dtype=np.int64)  # ()
        self.zero_grad()

    def _check(self, x) -> None:
        owner = type(self).__name__
        check_input(owner, "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=self.input_ndim)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{owner}: x must have {self.num_features} channels on axis 1, got shape {tuple(x.shape)}")

    def _uses_batch_stats(self) -> bool:
        # Without running estimates there is nothing else to normalize with, even in eval mode.
        return self.training or not self.track_running_stats

    def _update_running_stats(self, mean: np.ndarray, var: np.ndarray, n: int) -> None:
        # The running variance estimates the population's: Bessel's correction n / (n - 1).
        unbiased = var * (n / (n - 1))  # (C,)
        self.buffers["num_batches_tracked"][...] += 1  # ()
        # As torch: an empty batch is counted but leaves the estimates alone (its statistics are NaN).
        if n == 0:
            return
        # momentum=None: the t-th update weighs the batch 1/t, a cumulative average (torch's rule).
        m = 1.0 / int(self.buffers["num_batches_tracked"]) if self.momentum is None else self.momentum
        self.buffers["running_mean"][...] = (1 - m) * self.buffers["running_mean"] + m * mean  # (C,)
        self.buffers["running_var"][...] = (1 - m) * self.buffers["running_var"] + m * unbiased  # (C,)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        # Every axis but the channel axis is a "position" of the channel: (0,) or (0, 2, 3).
        axes = tuple(a for a in range(x.ndim) if a != 1)
        # Per-channel vectors broadcast against x as (1, C) or (1, C, 1, 1).
        shape = tuple(self.num_features if a == 1 else 1 for a in range(x.ndim))
        n = x.size // self.num_features
        if self._uses_batch_stats():
            # torch's rule: one value per channel has no variance; an empty batch is fine.
            if self.training and n == 1:
                raise ValueError(f"{type(self).__name__}: training needs more than 1 value per channel, got shape {tuple(x.shape)}")
            # Sums over n: an empty batch gives 0/0 = NaN quietly (torch's mean), and normalizes nothing.
            with np.errstate(invalid="ignore"):
                mean = x.sum(axis=axes) / n  # (C,)
                # Biased (divide by n): the variance of this batch, which is what normalizes it.
                var = ((x - mean.reshape(shape)) ** 2).sum(axis=axes) / n  # (C,)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, n)
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]  # (C,), (C,)
        inv_std = 1.0 / np.sqrt(var + self.eps)  # (C,)
        x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)  # like x
        self.save_for_backward(x_hat, inv_std, axes, shape, n, self._uses_batch_stats())
        if not self.affine:
            return x_hat
        return x_hat * self.params["weight"].reshape(shape) + self.params["bias"].reshape(shape)  # like x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x_hat, inv_std, axes, shape, n, batch_stats = self.saved_for_backward()
        if self.affine:
            self.grads["weight"] += (grad_out * x_hat).sum(axis=axes)  # (C,)
            self.grads["bias"] += grad_out.sum(axis=axes)  # (C,)
            g_hat = grad_out * self.params["weight"].reshape(shape)  # like x: ∂L/∂x̂
        else:
            g_hat = grad_out  # like x
        if not batch_stats:
            # Running statistics are constants: only the scaling by 1/σ remains.
            return g_hat * inv_std.reshape(shape)  # like x
        # μ and σ² depend on every x: subtract the mean of ĝ (through μ) and its projection on x̂ (through σ²).
        sum_g = g_hat.sum(axis=axes).reshape(shape)  # (1, C, ...)
        sum_gx = (g_hat * x_hat).sum(axis=axes).reshape(shape)  # (1, C, ...)
        return (inv_std.reshape(shape) / n) * (n * g_hat - sum_g - x_hat * sum_gx)  # like x


class BatchNorm1d(_BatchNorm):
    """Batch normalization of ``(N, C)`` features, per feature over the batch; ``torch.nn.BatchNorm1d``'s names."""

    input_ndim = 2


class BatchNorm2d(_BatchNorm):
    """Batch normalization of ``(N, C, H, W)`` images, per channel over batch and space; ``torch.nn.BatchNorm2d``'s names."""

    input_ndim = 4
