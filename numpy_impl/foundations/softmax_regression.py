r"""Day 4: softmax regression and the log-sum-exp cross-entropy.

With :math:`C` classes the model gives each class a score (a logit), :math:`z = x W^\top + b`, and
softmax turns the scores into probabilities. Shifting every logit by the row's maximum
:math:`m` changes nothing mathematically and keeps ``exp`` at or below 1:

.. math::  \log\operatorname{softmax}(z)_k = z_k - m - \log\sum_j e^{z_j - m}, \qquad
           m = \max_j z_j .

Cross-entropy against a target distribution :math:`q` is :math:`\ell = -\sum_k q_k \log p_k`.
With label smoothing :math:`\varepsilon`, as ``torch.nn.functional.cross_entropy`` (and Keras'
``CategoricalCrossentropy``) define it, :math:`q = (1-\varepsilon)\,\text{onehot}(y) + \varepsilon/C`.
Since :math:`\sum_k q_k = 1`, the gradient is the famous

.. math::  \frac{\partial \ell}{\partial z} = \operatorname{softmax}(z) - q .

Backward therefore needs only the log-probabilities the forward cached (``exp`` of them is the
softmax) and :math:`q`.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_input, check_labels

from ..module import Module, no_grad
from .linear import Linear
from .logistic_regression import Loss


def log_softmax(x: np.ndarray) -> np.ndarray:
    """:math:`\\log\\operatorname{softmax}` over the last axis; ``exp`` only sees values :math:`\\le 0`."""
    shifted = x - x.max(axis=-1, keepdims=True)  # the shift is a constant: it has no gradient
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    """:math:`e^{x_k} / \\sum_j e^{x_j}` over the last axis, shifted by the maximum."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class CrossEntropyLoss(Loss):
    """Cross-entropy of integer class ``target`` ``(N,)`` given ``logits`` ``(N, C)``, with label smoothing."""

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean", dtype="float32"):
        super().__init__(reduction, dtype)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must lie in [0, 1], got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits: np.ndarray, target: np.ndarray) -> np.ndarray:
        check_input("CrossEntropyLoss", "logits", logits.shape, logits.dtype, expected_dtype=self.dtype, ndim=2)
        batch, num_classes = logits.shape
        check_labels("CrossEntropyLoss", "target", target, num_classes, batch)
        onehot = (target[:, None] == np.arange(num_classes)).astype(self.dtype)  # (N, C)
        target_dist = (1.0 - self.label_smoothing) * onehot + self.label_smoothing / num_classes  # q, (N, C)
        log_probs = log_softmax(logits)  # (N, C)
        loss = -(target_dist * log_probs).sum(axis=-1)  # (N,)
        return self.reduce(loss, log_probs, target_dist)

    def derivative(self, log_probs: np.ndarray, target_dist: np.ndarray) -> np.ndarray:
        return np.exp(log_probs) - target_dist  # softmax - q, (N, C)


class SoftmaxRegression(Module):
    """``logits = x @ W.T + b`` of shape ``(N, C)``; canonical names ``linear.weight`` ``(C, in)``, ``linear.bias``."""

    def __init__(self, in_features: int, num_classes: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.in_features, self.num_classes = in_features, num_classes
        self.linear = Linear(in_features, num_classes, dtype=dtype, rng=rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("SoftmaxRegression", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=2)
        return self.linear(x)  # (N, C)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return self.linear.backward(grad_out)  # (N, in)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, C)``: the softmax of the logits."""
        return softmax(self.forward(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most probable class ``(N,)`` int64 (the first one on ties)."""
        with no_grad():
            return self.forward(x).argmax(axis=-1).astype(np.int64)
