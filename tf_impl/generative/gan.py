r"""Day 33: the generative adversarial network (Goodfellow et al., "Generative Adversarial Nets", 2014),
two small MLPs for the 8×8 digits, and the alternating training step that days 34 and 36 reuse.

.. code-block:: text

    Generator:     z (N, D) → [Linear → LeakyReLU(0.2)] per hidden size → Linear → tanh → unflatten (N, H, W, C)
    Discriminator: x (N, H, W, C) → flatten → [Linear → LeakyReLU(0.2)] per hidden size, reversed → Linear → logit (N, 1)

The game: :math:`\min_G \max_D\; \mathbb E_x[\log D(x)] + \mathbb E_z[\log(1 - D(G(z)))]`, with
:math:`D = \sigma(\text{logit})`. In logits, the discriminator minimizes

.. math::  L_D = \text{BCE}(\ell(x), 1) + \text{BCE}(\ell(G(z)), 0)
           = \tfrac1N\textstyle\sum_n \big[\text{softplus}(-\ell(x_n)) + \text{softplus}(\ell(G(z_n)))\big]

and the generator the **non-saturating** loss :math:`L_G = \text{BCE}(\ell(G(z)), 1) =
\tfrac1N\sum_n \text{softplus}(-\ell(G(z_n)))` instead of :math:`-L_D`'s fake term: both push
:math:`D(G(z))` up, but where the discriminator confidently rejects a sample (:math:`\ell \ll 0`),
:math:`\partial\,\text{softplus}(\ell)/\partial\ell = \sigma(\ell) \to 0` (the minimax loss saturates)
while :math:`\partial\,\text{softplus}(-\ell)/\partial\ell = -\sigma(-\ell) \to -1`.

Backward of a loss term, with the mean over the batch: :math:`\partial\,\text{BCE}(\ell, y)/\partial\ell_n
= (\sigma(\ell_n) - y)/N`. The generator's gradient is the discriminator's input gradient at
:math:`G(z)` chained through the generator: :math:`\partial L_G/\partial\theta_G =
(\partial G/\partial\theta_G)^\top\,\partial L_G/\partial x\big|_{x = G(z)}`.

One training round (:class:`GANStep`) is one discriminator update on real images and on
``G(z_d)`` (the generator's output taken as a constant), then one generator update on
``G(z_g)`` through the **updated** discriminator. The noise ``z_d``, ``z_g`` is an input, so every
tree sees the same numbers.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_bool, check_input
from ml100.configs import GANConfig, check_config

from ..foundations.activations import LeakyReLU, Tanh
from ..foundations.cnn import Flatten
from ..foundations.linear import Linear
from ..foundations.logistic_regression import BCEWithLogitsLoss
from ..module import Module, Sequential
from .vae import Unflatten

#: The slope of LeakyReLU for x < 0 in both players (Radford et al. 2016's choice, used since).
NEGATIVE_SLOPE = 0.2


def mlp_layers(sizes: list[int], dtype, rng: np.random.Generator) -> list[Module]:
    """``Linear → LeakyReLU`` between consecutive ``sizes``, the last ``Linear`` bare (its activation is the caller's)."""
    layers: list[Module] = []
    for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(size_in, size_out, dtype=dtype, rng=rng))
        if index < len(sizes) - 2:
            layers.append(LeakyReLU(NEGATIVE_SLOPE, dtype=dtype))
    return layers


