r"""Day 17: a LeNet-style convolutional network for the 8×8 digits.

LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document Recognition" (1998):
convolutions share one small filter across the image (translation equivariance, few parameters),
pooling buys a little translation invariance and halves the resolution, and a small MLP classifies
the resulting features.

.. code-block:: text

    x (N, 8, 8, 1) → conv1 3×3 → [bn1] → ReLU → max-pool 2 → (N, 4, 4, C1)
                   → conv2 3×3 → [bn2] → ReLU → max-pool 2 → (N, 2, 2, C2)
                   → flatten (N, 4·C2) → fc1 → ReLU → fc2 → logits (N, 10)

Parameters: :math:`9(C_\text{in} C_1 + C_1 C_2)` in the convolutions against
:math:`64 \cdot H` for a first dense layer on raw pixels — the convolution's weight sharing.

Flatten order is the canonical NCHW one (channel, row, column), so ``fc1.weight`` means the same
in every tree; the TF tree, which is NHWC, transposes to NCHW before flattening.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_input
from ml100.configs import CNNConfig, check_config

from ..module import Module
from .activations import ReLU
from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .linear import Linear
from .pooling import MaxPool2d


class Flatten(Module):
    """``(N, H, W, C) -> (N, C*H*W)`` in channel, row, column order — the canonical NCHW order, not
    Keras' ``Flatten`` order (row, column, channel), so that ``fc1.weight`` is the same in every tree."""

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("Flatten", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        h, w, c = x.shape[1:]
        x = tf.transpose(x, (0, 3, 1, 2))  # (N, C, H, W)
        # Sizes spelled out: with an empty batch a -1 would be ambiguous.
        return tf.reshape(x, (tf.shape(x)[0], c * h * w))  # (N, C*H*W)


class CNN(Module):
    """Two conv blocks (conv, optional batch norm, ReLU, 2×2 max pool) and a two-layer classifier,
    sized by a :class:`ml100.configs.CNNConfig` (which has checked every size)."""

    def __init__(self, config: CNNConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("CNN", config, CNNConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        c1, c2 = config.channels
        batch_norm = config.batch_norm
        # Batch norm subtracts the per-channel mean, cancelling any bias before it (whose gradient
        # is then exactly 0): convolutions that feed batch norm have none.
        self.conv1 = Conv2d(config.in_channels, c1, 3, padding=1, bias=not batch_norm, dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(c1, dtype=dtype) if batch_norm else None
        self.relu1 = ReLU(dtype=dtype)
        self.pool1 = MaxPool2d(2, dtype=dtype)
        self.conv2 = Conv2d(c1, c2, 3, padding=1, bias=not batch_norm, dtype=dtype, rng=rng)
        self.bn2 = BatchNorm2d(c2, dtype=dtype) if batch_norm else None
        self.relu2 = ReLU(dtype=dtype)
        self.pool2 = MaxPool2d(2, dtype=dtype)
        self.flatten = Flatten(dtype=dtype)
        self.fc1 = Linear(c2 * (config.image_size // 4) ** 2, config.hidden, dtype=dtype, rng=rng)
        self.relu3 = ReLU(dtype=dtype)
        self.fc2 = Linear(config.hidden, config.num_classes, dtype=dtype, rng=rng)

    def stages(self) -> list[Module]:
        """The modules in the order forward applies them (batch norm only when asked for)."""
        stages = [self.conv1, self.bn1, self.relu1, self.pool1, self.conv2, self.bn2, self.relu2, self.pool2,
                  self.flatten, self.fc1, self.relu3, self.fc2]
        return [module for module in stages if module is not None]

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        for module in self.stages():
            x = module(x)  # ends (N, num_classes)
        return x

