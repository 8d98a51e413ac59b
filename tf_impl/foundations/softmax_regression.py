r"""Day 4: softmax regression and the log-sum-exp cross-entropy.

With :math:`C` classes the model gives each class a score (a logit), :math:`z = x W^\top + b`, and
softmax turns the scores into probabilities. Shifting every logit by the row's maximum
:math:`m` changes nothing mathematically and keeps ``exp`` at or below 1:

.. math::  \log\operatorname{softmax}(z)_k = z_k - m - \log\sum_j e^{z_j - m}, \qquad
           m = \max_j z_j .

Cross-entropy against a target distribution :math:`q` is :math:`\ell = -\sum_k q_k \log p_k`.
With label smoothing :math:`\varepsilon`, as ``torch.nn.functional.cross_entropy`` (and Keras'
``CategoricalCrossentropy``) define it, :math:`q = (1-\varepsilon)\,\text{onehot}(y) + \varepsilon/C`.
The tape derives what the NumPy tree writes by hand, :math:`\partial\ell/\partial z = \operatorname{softmax}(z) - q`.
The shift :math:`m` is under ``stop_gradient``: its gradient is zero in exact arithmetic.
Inside ``tf.function`` the label values are symbolic, so only an eager call checks their range.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_input, check_labels

from ..module import Module
from .linear import Linear
from .logistic_regression import Loss


def log_softmax(x: tf.Tensor) -> tf.Tensor:
    """:math:`\\log\\operatorname{softmax}` over the last axis; ``exp`` only sees values :math:`\\le 0`."""
    shifted = x - tf.stop_gradient(tf.reduce_max(x, axis=-1, keepdims=True))  # the shift is a constant: it has no gradient
    return shifted - tf.math.log(tf.reduce_sum(tf.exp(shifted), axis=-1, keepdims=True))


def softmax(x: tf.Tensor) -> tf.Tensor:
    """:math:`e^{x_k} / \\sum_j e^{x_j}` over the last axis, shifted by the maximum."""
    e = tf.exp(x - tf.stop_gradient(tf.reduce_max(x, axis=-1, keepdims=True)))
    return e / tf.reduce_sum(e, axis=-1, keepdims=True)


class CrossEntropyLoss(Loss):
    """Cross-entropy of integer class ``target`` ``(N,)`` given ``logits`` ``(N, C)``, with label smoothing."""

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean", dtype="float32"):
        super().__init__(reduction, dtype)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must lie in [0, 1], got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        check_input("CrossEntropyLoss", "logits", logits.shape, logits.dtype, expected_dtype=self.dtype, ndim=2)
        batch, num_classes = logits.shape
        if tf.executing_eagerly():
            check_labels("CrossEntropyLoss", "target", target.numpy(), num_classes, batch)
        else:  # traced by tf.function: the values are symbolic, the dtype and shape are not
            if not target.dtype.is_integer:
                raise TypeError(f"CrossEntropyLoss: target must hold integer class indices, got dtype {target.dtype.name}")
            check_input("CrossEntropyLoss", "target", target.shape, target.dtype, shape_like=(batch,))
        onehot = tf.cast(tf.equal(target[:, None], tf.range(num_classes, dtype=target.dtype)), logits.dtype)  # (N, C)
        target_dist = (1.0 - self.label_smoothing) * onehot + self.label_smoothing / num_classes  # q, (N, C)
        log_probs = log_softmax(logits)  # (N, C)
        loss = -tf.reduce_sum(target_dist * log_probs, axis=-1)  # (N,)
        return self.reduce(loss)


class SoftmaxRegression(Module):
    """``logits = x @ W.T + b`` of shape ``(N, C)``; canonical names ``linear.weight`` ``(C, in)``, ``linear.bias``."""

    def __init__(self, in_features: int, num_classes: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.in_features, self.num_classes = in_features, num_classes
        self.linear = Linear(in_features, num_classes, dtype=dtype, rng=rng)

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("SoftmaxRegression", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=2)
        return self.linear(x)  # (N, C)

    def predict_proba(self, x: tf.Tensor) -> tf.Tensor:
        """Class probabilities ``(N, C)``: the softmax of the logits."""
        return softmax(self.forward(x))

    def predict(self, x: tf.Tensor) -> tf.Tensor:
        """The most probable class ``(N,)`` int64 (the first one on ties)."""
        return tf.argmax(self.forward(x), axis=-1, output_type=tf.int64)
