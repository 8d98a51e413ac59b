r"""Day 35: spectral normalization by power iteration, applied to a day-6 dense layer.

The WGAN of the curriculum's title trains with the GAN days; this module is its Lipschitz
constraint, as ``torch.nn.utils.parametrizations.spectral_norm`` applies it to ``nn.Linear``:

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

from ml100.checks import check_input, check_int, check_positive, check_rng

from ..foundations import init
from ..foundations.linear import Linear
from ..module import TRANSPOSED, Module

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
