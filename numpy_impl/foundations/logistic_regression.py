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
so the autograd trees get :math:`\sigma(0) - y = \tfrac12 - y` at :math:`z = 0`, where a
zero-initialized model starts.

PyTorch's two options: ``pos_weight`` :math:`p_c` (one per class, the last axis) weighs the
positive part, :math:`\ell = (1-y)\,z + l\,\operatorname{softplus}(-z)` with
:math:`l = 1 + (p_c - 1)\,y`, so :math:`\partial\ell/\partial z = (1-y) - l\,\sigma(-z)`;
``weight`` :math:`w` (shaped like the input's trailing axes) multiplies each term and its
derivative. Both are constants, kept as buffers under torch's names.

Every loss here and in days 4 and 8 is a :class:`Loss`: elementwise terms :math:`\ell_i`, then one
shared reduction (:func:`reduce_loss`): ``"none"``, ``"sum"``, ``"mean"`` (over every element, or
over a ``divisor``: cross-entropy's weighted mean divides by the sum of the targets' weights) or,
for the KL divergence, ``"batchmean"`` (the sum over the size of the first axis). Backward:
:math:`\partial L/\partial\ell_i` is ``grad_out`` (none, sum), ``grad_out/n`` (mean, or
``grad_out/divisor``) or ``grad_out/N`` (batchmean), times each loss' own
:math:`\partial\ell_i/\partial\,\text{input}`.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_input, check_int, check_rng, check_trailing_shape, check_weight_array

from ..module import Module, no_grad
from .activations import sigmoid, softplus
from .linear import Linear

#: The reductions every loss takes (``KLDivLoss`` adds ``"batchmean"``).
REDUCTIONS = ("none", "mean", "sum")


def reduce_loss(loss: np.ndarray, reduction: str, divisor=None) -> np.ndarray:
    """Reduce the elementwise losses: ``"none"`` keeps them, ``"sum"``, ``"mean"`` (all elements, or
    the sum over ``divisor`` when one is given), ``"batchmean"`` (sum divided by the size of the first axis)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        # 0 / 0 (an empty batch, every target ignored) is NaN, torch's answer, without a warning.
        with np.errstate(invalid="ignore", divide="ignore"):
            return loss.sum() / (loss.size if divisor is None else divisor)
    if reduction == "batchmean":
        return loss.sum() / (loss.shape[0] if loss.ndim else 1)
    raise ValueError(f"unknown reduction {reduction!r}; expected one of: none, mean, sum, batchmean")


class Loss(Module):
    """Elementwise loss terms reduced by ``reduction``; subclasses write ``forward`` (and, in NumPy,
    ``derivative(*saved)``: the gradient of each term with respect to the input, from what the
    forward handed to ``reduce``)."""

    #: The reductions this loss accepts.
    reductions = REDUCTIONS

    def __init__(self, reduction: str = "mean", dtype="float32"):
        super().__init__(dtype)
        if reduction not in self.reductions:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {self.reductions}, got {reduction!r}")
        self.reduction = reduction

    def check_pair(self, input: np.ndarray, target: np.ndarray, input_name: str = "input") -> None:
        """``input`` and ``target`` both in the module's dtype, of exactly the same shape (nothing is broadcast)."""
        owner = type(self).__name__
        check_input(owner, input_name, input.shape, input.dtype, expected_dtype=self.dtype)
        check_input(owner, "target", target.shape, target.dtype, expected_dtype=self.dtype, shape_like=input.shape)

    def reduce(self, loss: np.ndarray, *saved, divisor=None) -> np.ndarray:
        """Reduce the terms (``"mean"`` over ``divisor`` if given); ``saved`` (what ``derivative``
        needs) is pushed for backward with the terms' shape, over which backward spreads ``grad_out``."""
        self.save_for_backward(loss.shape, divisor, saved)
        return reduce_loss(loss, self.reduction, divisor)

    def backward(self, grad_out=1.0) -> np.ndarray:
        """``grad_out`` (0-d for a reduced loss, shaped like the terms for ``"none"``) -> grad of the input."""
        loss_shape, divisor, saved = self.saved_for_backward()
        grad_out = np.asarray(grad_out, dtype=self.dtype)
        size, batch = int(np.prod(loss_shape)), (loss_shape[0] if loss_shape else 1)
        mean_over = max(size, 1) if divisor is None else divisor
        # A divisor of 0 (every target ignored) gives an infinite scale; the ignored terms stop it.
        with np.errstate(divide="ignore"):
            scale = {"mean": 1.0 / np.float64(mean_over), "batchmean": 1.0 / max(batch, 1)}.get(self.reduction, 1.0)
        grad_loss = np.broadcast_to(grad_out * np.asarray(scale, self.dtype), loss_shape)  # dL/dℓ
        return self._chain(grad_loss, *saved)

    def _chain(self, grad_loss: np.ndarray, *saved) -> np.ndarray:
        """dL/d input: dL/dℓ times ``derivative`` (dℓ/d input, with trailing axes the terms lack: classes)."""
        derivative = self.derivative(*saved)
        return grad_loss.reshape(grad_loss.shape + (1,) * (derivative.ndim - grad_loss.ndim)) * derivative


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy of ``target`` probabilities given ``logits`` of the same shape; optional
    ``weight`` (shaped like the logits' trailing axes) and ``pos_weight`` ``(C,)`` (the last axis)."""

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None, dtype="float32"):
        super().__init__(reduction, dtype)
        for name, value, ndim in (("weight", weight, None), ("pos_weight", pos_weight, 1)):
            array = check_weight_array("BCEWithLogitsLoss", name, value, self.dtype, ndim)
            # Constants, not parameters: buffers, in the state dict only when given (as in torch).
            if array is not None:
                self.buffers[name] = array

    def forward(self, logits: np.ndarray, target: np.ndarray) -> np.ndarray:
        self.check_pair(logits, target, "logits")
        for name, value in self.buffers.items():
            check_trailing_shape("BCEWithLogitsLoss", name, value.shape, logits.shape)
        loss = (1.0 - target) * logits + self._log_weight(target) * softplus(-logits)  # like logits
        if "weight" in self.buffers:
            loss = loss * self.buffers["weight"]  # like logits
        return self.reduce(loss, logits, target)

    def _log_weight(self, target: np.ndarray):
        """torch's :math:`l = 1 + (p_c - 1)\\,y`, the factor of the positive part (1 without ``pos_weight``)."""
        if "pos_weight" not in self.buffers:
            return 1.0
        return 1.0 + (self.buffers["pos_weight"] - 1.0) * target  # like target

    def derivative(self, logits: np.ndarray, target: np.ndarray) -> np.ndarray:
        # d softplus(-z)/dz = -sigmoid(-z); without pos_weight, (1 - y) - sigmoid(-z) = sigmoid(z) - y.
        grad = (1.0 - target) - self._log_weight(target) * sigmoid(-logits)  # like logits
        return grad * self.buffers["weight"] if "weight" in self.buffers else grad


class LogisticRegression(Module):
    """``logits = x @ w.T + b`` of shape ``(N,)``; canonical names ``linear.weight`` ``(1, in)``, ``linear.bias``."""

    def __init__(self, in_features: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.in_features = check_int("LogisticRegression", "in_features", in_features, 0)
        self.linear = Linear(in_features, 1, dtype=dtype, rng=check_rng("LogisticRegression", rng))

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("LogisticRegression", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=2)
        return self.linear(x)[:, 0]  # (N,)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return self.linear.backward(grad_out[:, None])  # (N, in)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """:math:`P(y = 1 \\mid x) = \\sigma(z)`, shape ``(N,)``."""
        return sigmoid(self.forward(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class labels ``(N,)`` int64: 1 where :math:`z \\ge 0` (:math:`p \\ge 0.5`), else 0."""
        with no_grad():
            return (self.forward(x) >= 0).astype(np.int64)
