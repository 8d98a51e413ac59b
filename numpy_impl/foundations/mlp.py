r"""Day 7: the multilayer perceptron and backpropagation.

An MLP alternates affine maps and elementwise nonlinearities,

.. math::  h_0 = x,\qquad a_l = h_{l-1} W_l^\top + b_l,\qquad h_l = f(a_l)\ (l < L),\qquad \hat y = a_L .

Backpropagation is the chain rule applied from the output back, reusing each layer's cached
forward values: with :math:`\delta_L = \partial L/\partial a_L`,

.. math::  \frac{\partial L}{\partial W_l} = \delta_l^\top h_{l-1},\qquad
           \frac{\partial L}{\partial h_{l-1}} = \delta_l W_l,\qquad
           \delta_{l-1} = \frac{\partial L}{\partial h_{l-1}} \odot f'(a_{l-1}).

Each layer's ``backward`` computes its piece; the model only calls them in reverse order.
The finite-difference check in ``parity_tests/foundations/test_mlp.py`` proves the chain is
right: :math:`(L(\theta+\epsilon e_i) - L(\theta-\epsilon e_i))/2\epsilon` for every parameter.
"""
from __future__ import annotations

import numpy as np

from ..module import Module, ModuleList
from . import activations
from .linear import Linear

#: Activation name -> class; the MLP puts one after every hidden layer.
ACTIVATIONS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "elu": "ELU", "gelu": "GELU",
               "silu": "SiLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus"}


def make_activation(name: str, dtype) -> Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of: {', '.join(ACTIVATIONS)}")
    return getattr(activations, ACTIVATIONS[name])(dtype=dtype)


class MLP(Module):
    """``in_features -> hidden_sizes... -> out_features``; canonical names ``layers.{i}.weight/bias``."""

    def __init__(self, in_features: int, hidden_sizes, out_features: int, activation: str = "relu",
                 dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        sizes = [in_features, *hidden_sizes, out_features]
        self.layers = ModuleList([Linear(n_in, n_out, dtype=dtype, rng=rng) for n_in, n_out in zip(sizes[:-1], sizes[1:])])
        self.activations = ModuleList([make_activation(activation, dtype) for _ in hidden_sizes])

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = x  # (N, in)
        for layer, act in zip(self.layers, self.activations):
            h = act(layer(h))  # (N, hidden)
        return self.layers[-1](h)  # (N, out)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        grad = self.layers[-1].backward(grad_out)  # (N, hidden)
        # Walk the hidden layers in reverse: each activation, then the layer that fed it.
        for layer, act in zip(reversed(self.layers[:-1]), reversed(list(self.activations))):
            grad = act.backward(grad)  # (N, width)
            grad = layer.backward(grad)  # (N, previous width)
        return grad
