r"""Day 34: the deep convolutional GAN (Radford, Metz & Chintala, "Unsupervised Representation
Learning with Deep Convolutional Generative Adversarial Networks", 2016), sized for the 8×8 digits.

.. code-block:: text

    Generator:     z (N, D) → Linear → unflatten (N, C0, s, s) → BN → ReLU
                   → ConvTranspose 4×4 s2 p1 → (N, C1, 2s, 2s) → BN → ReLU
                   → ConvTranspose 4×4 s2 p1 → (N, C, 4s, 4s) → tanh                      (s = image_size / 4)
    Discriminator: x (N, C, 4s, 4s) → Conv 4×4 s2 p1 → (N, C1, 2s, 2s) → LeakyReLU(0.2)
                   → Conv 4×4 s2 p1 → (N, C0, s, s) → BN → LeakyReLU(0.2) → flatten → Linear → logit (N, 1)

The paper's rules: strided (transposed) convolutions instead of pooling, batch norm in both
players except the generator's output and the discriminator's input layer, ReLU in the generator
and LeakyReLU in the discriminator, tanh output. A layer followed by batch norm has no bias (the
norm's shift :math:`\beta` replaces it). A 4×4 kernel with stride 2 and padding 1 maps a side
:math:`h` to :math:`(h + 2 - 4)/2 + 1 = h/2` and, transposed, :math:`2(h - 1) - 2 + 4 = 2h`.

The losses and the alternating step are day 33's (:class:`~.gan.GANStep` works unchanged). With
batch norm in train mode, each player's forward normalizes with its batch's statistics and moves
its running estimates: the discriminator sees the real and the fake batch in two separate
forwards (so it never normalizes a mix), and its running statistics move twice per update.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_input
from ml100.configs import DCGANConfig, check_config

from ..foundations.activations import LeakyReLU, ReLU, Tanh
from ..foundations.batchnorm import BatchNorm2d
from ..foundations.cnn import Flatten
from ..foundations.conv import Conv2d
from ..foundations.linear import Linear
from ..module import Module, Sequential
from .conv_transpose import ConvTranspose2d
from .gan import NEGATIVE_SLOPE
from .vae import Unflatten


class DCGANGenerator(Module):
    """``z (N, latent_dim) -> images (N, C, H, W)`` in ``[-1, 1]`` by two stride-2 transposed
    convolutions; sized by a :class:`DCGANConfig`."""

    def __init__(self, config: DCGANConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("DCGANGenerator", config, DCGANConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        c0, c1 = config.channels
        side = config.image_size // 4
        self.net = Sequential([
            Linear(config.latent_dim, c0 * side * side, bias=False, dtype=dtype, rng=rng),
            Unflatten(c0, side, dtype=dtype),
            BatchNorm2d(c0, dtype=dtype),
            ReLU(dtype=dtype),
            ConvTranspose2d(c0, c1, 4, stride=2, padding=1, bias=False, dtype=dtype, rng=rng),
            BatchNorm2d(c1, dtype=dtype),
            ReLU(dtype=dtype),
            ConvTranspose2d(c1, config.in_channels, 4, stride=2, padding=1, dtype=dtype, rng=rng),
            Tanh(dtype=dtype),
        ])

    def forward(self, z: np.ndarray) -> np.ndarray:
        check_input("DCGANGenerator", "z", z.shape, z.dtype, expected_dtype=self.dtype, ndim=2, last_dim=self.config.latent_dim)
        return self.net(z)  # (N, C, H, W)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return self.net.backward(grad_out)  # (N, D)


class DCGANDiscriminator(Module):
    """``images (N, C, H, W) -> one logit per image (N, 1)`` by two stride-2 convolutions; sized by a :class:`DCGANConfig`."""

    def __init__(self, config: DCGANConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("DCGANDiscriminator", config, DCGANConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        c0, c1 = config.channels
        side = config.image_size // 4
        self.net = Sequential([
            Conv2d(config.in_channels, c1, 4, stride=2, padding=1, dtype=dtype, rng=rng),
            LeakyReLU(NEGATIVE_SLOPE, dtype=dtype),
            Conv2d(c1, c0, 4, stride=2, padding=1, bias=False, dtype=dtype, rng=rng),
            BatchNorm2d(c0, dtype=dtype),
            LeakyReLU(NEGATIVE_SLOPE, dtype=dtype),
            Flatten(dtype=dtype),
            Linear(c0 * side * side, 1, dtype=dtype, rng=rng),
        ])

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.net(x)  # (N, 1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return self.net.backward(grad_out)  # (N, C, H, W)
