"""The parity harness: one topic, three trees, one set of weights, every tensor compared.

``check_parity(case, dtype)``:

1. builds the topic's model in each tree from one config;
2. draws random, asymmetric weights (non-zero biases) for every canonical name, writes them to a
   safetensors file and loads that file into all three;
3. runs forward on the same inputs and backpropagates one fixed random cotangent per output;
4. compares every output, the gradient of every differentiable input and of every parameter, by
   canonical name, for every pair of trees (and against a reference implementation if given).

A mismatch raises one ``AssertionError`` listing every tensor that differs, the pair of trees,
and the max absolute and relative error. Tolerances are set by the dtype alone (``TOLERANCES``).
"""
from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
import torch

from ml100.backends import BACKENDS, get_module
from ml100.weights import load_weights, save_weights

TREES = tuple(BACKENDS)
#: Max |a - b| relative to the larger of the two tensors' max magnitudes.
TOLERANCES = {"float64": 1e-9, "float32": 1e-4}
#: Central finite differences in float64: step and relative agreement with the analytic gradient.
FD_STEP = 1e-6
FD_TOLERANCE = 1e-6


@dataclass
class Result:
    """What one implementation produced: outputs, input gradients, parameter gradients (canonical)."""

    outputs: list[np.ndarray]
    input_grads: dict[str, np.ndarray]
    param_grads: dict[str, np.ndarray]


@dataclass
class Case:
    """One parity scenario for a topic.

    ``build(tree_module, dtype, rng)`` constructs the model from the topic's module in any tree;
    ``inputs(dtype, rng)`` returns named NumPy inputs; ``differentiable`` names the inputs whose
    gradients are compared (the NumPy ``backward`` returns them in this order);
    ``references`` maps a name (``"torch.nn"``, ``"keras"``) to
    ``run(state, inputs, cotangents, dtype) -> Result``: outside implementations fed the same
    weights, compared like a fourth tree. ``weights(name, shape, dtype, rng)`` may override the
    random draw of a tensor (return ``None`` to keep it).

    ``tf_layouts`` maps an input name to the axis permutation that takes it from the canonical
    (PyTorch) layout to the TF tree's native one — NCHW -> NHWC is ``(0, 2, 3, 1)``;
    ``tf_output_layouts`` maps an output index to its permutation likewise. The harness feeds the
    TF tree permuted inputs and permutes the named outputs back (see :func:`tf_layout_call`), so
    every tree is compared in the canonical layout, input gradients included.
    """

    module: str
    build: Callable
    inputs: Callable[[str, np.random.Generator], dict[str, np.ndarray]]
    differentiable: tuple[str, ...] = ("x",)
    references: dict[str, Callable] = field(default_factory=dict)
    weights: Callable[[str, tuple, str, np.random.Generator], np.ndarray | None] | None = None
    seed: int = 0
    tf_layouts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    tf_output_layouts: dict[int, tuple[int, ...]] = field(default_factory=dict)


def as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def random_weights(state: dict[str, np.ndarray], rng: np.random.Generator, custom=None) -> dict[str, np.ndarray]:
    """Uniform(-1, 1) for every tensor (so biases are non-zero and no pattern is symmetric), except
    batch norm's ``*running_var`` — a variance, drawn from Uniform(0.5, 1.5) — and whatever
    ``custom(name, shape, dtype, rng)`` draws (it returns ``None`` to keep the default)."""
    out = {}
    for name, value in state.items():
        if custom is not None and (drawn := custom(name, value.shape, value.dtype.name, rng)) is not None:
            out[name] = drawn
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 1.5, size=value.shape).astype(value.dtype)
        else:
            out[name] = rng.uniform(-1.0, 1.0, size=value.shape).astype(value.dtype)
    return out


def run_numpy(model, inputs: dict, differentiable, cotangents) -> Result:
    if hasattr(model, "zero_grad"):
        model.zero_grad()
    outputs = as_list(model.forward(*inputs.values()))
    grads = model.backward(*cotangents)
    grads = grads if isinstance(grads, tuple) else (grads,)
    if len(grads) != len(differentiable):
        raise AssertionError(f"numpy backward returned {len(grads)} input gradients, expected {len(differentiable)}")
    return Result(outputs, dict(zip(differentiable, grads)), model.canonical_grads() if hasattr(model, "canonical_grads") else {})


def run_torch(model, inputs: dict, differentiable, cotangents, params: dict | None = None) -> Result:
    """Forward and backward through autograd; ``params`` defaults to the module's named parameters."""
    tensors = {name: torch.tensor(value, requires_grad=name in differentiable) for name, value in inputs.items()}
    outputs = as_list(model(*tensors.values()))
    params = dict(model.named_parameters()) if params is None else params
    for p in params.values():
        p.grad = None
    scalar = sum((out * torch.from_numpy(cot)).sum() for out, cot in zip(outputs, cotangents))
    scalar.backward()
    return Result(
        [out.detach().numpy() for out in outputs],
        {name: _torch_grad(tensors[name]) for name in differentiable},
        {name: _torch_grad(p) for name, p in params.items()},
    )


