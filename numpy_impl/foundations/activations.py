r"""Day 5: activation functions and their derivatives.

Without a nonlinearity a stack of dense layers collapses into one affine map. Each class here
is elementwise, so its backward is a product with the derivative: ``grad_in = grad_out * f'(x)``.

========== ===================================================== ==========================================
name       :math:`f(x)`                                          :math:`f'(x)`
========== ===================================================== ==========================================
ReLU       :math:`\max(x, 0)`                                    :math:`[x > 0]`
LeakyReLU  :math:`x` if :math:`x>0` else :math:`\alpha x`        :math:`1` or :math:`\alpha`
ELU        :math:`x` if :math:`x>0` else :math:`\alpha(e^x-1)`   :math:`1` or :math:`\alpha e^x`
GELU       :math:`x\,\Phi(x)`                                    :math:`\Phi(x) + x\,\varphi(x)`
GELU tanh  :math:`\tfrac12 x(1+\tanh u)`, :math:`u=\sqrt{2/\pi}(x+0.044715x^3)`  :math:`\tfrac12(1+\tanh u) + \tfrac12 x (1-\tanh^2 u)\,u'`
SiLU       :math:`x\,\sigma(x)`                                  :math:`\sigma(x)(1 + x(1-\sigma(x)))`
Sigmoid    :math:`\sigma(x) = 1/(1+e^{-x})`                      :math:`\sigma(x)\,\sigma(-x)`
Tanh       :math:`\tanh x`                                       :math:`1-\tanh^2 x`
Softplus   :math:`\log(1+e^x)`                                   :math:`\sigma(x)`
========== ===================================================== ==========================================

Stability: :math:`\sigma` and softplus are written so that no ``exp`` of a large positive
number is ever taken (``softplus(x) = max(x,0) + log1p(exp(-|x|))``), and
:math:`\sigma'(x)` is :math:`\sigma(x)\sigma(-x)`, since :math:`1-\sigma` cancels to 0 once
:math:`\sigma` rounds to 1 (``torch.sigmoid``'s own backward does: 0 for :math:`x \gtrsim 37`).
GELU's :math:`\Phi(x)` is :math:`\tfrac12\operatorname{erfc}(-x/\sqrt2)`: the same function as
:math:`\tfrac12(1+\operatorname{erf}(x/\sqrt2))`, finite for every input (TF's float64 ``erf`` is
NaN beyond :math:`|x| \approx 10^{154}`) and exact in the negative tail. NumPy has no ``erfc``;
SciPy's (installed with scikit-learn) supplies it.

Special values follow ``torch.nn`` (tested value by value in ``test_activations.py``):

* NaN in gives NaN out, everywhere. Its slope is what torch's backward gives: 1 for ReLU (the
  zero branch is taken only where ``x <= 0``, which NaN fails), ``negative_slope`` for LeakyReLU
  (the identity branch only where ``x > 0``), NaN for the others.
* The derivative at exactly 0 of ReLU and LeakyReLU is that of the negative side. ReLU's
  backward *selects* 0 on its flat side instead of multiplying by a slope of 0, so a NaN or inf
  gradient from above stops there, as in torch (``grad_out * 0`` would be NaN).
* :math:`\pm\infty` gives the limit where the formula reaches it (ReLU, ELU, sigmoid, tanh,
  softplus) and NaN where torch's formula meets :math:`\infty\cdot 0`: GELU and SiLU at
  :math:`-\infty`, their slopes at :math:`\pm\infty`, and GELU-tanh's slope once :math:`x^3`
  overflows (:math:`|x| \gtrsim 10^{102}` in float64).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import erfc

from ml100.checks import check_choice, check_input, check_real

from ..module import Module

#: The two GELU variants: exact (erf) and the tanh approximation of Hendrycks & Gimpel (2016).
GELU_APPROXIMATIONS = ("none", "tanh")


def negative_abs(x: np.ndarray) -> np.ndarray:
    """:math:`-|x|`, written with ``where`` so that its slope at exactly 0 is that of :math:`-x`
    (``abs`` has slope 0 there, which would zero the derivative of sigmoid and softplus at 0)."""
    return np.where(x >= 0, -x, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """:math:`1/(1+e^{-x})` without overflow: ``exp`` only ever sees :math:`-|x|`."""
    e = np.exp(negative_abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """:math:`\\Phi(x) = \\tfrac12\\operatorname{erfc}(-x/\\sqrt2)`: finite for every input, exact in both tails."""
    return 0.5 * erfc(-x / math.sqrt(2.0))


def softplus(x: np.ndarray) -> np.ndarray:
    """:math:`\\log(1+e^x) = \\max(x,0) + \\log(1+e^{-|x|})`, exact and overflow-free."""
    return np.where(x >= 0, x, np.zeros_like(x)) + np.log1p(np.exp(negative_abs(x)))


class Activation(Module):
    """An elementwise function: forward saves its input, backward multiplies by the derivative."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(type(self).__name__, "x", x.shape, x.dtype, expected_dtype=self.dtype)
        self.save_for_backward(x)
        return self.function(x)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x = self.saved_for_backward()  # like grad_out
        return grad_out * self.derivative(x)


