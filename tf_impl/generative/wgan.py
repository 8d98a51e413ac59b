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

The weight is stored as Keras does, kernel :math:`K = W^\top` ``(in, out)``, exported transposed
as ``parametrizations.weight.original``; ``u`` ``(out,)`` and ``v`` ``(in,)`` are non-trainable
variables (torch's buffers ``parametrizations.weight.0._u`` / ``._v``). Their update is assigned
outside the differentiated path and they are read through ``stop_gradient``, so the tape derives
:math:`\partial L/\partial W = (\bar G - \langle \bar G, \bar W\rangle u v^\top)/\sigma` as the NumPy
tree writes it. ``keras.layers.SpectralNormalization`` is a different algorithm (it keeps only
``u``, iterates ``v`` first, and overwrites the kernel with :math:`W/\sigma`): see the day page.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_bool, check_input, check_int, check_positive, check_rng
from ml100.configs import WGANConfig, check_config

from ..foundations import init
from ..foundations.activations import LeakyReLU
from ..foundations.cnn import Flatten
from ..foundations.linear import Linear
from ..module import TRANSPOSED, Module, Sequential
from .gan import NEGATIVE_SLOPE, GANStep

_WEIGHT = "parametrizations.weight.original"
_U = "parametrizations.weight.0._u"
_V = "parametrizations.weight.0._v"
# torch refines the random u, v this many times when the parametrization is registered.
INIT_POWER_ITERATIONS = 15


def normalize(x: tf.Tensor, eps: float) -> tf.Tensor:
    """``x / max(||x||, eps)``, torch's ``F.normalize`` rule (a zero vector stays zero)."""
    return x / tf.maximum(tf.norm(x), tf.cast(eps, x.dtype))


def power_iteration(weight: tf.Tensor, u: tf.Tensor, v: tf.Tensor, n_power_iterations: int,
                    eps: float) -> tuple[tf.Tensor, tf.Tensor]:
    """``n_power_iterations`` alternating steps, u first (from the stored v), as torch does."""
    for _ in range(n_power_iterations):
        u = normalize(tf.linalg.matvec(weight, v), eps)  # (out,)
        v = normalize(tf.linalg.matvec(weight, u, transpose_a=True), eps)  # (in,)
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
        self.bias = None if linear.bias is None else self.add_param("bias", linear.bias)
        self.kernel = self.add_param(_WEIGHT, linear.kernel, layout=TRANSPOSED)  # (in, out)
        u = normalize(init.normal((out_features,), rng, 1.0, dtype), self.eps)  # (out,)
        v = normalize(init.normal((in_features,), rng, 1.0, dtype), self.eps)  # (in,)
        u, v = power_iteration(tf.transpose(self.kernel), u, v, INIT_POWER_ITERATIONS, self.eps)
        self.buffers[_U] = tf.Variable(u, trainable=False, name=_U)
        self.buffers[_V] = tf.Variable(v, trainable=False, name=_V)

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("SNLinear", "x", x.shape, x.dtype, expected_dtype=self.dtype, last_dim=self.in_features)
        weight = tf.transpose(self.kernel)  # (out, in)
        if self.training:
            # Off the tape: u, v are estimates, not functions of W to differentiate.
            u, v = power_iteration(tf.stop_gradient(weight), self.buffers[_U], self.buffers[_V], self.n_power_iterations, self.eps)
            self.buffers[_U].assign(u)
            self.buffers[_V].assign(v)
        # Read as constants (torch clones them): a later forward reassigns the variables.
        u, v = tf.stop_gradient(tf.identity(self.buffers[_U])), tf.stop_gradient(tf.identity(self.buffers[_V]))  # (out,), (in,)
        sigma = tf.tensordot(u, tf.linalg.matvec(weight, v), axes=1)
        kernel_sn = self.kernel / sigma  # (in, out)
        y = tf.matmul(x, kernel_sn) if x.shape.rank == 2 else tf.tensordot(x, kernel_sn, axes=1)  # (..., out)
        if self.bias is not None:
            y = y + self.bias  # (..., out)
        return y


class Critic(Module):
    """``images (N, H, W, C) -> flatten -> [SNLinear -> LeakyReLU(0.2)]`` per hidden size (reversed)
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

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        return self.net(x)  # (N, 1)


class WassersteinLoss(Module):
    """``-mean(scores)`` if ``target_is_real`` else ``mean(scores)``: the critic minimizes
    ``loss(D(real), True) + loss(D(fake), False)``, the generator ``loss(D(fake), True)``.
    Backward: ``-1/N`` or ``+1/N`` for every score (``N`` scores in all)."""

    def forward(self, scores: tf.Tensor, target_is_real: bool) -> tf.Tensor:
        check_bool("WassersteinLoss", "target_is_real", target_is_real)
        check_input("WassersteinLoss", "scores", scores.shape, scores.dtype, expected_dtype=self.dtype)
        sign = -1.0 if target_is_real else 1.0
        return sign * tf.reduce_mean(scores)  # ()


class WGANStep(GANStep):
    """Day 33's alternating round with the Wasserstein losses: a critic update on
    ``mean D(G(z_d)) - mean D(real)``, then a generator update on ``-mean D(G(z_g))`` through the
    updated critic. Every critic forward in train mode advances its layers' power iteration."""

    def __init__(self, generator: Module, critic: Module, g_optimizer, d_optimizer):
        super().__init__(generator, critic, g_optimizer, d_optimizer)
        self.loss = WassersteinLoss(dtype=generator.dtype)
