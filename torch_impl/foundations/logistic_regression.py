r"""Day 3: logistic regression and the numerically stable binary cross-entropy on logits.

The model scores each example with one affine map and reads the score as log-odds:

.. math::  z = x w^\top + b, \qquad p = \sigma(z) = \frac{1}{1+e^{-z}} .

The loss of a label :math:`y \in [0, 1]` is the binary cross-entropy
:math:`\ell = -y\log p - (1-y)\log(1-p)`. Since :math:`-\log\sigma(z) = \log(1+e^{-z})` (the
softplus of :math:`-z`) and :math:`-\log(1-\sigma(z)) = z + \log(1+e^{-z})`, it is written on
:math:`z` as

.. math::  \ell = (1-y)\,z + \operatorname{softplus}(-z), \qquad
           \frac{\partial \ell}{\partial z} = (1-y) - \sigma(-z) = \sigma(z) - y ,

with the overflow-free softplus of day 5, :math:`\max(x,0) + \operatorname{log1p}(e^{-|x|})`
(``exp`` never sees a positive number). Its ``where(x >= 0, ...)`` takes one side of both kinks,
so autograd gets :math:`\sigma(0) - y = \tfrac12 - y` at :math:`z = 0`, where a zero-initialized
model starts (``clamp_min`` and ``abs`` would give :math:`1 - y`).

PyTorch's two options: ``pos_weight`` :math:`p_c` (one per class, the last axis) weighs the
positive part, :math:`\ell = (1-y)\,z + l\,\operatorname{softplus}(-z)` with
:math:`l = 1 + (p_c - 1)\,y`; ``weight`` :math:`w` (shaped like the input's trailing axes)
multiplies each term. Both are constants, registered as buffers under torch's names.

Every loss here and in days 4 and 8 is a :class:`Loss`: elementwise terms :math:`\ell_i`, then one
shared reduction (:func:`reduce_loss`): ``"none"``, ``"sum"``, ``"mean"`` (over every element, or
over a ``divisor``: cross-entropy's weighted mean divides by the sum of the targets' weights) or,
for the KL divergence, ``"batchmean"`` (the sum over the size of the first axis). Autograd
differentiates the reduction; the NumPy tree writes it out.
"""
from __future__ import annotations

import numpy as np
import torch

from ml100.checks import check_input, check_int, check_rng, check_trailing_shape, check_weight_array

from ..module import Module, torch_dtype
from .activations import sigmoid, softplus
from .linear import Linear

#: The reductions every loss takes (``KLDivLoss`` adds ``"batchmean"``).
REDUCTIONS = ("none", "mean", "sum")


def reduce_loss(loss: torch.Tensor, reduction: str, divisor=None) -> torch.Tensor:
    """Reduce the elementwise losses: ``"none"`` keeps them, ``"sum"``, ``"mean"`` (all elements, or
    the sum over ``divisor`` when one is given), ``"batchmean"`` (sum divided by the size of the first axis)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean" and divisor is not None:
        # 0 / 0 is NaN, torch's answer when every target is ignored.
        return loss.sum() / divisor
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

    def reduce(self, loss: torch.Tensor, divisor=None) -> torch.Tensor:
        """Reduce the terms (``"mean"`` over ``divisor`` if given); autograd records the graph."""
        return reduce_loss(loss, self.reduction, divisor)


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy of ``target`` probabilities given ``logits`` of the same shape; optional
    ``weight`` (shaped like the logits' trailing axes) and ``pos_weight`` ``(C,)`` (the last axis)."""

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None, dtype="float32"):
        super().__init__(reduction, dtype)
        for name, value, ndim in (("weight", weight, None), ("pos_weight", pos_weight, 1)):
            array = check_weight_array("BCEWithLogitsLoss", name, value, self.dtype, ndim)
            # Constants, not parameters: buffers, in the state dict only when given (as in torch).
            self.register_buffer(name, None if array is None else torch.from_numpy(array).to(torch_dtype(dtype)))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.check_pair(logits, target, "logits")
        for name, value in self.named_buffers():
            check_trailing_shape("BCEWithLogitsLoss", name, value.shape, logits.shape)
        loss = (1.0 - target) * logits + self._log_weight(target) * softplus(-logits)  # like logits
        if self.weight is not None:
            loss = loss * self.weight  # like logits
        return self.reduce(loss)

    def _log_weight(self, target: torch.Tensor):
        """torch's :math:`l = 1 + (p_c - 1)\\,y`, the factor of the positive part (1 without ``pos_weight``)."""
        if self.pos_weight is None:
            return 1.0
        return 1.0 + (self.pos_weight - 1.0) * target  # like target


class LogisticRegression(Module):
    """``logits = x @ w.T + b`` of shape ``(N,)``; canonical names ``linear.weight`` ``(1, in)``, ``linear.bias``."""

    def __init__(self, in_features: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.in_features = check_int("LogisticRegression", "in_features", in_features, 0)
        self.linear = Linear(in_features, 1, dtype=dtype, rng=check_rng("LogisticRegression", rng))

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
