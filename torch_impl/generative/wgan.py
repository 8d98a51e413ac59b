r"""Day 35: the Wasserstein GAN (Arjovsky et al. 2017) with spectral normalization (Miyato et al. 2018).

A critic :math:`D` (a score, not a probability) estimates the Wasserstein-1 distance between the
data and the generator's samples through the Kantorovich–Rubinstein duality,
:math:`W_1 = \sup_{\lVert D\rVert_L \le 1} \mathbb E_x[D(x)] - \mathbb E_z[D(G(z))]`, so the two
losses (:class:`WassersteinLoss`, trained by day 33's alternating ``GANStep`` as :class:`WGANStep`) are

.. math::  L_D = \tfrac1N\textstyle\sum_n D(G(z_n)) - \tfrac1N\sum_n D(x_n), \qquad
           L_G = -\tfrac1N\textstyle\sum_n D(G(z_n)),

with :math:`\partial L/\partial D_n = \pm 1/N`: the gradient never saturates, whatever the scores.
The supremum is only over 1-Lipschitz critics; without a constraint the critic's scores grow without
bound. Here every layer of the :class:`Critic` is spectral-normalized (LeakyReLU is 1-Lipschitz), so
the whole critic is (up to the power iteration's estimate) 1-Lipschitz.

**Spectral normalization**, as ``torch.nn.utils.parametrizations.spectral_norm`` applies it to
``nn.Linear``:

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

from ml100.checks import check_bool, check_input, check_int, check_positive, check_rng
from ml100.configs import WGANConfig, check_config

from ..foundations import init
from ..foundations.activations import LeakyReLU
from ..foundations.cnn import Flatten
from ..foundations.linear import Linear
from ..module import Module, Sequential
from .gan import NEGATIVE_SLOPE, GANStep

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


class Critic(Module):
    """``images (N, C, H, W) -> flatten -> [SNLinear -> LeakyReLU(0.2)]`` per hidden size (reversed)
    ``-> SNLinear -> one score per image (N, 1)``; sized by a :class:`ml100.configs.WGANConfig`."""

    def __init__(self, config: WGANConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("Critic", config, WGANConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        sizes = [config.in_channels * config.image_size * config.image_size, *reversed(config.hidden_sizes), 1]
        layers: list[Module] = [Flatten(dtype=dtype)]
        for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(SNLinear(size_in, size_out, n_power_iterations=config.n_power_iterations, dtype=dtype, rng=rng))
            # The score layer stays linear: a critic's output is unbounded, not a logit to squash.
            if index < len(sizes) - 2:
                layers.append(LeakyReLU(NEGATIVE_SLOPE, dtype=dtype))
        self.net = Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (N, 1)


class WassersteinLoss(Module):
    """``-mean(scores)`` if ``target_is_real`` else ``mean(scores)``: the critic minimizes
    ``loss(D(real), True) + loss(D(fake), False)``, the generator ``loss(D(fake), True)``.
    Backward: ``-1/N`` or ``+1/N`` for every score (``N`` scores in all)."""

    def forward(self, scores: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        check_bool("WassersteinLoss", "target_is_real", target_is_real)
        check_input("WassersteinLoss", "scores", scores.shape, scores.dtype, expected_dtype=self.dtype)
        sign = -1.0 if target_is_real else 1.0
        return sign * torch.mean(scores)  # ()


class WGANStep(GANStep):
    """Day 33's alternating round with the Wasserstein losses: a critic update on
    ``mean D(G(z_d)) - mean D(real)``, then a generator update on ``-mean D(G(z_g))`` through the
    updated critic. Every critic forward in train mode advances its layers' power iteration."""

    def __init__(self, generator: Module, critic: Module, g_optimizer, d_optimizer):
        super().__init__(generator, critic, g_optimizer, d_optimizer)
        self.loss = WassersteinLoss(dtype=generator.dtype)
