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

PyTorch's options, with its exact semantics. Class ``weight`` :math:`w` (a constant buffer):
:math:`q_k = (1-\varepsilon)\,w_y\,[k = y] + \tfrac{\varepsilon}{C} w_k`, and ``"mean"`` divides by
:math:`\sum_i w_{y_i}` instead of the number of targets. A target equal to ``ignore_index``
(default -100) contributes a term of 0, no gradient, and nothing to the mean's divisor (all
ignored: 0/0 = NaN, as torch). Targets may also be class *probabilities* shaped like the logits
(:math:`q = ((1-\varepsilon)\,y + \varepsilon/C)\odot w`; ``"mean"`` divides by the number of
rows, and ``ignore_index`` is refused). As :math:`\sum_k q_k` need not be 1 then, the gradient is
:math:`\operatorname{softmax}(z)\sum_k q_k - q`. Logits ``(N, C, d1, …)`` with targets
``(N, d1, …)`` give one term per position (a sequence ``(N, C, T)``): the class axis is moved last.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_class_targets, check_fraction, check_index, check_input, check_int, check_rng, check_weight_array, dtype_name

from ..module import Module, no_grad
from .linear import Linear
from .logistic_regression import Loss

#: torch's default ``ignore_index``: no valid class has it.
IGNORE_INDEX = -100


