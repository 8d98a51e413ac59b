r"""Day 4: softmax regression and the log-sum-exp cross-entropy.

With :math:`C` classes the model gives each class a score (a logit), :math:`z = x W^\top + b`, and
softmax turns the scores into probabilities. Shifting every logit by the row's maximum
:math:`m` changes nothing mathematically and keeps ``exp`` at or below 1:

.. math::  \log\operatorname{softmax}(z)_k = z_k - m - \log\sum_j e^{z_j - m}, \qquad
           m = \max_j z_j .

Cross-entropy against a target distribution :math:`q` is :math:`\ell = -\sum_k q_k \log p_k`.
With label smoothing :math:`\varepsilon`, as ``torch.nn.functional.cross_entropy`` (and Keras'
``CategoricalCrossentropy``) define it, :math:`q = (1-\varepsilon)\,\text{onehot}(y) + \varepsilon/C`.
Autograd derives what the NumPy tree writes by hand, :math:`\partial\ell/\partial z = \operatorname{softmax}(z) - q`.
The shift :math:`m` is detached: its gradient is zero in exact arithmetic, so it needs none.
"""
from __future__ import annotations

import numpy as np
import torch

from ml100.checks import check_input, check_labels

from ..module import Module
from .linear import Linear
from .logistic_regression import Loss


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """:math:`\\log\\operatorname{softmax}` over the last axis; ``exp`` only sees values :math:`\\le 0`."""
    shifted = x - x.amax(dim=-1, keepdim=True).detach()  # the shift is a constant: it has no gradient
    return shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))


def softmax(x: torch.Tensor) -> torch.Tensor:
    """:math:`e^{x_k} / \\sum_j e^{x_j}` over the last axis, shifted by the maximum."""
    e = torch.exp(x - x.amax(dim=-1, keepdim=True).detach())
    return e / e.sum(dim=-1, keepdim=True)


class CrossEntropyLoss(Loss):
    """Cross-entropy of integer class ``target`` ``(N,)`` given ``logits`` ``(N, C)``, with label smoothing."""

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean", dtype="float32"):
        super().__init__(reduction, dtype)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must lie in [0, 1], got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_input("CrossEntropyLoss", "logits", logits.shape, logits.dtype, expected_dtype=self.dtype, ndim=2)
        batch, num_classes = logits.shape
        check_labels("CrossEntropyLoss", "target", target.detach().cpu().numpy(), num_classes, batch)
        onehot = (target[:, None] == torch.arange(num_classes, device=target.device)).to(logits.dtype)  # (N, C)
        target_dist = (1.0 - self.label_smoothing) * onehot + self.label_smoothing / num_classes  # q, (N, C)
        log_probs = log_softmax(logits)  # (N, C)
        loss = -(target_dist * log_probs).sum(dim=-1)  # (N,)
        return self.reduce(loss)


class SoftmaxRegression(Module):
    """``logits = x @ W.T + b`` of shape ``(N, C)``; canonical names ``linear.weight`` ``(C, in)``, ``linear.bias``."""

    def __init__(self, in_features: int, num_classes: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.in_features, self.num_classes = in_features, num_classes
        self.linear = Linear(in_features, num_classes, dtype=dtype, rng=rng)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("SoftmaxRegression", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=2)
        return self.linear(x)  # (N, C)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, C)``: the softmax of the logits."""
        return softmax(self.forward(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class ``(N,)`` int64 (the first one on ties)."""
        return self.forward(x).argmax(dim=-1).to(torch.int64)
