"""Per-framework runners: one forward and one backward of a fixed cotangent, as a :class:`Result`.

Every runner takes canonical NumPy inputs (``{name: array}``, positional in that order), runs the
model, and backpropagates ``L = sum_k sum(output_k * cotangent_k)`` over the floating-point
outputs only (integer outputs — indices, lengths, counts — have no gradient). ``cotangents`` is a
list (one array per float output, in order) or a callable ``draw(float_outputs) -> list`` that
draws them from the outputs' shapes once the forward has run. Nested outputs such as
``output, (h_n, c_n)`` are flattened depth-first into ``[output, h_n, c_n]``.

``forward_only=True`` runs the forward alone (no tape, no cache, no backward).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import torch

from ml100.backends import get_module

from .compare import is_float


@dataclass
class Result:
    """What one implementation produced: outputs (flattened), input gradients, parameter gradients
    (canonical names); ``output_names`` label the outputs in failure messages."""

    outputs: list[np.ndarray]
    input_grads: dict[str, np.ndarray]
    param_grads: dict[str, np.ndarray]
    output_names: tuple[str, ...] = ()

    def output_labels(self) -> list[str]:
        if self.output_names:
            return [f"output {name}" for name in self.output_names]
        return [f"output[{index}]" for index in range(len(self.outputs))]


def flatten(outputs) -> list:
    """Nested tuples/lists of outputs, depth-first, as one flat list."""
    if isinstance(outputs, (tuple, list)):
        return [leaf for item in outputs for leaf in flatten(item)]
    return [outputs]



def draw_cotangents(cotangents, float_outputs: list[np.ndarray]) -> list[np.ndarray]:
    """The cotangent list for these float outputs: given, or drawn from their shapes."""
    cotangents = cotangents(float_outputs) if callable(cotangents) else list(cotangents)
    if len(cotangents) != len(float_outputs):
        raise AssertionError(f"{len(cotangents)} cotangents for {len(float_outputs)} floating-point outputs")
    return cotangents


def run_numpy(model, inputs: dict, differentiable, cotangents, forward_only: bool = False) -> Result:
    """The NumPy tree: ``forward``, then the hand-written ``backward(*cotangents)``, which returns
    the gradients of the ``differentiable`` inputs in order. Gradients accumulate, so they are
    cleared first, as ``optimizer.zero_grad()`` would."""
    if forward_only:
        with get_module("numpy", "module").no_grad():
            return Result([np.asarray(out) for out in flatten(model(*inputs.values()))], {}, {})
    if hasattr(model, "zero_grad"):
        model.zero_grad()
    outputs = flatten(model.forward(*inputs.values()))
    grads = model.backward(*draw_cotangents(cotangents, [out for out in outputs if is_float(out)]))
    grads = () if grads is None else grads if isinstance(grads, tuple) else (grads,)
    if len(grads) != len(differentiable):
        raise AssertionError(f"numpy backward returned {len(grads)} input gradients, expected {len(differentiable)}")
    return Result(outputs, dict(zip(differentiable, grads)), model.canonical_grads() if hasattr(model, "canonical_grads") else {})


def run_torch(model, inputs: dict, differentiable, cotangents, params: dict | None = None,
              forward_only: bool = False) -> Result:
    """Forward and backward through autograd; ``params`` defaults to the module's named parameters."""
    tensors = {name: torch.tensor(value, requires_grad=name in differentiable) for name, value in inputs.items()}
    if forward_only:
        with torch.no_grad():
            return Result([out.numpy() for out in flatten(model(*tensors.values()))], {}, {})
    outputs = flatten(model(*tensors.values()))
    params = dict(model.named_parameters()) if params is None else params
    for p in params.values():
        p.grad = None
    float_outputs = [out for out in outputs if out.is_floating_point()]
    cotangents = draw_cotangents(cotangents, [out.detach().numpy() for out in float_outputs])
    # An output that does not depend on anything differentiable has no graph to backpropagate.
    terms = [(out * torch.from_numpy(cot)).sum() for out, cot in zip(float_outputs, cotangents) if out.requires_grad]
    if terms:
        sum(terms).backward()
    return Result(
        [out.detach().numpy() for out in outputs],
        {name: _torch_grad(tensors[name]) for name in differentiable},
        {name: _torch_grad(p) for name, p in params.items()},
    )


