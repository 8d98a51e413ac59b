r"""Day 5: activation functions, written from their formulas with tensor ops.

Without a nonlinearity a stack of dense layers collapses into one affine map. Autograd
differentiates the formulas below; the NumPy tree writes each derivative by hand.

* ReLU :math:`\max(x,0)`; LeakyReLU :math:`x` or :math:`\alpha x`; ELU :math:`x` or :math:`\alpha(e^x-1)`
* GELU :math:`x\,\Phi(x)`, or its tanh form :math:`\tfrac12 x(1+\tanh(\sqrt{2/\pi}(x+0.044715x^3)))`
* SiLU :math:`x\,\sigma(x)`; Sigmoid :math:`1/(1+e^{-x})`; Tanh; Softplus :math:`\log(1+e^x)`

Stability: :math:`\sigma` and softplus never take ``exp`` of a large positive number
(``softplus(x) = max(x,0) + log1p(exp(-|x|))``). The derivative at exactly 0 of ReLU and
LeakyReLU is that of the negative side, as PyTorch does.
"""
from __future__ import annotations

import math

import torch

from ml100.checks import check_input

from ..module import Module

#: The two GELU variants: exact (erf) and the tanh approximation of Hendrycks & Gimpel (2016).
GELU_APPROXIMATIONS = ("none", "tanh")


def negative_abs(x: torch.Tensor) -> torch.Tensor:
    """:math:`-|x|`, written with ``where`` so that its slope at exactly 0 is that of :math:`-x`
    (``abs`` has slope 0 there, which would zero the derivative of sigmoid and softplus at 0)."""
    return torch.where(x >= 0, -x, x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """:math:`1/(1+e^{-x})` without overflow: ``exp`` only ever sees :math:`-|x|`."""
    e = torch.exp(negative_abs(x))
    return torch.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(x: torch.Tensor) -> torch.Tensor:
    """:math:`\\log(1+e^x) = \\max(x,0) + \\log(1+e^{-|x|})`, exact and overflow-free."""
    return torch.where(x >= 0, x, torch.zeros_like(x)) + torch.log1p(torch.exp(negative_abs(x)))


class Activation(Module):
    """An elementwise function; autograd supplies its derivative."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(type(self).__name__, "x", x.shape, x.dtype, expected_dtype=self.dtype)
        return self.function(x)


class ReLU(Activation):
    def function(self, x):
        return torch.where(x > 0, x, torch.zeros_like(x))


class LeakyReLU(Activation):
    def __init__(self, negative_slope: float = 0.01, dtype="float32"):
        super().__init__(dtype)
        self.negative_slope = negative_slope

    def function(self, x):
        return torch.where(x > 0, x, self.negative_slope * x)


class ELU(Activation):
    def __init__(self, alpha: float = 1.0, dtype="float32"):
        super().__init__(dtype)
        self.alpha = alpha

    def function(self, x):
        # expm1 keeps e^x - 1 accurate near 0; zeroing the unused side keeps exp from overflowing
        # there (an inf in the branch `where` drops still turns its gradient into nan).
        return torch.where(x > 0, x, self.alpha * torch.expm1(torch.where(x > 0, torch.zeros_like(x), x)))


class GELU(Activation):
    def __init__(self, approximate: str = "none", dtype="float32"):
        super().__init__(dtype)
        if approximate not in GELU_APPROXIMATIONS:
            raise ValueError(f"GELU approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")
        self.approximate = approximate

    def function(self, x):
        if self.approximate == "tanh":
            u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
            return 0.5 * x * (1.0 + torch.tanh(u))
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class SiLU(Activation):
    def function(self, x):
        return x * sigmoid(x)


class Sigmoid(Activation):
    def function(self, x):
        return sigmoid(x)


class Tanh(Activation):
    def function(self, x):
        return torch.tanh(x)


class Softplus(Activation):
    def function(self, x):
        return softplus(x)
