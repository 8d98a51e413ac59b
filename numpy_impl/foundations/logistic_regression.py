r"""Day 3: logistic regression and the numerically stable binary cross-entropy on logits.

The model scores each example with one affine map and reads the score as log-odds:

.. math::  z = x w^\top + b, \qquad p = \sigma(z) = \frac{1}{1+e^{-z}} .

The loss of a label :math:`y \in [0, 1]` is the binary cross-entropy
:math:`\ell = -y\log p - (1-y)\log(1-p)`. Written on :math:`z` it simplifies to
:math:`\ell = \log(1+e^{z}) - zy`, and :math:`\log(1+e^z) = \max(z,0) + \log(1+e^{-|z|})`
never takes ``exp`` of a positive number, so

.. math::  \ell = \max(z, 0) - z y + \operatorname{log1p}(e^{-|z|}), \qquad
           \frac{\partial \ell}{\partial z} = \sigma(z) - y .

Both :math:`\max(z,0)` and :math:`-|z|` are written with one ``where(z >= 0, ...)`` so that the
autograd trees take the same side at :math:`z = 0` and get :math:`\sigma(0) - y = \tfrac12 - y`
there (``tf.nn.sigmoid_cross_entropy_with_logits`` is written the same way); a zero-initialized
model starts exactly there.

Every loss here and in days 4 and 8 is a :class:`Loss`: elementwise terms :math:`\ell_i`, then one
shared reduction (:func:`reduce_loss`): ``"none"``, ``"sum"``, ``"mean"`` (over every element) or,
for the KL divergence, ``"batchmean"`` (the sum over the size of the first axis). Backward:
:math:`\partial L/\partial\ell_i` is ``grad_out`` (none, sum), ``grad_out/n`` (mean) or
``grad_out/N`` (batchmean), times each loss' own :math:`\partial\ell_i/\partial\,\text{input}`.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_input

from ..module import Module, no_grad
from .activations import sigmoid
from .linear import Linear

#: The reductions every loss takes (``KLDivLoss`` adds ``"batchmean"``).
REDUCTIONS = ("none", "mean", "sum")


def reduce_loss(loss: np.ndarray, reduction: str) -> np.ndarray:
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

    def reduce(self, loss: np.ndarray, *saved) -> np.ndarray:
        """Reduce the terms; ``saved`` (what ``derivative`` needs) is pushed for backward with the
        terms' shape, over which backward spreads ``grad_out`` back."""
        self.save_for_backward(loss.shape, saved)
        return reduce_loss(loss, self.reduction)

    def backward(self, grad_out=1.0) -> np.ndarray:
        """``grad_out`` (0-d for a reduced loss, shaped like the terms for ``"none"``) -> grad of the input."""
        loss_shape, saved = self.saved_for_backward()
        grad_out = np.asarray(grad_out, dtype=self.dtype)
        size, batch = int(np.prod(loss_shape)), (loss_shape[0] if loss_shape else 1)
        scale = {"mean": 1.0 / max(size, 1), "batchmean": 1.0 / max(batch, 1)}.get(self.reduction, 1.0)
        grad_loss = np.broadcast_to(grad_out * np.asarray(scale, self.dtype), loss_shape)  # dL/dℓ
        derivative = self.derivative(*saved)  # dℓ/d input, with trailing axes the terms lack (classes)
        return grad_loss.reshape(grad_loss.shape + (1,) * (derivative.ndim - grad_loss.ndim)) * derivative


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy of ``target`` probabilities given ``logits`` of the same shape."""

    def forward(self, logits: np.ndarray, target: np.ndarray) -> np.ndarray:
        self.check_pair(logits, target, "logits")
        positive = logits >= 0
        # max(z, 0) - z y + log(1 + exp(-|z|)): exp only ever sees -|z| <= 0.
        loss = np.where(positive, logits, 0.0) - logits * target + np.log1p(np.exp(np.where(positive, -logits, logits)))
        return self.reduce(loss, logits, target)

    def derivative(self, logits: np.ndarray, target: np.ndarray) -> np.ndarray:
        return sigmoid(logits) - target


class LogisticRegression(Module):
    """``logits = x @ w.T + b`` of shape ``(N,)``; canonical names ``linear.weight`` ``(1, in)``, ``linear.bias``."""

    def __init__(self, in_features: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.in_features = in_features
        self.linear = Linear(in_features, 1, dtype=dtype, rng=rng)

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