def _torch_grad(t: torch.Tensor) -> np.ndarray:
    return np.zeros(tuple(t.shape), dtype=str(t.dtype).replace("torch.", "")) if t.grad is None else t.grad.numpy()


def run_tf(call, inputs: dict, differentiable, cotangents, params: dict, to_canonical: Callable,
           forward_only: bool = False) -> Result:
    """Forward under a ``GradientTape``; ``params`` maps canonical names to native variables and
    ``to_canonical`` turns ``{name: native gradient}`` into canonical arrays."""
    tensors = {name: tf.constant(value) for name, value in inputs.items()}
    if forward_only:
        return Result([out.numpy() for out in flatten(call(*tensors.values()))], {}, {})
    with tf.GradientTape() as tape:
        for name in differentiable:
            tape.watch(tensors[name])
        outputs = flatten(call(*tensors.values()))
        float_outputs = [out for out in outputs if out.dtype.is_floating]
        cotangents = draw_cotangents(cotangents, [out.numpy() for out in float_outputs])
        terms = [tf.reduce_sum(out * cot) for out, cot in zip(float_outputs, cotangents)]
        # Summed under the tape, or the sum is not recorded and every gradient comes back None.
        scalar = tf.add_n(terms) if terms else None
    sources = [tensors[name] for name in differentiable] + list(params.values())
    grads = [None] * len(sources) if scalar is None else tape.gradient(scalar, sources)
    input_grads, param_grads = grads[: len(differentiable)], grads[len(differentiable):]
    return Result(
        [out.numpy() for out in outputs],
        {name: (np.zeros_like(inputs[name]) if g is None else g.numpy()) for name, g in zip(differentiable, input_grads)},
        to_canonical(dict(zip(params, param_grads))),
    )


def tf_layout_call(call: Callable, names, tf_layouts: dict, tf_output_layouts: dict) -> Callable:
    """``call`` that works in TF-native layouts, seen from outside in canonical ones.

    Each input (positional, named by ``names``) listed in ``tf_layouts`` is transposed by its
    permutation before ``call``; each (flattened) output index listed in ``tf_output_layouts`` is
    transposed back by the inverse permutation. The transposes run under the tape, so the input
    gradients ``run_tf`` returns are canonical too.
    """
    if not tf_layouts and not tf_output_layouts:
        return call

    def wrapped(*tensors):
        native = [tf.transpose(t, tf_layouts[name]) if name in tf_layouts else t for name, t in zip(names, tensors)]
        outputs = flatten(call(*native))
        return [tf.transpose(out, np.argsort(tf_output_layouts[i])) if i in tf_output_layouts else out
                for i, out in enumerate(outputs)]

    return wrapped


def run_tree(tree: str, model, inputs, differentiable, cotangents, tf_layouts=None, tf_output_layouts=None,
             forward_only: bool = False) -> Result:
    """One tree's result; ``tf_layouts``/``tf_output_layouts`` as in :class:`Case` (TF tree only)."""
    if tree == "numpy":
        return run_numpy(model, inputs, differentiable, cotangents, forward_only)
    if tree == "torch":
        params = dict(model.named_parameters()) if hasattr(model, "named_parameters") else {}
        return run_torch(model, inputs, differentiable, cotangents, params, forward_only)
    call = tf_layout_call(model, list(inputs), tf_layouts or {}, tf_output_layouts or {})
    params = dict(model.named_parameters()) if hasattr(model, "named_parameters") else {}
    to_canonical = model.canonical_grads if hasattr(model, "canonical_grads") else (lambda grads: {})
    return run_tf(call, inputs, differentiable, cotangents, params, to_canonical, forward_only)


def scalar_and_input_grad(tree: str, fn: Callable, x: np.ndarray, *args) -> tuple[np.ndarray, np.ndarray]:
    """``fn(x, *args)`` (a scalar, e.g. a loss module called with a flag) and its gradient with respect to
    ``x``: the NumPy tree's hand-written ``fn.backward()``, torch's and TF's autograd; both as NumPy."""
    if tree == "numpy":
        return np.asarray(fn(x, *args)), fn.backward()
    if tree == "torch":
        leaf = torch.from_numpy(x.copy()).requires_grad_()
        value = fn(leaf, *args)
        value.backward()
        return value.detach().numpy(), leaf.grad.numpy()
    leaf = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(leaf)
        value = fn(leaf, *args)
    return value.numpy(), tape.gradient(value, leaf).numpy()
