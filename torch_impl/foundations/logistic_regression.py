r"""Day 3: logistic regression and the numerically stable binary cross-entropy on logits.

The model scores each example with one affine map and reads the score as log-odds:

.. math::  z = x w^\top + b, \qquad p = \sigma(z) = \frac{1}{1+e^{-z}} .

The loss of a label :math:`y \in [0, 1]` is the binary cross-entropy
:math:`\ell = -y\log p - (1-y)\log(1-p)`. Written on :math:`z` it simplifies to
:math:`\ell = \log(1+e^{z}) - zy`, and :math:`\log(1+e^z) = \max(z,0) + \log(1+e^{-|z|})`
never takes ``exp`` of a positive number, so

.. math::  \ell = \max(z, 0) - z y + \operatorname{log1p}(e^{-|z|}), \qquad
           \frac{\partial \ell}{\partial z} = \sigma(z) - y .

Both :math:`\max(z,0)` and :math:`-|z|` are written with one ``where(z >= 0, ...)`` so that
autograd takes the same side of both kinks at :math:`z = 0` and gets :math:`\sigma(0) - y` there
(``clamp_min`` and ``abs`` would give :math:`1 - y`); a zero-initialized model starts exactly there.

Every loss here and in days 4 and 8 is a :class:`Loss`: elementwise terms :math:`\ell_i`, then one
shared reduction (:func:`reduce_loss`): ``"none"``, ``"sum"``, ``"mean"`` (over every element) or,
for the KL divergence, ``"batchmean"`` (the sum over the size of the first axis). Autograd
differentiates the reduction; the NumPy tree writes it out.
"""
from __future__ import annotations

import numpy as np
import torch

from ml100.checks import check_input

from ..module import Module
from .activations import sigmoid
from .linear import Linear

#: The reductions every loss takes (``KLDivLoss`` adds ``"batchmean"``).
REDUCTIONS = ("none", "mean", "sum")


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce the elementwise losses: ``"none"`` keeps them, ``"sum"``, ``"mean"`` (all elements),
    ``"batchmean"`` (sum divided by the size of the first axis)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "batchmean":
        return loss.sum() / (loss.shape[0] if loss.ndim else 1)
    raise ValueError(f"unknown reduction {reduction!r}; expected one of: none, mean, sum, batchmean")


class Loss(Module):
    """Elementwise loss terms reduced by ``reduction``; subclasses write ``forward``."""

    #: The reductions this loss accepts.
    reductions = REDUCTIONS

    def __init__(self, reduction: str = "mean", dtype="float32"):
        super().__init__(dtype)
        if reduction not in self.reductions:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {self.reductions}, got {reduction!r}")
        self.reduction = reduction

    def check_pair(self, input: torch.Tensor, target: torch.Tensor, input_name: str = "input") -> None:
        """``input`` and ``target`` both in the module's dtype, of exactly the same shape (nothing is broadcast)."""
        owner = type(self).__name__
        check_input(owner, input_name, input.shape, input.dtype, expected_dtype=self.dtype)
        check_input(owner, "target", target.shape, target.dtype, expected_dtype=self.dtype, shape_like=input.shape)

    def reduce(self, loss: torch.Tensor) -> torch.Tensor:
        return reduce_loss(loss, self.reduction)


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy of ``target`` probabilities given ``logits`` of the same shape."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.check_pair(logits, target, "logits")
        positive = logits >= 0
        # max(z, 0) - z y + log(1 + exp(-|z|)): exp only ever sees -|z| <= 0.
        loss = torch.where(positive, logits, 0.0) - logits * target + torch.log1p(torch.exp(torch.where(positive, -logits, logits)))
        return self.reduce(loss)


class LogisticRegression(Module):
    """``logits = x @ w.T + b`` of shape ``(N,)``; canonical names ``linear.weight`` ``(1, in)``, ``linear.bias``."""

    def __init__(self, in_features: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.in_features = in_features
        self.linear = Linear(in_features, 1, dtype=dtype, rng=rng)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("LogisticRegression", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=2)
        return self.linear(x)[:, 0]  # (N,)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`P(y = 1 \\mid x) = \\sigma(z)`, shape ``(N,)``."""
        return sigmoid(self.forward(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class labels ``(N,)`` int64: 1 where :math:`z \\ge 0` (:math:`p \\ge 0.5`), else 0."""
        return (self.forward(x) >= 0).to(torch.int64)
