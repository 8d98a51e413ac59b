"""The parity protocol: one topic, three trees, one set of weights, every tensor compared.

``check_parity(case, dtype)``:

1. builds the topic's model in each tree from one config;
2. draws random, asymmetric weights (non-zero biases) for every canonical name, writes them to a
   safetensors file and loads that file into all three;
3. runs forward on the same inputs and backpropagates one fixed random cotangent per
   floating-point output;
4. compares every output, the gradient of every differentiable input and of every parameter, by
   canonical name, for every pair of trees (and against the case's references);
5. in float64, runs the special-values pass and the empty batch (:mod:`.special`).

A forward-only case (``Case.forward_only``: NMS, BPE, mAP, integer quantization) stops after the
forward: integer outputs are compared exactly (dtype and values), float outputs by tolerance.
A mismatch raises one ``AssertionError`` listing every tensor that differs, the pair, and the max
absolute and relative error. Tolerances are set by the dtype alone (``TOLERANCES``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ml100.backends import get_module

from .case import (Case, build_model, build_models, probe_cotangents, random_weights, run_all_trees, run_reference,
                   share_weights)
from .compare import assert_no_failures, compare_results, is_float, max_errors
from .runners import Result, flatten, run_numpy
from .special import check_special_values

#: Central finite differences in float64: step and relative agreement with the analytic gradient.
FD_STEP = 1e-6
FD_TOLERANCE = 1e-6


def check_parity(case: Case, dtype: str) -> dict[str, Result]:
    """Run the full parity protocol for ``case`` in ``dtype``; returns each tree's result."""
    models = build_models(case, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        state = share_weights(models, case, Path(tmp))
    rng = np.random.default_rng(case.seed + 2)
    inputs = case.inputs(dtype, rng)
    cotangents = None if case.forward_only else probe_cotangents(models["numpy"], inputs, dtype, rng)
    # The probe ran a forward: a training-mode forward may have moved buffers (batch norm's running
    # statistics, spectral norm's u and v), so every tree starts the compared run from the shared state.
    if state:
        models["numpy"].load_canonical_state_dict(state)
    results = run_all_trees(case, dtype, inputs, cotangents, models)
    for name in case.references:
        results[name] = run_reference(case, name, state, inputs, cotangents, dtype)
    assert_no_failures(compare_results(results, dtype), f"parity of {case.module} ({dtype})")
    if dtype == "float64" and not case.forward_only:
        check_special_values(case, models, state, inputs, cotangents)
    return results


def gradcheck_numpy(case: Case) -> None:
    """Central finite differences (float64) against the NumPy tree's hand-written backward.

    The scalar checked is ``L = sum(output * cotangent)`` over the float outputs; every element of
    every differentiable input and of every parameter is perturbed by ``±FD_STEP``.
    """
    dtype = "float64"
    model = build_model(case, "numpy", dtype)
    rng = np.random.default_rng(case.seed + 1)
    model.load_canonical_state_dict(random_weights(model.canonical_state_dict(), rng, case.weights))
    inputs = case.inputs(dtype, np.random.default_rng(case.seed + 2))
    cotangents = probe_cotangents(model, inputs, dtype, rng)
    analytic = run_numpy(model, inputs, case.differentiable, cotangents)

    def loss() -> float:
        with get_module("numpy", "module").no_grad():
            outputs = [out for out in flatten(model.forward(*inputs.values())) if is_float(out)]
        return float(sum(np.sum(out * cot) for out, cot in zip(outputs, cotangents)))

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
