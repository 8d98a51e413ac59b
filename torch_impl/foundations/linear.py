r"""Day 6: the dense (fully connected) layer.

.. math::  y = x W^\top + b, \qquad W \in \mathbb{R}^{\text{out}\times\text{in}},\; b \in \mathbb{R}^{\text{out}}

Autograd derives what the NumPy tree writes by hand: :math:`\partial L/\partial W = G^\top x`,
:math:`\partial L/\partial b = \sum G`, :math:`\partial L/\partial x = G W`.

The default initialization is PyTorch's: :math:`U(-1/\sqrt{\text{in}}, 1/\sqrt{\text{in}})` for
both (Kaiming-uniform with :math:`a=\sqrt5`), drawn from the ``rng`` passed in. As in torch, a
width may be 0: ``Linear(0, k)`` has an empty weight and a zero bias (its output is the bias).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ml100.checks import check_bool, check_input, check_int, check_rng

from ..module import Module, torch_dtype
from . import init


class Linear(Module):
    """``y = x @ W.T + b`` over the last axis of ``x``; canonical names ``weight`` ``(out, in)``, ``bias``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("Linear", rng)
        self.in_features = check_int("Linear", "in_features", in_features, 0)
        self.out_features = check_int("Linear", "out_features", out_features, 0)
        # Without inputs (torch's rule) the weight is empty and the bias 0: a fan-in of 0 has no bound.
        if in_features:
            self.weight = nn.Parameter(init.kaiming_uniform((out_features, in_features), rng, a=math.sqrt(5.0), dtype=dtype))
        else:
            self.weight = nn.Parameter(torch.zeros((out_features, 0), dtype=torch_dtype(dtype)))  # (out, 0)
        if check_bool("Linear", "bias", bias):
            bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
            self.bias = nn.Parameter(init.uniform((out_features,), rng, bound, dtype))
        else:
            self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("Linear", "x", x.shape, x.dtype, expected_dtype=self.dtype, last_dim=self.in_features)
        y = x @ self.weight.T  # (..., out)
        if self.bias is not None:
            y = y + self.bias  # (..., out)
        return y
