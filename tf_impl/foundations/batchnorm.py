r"""Day 13: batch normalization (Ioffe & Szegedy, 2015, arXiv:1502.03167).

Each channel :math:`c` is normalized over every other axis — the batch, and for images the
spatial positions — so :math:`n = N` for ``(N, C)`` inputs and :math:`n = NHW` for ``(N, H, W, C)``:

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

Backward, train mode: :math:`\mu` and :math:`\sigma` depend on every :math:`x`, so
:math:`\partial L/\partial x = \frac{1}{n\sqrt{\sigma^2+\varepsilon}}(n\hat g - \sum\hat g - \hat x\sum\hat g\hat x)`
with :math:`\hat g = \gamma\,\partial L/\partial y`; in eval mode the layer is affine.
``tf.GradientTape`` derives this from the forward below (the NumPy tree writes it out by hand).

TF images are channels-last: ``BatchNorm2d`` here takes ``(N, H, W, C)`` (NHWC, as Keras'
``BatchNormalization(axis=-1)`` does) where the other trees take ``(N, C, H, W)``; the channel is
the LAST axis in both classes. The parity test transposes NCHW <-> NHWC at the edge.

Names and shapes are ``torch.nn.BatchNorm1d/2d``'s: ``weight`` (γ) and ``bias`` (β) of shape
``(C,)``, buffers ``running_mean``, ``running_var`` ``(C,)`` and ``num_batches_tracked`` (int64,
shape ``()``), so a torchvision state dict loads as it is.
"""
from __future__ import annotations

import tensorflow as tf

from ml100.checks import check_bool, check_fraction, check_input, check_int, check_range

from ..module import Module, tf_dtype


class _BatchNorm(Module):
    """Normalize over every axis but the channel axis (-1, channels-last); subclasses fix the input rank."""

    #: The rank of the input: 2 for ``(N, C)``, 4 for ``(N, H, W, C)``.
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
        # Attribute names are Keras' (gamma, beta, moving_*); the registered names are canonical.
        self.gamma = self.add_param("weight", tf.ones(num_features, dtype=tf_dtype(dtype))) if affine else None  # (C,)
        self.beta = self.add_param("bias", tf.zeros(num_features, dtype=tf_dtype(dtype))) if affine else None  # (C,)
        # Buffers: non-trainable variables, in the state dict, never watched by the tape.
        if track_running_stats:
            self.moving_mean = tf.Variable(tf.zeros(num_features, dtype=tf_dtype(dtype)), trainable=False, name="running_mean")  # (C,)
            self.moving_variance = tf.Variable(tf.ones(num_features, dtype=tf_dtype(dtype)), trainable=False, name="running_var")  # (C,)
            self.num_batches_tracked = tf.Variable(tf.constant(0, dtype=tf.int64), trainable=False, name="num_batches_tracked")  # ()
            self.buffers.update(running_mean=self.moving_mean, running_var=self.moving_variance,
                                num_batches_tracked=self.num_batches_tracked)
        else:
            self.moving_mean = self.moving_variance = self.num_batches_tracked = None

    def _check(self, x) -> None:
        owner = type(self).__name__
        check_input(owner, "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=self.input_ndim)
        if x.shape[-1] != self.num_features:
            raise ValueError(f"{owner}: x must have {self.num_features} channels on the last axis (channels-last), got shape {tuple(x.shape)}")

    def _uses_batch_stats(self) -> bool:
        # Without running estimates there is nothing else to normalize with, even in eval mode.
        return self.training or not self.track_running_stats

    def _update_running_stats(self, mean: tf.Tensor, var: tf.Tensor, n: int) -> None:
        # The running variance estimates the population's: Bessel's correction n / (n - 1).
        unbiased = var * (n / (n - 1))  # (C,)
        self.num_batches_tracked.assign_add(1)  # ()
        # As torch: an empty batch is counted but leaves the estimates alone (its statistics are NaN).
        if n == 0:
            return
        # momentum=None: the t-th update weighs the batch 1/t, a cumulative average (torch's rule);
        # a tensor, not a Python float, so that a traced tf.function reads the counter at every call.
        m = tf.cast(1.0 / tf.cast(self.num_batches_tracked, tf.float64), mean.dtype) if self.momentum is None else self.momentum
        # assign: variables change in place, and the tape records no gradient through them.
        self.moving_mean.assign((1 - m) * self.moving_mean + m * mean)  # (C,)
        self.moving_variance.assign((1 - m) * self.moving_variance + m * unbiased)  # (C,)

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        self._check(x)
        # Every axis but the channel axis is a "position" of the channel: (0,) or (0, 1, 2).
        axes = tuple(range(x.shape.rank - 1))
        # Channels-last: per-channel (C,) vectors already broadcast against x, no reshape needed.
        # The static shape: under tf.function, trace with a fixed input shape.
        n = x.shape.num_elements() // self.num_features
        if self._uses_batch_stats():
            # torch's rule: one value per channel has no variance; an empty batch is fine.
            if self.training and n == 1:
                raise ValueError(f"{type(self).__name__}: training needs more than 1 value per channel, got shape {tuple(x.shape)}")
            mean = tf.reduce_mean(x, axis=axes)  # (C,)
            # Biased (divide by n): the variance of this batch, which is what normalizes it.
            var = tf.reduce_mean(tf.square(x - mean), axis=axes)  # (C,)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, n)
        else:
            mean, var = self.moving_mean, self.moving_variance  # (C,), (C,)
        inv_std = 1.0 / tf.sqrt(var + self.eps)  # (C,)
        x_hat = (x - mean) * inv_std  # like x
        if not self.affine:
            return x_hat
        return x_hat * self.gamma + self.beta  # like x


class BatchNorm1d(_BatchNorm):
    """Batch normalization of ``(N, C)`` features, per feature over the batch; ``torch.nn.BatchNorm1d``'s names."""

    input_ndim = 2


class BatchNorm2d(_BatchNorm):
    """Batch normalization of ``(N, H, W, C)`` images (channels-last), per channel over batch and space; ``torch.nn.BatchNorm2d``'s names."""

    input_ndim = 4
