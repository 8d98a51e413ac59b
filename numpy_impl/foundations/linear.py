r"""Day 6: the dense (fully connected) layer.

.. math::  y = x W^\top + b, \qquad W \in \mathbb{R}^{\text{out}\times\text{in}},\; b \in \mathbb{R}^{\text{out}}

Backward, with :math:`G = \partial L/\partial y` and every leading axis flattened into rows:

.. math::  \frac{\partial L}{\partial W} = G^\top x, \qquad
           \frac{\partial L}{\partial b} = \textstyle\sum_\text{rows} G, \qquad
           \frac{\partial L}{\partial x} = G W

The default initialization is PyTorch's: :math:`U(-1/\sqrt{\text{in}}, 1/\sqrt{\text{in}})` for
both (Kaiming-uniform with :math:`a=\sqrt5`), drawn from the ``rng`` passed in.
"""
from __future__ import annotations

import math

import numpy as np

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
        self.params["weight"] = init.kaiming_uniform((out_features, in_features), rng, a=math.sqrt(5.0), dtype=dtype)
        if bias:
            self.params["bias"] = init.uniform((out_features,), rng, 1.0 / math.sqrt(in_features), dtype)
        self.zero_grad()

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("Linear", "x", x.shape, x.dtype, expected_dtype=self.dtype, last_dim=self.in_features)
        self.save_for_backward(x)
        y = x @ self.params["weight"].T  # (..., out)
        if "bias" in self.params:
            y = y + self.params["bias"]  # (..., out)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x = self.saved_for_backward()  # (..., in)
        # Every leading axis is a row of the batch: flatten so the weight gradient is one GEMM.
        x_rows = x.reshape(-1, self.in_features)  # (R, in)
        g_rows = grad_out.reshape(-1, self.out_features)  # (R, out)
        # += : a layer used twice (or over T steps) sums the gradients of every use, as .grad does.
        self.grads["weight"] += g_rows.T @ x_rows  # (out, in)
        if "bias" in self.params:
            self.grads["bias"] += g_rows.sum(axis=0)  # (out,)
        return grad_out @ self.params["weight"]  # (..., in)