def _torch_grad(t: torch.Tensor) -> np.ndarray:
    return np.zeros(tuple(t.shape), dtype=str(t.dtype).replace("torch.", "")) if t.grad is None else t.grad.numpy()


def run_tf(call, inputs: dict, differentiable, cotangents, params: dict, to_canonical: Callable) -> Result:
    """Forward under a ``GradientTape``; ``params`` maps canonical names to native variables and
    ``to_canonical`` turns ``{name: native gradient}`` into canonical arrays."""
    tensors = {name: tf.constant(value) for name, value in inputs.items()}
    with tf.GradientTape() as tape:
        for name in differentiable:
            tape.watch(tensors[name])
        outputs = as_list(call(*tensors.values()))
        scalar = tf.add_n([tf.reduce_sum(out * cot) for out, cot in zip(outputs, cotangents)])
    sources = [tensors[name] for name in differentiable] + list(params.values())
    grads = tape.gradient(scalar, sources)
    input_grads, param_grads = grads[: len(differentiable)], grads[len(differentiable):]
    return Result(
        [out.numpy() for out in outputs],
        {name: (np.zeros_like(inputs[name]) if g is None else g.numpy()) for name, g in zip(differentiable, input_grads)},
        to_canonical(dict(zip(params, param_grads))),
    )


def tf_layout_call(call: Callable, names, tf_layouts: dict, tf_output_layouts: dict) -> Callable:
    """``call`` that works in TF-native layouts, seen from outside in canonical ones.

    Each input (positional, named by ``names``) listed in ``tf_layouts`` is transposed by its
    permutation before ``call``; each output index listed in ``tf_output_layouts`` is transposed
    back by the inverse permutation. The transposes run under the tape, so the input gradients
    ``run_tf`` returns are canonical too.
    """
    if not tf_layouts and not tf_output_layouts:
        return call

    def wrapped(*tensors):
        native = [tf.transpose(t, tf_layouts[name]) if name in tf_layouts else t for name, t in zip(names, tensors)]
        outputs = as_list(call(*native))
        return [tf.transpose(out, np.argsort(tf_output_layouts[i])) if i in tf_output_layouts else out
                for i, out in enumerate(outputs)]

    return wrapped


def run_tree(tree: str, model, inputs, differentiable, cotangents, tf_layouts=None, tf_output_layouts=None) -> Result:
    """One tree's result; ``tf_layouts``/``tf_output_layouts`` as in :class:`Case` (TF tree only)."""
    if tree == "numpy":
        return run_numpy(model, inputs, differentiable, cotangents)
    if tree == "torch":
        return run_torch(model, inputs, differentiable, cotangents)
    call = tf_layout_call(model, list(inputs), tf_layouts or {}, tf_output_layouts or {})
    return run_tf(call, inputs, differentiable, cotangents, dict(model.named_parameters()), model.canonical_grads)


def max_errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Max absolute error, and that error relative to the larger tensor's max magnitude."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0, 0.0
    abs_err = float(np.max(np.abs(a - b)))
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), np.finfo(np.float64).tiny)
    return abs_err, abs_err / scale


def compare_tensors(label: str, pair: str, a, b, dtype: str, failures: list[str]) -> None:
    """Append a message to ``failures`` if ``a`` and ``b`` differ beyond the dtype's tolerance."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        failures.append(f"{label} [{pair}]: shapes differ {a.shape} vs {b.shape}")
        return
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        failures.append(f"{label} [{pair}]: non-finite values")
        return
    abs_err, rel_err = max_errors(a, b)
    if rel_err > TOLERANCES[dtype]:
        failures.append(f"{label} [{pair}]: max abs err {abs_err:.3e}, max rel err {rel_err:.3e} > {TOLERANCES[dtype]:.0e}")


def compare_results(results: dict[str, Result], dtype: str) -> list[str]:
    """Every output, input gradient and parameter gradient, for every pair of results."""
    failures: list[str] = []
    for (name_a, ra), (name_b, rb) in itertools.combinations(results.items(), 2):
        pair = f"{name_a} vs {name_b}"
        if len(ra.outputs) != len(rb.outputs):
            failures.append(f"outputs [{pair}]: {len(ra.outputs)} vs {len(rb.outputs)} outputs")
        for index, (a, b) in enumerate(zip(ra.outputs, rb.outputs)):
            compare_tensors(f"output[{index}]", pair, a, b, dtype, failures)
        for kind, ga, gb in (("grad of input", ra.input_grads, rb.input_grads), ("grad of", ra.param_grads, rb.param_grads)):
            if set(ga) != set(gb):
                failures.append(f"{kind} [{pair}]: names differ {sorted(set(ga) ^ set(gb))}")
            for name in sorted(set(ga) & set(gb)):
                compare_tensors(f"{kind} {name}", pair, ga[name], gb[name], dtype, failures)
    return failures


def assert_no_failures(failures: list[str], what: str) -> None:
    if failures:
        raise AssertionError(f"{what}: {len(failures)} mismatch(es)\n  " + "\n  ".join(failures))


def build_models(case: Case, dtype: str) -> dict:
    return {tree: case.build(get_module(tree, case.module), dtype, np.random.default_rng(case.seed)) for tree in TREES}


def run_all_trees(case: Case, dtype: str, inputs: dict, cotangents, models: dict | None = None) -> dict[str, Result]:
    """Every tree's result on ``inputs``; ``models`` defaults to fresh ones built from the case's seed."""
    models = build_models(case, dtype) if models is None else models
    return {tree: run_tree(tree, models[tree], inputs, case.differentiable, cotangents, case.tf_layouts,
                           case.tf_output_layouts) for tree in TREES}


def share_weights(models: dict, case: Case, directory: Path) -> dict[str, np.ndarray]:
    """Random weights for the NumPy model's canonical names, through a safetensors file into every tree."""
    rng = np.random.default_rng(case.seed + 1)
    state = random_weights(models["numpy"].canonical_state_dict(), rng, case.weights)
    path = directory / "weights.safetensors"
    save_weights(path, state)
    loaded = load_weights(path)
    for model in models.values():
        model.load_canonical_state_dict(loaded)
    return loaded