class ReLU(Activation):
    def function(self, x):
        # Zero only where x <= 0: NaN fails that test and passes through, as torch's relu lets it
        # (`where(x > 0, x, 0)` would turn NaN into 0 and hide it).
        return np.where(x <= 0, np.zeros_like(x), x)

    def derivative(self, x):
        # Slope 0 at x = 0 (torch's choice); NaN takes the identity's slope 1, as in torch.
        return np.where(x <= 0, 0.0, 1.0).astype(x.dtype)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x = self.saved_for_backward()
        # grad_out times the 0/1 slope, written as a selection: where the slope is 0 the gradient
        # is 0 even if grad_out is inf or NaN (the product would be NaN), as torch's backward gives.
        return np.where(self.derivative(x) > 0, grad_out, 0.0)


class LeakyReLU(Activation):
    def __init__(self, negative_slope: float = 0.01, dtype="float32"):
        super().__init__(dtype)
        self.negative_slope = check_real("LeakyReLU", "negative_slope", negative_slope)

    def function(self, x):
        return np.where(x > 0, x, self.negative_slope * x)

    def derivative(self, x):
        # torch's backward tests x > 0, so NaN (and 0) take the negative slope.
        return np.where(x > 0, 1.0, self.negative_slope).astype(x.dtype)


class ELU(Activation):
    def __init__(self, alpha: float = 1.0, dtype="float32"):
        super().__init__(dtype)
        self.alpha = check_real("ELU", "alpha", alpha)

    def function(self, x):
        # expm1 keeps e^x - 1 accurate near 0; zeroing the unused side keeps exp from overflowing
        # there (an inf in the branch `where` drops still turns its gradient into nan).
        return np.where(x > 0, x, self.alpha * np.expm1(np.where(x > 0, np.zeros_like(x), x)))

    def derivative(self, x):
        # NaN fails x > 0 and gets alpha * exp(NaN) = NaN, as torch's (vectorized) backward does.
        return np.where(x > 0, 1.0, self.alpha * np.exp(np.where(x > 0, np.zeros_like(x), x))).astype(x.dtype)


class GELU(Activation):
    def __init__(self, approximate: str = "none", dtype="float32"):
        super().__init__(dtype)
        check_choice("GELU", "approximate", approximate, GELU_APPROXIMATIONS)
        self.approximate = approximate

    def function(self, x):
        if self.approximate == "tanh":
            # x * x * x, as torch computes the cube: NumPy's float32 x**3 goes through powf, ~50x slower.
            u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))
            return 0.5 * x * (1.0 + np.tanh(u))
        # At -inf this is -inf * 0 = NaN, as in torch.
        return x * normal_cdf(x)

    def derivative(self, x):
        if self.approximate == "tanh":
            t = np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x)))
            du = math.sqrt(2.0 / math.pi) * (1.0 + 3 * 0.044715 * x**2)
            # Once x^3 overflows, (1 - t^2) du is 0 * inf = NaN: torch's backward gives NaN there too.
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * du
        pdf = np.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
        # At ±inf, x * pdf is inf * 0 = NaN, as in torch's backward.
        return normal_cdf(x) + x * pdf


class SiLU(Activation):
    def function(self, x):
        return x * sigmoid(x)

    def derivative(self, x):
        s = sigmoid(x)
        return s * (1.0 + x * (1.0 - s))


class Sigmoid(Activation):
    def function(self, x):
        return sigmoid(x)

    def derivative(self, x):
        # sigma(-x) is 1 - sigma(x) without the cancellation once sigma(x) rounds to 1.
        return sigmoid(x) * sigmoid(-x)


class Tanh(Activation):
    def function(self, x):
        return np.tanh(x)

    def derivative(self, x):
        return 1.0 - np.tanh(x) ** 2


class Softplus(Activation):
    def function(self, x):
        return softplus(x)

    def derivative(self, x):
        return sigmoid(x)
