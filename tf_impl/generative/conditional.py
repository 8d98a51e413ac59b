r"""Day 36: class-conditional generative models — the conditional VAE (Sohn et al., "Learning
Structured Output Representation using Deep Conditional Generative Models", 2015) and the
conditional GAN (Mirza & Osindero, "Conditional Generative Adversarial Nets", 2014) with a
projection discriminator (Miyato & Koyama, "cGANs with Projection Discriminator", 2018).

**Conditional VAE.** Day 32's VAE, with the class :math:`y` as a one-hot row :math:`e_y \in \{0,1\}^K`
concatenated to the encoder's flattened features (before ``fc_mu``/``fc_logvar``) and to the
latent code (before ``fc_decode``):

.. code-block:: text

    x (N, 8, 8, C) → conv1 → ReLU → conv2 → ReLU → flatten h (N, F);  [h, e_y] (N, F+K) → fc_mu, fc_logvar
    z = mu + exp(½ logvar) ⊙ eps;   [z, e_y] (N, D+K) → fc_decode → ReLU → unflatten → deconv1 → ReLU → deconv2

so :math:`q(z \mid x, y)` and :math:`p(x \mid z, y)`, with the prior :math:`p(z \mid y) = \mathcal N(0, I)`:
the loss is day 32's negative ELBO (``VAELoss``) unchanged. A concatenated one-hot times a weight
matrix is a per-class bias, :math:`W[h, e_y] = W_h h + W_{:,F+y}`; its backward splits the input
gradient at column :math:`F` (resp. :math:`D`) and drops the label part — integers get no gradient.

**Conditional GAN.** Day 33's MLP players (``gan.py``), conditioned. The generator reads
:math:`[z, E_G[y]]` (a learned class embedding :math:`E_G \in \mathbb R^{K\times K}`, the classic
``nn.Embedding(K, K)`` conditioning) and maps it through day 33's ``Linear → LeakyReLU(0.2)`` stack
to ``tanh`` images in :math:`[-1, 1]`; its backward splits the input gradient at column :math:`D`,
the last :math:`K` columns scatter-added into :math:`E_G`'s rows. The discriminator is a projection
discriminator: :math:`\phi(x) \in \mathbb R^H` the day-33 discriminator's hidden features (every
``Linear`` followed by ``LeakyReLU(0.2)``, :math:`H` = ``hidden_sizes[0]``),

.. math::  D(x, y) = w_2^\top \phi(x) + b_2 + E_D[y]^\top \phi(x),

the inner product with the class embedding :math:`E_D \in \mathbb R^{K\times H}` being the log
density ratio term of a class-conditional model (a concatenated label could be ignored by the
network; the projection cannot). Backward of the projection:
:math:`\partial D/\partial\phi = w_2 + E_D[y]`, :math:`\partial D/\partial E_D[y] = \phi(x)` (scatter-added
into the embedding's rows by :class:`Embedding`).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_class_labels, check_input
from ml100.configs import CGANConfig, CVAEConfig, check_config

from ..foundations.activations import LeakyReLU, ReLU, Tanh
from ..foundations.cnn import Flatten
from ..foundations.conv import Conv2d
from ..foundations.linear import Linear
from ..module import Module, Sequential, tf_dtype
from .conv_transpose import ConvTranspose2d
from .embedding import Embedding
from .gan import NEGATIVE_SLOPE, mlp_layers
from .vae import Unflatten


def one_hot(labels: tf.Tensor, num_classes: int, dtype: str) -> tf.Tensor:
    """``e_y``: row ``y`` of the identity, one per label ``(N,) -> (N, K)``."""
    return tf.one_hot(labels, num_classes, dtype=tf_dtype(dtype))  # (N, K)


class ConditionalVAE(Module):
    """Day 32's convolutional VAE with the one-hot class concatenated to the encoder's features and
    to ``z``; sized by a :class:`ml100.configs.CVAEConfig`. ``forward(x, labels, eps)``."""

    def __init__(self, config: CVAEConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("ConditionalVAE", config, CVAEConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        c1, c2 = config.channels
        side = config.image_size // 4
        k = config.num_classes
        self.conv1 = Conv2d(config.in_channels, c1, 3, stride=2, padding=1, dtype=dtype, rng=rng)
        self.relu1 = ReLU(dtype=dtype)
        self.conv2 = Conv2d(c1, c2, 3, stride=2, padding=1, dtype=dtype, rng=rng)
        self.relu2 = ReLU(dtype=dtype)
        self.flatten = Flatten(dtype=dtype)
        self.fc_mu = Linear(c2 * side * side + k, config.latent_dim, dtype=dtype, rng=rng)
        self.fc_logvar = Linear(c2 * side * side + k, config.latent_dim, dtype=dtype, rng=rng)
        self.fc_decode = Linear(config.latent_dim + k, c2 * side * side, dtype=dtype, rng=rng)
        self.relu3 = ReLU(dtype=dtype)
        self.unflatten = Unflatten(c2, side, dtype=dtype)
        # output_padding 1: of the two sizes a stride-2 convolution maps to `side`, the even one.
        self.deconv1 = ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1, dtype=dtype, rng=rng)
        self.relu4 = ReLU(dtype=dtype)
        self.deconv2 = ConvTranspose2d(c1, config.in_channels, 3, stride=2, padding=1, output_padding=1, dtype=dtype, rng=rng)

    def encoder(self) -> list[Module]:
        """The stages from the image to the features the class joins before ``fc_mu`` and ``fc_logvar``."""
        return [self.conv1, self.relu1, self.conv2, self.relu2, self.flatten]

    def decoder(self) -> list[Module]:
        """The stages from ``[z, e_y]`` to the pixel logits."""
        return [self.fc_decode, self.relu3, self.unflatten, self.deconv1, self.relu4, self.deconv2]

    def encode(self, x: tf.Tensor, labels: tf.Tensor):
        """``q(z | x, y)``: ``(mu, logvar)``, each ``(N, latent_dim)``."""
        # Values are known in eager calls only: traced, a bad label gets tf.one_hot's zero row (the
        # VAE) or CPU tf.gather's own error (the embeddings); dtype and shape are checked either way.
        check_class_labels("ConditionalVAE", labels, self.config.num_classes, x.shape[0],
                           check_values=tf.executing_eagerly())
        h = x
        for module in self.encoder():
            h = module(h)  # ends (N, F)
        hy = tf.concat([h, one_hot(labels, self.config.num_classes, self.dtype)], axis=1)  # (N, F+K)
        return self.fc_mu(hy), self.fc_logvar(hy)  # (N, D), (N, D)

    def decode(self, z: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """``p(x | z, y)``: pixel logits ``(N, H, W, C)`` of class ``labels`` from codes ``z`` ``(N, latent_dim)``."""
        check_input("ConditionalVAE", "z", z.shape, z.dtype, expected_dtype=self.dtype, ndim=2,
                    last_dim=self.config.latent_dim)
        check_class_labels("ConditionalVAE", labels, self.config.num_classes, z.shape[0],
                           check_values=tf.executing_eagerly())
        logits = tf.concat([z, one_hot(labels, self.config.num_classes, self.dtype)], axis=1)  # (N, D+K)
        for module in self.decoder():
            logits = module(logits)  # ends (N, H, W, C)
        return logits

    def forward(self, x: tf.Tensor, labels: tf.Tensor, eps: tf.Tensor):
        check_input("ConditionalVAE", "eps", eps.shape, eps.dtype, expected_dtype=self.dtype, ndim=2)
        if tuple(eps.shape) != (x.shape[0], self.config.latent_dim):
            raise ValueError(f"ConditionalVAE: eps must have shape (N, latent_dim) = ({x.shape[0]}, "
                             f"{self.config.latent_dim}), got {tuple(eps.shape)}")
        mu, logvar = self.encode(x, labels)  # (N, D), (N, D)
        std = tf.exp(0.5 * logvar)  # (N, D)
        z = mu + std * eps  # (N, D)
        return self.decode(z, labels), mu, logvar

class ConditionalGenerator(Module):
    """``(z (N, latent_dim), labels (N,)) -> images (N, H, W, C)`` in ``[-1, 1]``: day 33's generator
    reading ``[z, label_embedding[labels]]``; sized by a :class:`ml100.configs.CGANConfig`."""

    def __init__(self, config: CGANConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("ConditionalGenerator", config, CGANConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        k = config.num_classes
        pixels = config.in_channels * config.image_size * config.image_size
        self.label_embedding = Embedding(k, k, dtype=dtype, rng=rng)
        layers = mlp_layers([config.latent_dim + k, *config.hidden_sizes, pixels], dtype, rng)
        self.net = Sequential([*layers, Tanh(dtype=dtype), Unflatten(config.in_channels, config.image_size, dtype=dtype)])

    def forward(self, z: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        check_input("ConditionalGenerator", "z", z.shape, z.dtype, expected_dtype=self.dtype, ndim=2,
                    last_dim=self.config.latent_dim)
        check_class_labels("ConditionalGenerator", labels, self.config.num_classes, z.shape[0],
                           check_values=tf.executing_eagerly())
        zy = tf.concat([z, self.label_embedding(labels)], axis=1)  # (N, D+K)
        return self.net(zy)  # (N, H, W, C)

class ConditionalDiscriminator(Module):
    """``(images (N, H, W, C), labels (N,)) -> logits (N, 1)``: a projection discriminator, ``head(phi)
    + <label_embedding[labels], phi>`` on day 33's hidden features ``phi``; sized by a :class:`CGANConfig`."""

    def __init__(self, config: CGANConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("ConditionalDiscriminator", config, CGANConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        pixels = config.in_channels * config.image_size * config.image_size
        width = config.hidden_sizes[0]
        layers = mlp_layers([pixels, *reversed(config.hidden_sizes)], dtype, rng)
        # The last hidden Linear gets its LeakyReLU too: phi is a feature, not a logit.
        self.features = Sequential([Flatten(dtype=dtype), *layers, LeakyReLU(NEGATIVE_SLOPE, dtype=dtype)])
        self.head = Linear(width, 1, dtype=dtype, rng=rng)
        self.label_embedding = Embedding(config.num_classes, width, dtype=dtype, rng=rng)

    def forward(self, x: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        check_class_labels("ConditionalDiscriminator", labels, self.config.num_classes, x.shape[0],
                           check_values=tf.executing_eagerly())
        phi = self.features(x)  # (N, H)
        embedded = self.label_embedding(labels)  # (N, H)
        return self.head(phi) + tf.reduce_sum(embedded * phi, axis=1, keepdims=True)  # (N, 1)