def check_parity(case: Case, dtype: str) -> dict[str, Result]:
    """Run the full parity protocol for ``case`` in ``dtype``; returns each tree's result."""
    models = build_models(case, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        state = share_weights(models, case, Path(tmp))
    rng = np.random.default_rng(case.seed + 2)
    inputs = case.inputs(dtype, rng)
    with get_module("numpy", "module").no_grad():
        outputs = as_list(models["numpy"].forward(*inputs.values()))
    cotangents = [rng.standard_normal(np.shape(out)).astype(dtype) for out in outputs]
    results = run_all_trees(case, dtype, inputs, cotangents, models)
    for name, reference in case.references.items():
        results[name] = reference(state, inputs, cotangents, dtype)
    assert_no_failures(compare_results(results, dtype), f"parity of {case.module} ({dtype})")
    return results


def gradcheck_numpy(case: Case) -> None:
    """Central finite differences (float64) against the NumPy tree's hand-written backward.

    The scalar checked is ``L = sum(output * cotangent)``; every element of every differentiable
    input and of every parameter is perturbed by ``±FD_STEP``.
    """
    dtype = "float64"
    model = case.build(get_module("numpy", case.module), dtype, np.random.default_rng(case.seed))
    rng = np.random.default_rng(case.seed + 1)
    model.load_canonical_state_dict(random_weights(model.canonical_state_dict(), rng, case.weights))
    inputs = case.inputs(dtype, np.random.default_rng(case.seed + 2))
    with get_module("numpy", "module").no_grad():
        outputs = as_list(model.forward(*inputs.values()))
    cotangents = [rng.standard_normal(np.shape(out)) for out in outputs]
    analytic = run_numpy(model, inputs, case.differentiable, cotangents)

    def loss() -> float:
        with get_module("numpy", "module").no_grad():
            return float(sum(np.sum(out * cot) for out, cot in zip(as_list(model.forward(*inputs.values())), cotangents)))

    targets = {f"input {name}": (inputs[name], analytic.input_grads[name]) for name in case.differentiable}
    params = dict(model.named_parameters())
    targets.update({f"param {name}": (params[name], analytic.param_grads[name]) for name in params})
    failures = []
    for label, (array, grad) in targets.items():
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            original = array[index]
            array[index] = original + FD_STEP
            plus = loss()
            array[index] = original - FD_STEP
            minus = loss()
            array[index] = original
            numeric[index] = (plus - minus) / (2 * FD_STEP)
        abs_err, rel_err = max_errors(numeric, grad)
        if rel_err > FD_TOLERANCE:
            failures.append(f"{label}: max abs err {abs_err:.3e}, max rel err {rel_err:.3e} > {FD_TOLERANCE:.0e}")
    assert_no_failures(failures, f"finite-difference check of numpy {case.module}")


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
        to_canonical = lambda g: {f"{prefix}weight": g[f"{prefix}weight"].numpy().T, f"{prefix}bias": g[f"{prefix}bias"].numpy()}
        return run_tf(call, inputs, ("x",), cotangents, params, to_canonical)

    return run


def gradient_descent_curves(module: str, build: Callable, make_loss: Callable, x: np.ndarray, y: np.ndarray,
                            steps: int, lr: float) -> dict[str, list[float]]:
    """Full-batch gradient descent in every tree through its own ``Trainer`` and ``SGD`` (days 9-11):
    the loss at each step. ``build(tree_module)`` and ``make_loss(tree_module)`` come from the topic."""
    curves = {}
    for tree in TREES:
        topic = get_module(tree, module)
        model = build(topic)
        optimizer = get_module(tree, "foundations.optim").SGD(dict(model.named_parameters()), lr=lr)
        trainer = get_module(tree, "foundations.trainer").Trainer(model, make_loss(topic), optimizer)
        curves[tree] = [trainer.train_step(x, y) for _ in range(steps)]
    return curves
