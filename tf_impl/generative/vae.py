r"""Day 32: the variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes", 2014),
a small convolutional one for the 8×8 digits.

.. code-block:: text

    x (N, 8, 8, C) → conv1 3×3 s2 → ReLU → conv2 3×3 s2 → ReLU → flatten (N, C2·2·2)
                   → fc_mu → mu (N, D),  fc_logvar → logvar (N, D)
    z = mu + exp(½ logvar) ⊙ eps          (eps ~ N(0, I), passed in: randomness is an input)
    z → fc_decode → ReLU → unflatten (N, C2, 2, 2) → deconv1 3×3 s2 → ReLU → deconv2 3×3 s2 → logits (N, 8, 8, C)

The loss is the negative ELBO, per example and averaged over the batch (torch-style ``mean`` over
the batch, ``sum`` over pixels and latent units):

.. math::  \mathcal{L} = \frac1N\sum_n\Big[\underbrace{\sum_p \text{BCEWithLogits}(\ell_{np}, x_{np})}_{\text{reconstruction}}
           \;-\;\frac{\beta}{2}\sum_d\big(1 + v_{nd} - \mu_{nd}^2 - e^{v_{nd}}\big)\Big]

(``v = logvar``; the KL term is the closed form of :math:`KL(\mathcal N(\mu, e^{v}) \,\|\, \mathcal N(0, I))`).

Backward of the KL: :math:`\partial/\partial\mu = \beta\mu/N`, :math:`\partial/\partial v = \tfrac{\beta}{2}(e^{v} - 1)/N`.
Backward of the reparameterization, :math:`\sigma = e^{v/2}`, :math:`z = \mu + \sigma\varepsilon`:
:math:`\partial L/\partial\mu \mathrel{+}= G_z`, :math:`\partial L/\partial v \mathrel{+}= G_z\,\varepsilon\,\sigma/2`,
:math:`\partial L/\partial\varepsilon = G_z\,\sigma` — ``mu`` and ``logvar`` get gradient both
through ``z`` and through the KL (the two paths add).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_input, check_nonnegative
from ml100.configs import VAEConfig, check_config

from ..foundations.linear import Linear
from ..foundations.logistic_regression import BCEWithLogitsLoss
from ..module import Module
from .autoencoder import ConvStacks, Unflatten  # noqa: F401  (Unflatten: re-exported, later days import it from here)


class VAE(ConvStacks):
    """Convolutional encoder to ``(mu, logvar)``, the reparameterization, a transposed-convolution
    decoder to pixel logits; sized by a :class:`ml100.configs.VAEConfig`. The encoder and decoder
    stacks are day 31's :class:`ConvStacks`; this model's heads are ``fc_mu`` and ``fc_logvar``."""

    def __init__(self, config: VAEConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("VAE", config, VAEConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        features = self.add_encoder(config, rng)
        self.fc_mu = Linear(features, config.latent_dim, dtype=dtype, rng=rng)
        self.fc_logvar = Linear(features, config.latent_dim, dtype=dtype, rng=rng)
        self.add_decoder(config, rng)

    def forward(self, x: tf.Tensor, eps: tf.Tensor):
        check_input("VAE", "eps", eps.shape, eps.dtype, expected_dtype=self.dtype, ndim=2)
        if tuple(eps.shape) != (x.shape[0], self.config.latent_dim):
            raise ValueError(f"VAE: eps must have shape (N, latent_dim) = ({x.shape[0]}, {self.config.latent_dim}), "
                             f"got {tuple(eps.shape)}")
        h = x
        for module in self.encoder():
            h = module(h)  # ends (N, C2*side*side)
        mu = self.fc_mu(h)  # (N, D)
        logvar = self.fc_logvar(h)  # (N, D)
        std = tf.exp(0.5 * logvar)  # (N, D)
        z = mu + std * eps  # (N, D)
        logits = self.decode(z)  # (N, H, W, C)
        return logits, mu, logvar


class VAELoss(Module):
    """The negative ELBO: BCE-with-logits summed over pixels plus ``beta`` times the analytic KL
    summed over latent units, both averaged over the batch; ``forward(logits, target, mu, logvar)``."""

    def __init__(self, beta: float = 1.0, dtype="float32"):
        super().__init__(dtype)
        self.beta = check_nonnegative("VAELoss", "beta", beta)
        self.reconstruction = BCEWithLogitsLoss(reduction="sum", dtype=dtype)

    def forward(self, logits: tf.Tensor, target: tf.Tensor, mu: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
        check_input("VAELoss", "mu", mu.shape, mu.dtype, expected_dtype=self.dtype, ndim=2)
        check_input("VAELoss", "logvar", logvar.shape, logvar.dtype, expected_dtype=self.dtype, ndim=2)
        if mu.shape != logvar.shape or mu.shape[0] != logits.shape[0]:
            raise ValueError(f"VAELoss: mu and logvar must both be (N, D) with N = logits.shape[0] = {logits.shape[0]}, "
                             f"got {tuple(mu.shape)} and {tuple(logvar.shape)}")
        n = logits.shape[0]
        reconstruction = self.reconstruction(logits, target)  # ()
        kl = -0.5 * tf.reduce_sum(1.0 + logvar - mu**2 - tf.exp(logvar))  # ()
        return (reconstruction + self.beta * kl) / n  # ()
