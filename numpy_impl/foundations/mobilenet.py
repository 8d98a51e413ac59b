r"""Day 19: MobileNet blocks — depthwise-separable convolution and squeeze-and-excitation.

**Depthwise-separable convolution** (Howard et al., "MobileNets: Efficient Convolutional Neural
Networks for Mobile Vision Applications", 2017) factors a :math:`k\times k` convolution from
:math:`C_{in}` to :math:`C_{out}` channels into a *depthwise* :math:`k\times k` convolution that
filters each channel on its own (``groups = C_in``, canonical weight ``(C_in, 1, k, k)``) and a
*pointwise* :math:`1\times 1` convolution that mixes channels:

.. math::  z_c = w^{dw}_c \star x_c, \qquad y_o = \sum_c w^{pw}_{oc}\, z_c .

Each is followed by batch norm and ReLU (MobileNet v1). Weights and multiply-adds per output pixel:

.. math::  \underbrace{k^2 C_{in} C_{out}}_{\text{standard}} \quad\text{vs}\quad
           \underbrace{k^2 C_{in} + C_{in} C_{out}}_{\text{separable}}, \qquad
           \frac{k^2 C_{in} + C_{in} C_{out}}{k^2 C_{in} C_{out}} = \frac{1}{C_{out}} + \frac{1}{k^2},

so a 3×3 layer costs 8–9 times less once :math:`C_{out}` is large (FLOPs scale the same way, by
:math:`H_o W_o`).

**Squeeze-and-excitation** (Hu, Shen & Sun, "Squeeze-and-Excitation Networks", 2018) rescales
each channel by a gate computed from the whole image:

.. math::  s = \sigma\big(W_2\,\mathrm{ReLU}(W_1 \bar x + b_1) + b_2\big), \quad
           \bar x_c = \tfrac{1}{HW}\textstyle\sum_{h,w} x_{chw}, \qquad y_{chw} = s_c\, x_{chw}.

Attribute names are torchvision's ``SqueezeExcitation`` (``fc1``, ``fc2`` as 1×1 convolutions with
bias), so its state dict loads unchanged. Since :math:`s` depends on :math:`x` through the pool,
:math:`\partial L/\partial x` is the sum of two paths: the direct one :math:`g\,s` and the one
through the gate, :math:`\partial L/\partial s_c = \sum_{h,w} g_{chw}\, x_{chw}` carried back
through ``fc2``, ``fc1`` and the pool. Layout NCHW.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_input
from ml100.configs import MobileNetConfig, check_config

from ..module import Module, Sequential
from .activations import ReLU, Sigmoid
from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .linear import Linear
from .pooling import GlobalAvgPool2d


def standard_conv_parameters(kernel_size: int, in_channels: int, out_channels: int) -> int:
    """Weights of a bias-free ``k x k`` convolution: :math:`k^2 C_{in} C_{out}`."""
    return kernel_size * kernel_size * in_channels * out_channels


def separable_conv_parameters(kernel_size: int, in_channels: int, out_channels: int) -> int:
    """Weights of a bias-free depthwise ``k x k`` + pointwise ``1 x 1`` pair: :math:`k^2 C_{in} + C_{in} C_{out}`."""
    return kernel_size * kernel_size * in_channels + in_channels * out_channels


def count_parameters(model: Module) -> int:
    """Trainable scalars: every canonical tensor except the buffers (BN running statistics)."""
    buffers = {name for name, _ in model.named_buffers()}
    return sum(int(np.prod(value.shape)) for name, value in model.canonical_state_dict().items() if name not in buffers)


class DepthwiseSeparableConv(Module):
    """Depthwise 3×3 conv (stride ``stride``) → BN → ReLU → pointwise 1×1 conv → BN → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        # groups = C_in: each input channel gets its own 3×3 filter, weight (C_in, 1, 3, 3).
        self.depthwise = Conv2d(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels, bias=False,
                                dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(in_channels, dtype=dtype)
        self.relu1 = ReLU(dtype=dtype)
        self.pointwise = Conv2d(in_channels, out_channels, 1, bias=False, dtype=dtype, rng=rng)
        self.bn2 = BatchNorm2d(out_channels, dtype=dtype)
        self.relu2 = ReLU(dtype=dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = self.relu1(self.bn1(self.depthwise(x)))  # (N, C_in, Ho, Wo)
        return self.relu2(self.bn2(self.pointwise(out)))  # (N, C_out, Ho, Wo)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        g = self.relu2.backward(grad_out)  # (N, C_out, Ho, Wo)
        g = self.bn2.backward(g)  # (N, C_out, Ho, Wo)
        g = self.pointwise.backward(g)  # (N, C_in, Ho, Wo)
        g = self.relu1.backward(g)  # (N, C_in, Ho, Wo)
        g = self.bn1.backward(g)  # (N, C_in, Ho, Wo)
        return self.depthwise.backward(g)  # (N, C_in, H, W)


class SqueezeExcitation(Module):
    """``x * sigmoid(fc2(relu(fc1(avgpool(x)))))`` with torchvision's names; ``fc1``/``fc2`` are 1×1 convs."""

    def __init__(self, channels: int, squeeze_channels: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.channels = channels
        self.avgpool = GlobalAvgPool2d(dtype=dtype)
        self.fc1 = Conv2d(channels, squeeze_channels, 1, dtype=dtype, rng=rng)
        self.fc2 = Conv2d(squeeze_channels, channels, 1, dtype=dtype, rng=rng)
        self.activation = ReLU(dtype=dtype)
        self.scale_activation = Sigmoid(dtype=dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("SqueezeExcitation", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=4)
        if x.shape[1] != self.channels:
            raise ValueError(f"SqueezeExcitation: x must have {self.channels} channels (N, C, H, W), got shape {x.shape}")
        n, c = x.shape[:2]
        # The pooled vector as a 1×1 image, so fc1/fc2 are convolutions as in torchvision.
        pooled = self.avgpool(x).reshape(n, c, 1, 1)  # (N, C, 1, 1)
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(pooled))))  # (N, C, 1, 1)
        self.save_for_backward(x, scale)
        return x * scale  # (N, C, H, W)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x, scale = self.saved_for_backward()  # (N, C, H, W), (N, C, 1, 1)
        n, c = grad_out.shape[:2]
        # Path 1: x scaled by a constant gate.
        grad_direct = grad_out * scale  # (N, C, H, W)
        # Path 2: the gate's own gradient, summed over the pixels it multiplied.
        grad_scale = np.sum(grad_out * x, axis=(2, 3), keepdims=True)  # (N, C, 1, 1)
        g = self.scale_activation.backward(grad_scale)  # (N, C, 1, 1)
        g = self.fc2.backward(g)  # (N, C_sq, 1, 1)
        g = self.activation.backward(g)  # (N, C_sq, 1, 1)
        grad_pooled = self.fc1.backward(g)  # (N, C, 1, 1)
        grad_gate = self.avgpool.backward(grad_pooled.reshape(n, c))  # (N, C, H, W)
        return grad_direct + grad_gate  # (N, C, H, W)


class MobileNet(Module):
    """A small MobileNet v1-style classifier for 8×8 digits.

    Sized by a :class:`ml100.configs.MobileNetConfig`: stem 3×3 conv (``stem_channels``, stride 1,
    no bias) → BN → ReLU, then one :class:`DepthwiseSeparableConv` per entry of
    ``channels``/``strides`` (in ``blocks``), an optional :class:`SqueezeExcitation` on the last width
    (``squeeze_channels = max(1, C // se_reduction)``; ``se_reduction=None`` leaves it out), global
    average pool and ``fc``.

    Why separable: a block from :math:`C_{in}` to :math:`C_{out}` has :math:`9C_{in} + C_{in}C_{out}`
    conv weights against :math:`9C_{in}C_{out}` for a standard 3×3 conv, a ratio of
    :math:`1/C_{out} + 1/9`; multiply-adds shrink by the same ratio (each weight is used once per
    output pixel). See :func:`standard_conv_parameters`, :func:`separable_conv_parameters`.
    """

    def __init__(self, config: MobileNetConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("MobileNet", config, MobileNetConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        stem_channels, se_reduction = config.stem_channels, config.se_reduction
        self.conv1 = Conv2d(config.in_channels, stem_channels, 3, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(stem_channels, dtype=dtype)
        self.relu = ReLU(dtype=dtype)
        widths = [stem_channels, *config.channels]
        self.blocks = Sequential([DepthwiseSeparableConv(c_in, c_out, stride, dtype=dtype, rng=rng)
                                  for c_in, c_out, stride in zip(widths, widths[1:], config.strides)])
        self.se = None if se_reduction is None else SqueezeExcitation(widths[-1], max(1, widths[-1] // se_reduction),
                                                                      dtype=dtype, rng=rng)
        self.avgpool = GlobalAvgPool2d(dtype=dtype)
        self.fc = Linear(widths[-1], config.num_classes, dtype=dtype, rng=rng)

    def stages(self) -> list[Module]:
        """The modules in the order forward applies them (the SE block only when present)."""
        return [self.conv1, self.bn1, self.relu, self.blocks, *([] if self.se is None else [self.se]), self.avgpool, self.fc]

    def forward(self, x: np.ndarray) -> np.ndarray:
        for module in self.stages():
            x = module(x)  # ends (N, num_classes)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        for module in reversed(self.stages()):
            grad_out = module.backward(grad_out)
        return grad_out  # (N, C_in, H, W)
