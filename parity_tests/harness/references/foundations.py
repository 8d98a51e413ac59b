"""References for the foundations phase (days 1-20), and the generic makers every phase uses:
a ``torch.nn`` module loaded with the canonical state, a parameter-free torch or TF function."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..runners import run_tf, run_torch, tf_layout_call


def torch_functional_reference(fn: Callable, differentiable=("x",), forward_only: bool = False) -> Callable:
    """A reference runner: a parameter-free torch function (``F.relu``, ``torch.nn.MSELoss()``,
    ``torchvision.ops.nms``) called on the inputs in order, gradients for ``differentiable``."""
    def run(state, inputs, cotangents, dtype):
        return run_torch(fn, inputs, differentiable, cotangents, params={}, forward_only=forward_only)

    return run


def tf_functional_reference(fn: Callable, differentiable=("x",), tf_layouts=None, tf_output_layouts=None,
                            forward_only: bool = False) -> Callable:
    """A reference runner: a parameter-free TF/Keras function called on the inputs in order;
    ``tf_layouts``/``tf_output_layouts`` as in ``Case`` when it works channels-last."""
    def run(state, inputs, cotangents, dtype):
        call = tf_layout_call(fn, list(inputs), tf_layouts or {}, tf_output_layouts or {})
        return run_tf(call, inputs, differentiable, cotangents, {}, lambda grads: {}, forward_only)

    return run


def torch_module_reference(make: Callable, differentiable=("x",), forward_only: bool = False) -> Callable:
    """A reference runner: the ``torch.nn.Module`` that ``make(dtype)`` builds (dtype a string),
    cast to ``dtype`` and strictly loaded with the canonical state — its ``state_dict`` names are
    the canonical ones by definition (torch.nn, torchvision)."""
    def run(state, inputs, cotangents, dtype):
        module = make(dtype).to(getattr(torch, dtype))
        module.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
        return run_torch(module, inputs, differentiable, cotangents, forward_only=forward_only)

    return run


def torch_linear_reference(in_features: int, out_features: int, prefix: str = "", squeeze: bool = False) -> Callable:
    """A reference runner: ``torch.nn.Linear`` fed the canonical ``{prefix}weight`` and ``{prefix}bias``
    (``squeeze`` drops a size-1 output axis, as logistic regression's ``(N,)`` logits do)."""
    def run(state, inputs, cotangents, dtype):
        layer = torch.nn.Linear(in_features, out_features, dtype=getattr(torch, dtype))
        layer.load_state_dict({"weight": torch.from_numpy(state[f"{prefix}weight"]), "bias": torch.from_numpy(state[f"{prefix}bias"])})
        call = (lambda x: layer(x)[..., 0]) if squeeze else layer
        params = {f"{prefix}weight": layer.weight, f"{prefix}bias": layer.bias}
        return run_torch(call, inputs, ("x",), cotangents, params=params)

    return run


def keras_dense_reference(in_features: int, out_features: int, prefix: str = "", squeeze: bool = False) -> Callable:
    """A reference runner: ``keras.layers.Dense`` fed the same weights — its kernel is ``(in, out)``,
    the transpose of the canonical ``weight``, and its kernel gradient is transposed back."""
    import keras

    def run(state, inputs, cotangents, dtype):
        layer = keras.layers.Dense(out_features, dtype=dtype)
        layer.build((None, in_features))
        layer.kernel.assign(state[f"{prefix}weight"].T)
        layer.bias.assign(state[f"{prefix}bias"])
        call = (lambda x: layer(x)[..., 0]) if squeeze else layer
        params = {f"{prefix}weight": layer.kernel, f"{prefix}bias": layer.bias}
        to_canonical = lambda g: {f"{prefix}weight": np.transpose(g[f"{prefix}weight"].numpy()), f"{prefix}bias": g[f"{prefix}bias"].numpy()}
        return run_tf(call, inputs, ("x",), cotangents, params, to_canonical)

    return run
