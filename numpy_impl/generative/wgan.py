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
``nn.Linear``. The weight :math:`W` ``(out, in)`` is divided by an estimate of its largest singular value:

.. math::  \hat u \leftarrow \frac{W v}{\max(\lVert W v\rVert, \epsilon)}, \qquad
           \hat v \leftarrow \frac{W^\top \hat u}{\max(\lVert W^\top \hat u\rVert, \epsilon)}
           \quad(\text{``n\_power\_iterations`` times, training mode only}),

.. math::  \sigma = \hat u^\top W \hat v, \qquad \bar W = W / \sigma, \qquad y = x \bar W^\top + b.

In eval mode the stored :math:`u, v` are used unchanged. As in torch, :math:`u, v` are constants
for the gradient (computed without it, then copied), so only :math:`\sigma`'s direct dependence
on :math:`W` is differentiated: :math:`\partial\sigma/\partial W = u v^\top`. With
:math:`G = \partial L/\partial y` and :math:`\bar G = G^\top x` (the day-6 gradient of :math:`\bar W`):

.. math::  \frac{\partial L}{\partial W} = \frac{1}{\sigma}\Big(\bar G - \langle \bar G, \bar W\rangle\, u v^\top\Big),
           \qquad \frac{\partial L}{\partial b} = \textstyle\sum_\text{rows} G, \qquad
           \frac{\partial L}{\partial x} = G \bar W.

Canonical state = torch's parametrized ``nn.Linear``: ``bias``, ``parametrizations.weight.original``
(the raw :math:`W`), and the buffers ``parametrizations.weight.0._u`` ``(out,)`` and
``parametrizations.weight.0._v`` ``(in,)``. Initialization is torch's: the day-6 ``Linear`` draws,
then :math:`u, v \sim N(0, 1)` normalized and refined by 15 power iterations.
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import check_bool, check_input, check_int, check_positive, check_rng
from ml100.configs import WGANConfig, check_config

from ..foundations import init
from ..foundations.activations import LeakyReLU
from ..foundations.cnn import Flatten
from ..foundations.linear import Linear
from ..module import Module, Sequential
from .gan import NEGATIVE_SLOPE, GANStep

_WEIGHT = "parametrizations.weight.original"
_U = "parametrizations.weight.0._u"
_V = "parametrizations.weight.0._v"
# torch refines the random u, v this many times when the parametrization is registered.
INIT_POWER_ITERATIONS = 15


def normalize(x: np.ndarray, eps: float) -> np.ndarray:
    """``x / max(||x||, eps)``, torch's ``F.normalize`` rule (a zero vector stays zero)."""
    return x / max(np.linalg.norm(x), eps)


def power_iteration(weight: np.ndarray, u: np.ndarray, v: np.ndarray, n_power_iterations: int,
                    eps: float) -> tuple[np.ndarray, np.ndarray]:
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
        if "bias" in linear.params:
            self.params["bias"] = linear.params["bias"]
        self.params[_WEIGHT] = linear.params["weight"]
        u = normalize(init.normal((out_features,), rng, 1.0, dtype), self.eps)  # (out,)
        v = normalize(init.normal((in_features,), rng, 1.0, dtype), self.eps)  # (in,)
        self.buffers[_U], self.buffers[_V] = power_iteration(self.params[_WEIGHT], u, v, INIT_POWER_ITERATIONS, self.eps)
        self.zero_grad()

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("SNLinear", "x", x.shape, x.dtype, expected_dtype=self.dtype, last_dim=self.in_features)
        weight = self.params[_WEIGHT]  # (out, in)
        if self.training:
            # In place: the buffers are state (a loaded or optimizer-held array keeps its identity).
            self.buffers[_U][...], self.buffers[_V][...] = power_iteration(
                weight, self.buffers[_U], self.buffers[_V], self.n_power_iterations, self.eps)
        # Copies, as torch clones them: a later forward updates the buffers before this backward.
        u, v = self.buffers[_U].copy(), self.buffers[_V].copy()  # (out,), (in,)
        sigma = u @ (weight @ v)
        weight_sn = weight / sigma  # (out, in)
        self.save_for_backward(x, u, v, sigma, weight_sn)
        y = x @ weight_sn.T  # (..., out)
        if "bias" in self.params:
            y = y + self.params["bias"]  # (..., out)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x, u, v, sigma, weight_sn = self.saved_for_backward()
        rows = math.prod(x.shape[:-1])
        x_rows = x.reshape(rows, self.in_features)  # (R, in)
        g_rows = grad_out.reshape(rows, self.out_features)  # (R, out)
        grad_sn = g_rows.T @ x_rows  # (out, in)
        # Through W / sigma with sigma = u^T W v (u, v constants): (G - <G, W/sigma> u v^T) / sigma.
        self.grads[_WEIGHT] += (grad_sn - np.sum(grad_sn * weight_sn) * np.outer(u, v)) / sigma  # (out, in)
        if "bias" in self.params:
            self.grads["bias"] += g_rows.sum(axis=0)  # (out,)
        return grad_out @ weight_sn  # (..., in)


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

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.net(x)  # (N, 1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return self.net.backward(grad_out)  # (N, C, H, W)


class WassersteinLoss(Module):
    """``-mean(scores)`` if ``target_is_real`` else ``mean(scores)``: the critic minimizes
    ``loss(D(real), True) + loss(D(fake), False)``, the generator ``loss(D(fake), True)``.
    Backward: ``-1/N`` or ``+1/N`` for every score (``N`` scores in all)."""

    def forward(self, scores: np.ndarray, target_is_real: bool) -> np.ndarray:
        check_bool("WassersteinLoss", "target_is_real", target_is_real)
        check_input("WassersteinLoss", "scores", scores.shape, scores.dtype, expected_dtype=self.dtype)
        sign = -1.0 if target_is_real else 1.0
        self.save_for_backward(scores.shape, sign)
        return sign * np.mean(scores)  # ()

    def backward(self, grad_out=1.0) -> np.ndarray:
        shape, sign = self.saved_for_backward()
        # An empty batch has a NaN mean and no score to send a gradient to.
        count = max(math.prod(shape), 1)
        return np.full(shape, sign * grad_out / count, dtype=self.dtype)  # like scores


class WGANStep(GANStep):
    """Day 33's alternating round with the Wasserstein losses: a critic update on
    ``mean D(G(z_d)) - mean D(real)``, then a generator update on ``-mean D(G(z_g))`` through the
    updated critic. Every critic forward in train mode advances its layers' power iteration."""

    def __init__(self, generator: Module, critic: Module, g_optimizer, d_optimizer):
        super().__init__(generator, critic, g_optimizer, d_optimizer)
        self.loss = WassersteinLoss(dtype=generator.dtype)
