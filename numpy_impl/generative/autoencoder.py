r"""Day 31: the convolutional autoencoder, a small one for the 8×8 digits.

.. code-block:: text

    x (N, C, 8, 8) → conv1 3×3 s2 → ReLU → conv2 3×3 s2 → ReLU → flatten (N, C2·2·2) → fc_encode → code (N, D)
    code → fc_decode → ReLU → unflatten (N, C2, 2, 2) → deconv1 3×3 s2 → ReLU → deconv2 3×3 s2 → logits (N, C, 8, 8)

``forward(x)`` returns ``(logits, code)``: the pixel logits to train on and the code, the
bottleneck a user of the model wants to look at (or to regularize). Training minimizes the
reconstruction error as a binary cross-entropy of the pixel intensities given the logits (the
day-8 ``BCEWithLogitsLoss``, ``x`` as its own target):

.. math::  \mathcal L = \frac{1}{N C H W}\sum_{n,p}\Big[(1 - x_{np})\,\ell_{np} + \log\big(1 + e^{-\ell_{np}}\big)\Big],
           \qquad \frac{\partial\mathcal L}{\partial\ell_{np}} = \frac{\sigma(\ell_{np}) - x_{np}}{N C H W}.

The backward is the chain of the layers' own backwards, decoder first; a cotangent of the code
(``grad_code``) adds to what the decoder sends back into it, before ``fc_encode``:
:math:`\partial L/\partial c = \text{decoder}^\top(G_\ell) + G_c`.

The encoder and decoder stacks are :class:`ConvStacks`, shared with the day-32 VAE, which puts
its ``fc_mu``/``fc_logvar`` heads and the reparameterization where this model has ``fc_encode``.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_input
from ml100.configs import AutoencoderConfig, check_config

from ..foundations.activations import ReLU
from ..foundations.cnn import Flatten
from ..foundations.conv import Conv2d
from ..foundations.linear import Linear
from ..module import Module
from .conv_transpose import ConvTranspose2d


class Unflatten(Module):
    """``(N, C*H*W) -> (N, C, H, W)``, the inverse of :class:`Flatten` (channel, row, column order)."""

    def __init__(self, channels: int, size: int, dtype="float32"):
        super().__init__(dtype)
        self.channels, self.size = channels, size

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("Unflatten", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=2)
        return x.reshape(x.shape[0], self.channels, self.size, self.size)  # (N, C, H, W)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        n, c, h, w = grad_out.shape
        # Sizes spelled out: with an empty batch a -1 would be ambiguous.
        return grad_out.reshape(n, c * h * w)  # (N, C*H*W)


class ConvStacks(Module):
    """The stride-2 convolutional encoder and the transposed-convolution decoder that the
    autoencoder and the VAE share, sized by a config with ``in_channels``, ``channels`` (two),
    ``latent_dim`` and ``image_size``; a model adds its code heads between the two."""

    def add_encoder(self, config, rng: np.random.Generator) -> int:
        """Create ``conv1 … flatten``; returns the width of the flattened features."""
        c1, c2 = config.channels
        self.conv1 = Conv2d(config.in_channels, c1, 3, stride=2, padding=1, dtype=self.dtype, rng=rng)
        self.relu1 = ReLU(dtype=self.dtype)
        self.conv2 = Conv2d(c1, c2, 3, stride=2, padding=1, dtype=self.dtype, rng=rng)
        self.relu2 = ReLU(dtype=self.dtype)
        self.flatten = Flatten(dtype=self.dtype)
        side = config.image_size // 4
        return c2 * side * side

    def add_decoder(self, config, rng: np.random.Generator) -> None:
        """Create ``fc_decode … deconv2``, from a code of ``latent_dim`` to the pixel logits."""
        c1, c2 = config.channels
        side = config.image_size // 4
        self.fc_decode = Linear(config.latent_dim, c2 * side * side, dtype=self.dtype, rng=rng)
        self.relu3 = ReLU(dtype=self.dtype)
        self.unflatten = Unflatten(c2, side, dtype=self.dtype)
        # output_padding 1: of the two sizes a stride-2 convolution maps to `side`, the even one.
        self.deconv1 = ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1, dtype=self.dtype, rng=rng)
        self.relu4 = ReLU(dtype=self.dtype)
        self.deconv2 = ConvTranspose2d(c1, config.in_channels, 3, stride=2, padding=1, output_padding=1,
                                       dtype=self.dtype, rng=rng)

    def encoder(self) -> list[Module]:
        """The stages from the image to the flattened features the code heads read."""
        return [self.conv1, self.relu1, self.conv2, self.relu2, self.flatten]

    def decoder(self) -> list[Module]:
        """The stages from a code to the pixel logits."""
        return [self.fc_decode, self.relu3, self.unflatten, self.deconv1, self.relu4, self.deconv2]

    def decode(self, code: np.ndarray) -> np.ndarray:
        """Pixel logits ``(N, C, H, W)`` from codes ``(N, latent_dim)``: the decoder alone, as sampling uses it."""
        logits = code
        for module in self.decoder():
            logits = module(logits)  # ends (N, C, H, W)
        return logits


class Autoencoder(ConvStacks):
    """Convolutional encoder to a code of ``latent_dim``, transposed-convolution decoder back to
    pixel logits; sized by a :class:`ml100.configs.AutoencoderConfig`. ``forward(x) -> (logits, code)``."""

    def __init__(self, config: AutoencoderConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("Autoencoder", config, AutoencoderConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        features = self.add_encoder(config, rng)
        self.fc_encode = Linear(features, config.latent_dim, dtype=dtype, rng=rng)
        self.add_decoder(config, rng)

    def forward(self, x: np.ndarray):
        h = x
        for module in self.encoder():
            h = module(h)  # ends (N, C2*side*side)
        code = self.fc_encode(h)  # (N, D)
        logits = self.decode(code)  # (N, C, H, W)
        self.save_for_backward(logits.shape)
        return logits, code

    def backward(self, grad_logits=None, grad_code=None):
        logits_shape = self.saved_for_backward()
        # None means a zero cotangent; the decoder's caches are popped either way.
        grad = np.zeros(logits_shape, self.dtype) if grad_logits is None else grad_logits  # (N, C, H, W)
        for module in reversed(self.decoder()):
            grad = module.backward(grad)  # ends (N, D)
        if grad_code is not None:
            grad = grad + grad_code  # (N, D): the code's two uses, the decoder and the caller's
        grad = self.fc_encode.backward(grad)  # (N, C2*side*side)
        for module in reversed(self.encoder()):
            grad = module.backward(grad)  # ends (N, C, H, W)
        return grad
