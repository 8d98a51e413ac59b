r"""Day 6: the dense (fully connected) layer.

.. math::  y = x W^\top + b, \qquad W \in \mathbb{R}^{\text{out}\times\text{in}},\; b \in \mathbb{R}^{\text{out}}

TF and Keras store the kernel the other way round, :math:`K = W^\top` of shape ``(in, out)``, so
the layer computes ``x @ K`` and the canonical ``weight`` is exported transposed. The tape
derives :math:`\partial L/\partial K = x^\top G`, whose transpose is the canonical gradient.

The default initialization is PyTorch's: :math:`U(-1/\sqrt{\text{in}}, 1/\sqrt{\text{in}})` for
both (Kaiming-uniform with :math:`a=\sqrt5`), drawn from the ``rng`` passed in. As in torch, a
width may be 0: ``Linear(0, k)`` has an empty weight and a zero bias (its output is the bias).
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ml100.checks import check_bool, check_input, check_int, check_rng

from ..module import TRANSPOSED, Module, tf_dtype
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
            weight = init.kaiming_uniform((out_features, in_features), rng, a=math.sqrt(5.0), dtype=dtype)
        else:
            weight = tf.zeros((out_features, 0), dtype=tf_dtype(dtype))  # (out, 0)
        # Drawn in the canonical (out, in) layout, stored as Keras does: kernel (in, out).
        self.kernel = self.add_param("weight", tf.transpose(weight), layout=TRANSPOSED)  # (in, out)
        if check_bool("Linear", "bias", bias):
            bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
            self.bias = self.add_param("bias", init.uniform((out_features,), rng, bound, dtype))
        else:
            self.bias = None

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("Linear", "x", x.shape, x.dtype, expected_dtype=self.dtype, last_dim=self.in_features)
        y = tf.matmul(x, self.kernel) if x.shape.rank == 2 else tf.tensordot(x, self.kernel, axes=1)  # (..., out)
        if self.bias is not None:
            y = y + self.bias  # (..., out)
        return y