def log_softmax(x: np.ndarray) -> np.ndarray:
    """:math:`\\log\\operatorname{softmax}` over the last axis; ``exp`` only sees values :math:`\\le 0`."""
    shifted = x - x.max(axis=-1, keepdims=True)  # the shift is a constant: it has no gradient
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    """:math:`e^{x_k} / \\sum_j e^{x_j}` over the last axis, shifted by the maximum."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class CrossEntropyLoss(Loss):
    """Cross-entropy of ``logits`` ``(N, C, d1, ...)`` given integer classes ``(N, d1, ...)`` or
    probabilities shaped like the logits; class ``weight``, ``ignore_index``, label smoothing."""

    def __init__(self, weight=None, ignore_index: int = IGNORE_INDEX, reduction: str = "mean",
                 label_smoothing: float = 0.0, dtype="float32"):
        super().__init__(reduction, dtype)
        self.ignore_index = check_index("CrossEntropyLoss", "ignore_index", ignore_index)
        self.label_smoothing = check_fraction("CrossEntropyLoss", "label_smoothing", label_smoothing)
        weight = check_weight_array("CrossEntropyLoss", "weight", weight, self.dtype, ndim=1)
        # A constant, not a parameter: a buffer, in the state dict only when given (as in torch).
        if weight is not None:
            self.buffers["weight"] = weight

    def forward(self, logits: np.ndarray, target: np.ndarray) -> np.ndarray:
        check_input("CrossEntropyLoss", "logits", logits.shape, logits.dtype, expected_dtype=self.dtype)
        if logits.ndim < 2:
            raise ValueError(f"CrossEntropyLoss: logits must have at least 2 dimensions (N, C, d1, ...), got shape {logits.shape}")
        # One term per position: the class axis (1) goes last, so every sum over classes is over -1.
        log_probs = log_softmax(np.moveaxis(logits, 1, -1))  # (N, *d, C)
        num_classes = log_probs.shape[-1]
        if "weight" in self.buffers:
            check_input("CrossEntropyLoss", "weight", self.buffers["weight"].shape, self.dtype, shape_like=(num_classes,))
        if np.issubdtype(target.dtype, np.floating):
            loss, target_dist, kept, divisor = self._probability_targets(target, log_probs, logits.shape)
        else:
            loss, target_dist, kept, divisor = self._class_targets(target, log_probs)
        if kept is not None:
            loss = np.where(kept, loss, 0.0)  # an ignored target's term is the constant 0
        return self.reduce(loss, log_probs, target_dist, kept, divisor=divisor)

    def _class_weight(self, num_classes: int) -> np.ndarray:
        """The class weights ``(C,)``: the buffer, or ones without it."""
        return self.buffers["weight"] if "weight" in self.buffers else np.ones(num_classes, dtype=self.dtype)

    def _class_targets(self, target: np.ndarray, log_probs: np.ndarray):
        """``(terms, q, kept, divisor)`` for integer targets: the terms, the smoothed weighted one-hot
        rows, the mask of targets not ignored, and the mean's divisor (the sum of their weights)."""
        num_classes = log_probs.shape[-1]
        check_class_targets("CrossEntropyLoss", target, num_classes, self.ignore_index)
        check_input("CrossEntropyLoss", "target", target.shape, target.dtype, shape_like=log_probs.shape[:-1])
        kept = target != self.ignore_index  # (N, *d)
        # Ignored positions read class 0 (any valid index): their terms are masked out anyway.
        classes = np.where(kept, target, 0)  # (N, *d)
        weight, smoothing = self._class_weight(num_classes), self.label_smoothing  # (C,), ε
        target_weight = weight[classes]  # (N, *d): w_y
        # torch's two terms: the target's weighted -log p_y (a gather: 0 * log p of a -inf logit
        # would be NaN), and, only when smoothing, the weighted -log p of every class.
        log_p_target = np.take_along_axis(log_probs, classes[..., None], axis=-1)[..., 0]  # (N, *d)
        loss = -(1.0 - smoothing) * target_weight * log_p_target  # (N, *d)
        if smoothing:
            loss = loss - (smoothing / num_classes) * (weight * log_probs).sum(axis=-1)  # (N, *d)
        # The same loss is -sum(q log p): q is what backward needs.
        onehot = (classes[..., None] == np.arange(num_classes)).astype(self.dtype)  # (N, *d, C)
        target_dist = (1.0 - smoothing) * target_weight[..., None] * onehot + (smoothing / num_classes) * weight  # (N, *d, C)
        return loss, target_dist, kept, np.where(kept, target_weight, 0.0).sum()

    def _probability_targets(self, target: np.ndarray, log_probs: np.ndarray, logits_shape: tuple):
        """``(terms, q, None, None)`` for class probabilities shaped like the logits: smoothed, weighted."""
        if target.shape != logits_shape:
            raise TypeError(f"CrossEntropyLoss: target must hold integer class indices of shape {logits_shape[:1] + logits_shape[2:]} "
                            f"or class probabilities of the logits' shape {logits_shape}, got {dtype_name(target.dtype)} "
                            f"of shape {tuple(target.shape)}")
        check_input("CrossEntropyLoss", "target", target.shape, target.dtype, expected_dtype=self.dtype)
        if self.ignore_index != IGNORE_INDEX:
            raise ValueError("CrossEntropyLoss: ignore_index is not supported with probability targets (as in torch)")
        num_classes = log_probs.shape[-1]
        smoothed = (1.0 - self.label_smoothing) * np.moveaxis(target, 1, -1) + self.label_smoothing / num_classes  # (N, *d, C)
        target_dist = smoothed * self._class_weight(num_classes)  # (N, *d, C): q
        return -(target_dist * log_probs).sum(axis=-1), target_dist, None, None

    def derivative(self, log_probs: np.ndarray, target_dist: np.ndarray) -> np.ndarray:
        # softmax * sum(q) - q: with weights the row of q need not sum to 1.
        return np.exp(log_probs) * target_dist.sum(axis=-1, keepdims=True) - target_dist  # (N, *d, C)

    def _chain(self, grad_loss: np.ndarray, log_probs: np.ndarray, target_dist: np.ndarray, kept) -> np.ndarray:
        if kept is not None:
            # An ignored term is a constant: it passes no gradient, even when every target is
            # ignored and the mean's 1/0 made grad_loss infinite.
            grad_loss = np.where(kept, grad_loss, 0.0)  # (N, *d)
        grad = grad_loss[..., None] * self.derivative(log_probs, target_dist)  # (N, *d, C)
        return np.moveaxis(grad, -1, 1)  # like the logits


class SoftmaxRegression(Module):
    """``logits = x @ W.T + b`` of shape ``(N, C)``; canonical names ``linear.weight`` ``(C, in)``, ``linear.bias``."""

    def __init__(self, in_features: int, num_classes: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.in_features = check_int("SoftmaxRegression", "in_features", in_features, 0)
        self.num_classes = check_int("SoftmaxRegression", "num_classes", num_classes, 1)
        self.linear = Linear(in_features, num_classes, dtype=dtype, rng=check_rng("SoftmaxRegression", rng))

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
