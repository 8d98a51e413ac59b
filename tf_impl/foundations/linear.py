r"""Day 6: the dense (fully connected) layer.

.. math::  y = x W^\top + b, \qquad W \in \mathbb{R}^{\text{out}\times\text{in}},\; b \in \mathbb{R}^{\text{out}}

TF and Keras store the kernel the other way round, :math:`K = W^\top` of shape ``(in, out)``, so
the layer computes ``x @ K`` and the canonical ``weight`` is exported transposed. The tape
derives :math:`\partial L/\partial K = x^\top G`, whose transpose is the canonical gradient.

The default initialization is PyTorch's: :math:`U(-1/\sqrt{\text{in}}, 1/\sqrt{\text{in}})` for
both (Kaiming-uniform with :math:`a=\sqrt5`), drawn from the ``rng`` passed in.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ml100.checks import check_input

from ..module import TRANSPOSED, Module
from . import init


class Linear(Module):
    """``y = x @ W.T + b`` over the last axis of ``x``; canonical names ``weight`` ``(out, in)``, ``bias``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.in_features, self.out_features = in_features, out_features
        # Drawn in the canonical (out, in) layout, stored as Keras does: kernel (in, out).
        weight = init.kaiming_uniform((out_features, in_features), rng, a=math.sqrt(5.0), dtype=dtype)
        self.kernel = self.add_param("weight", tf.transpose(weight), layout=TRANSPOSED)  # (in, out)
        self.bias = self.add_param("bias", init.uniform((out_features,), rng, 1.0 / math.sqrt(in_features), dtype)) if bias else None

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("Linear", "x", x.shape, x.dtype, expected_dtype=self.dtype, last_dim=self.in_features)
        y = tf.matmul(x, self.kernel) if x.shape.rank == 2 else tf.tensordot(x, self.kernel, axes=1)  # (..., out)
        if self.bias is not None:
            y = y + self.bias  # (..., out)
        return y
