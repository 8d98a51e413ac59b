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

PyTorch's options, with its exact semantics. Class ``weight`` :math:`w` (a constant, non-trainable
variable): :math:`q_k = (1-\varepsilon)\,w_y\,[k = y] + \tfrac{\varepsilon}{C} w_k`, and ``"mean"``
divides by :math:`\sum_i w_{y_i}` instead of the number of targets. A target equal to
``ignore_index`` (default -100) contributes a term of 0, no gradient, and nothing to the mean's
divisor (all ignored: 0/0 = NaN, as torch). Targets may also be class *probabilities* shaped like
the logits (:math:`q = ((1-\varepsilon)\,y + \varepsilon/C)\odot w`; ``"mean"`` divides by the
number of rows, and ``ignore_index`` is refused). **Channels-last, as the rest of this tree:**
logits ``(N, d1, …, C)`` with targets ``(N, d1, …)`` give one term per position (a sequence
``(N, T, C)``, where the other trees take torch's ``(N, C, T)``); for ``(N, C)`` both agree.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_class_targets, check_fraction, check_index, check_input, check_int, check_rng, check_weight_array, dtype_name

from ..module import Module, tf_dtype
from .linear import Linear
from .logistic_regression import Loss

#: torch's default ``ignore_index``: no valid class has it.
IGNORE_INDEX = -100


def log_softmax(x: tf.Tensor) -> tf.Tensor:
    """:math:`\\log\\operatorname{softmax}` over the last axis; ``exp`` only sees values :math:`\\le 0`."""
    shifted = x - tf.stop_gradient(tf.reduce_max(x, axis=-1, keepdims=True))  # the shift is a constant: it has no gradient
    return shifted - tf.math.log(tf.reduce_sum(tf.exp(shifted), axis=-1, keepdims=True))


def softmax(x: tf.Tensor) -> tf.Tensor:
    """:math:`e^{x_k} / \\sum_j e^{x_j}` over the last axis, shifted by the maximum."""
    e = tf.exp(x - tf.stop_gradient(tf.reduce_max(x, axis=-1, keepdims=True)))
    return e / tf.reduce_sum(e, axis=-1, keepdims=True)


class CrossEntropyLoss(Loss):
    """Cross-entropy of channels-last ``logits`` ``(N, d1, ..., C)`` given integer classes ``(N, d1, ...)``
    or probabilities shaped like the logits; class ``weight``, ``ignore_index``, label smoothing."""

    def __init__(self, weight=None, ignore_index: int = IGNORE_INDEX, reduction: str = "mean",
                 label_smoothing: float = 0.0, dtype="float32"):
        super().__init__(reduction, dtype)
        self.ignore_index = check_index("CrossEntropyLoss", "ignore_index", ignore_index)
        self.label_smoothing = check_fraction("CrossEntropyLoss", "label_smoothing", label_smoothing)
        weight = check_weight_array("CrossEntropyLoss", "weight", weight, self.dtype, ndim=1)
        # A constant, not a parameter: a non-trainable variable, in the state dict only when given (as in torch).
        if weight is not None:
            self.buffers["weight"] = tf.Variable(weight, trainable=False, name="weight")

    def forward(self, logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        check_input("CrossEntropyLoss", "logits", logits.shape, logits.dtype, expected_dtype=self.dtype)
        if logits.shape.rank < 2:
            raise ValueError(f"CrossEntropyLoss: logits must have at least 2 dimensions (N, d1, ..., C), got shape {tuple(logits.shape)}")
        # Channels-last: the class axis is already last, every sum over classes is over -1.
        log_probs = log_softmax(logits)  # (N, *d, C)
        num_classes = log_probs.shape[-1]
        if "weight" in self.buffers:
            check_input("CrossEntropyLoss", "weight", self.buffers["weight"].shape, self.dtype, shape_like=(num_classes,))
        if target.dtype.is_floating:
            loss, kept, divisor = self._probability_targets(target, log_probs, tuple(logits.shape))
        else:
            loss, kept, divisor = self._class_targets(target, log_probs)
        if kept is not None:
            loss = tf.where(kept, loss, tf.zeros_like(loss))  # an ignored target's term is the constant 0: no gradient
        return self.reduce(loss, divisor=divisor)

    def _class_weight(self, num_classes: int) -> tf.Tensor:
        """The class weights ``(C,)``: the variable, or ones without it."""
        return tf.convert_to_tensor(self.buffers["weight"]) if "weight" in self.buffers else tf.ones(num_classes, tf_dtype(self.dtype))

    def _class_targets(self, target: tf.Tensor, log_probs: tf.Tensor):
        """``(terms, kept, divisor)`` for integer targets: the terms, the mask of targets not
        ignored, and the mean's divisor (the sum of their weights)."""
        num_classes = log_probs.shape[-1]
        if tf.executing_eagerly():
            check_class_targets("CrossEntropyLoss", target.numpy(), num_classes, self.ignore_index)
        elif not target.dtype.is_integer:  # traced by tf.function: the values are symbolic, the dtype is not
            raise TypeError(f"CrossEntropyLoss: target must hold integer class indices, got dtype {target.dtype.name}")
        check_input("CrossEntropyLoss", "target", target.shape, target.dtype, shape_like=tuple(log_probs.shape[:-1]))
        kept = tf.not_equal(target, tf.cast(self.ignore_index, target.dtype))  # (N, *d)
        # Ignored positions read class 0 (any valid index): their terms are masked out anyway.
        classes = tf.where(kept, target, tf.zeros_like(target))  # (N, *d)
        weight, smoothing = self._class_weight(num_classes), self.label_smoothing  # (C,), ε
        target_weight = tf.gather(weight, classes)  # (N, *d): w_y
        # torch's two terms: the target's weighted -log p_y (a gather: 0 * log p of a -inf logit
        # would be NaN), and, only when smoothing, the weighted -log p of every class.
        log_p_target = tf.gather(log_probs, classes, axis=-1, batch_dims=classes.shape.rank)  # (N, *d)
        loss = -(1.0 - smoothing) * target_weight * log_p_target  # (N, *d)
        if smoothing:
            loss = loss - (smoothing / num_classes) * tf.reduce_sum(weight * log_probs, axis=-1)  # (N, *d)
        return loss, kept, tf.reduce_sum(tf.where(kept, target_weight, tf.zeros_like(target_weight)))

    def _probability_targets(self, target: tf.Tensor, log_probs: tf.Tensor, logits_shape: tuple):
        """``(terms, None, None)`` for class probabilities shaped like the logits: smoothed, weighted."""
        if tuple(target.shape) != logits_shape:
            raise TypeError(f"CrossEntropyLoss: target must hold integer class indices of shape {logits_shape[:-1]} "
                            f"or class probabilities of the logits' shape {logits_shape}, got {dtype_name(target.dtype)} "
                            f"of shape {tuple(target.shape)}")
        check_input("CrossEntropyLoss", "target", target.shape, target.dtype, expected_dtype=self.dtype)
        if self.ignore_index != IGNORE_INDEX:
            raise ValueError("CrossEntropyLoss: ignore_index is not supported with probability targets (as in torch)")
        num_classes = log_probs.shape[-1]
        smoothed = (1.0 - self.label_smoothing) * target + self.label_smoothing / num_classes  # (N, *d, C)
        target_dist = smoothed * self._class_weight(num_classes)  # (N, *d, C): q
        return -tf.reduce_sum(target_dist * log_probs, axis=-1), None, None


class SoftmaxRegression(Module):
    """``logits = x @ W.T + b`` of shape ``(N, C)``; canonical names ``linear.weight`` ``(C, in)``, ``linear.bias``."""

    def __init__(self, in_features: int, num_classes: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.in_features = check_int("SoftmaxRegression", "in_features", in_features, 0)
        self.num_classes = check_int("SoftmaxRegression", "num_classes", num_classes, 1)
        self.linear = Linear(in_features, num_classes, dtype=dtype, rng=check_rng("SoftmaxRegression", rng))

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("SoftmaxRegression", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=2)
        return self.linear(x)  # (N, C)

    def predict_proba(self, x: tf.Tensor) -> tf.Tensor:
        """Class probabilities ``(N, C)``: the softmax of the logits."""
        return softmax(self.forward(x))

    def predict(self, x: tf.Tensor) -> tf.Tensor:
        """The most probable class ``(N,)`` int64 (the first one on ties)."""
        return tf.argmax(self.forward(x), axis=-1, output_type=tf.int64)
