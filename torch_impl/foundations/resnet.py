r"""Day 18: residual networks — basic and bottleneck blocks, ResNet-18/50 and a mini-ResNet.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition" (2015). A block learns a
*residual* :math:`F(x)` and adds its input back:

.. math::  y = \mathrm{ReLU}\big(F(x) + S(x)\big),

with :math:`S` the identity, or a 1×1 convolution + batch norm (the *downsample*) when the block
changes the resolution or the width. The gradient of the sum reaches :math:`x` along both paths,

.. math::  \frac{\partial L}{\partial x} = \frac{\partial L}{\partial F}\frac{\partial F}{\partial x} + \frac{\partial L}{\partial S}\frac{\partial S}{\partial x},

so even when :math:`\partial F/\partial x` is tiny the identity path carries the gradient through —
why a 152-layer ResNet trains where a plain 34-layer network degrades.

* **BasicBlock** (ResNet-18/34): 3×3 conv → BN → ReLU → 3×3 conv → BN, + skip, ReLU.
* **Bottleneck** (ResNet-50+, "v1.5" as in torchvision: the stride sits on the 3×3): 1×1 conv
  reduces to ``width`` → 3×3 conv → 1×1 conv expands ×4; each followed by BN.

The attribute names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``, …), so a ``torchvision.models.resnet18()`` state dict loads
unchanged. Layout NCHW; autograd adds the two paths' gradients where the skip rejoins.
"""
from __future__ import annotations

import numpy as np
import torch

from ml100.configs import ResNetConfig, check_config

from ..module import Module, Sequential
from .activations import ReLU
from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .linear import Linear
from .pooling import GlobalAvgPool2d, MaxPool2d


def downsample(in_channels: int, out_channels: int, stride: int, dtype, rng) -> Sequential | None:
    """The projection skip: a strided 1×1 conv and BN, or ``None`` when the identity fits."""
    if stride == 1 and in_channels == out_channels:
        return None
    return Sequential([Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, dtype=dtype, rng=rng),
                       BatchNorm2d(out_channels, dtype=dtype)])


class BasicBlock(Module):
    """Two 3×3 convolutions with a skip connection; output channels = ``channels``."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.conv1 = Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(channels, dtype=dtype)
        # One ReLU module used after every stage, as torchvision's (it has no state to keep apart).
        self.relu = ReLU(dtype=dtype)
        self.conv2 = Conv2d(channels, channels, 3, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn2 = BatchNorm2d(channels, dtype=dtype)
        self.downsample = downsample(in_channels, channels, stride, dtype, rng)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (N, C, Ho, Wo)
        out = self.relu(self.bn1(self.conv1(x)))  # (N, C, Ho, Wo)
        out = self.bn2(self.conv2(out))  # (N, C, Ho, Wo)
        return self.relu(out + identity)  # (N, C, Ho, Wo)


class Bottleneck(Module):
    """1×1 reduce → 3×3 (strided) → 1×1 expand ×4, with a skip connection."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        out_channels = channels * self.expansion
        self.conv1 = Conv2d(in_channels, channels, 1, bias=False, dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(channels, dtype=dtype)
        # One ReLU module used after every stage, as torchvision's (it has no state to keep apart).
        self.relu = ReLU(dtype=dtype)
        self.conv2 = Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn2 = BatchNorm2d(channels, dtype=dtype)
        self.conv3 = Conv2d(channels, out_channels, 1, bias=False, dtype=dtype, rng=rng)
        self.bn3 = BatchNorm2d(out_channels, dtype=dtype)
        self.downsample = downsample(in_channels, out_channels, stride, dtype, rng)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (N, 4C, Ho, Wo)
        out = self.relu(self.bn1(self.conv1(x)))  # (N, C, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (N, C, Ho, Wo)
        out = self.bn3(self.conv3(out))  # (N, 4C, Ho, Wo)
        return self.relu(out + identity)  # (N, 4C, Ho, Wo)


#: The config's block names (``ml100.configs.RESNET_BLOCKS``, which checks them) -> block classes.
BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(Module):
    """Stem (7×7/2 conv, BN, ReLU, 3×3/2 max pool), four stages of blocks, global average pool, ``fc``.

    A :class:`ml100.configs.ResNetConfig` gives the block, the number of blocks per stage
    (``layers``) and the sizes; stage widths are ``base_channels`` × 1, 2, 4, 8 (64 in torchvision).
    ``small_input=True`` swaps the stem for a 3×3/1 conv without max pool, which suits 8×8 digits.
    """

    def __init__(self, config: ResNetConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("ResNet", config, ResNetConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        block_class = BLOCKS[config.block]
        base_channels = config.base_channels
        stem_kernel, stem_stride, stem_padding = (3, 1, 1) if config.small_input else (7, 2, 3)
        self.conv1 = Conv2d(config.in_channels, base_channels, stem_kernel, stride=stem_stride, padding=stem_padding,
                            bias=False, dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(base_channels, dtype=dtype)
        self.relu = ReLU(dtype=dtype)
        self.maxpool = MaxPool2d(3, stride=2, padding=1, dtype=dtype)
        channels = base_channels
        for stage, blocks in enumerate(config.layers):
            width = base_channels * 2**stage
            stride = 1 if stage == 0 else 2
            stage_blocks = []
            for index in range(blocks):
                stage_blocks.append(block_class(channels, width, stride if index == 0 else 1, dtype=dtype, rng=rng))
                channels = width * block_class.expansion
            setattr(self, f"layer{stage + 1}", Sequential(stage_blocks))
        self.avgpool = GlobalAvgPool2d(dtype=dtype)
        self.fc = Linear(channels, config.num_classes, dtype=dtype, rng=rng)

    def stages(self) -> list[Module]:
        """The modules in the order forward applies them (the max pool only with the large stem)."""
        stem = [self.conv1, self.bn1, self.relu] + ([] if self.config.small_input else [self.maxpool])
        return [*stem, self.layer1, self.layer2, self.layer3, self.layer4, self.avgpool, self.fc]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.stages():
            x = module(x)  # ends (N, num_classes)
        return x


def resnet18(num_classes: int = 1000, dtype="float32", rng: np.random.Generator | None = None) -> ResNet:
    """torchvision's ResNet-18: basic blocks, (2, 2, 2, 2)."""
    return ResNet(ResNetConfig.resnet18(num_classes=num_classes), dtype=dtype, rng=rng)


def resnet50(num_classes: int = 1000, dtype="float32", rng: np.random.Generator | None = None) -> ResNet:
    """torchvision's ResNet-50: bottleneck blocks, (3, 4, 6, 3)."""
    return ResNet(ResNetConfig.resnet50(num_classes=num_classes), dtype=dtype, rng=rng)
