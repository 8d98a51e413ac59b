r"""Day 5: activation functions, written from their formulas with tensor ops.

Without a nonlinearity a stack of dense layers collapses into one affine map. The tape
differentiates the formulas below; the NumPy tree writes each derivative by hand.

* ReLU :math:`\max(x,0)`; LeakyReLU :math:`x` or :math:`\alpha x`; ELU :math:`x` or :math:`\alpha(e^x-1)`
* GELU :math:`x\,\Phi(x)`, or its tanh form :math:`\tfrac12 x(1+\tanh(\sqrt{2/\pi}(x+0.044715x^3)))`
* SiLU :math:`x\,\sigma(x)`; Sigmoid :math:`1/(1+e^{-x})`; Tanh; Softplus :math:`\log(1+e^x)`

Stability: :math:`\sigma` and softplus never take ``exp`` of a large positive number
(``softplus(x) = max(x,0) + log1p(exp(-|x|))``). GELU's :math:`\Phi(x)` is
:math:`\tfrac12\operatorname{erfc}(-x/\sqrt2)`, finite for every input and exact in both tails
(TF's float64 ``erf`` is NaN at :math:`\pm\infty` and beyond :math:`|x| \approx 10^{154}`).

Special values follow ``torch.nn`` (tested value by value in ``test_activations.py``): NaN in
gives NaN out, with torch's slope (1 for ReLU, ``negative_slope`` for LeakyReLU, NaN for the
others; ``tf.where`` routes the gradient to the branch it takes, as torch's does); the slope at
exactly 0 of ReLU and LeakyReLU is the negative side's; :math:`\pm\infty` gives the limit, or NaN
where torch's formula meets :math:`\infty\cdot 0` (GELU and SiLU at :math:`-\infty`, their slopes
at :math:`\pm\infty`, GELU-tanh's slope once :math:`x^3` overflows).
"""
from __future__ import annotations

import math

import tensorflow as tf

from ml100.checks import check_choice, check_input, check_real

from ..module import Module

#: The two GELU variants: exact (erf) and the tanh approximation of Hendrycks & Gimpel (2016).
GELU_APPROXIMATIONS = ("none", "tanh")


def negative_abs(x: tf.Tensor) -> tf.Tensor:
    """:math:`-|x|`, written with ``where`` so that its slope at exactly 0 is that of :math:`-x`
    (``abs`` has slope 0 there, which would zero the derivative of sigmoid and softplus at 0)."""
    return tf.where(x >= 0, -x, x)


def sigmoid(x: tf.Tensor) -> tf.Tensor:
    """:math:`1/(1+e^{-x})` without overflow: ``exp`` only ever sees :math:`-|x|`."""
    e = tf.exp(negative_abs(x))
    return tf.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def normal_cdf(x: tf.Tensor) -> tf.Tensor:
    """:math:`\\Phi(x) = \\tfrac12\\operatorname{erfc}(-x/\\sqrt2)`: finite for every input, exact in both tails."""
    return 0.5 * tf.math.erfc(-x / math.sqrt(2.0))


def softplus(x: tf.Tensor) -> tf.Tensor:
    """:math:`\\log(1+e^x) = \\max(x,0) + \\log(1+e^{-|x|})`, exact and overflow-free."""
    return tf.where(x >= 0, x, tf.zeros_like(x)) + tf.math.log1p(tf.exp(negative_abs(x)))


class Activation(Module):
    """An elementwise function; the tape supplies its derivative."""

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input(type(self).__name__, "x", x.shape, x.dtype, expected_dtype=self.dtype)
        return self.function(x)


class ReLU(Activation):
    def function(self, x):
        # Zero only where x <= 0: NaN fails that test and passes through with slope 1, as torch's
        # relu lets it (`where(x > 0, x, 0)` would turn NaN into 0 and hide it).
        return tf.where(x <= 0, tf.zeros_like(x), x)


class LeakyReLU(Activation):
    def __init__(self, negative_slope: float = 0.01, dtype="float32"):
        super().__init__(dtype)
        self.negative_slope = check_real("LeakyReLU", "negative_slope", negative_slope)

    def function(self, x):
        return tf.where(x > 0, x, self.negative_slope * x)


class ELU(Activation):
    def __init__(self, alpha: float = 1.0, dtype="float32"):
        super().__init__(dtype)
        self.alpha = check_real("ELU", "alpha", alpha)

    def function(self, x):
        # expm1 keeps e^x - 1 accurate near 0; zeroing the unused side keeps exp from overflowing
        # there (an inf in the branch `where` drops still turns its gradient into nan).
        return tf.where(x > 0, x, self.alpha * tf.math.expm1(tf.where(x > 0, tf.zeros_like(x), x)))


class GELU(Activation):
    def __init__(self, approximate: str = "none", dtype="float32"):
        super().__init__(dtype)
        check_choice("GELU", "approximate", approximate, GELU_APPROXIMATIONS)
        self.approximate = approximate

    def function(self, x):
        if self.approximate == "tanh":
            u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
            return 0.5 * x * (1.0 + tf.tanh(u))
        # At -inf this is -inf * 0 = NaN, as in torch.
        return x * normal_cdf(x)


class SiLU(Activation):
    def function(self, x):
        return x * sigmoid(x)


class Sigmoid(Activation):
    def function(self, x):
        return sigmoid(x)


class Tanh(Activation):
    def function(self, x):
        return tf.tanh(x)


class Softplus(Activation):
    def function(self, x):
        return softplus(x)
