r"""Day 6: the dense (fully connected) layer.

.. math::  y = x W^\top + b, \qquad W \in \mathbb{R}^{\text{out}\times\text{in}},\; b \in \mathbb{R}^{\text{out}}

Autograd derives what the NumPy tree writes by hand: :math:`\partial L/\partial W = G^\top x`,
:math:`\partial L/\partial b = \sum G`, :math:`\partial L/\partial x = G W`.

The default initialization is PyTorch's: :math:`U(-1/\sqrt{\text{in}}, 1/\sqrt{\text{in}})` for
both (Kaiming-uniform with :math:`a=\sqrt5`), drawn from the ``rng`` passed in.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ml100.checks import check_input

from ..module import Module
from . import init


class Linear(Module):
    """``y = x @ W.T + b`` over the last axis of ``x``; canonical names ``weight`` ``(out, in)``, ``bias``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(init.kaiming_uniform((out_features, in_features), rng, a=math.sqrt(5.0), dtype=dtype))
        self.bias = nn.Parameter(init.uniform((out_features,), rng, 1.0 / math.sqrt(in_features), dtype)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("Linear", "x", x.shape, x.dtype, expected_dtype=self.dtype, last_dim=self.in_features)
        y = x @ self.weight.T  # (..., out)
        if self.bias is not None:
            y = y + self.bias  # (..., out)
        return y
