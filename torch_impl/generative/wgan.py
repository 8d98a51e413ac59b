r"""Day 35: spectral normalization by power iteration, applied to a day-6 dense layer.

The WGAN of the curriculum's title trains with the GAN days; this module is its Lipschitz
constraint, as ``torch.nn.utils.parametrizations.spectral_norm`` applies it to ``nn.Linear``:

.. math::  \hat u \leftarrow \frac{W v}{\max(\lVert W v\rVert, \epsilon)}, \qquad
           \hat v \leftarrow \frac{W^\top \hat u}{\max(\lVert W^\top \hat u\rVert, \epsilon)}
           \quad(\text{``n\_power\_iterations`` times, training mode only}),

.. math::  \sigma = \hat u^\top W \hat v, \qquad \bar W = W / \sigma, \qquad y = x \bar W^\top + b.

The power iteration runs without the tape and :math:`u, v` are cloned before :math:`\sigma`, so
autograd differentiates only :math:`\sigma`'s direct dependence on :math:`W`, giving what the
NumPy tree writes by hand: :math:`\partial L/\partial W = (\bar G - \langle \bar G, \bar W\rangle u v^\top)/\sigma`.

The state dict is torch's parametrized ``nn.Linear`` by construction: a ``parametrizations``
``ModuleDict`` whose ``weight`` list holds the ``original`` parameter and, as element 0, a module
with the ``_u`` ``(out,)`` and ``_v`` ``(in,)`` buffers. Initialization is torch's: the day-6
``Linear`` draws, then :math:`u, v \sim N(0, 1)` normalized and refined by 15 power iterations.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ml100.checks import check_input, check_int, check_positive, check_rng

from ..foundations import init
from ..foundations.linear import Linear
from ..module import Module

# torch refines the random u, v this many times when the parametrization is registered.
INIT_POWER_ITERATIONS = 15


def normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / max(||x||, eps)``, torch's ``F.normalize`` rule (a zero vector stays zero)."""
    return x / torch.linalg.vector_norm(x).clamp_min(eps)


def power_iteration(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor, n_power_iterations: int,
                    eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_power_iterations`` alternating steps, u first (from the stored v), as torch does."""
    for _ in range(n_power_iterations):
        u = normalize(weight @ v, eps)  # (out,)
        v = normalize(weight.T @ u, eps)  # (in,)
    return u, v


class SNLinear(Module):
    """``y = x @ (W / sigma).T + b`` with sigma the power-iteration estimate of ``W``'s spectral norm."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, n_power_iterations: int = 1,
                 eps: float = 1e-12, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("SNLinear", rng)
        self.in_features = check_int("SNLinear", "in_features", in_features, 1)
        self.out_features = check_int("SNLinear", "out_features", out_features, 1)
        self.n_power_iterations = check_int("SNLinear", "n_power_iterations", n_power_iterations, 1)
        self.eps = check_positive("SNLinear", "eps", eps)
        # The day-6 layer draws W and b exactly as nn.Linear does; spectral_norm then wraps W.
        linear = Linear(in_features, out_features, bias, dtype, rng)
        self.bias = linear.bias
        # torch's names: parametrizations.weight.original, parametrizations.weight.0._u / ._v.
        state = nn.Module()
        weight_list = nn.ModuleList([state])
        weight_list.original = linear.weight
        self.parametrizations = nn.ModuleDict({"weight": weight_list})
        with torch.no_grad():
            u = normalize(init.normal((out_features,), rng, 1.0, dtype), self.eps)  # (out,)
            v = normalize(init.normal((in_features,), rng, 1.0, dtype), self.eps)  # (in,)
            u, v = power_iteration(linear.weight, u, v, INIT_POWER_ITERATIONS, self.eps)
        state.register_buffer("_u", u)
        state.register_buffer("_v", v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("SNLinear", "x", x.shape, x.dtype, expected_dtype=self.dtype, last_dim=self.in_features)
        weight = self.parametrizations.weight.original  # (out, in)
        state = self.parametrizations.weight[0]
        if self.training:
            # Off the tape: u, v are estimates, not functions of W to differentiate.
            with torch.no_grad():
                u, v = power_iteration(weight, state._u, state._v, self.n_power_iterations, self.eps)
                state._u.copy_(u)
                state._v.copy_(v)
        # Clones, as torch takes them: a later forward updates the buffers in place.
        u, v = state._u.clone(), state._v.clone()  # (out,), (in,)
        sigma = u @ (weight @ v)
        weight_sn = weight / sigma  # (out, in)
        y = x @ weight_sn.T  # (..., out)
        if self.bias is not None:
            y = y + self.bias  # (..., out)
        return y