class Generator(Module):
    """The MLP ``z (N, latent_dim) -> images (N, H, W, C)`` in ``[-1, 1]`` (tanh); sized by a :class:`GANConfig`."""

    def __init__(self, config: GANConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("Generator", config, GANConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        pixels = config.in_channels * config.image_size * config.image_size
        layers = mlp_layers([config.latent_dim, *config.hidden_sizes, pixels], dtype, rng)
        self.net = Sequential([*layers, Tanh(dtype=dtype), Unflatten(config.in_channels, config.image_size, dtype=dtype)])

    def forward(self, z: tf.Tensor) -> tf.Tensor:
        check_input("Generator", "z", z.shape, z.dtype, expected_dtype=self.dtype, ndim=2, last_dim=self.config.latent_dim)
        return self.net(z)  # (N, H, W, C)


class Discriminator(Module):
    """The MLP ``images (N, H, W, C) -> one logit per image (N, 1)``; sized by a :class:`GANConfig`."""

    def __init__(self, config: GANConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("Discriminator", config, GANConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        pixels = config.in_channels * config.image_size * config.image_size
        layers = mlp_layers([pixels, *reversed(config.hidden_sizes), 1], dtype, rng)
        self.net = Sequential([Flatten(dtype=dtype), *layers])

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        return self.net(x)  # (N, 1)


class GANLoss(Module):
    """``BCEWithLogits(logits, 1)`` if ``target_is_real`` else ``BCEWithLogits(logits, 0)``, averaged
    over every logit: ``softplus(-logits)`` or ``softplus(logits)``; backward ``(sigmoid(logits) - y) / N``."""

    def __init__(self, dtype="float32"):
        super().__init__(dtype)
        self.bce = BCEWithLogitsLoss(dtype=dtype)

    def forward(self, logits: tf.Tensor, target_is_real: bool) -> tf.Tensor:
        check_bool("GANLoss", "target_is_real", target_is_real)
        target = tf.fill(tf.shape(logits), tf.constant(1.0 if target_is_real else 0.0, logits.dtype))  # like logits
        return self.bce(logits, target)  # ()


class GANStep:
    """One round of the game: a discriminator update, then a generator update through the updated
    discriminator, with this tree's optimizers (``foundations/optim.py``) over each player's own
    parameters. ``gan_step(real, z_d, z_g, *condition) -> (d_loss, g_loss)``; ``condition`` (day 36's
    class labels) goes to both players after their first input. Both players are put in train mode.

    Each update takes the gradients of its own player's variables from a fresh tape (TF does not
    accumulate, so nothing from the generator step reaches the discriminator's next update); the
    discriminator step runs the generator outside the tape, so its output is a constant there.
    """

    def __init__(self, generator: Module, discriminator: Module, g_optimizer, d_optimizer):
        self.generator, self.discriminator = generator, discriminator
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.loss = GANLoss(dtype=generator.dtype)
        # Each update traced once into one graph (per input signature), as the day-11 Trainer does,
        # instead of dispatching ~30 µs eager ops one by one. No autograph: the Python control flow
        # here runs on static values only, and converting every layer's source costs seconds per trace.
        self.discriminator_graph = tf.function(self._discriminator_update, autograph=False)
        self.generator_graph = tf.function(self._generator_update, autograph=False)

    def __call__(self, real: tf.Tensor, z_d: tf.Tensor, z_g: tf.Tensor, *condition) -> tuple[float, float]:
        self.generator.train()
        self.discriminator.train()
        d_loss = self.discriminator_step(real, z_d, *condition)
        g_loss = self.generator_step(z_g, *condition)
        return d_loss, g_loss

    def discriminator_step(self, real: tf.Tensor, z: tf.Tensor, *condition) -> float:
        """Minimize ``BCE(D(real), 1) + BCE(D(G(z)), 0)`` over the discriminator's parameters."""
        return float(self.discriminator_graph(real, z, *condition))

    def generator_step(self, z: tf.Tensor, *condition) -> float:
        """Minimize the non-saturating ``BCE(D(G(z)), 1)`` over the generator's parameters."""
        return float(self.generator_graph(z, *condition))

    def _discriminator_update(self, real: tf.Tensor, z: tf.Tensor, *condition) -> tf.Tensor:
        params = dict(self.discriminator.named_parameters())
        # G(z) is a constant here: computed before the tape, it gets no gradient.
        fake = self.generator(z, *condition)  # (N, H, W, C)
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, *condition)  # (N, 1)
            fake_logits = self.discriminator(fake, *condition)  # (N, 1)
            loss = self.loss(real_logits, True) + self.loss(fake_logits, False)  # ()
        grads = tape.gradient(loss, list(params.values()))
        self.d_optimizer.step(dict(zip(params, grads)))
        return loss

    def _generator_update(self, z: tf.Tensor, *condition) -> tf.Tensor:
        params = dict(self.generator.named_parameters())
        with tf.GradientTape() as tape:
            fake = self.generator(z, *condition)  # (N, H, W, C)
            loss = self.loss(self.discriminator(fake, *condition), True)  # ()
        # Only the generator's variables are differentiated; the tape carries the gradient through D's input.
        grads = tape.gradient(loss, list(params.values()))
        self.g_optimizer.step(dict(zip(params, grads)))
        return loss
