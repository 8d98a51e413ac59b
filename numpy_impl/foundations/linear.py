r"""Day 6: the dense (fully connected) layer.

.. math::  y = x W^\top + b, \qquad W \in \mathbb{R}^{\text{out}\times\text{in}},\; b \in \mathbb{R}^{\text{out}}

Backward, with :math:`G = \partial L/\partial y` and every leading axis flattened into rows:

.. math::  \frac{\partial L}{\partial W} = G^\top x, \qquad
           \frac{\partial L}{\partial b} = \textstyle\sum_\text{rows} G, \qquad
           \frac{\partial L}{\partial x} = G W

The default initialization is PyTorch's: :math:`U(-1/\sqrt{\text{in}}, 1/\sqrt{\text{in}})` for
both (Kaiming-uniform with :math:`a=\sqrt5`), drawn from the ``rng`` passed in. As in torch, a
width may be 0: ``Linear(0, k)`` has an empty weight and a zero bias (its output is the bias).
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import check_bool, check_input, check_int, check_rng

from ..module import Module
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
            self.params["weight"] = init.kaiming_uniform((out_features, in_features), rng, a=math.sqrt(5.0), dtype=dtype)
        else:
            self.params["weight"] = np.zeros((out_features, 0), dtype=self.dtype)  # (out, 0)
        if check_bool("Linear", "bias", bias):
            bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
            self.params["bias"] = init.uniform((out_features,), rng, bound, dtype)
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
        # Every leading axis is a row of the batch: flatten so the weight gradient is one GEMM
        # (the row count spelled out: -1 is ambiguous when a width is 0).
        rows = math.prod(x.shape[:-1])
        x_rows = x.reshape(rows, self.in_features)  # (R, in)
        g_rows = grad_out.reshape(rows, self.out_features)  # (R, out)
        # += : a layer used twice (or over T steps) sums the gradients of every use, as .grad does.
        self.grads["weight"] += g_rows.T @ x_rows  # (out, in)
        if "bias" in self.params:
            self.grads["bias"] += g_rows.sum(axis=0)  # (out,)
        return grad_out @ self.params["weight"]  # (..., in)
