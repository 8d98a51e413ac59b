"""The special-values pass: NaN, ±inf, ±0 and extreme magnitudes in the inputs, and an empty batch.

Every differentiable case gets it from :func:`~parity_tests.harness.protocol.check_parity` in
float64, without the test writing it. In each of the ``SPECIAL_PASSES`` — NaN; -inf and +inf;
extreme magnitudes with ±0 — every float input (except those ``Case.special_finite_inputs`` keeps
finite, each with its reason) gets its first sample filled (NaN, -inf) or the whole input scaled
(by 1e150), and values at single elements of its last sample (chosen by a generator seeded from
the case, so the same every run); then every tree and every reference not in
``Case.special_excluded_references`` runs forward and backward on those inputs with the clean
run's cotangents and weights.

The oracle is the case's first reference (torch's own, by convention listed first), or the NumPy
tree where there is none. Every other implementation's outputs, input gradients and parameter
gradients must show the oracle's NaN, +inf and -inf positions exactly, and agree within the
float64 tolerance on the finite positions (see :func:`~parity_tests.harness.compare.compare_special`).
Raising is an outcome too: if one implementation raises (an input the reference refuses, such as
a probability outside [0, 1]), all must raise.

The empty batch takes zero samples along each input's batch axis (``Case.batch_axes``, default
axis 0) and compares the same way — shapes, NaN pattern (a mean over nothing is NaN), values —
unless ``Case.empty_batch_opt_out`` says why not. Where a reference refuses N = 0 it is left out
of that comparison (the trees may support more than it does), but the trees must still agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .case import TREES, Case, build_model, run_one_tree, run_reference
from .compare import assert_no_failures, compare_results, compare_special, is_float


@dataclass(frozen=True)
class SpecialPass:
    """One pass over a float input: multiply it by ``scale``, fill its sample 0 with ``fill``
    (``None``: leave it), then write ``points`` at distinct single elements of its last sample."""

    what: str
    scale: float
    fill: float | None
    points: tuple[float, ...]


#: Extreme magnitude: exp of it overflows, while its cube and the cube of its reciprocal stay
#: normal float64 numbers (a variance's ``var ** -1.5`` in an autograd chain, GELU's ``x ** 3``).
#: It scales the whole input rather than sitting among ordinary values, so every mean and
#: variance stays well conditioned (batch norm of 1e100 x is batch norm of x); a lone 1e300 among
#: values near 1 would make each implementation's answer the rounding noise of its own
#: summation order.
HUGE = 1e100
#: Filling a whole sample makes windows, rows and channels that hold nothing else (an all -inf
#: pooling window); single elements show what one value does among ordinary ones. Three passes,
#: not one per value, keep the cost of a float64 case near three more runs.
SPECIAL_PASSES = (
    SpecialPass("nan in sample 0 and at one element of the last", 1.0, np.nan, (np.nan,)),
    SpecialPass("-inf in sample 0, +inf at one element of the last", 1.0, -np.inf, (np.inf,)),
    SpecialPass(f"inputs times {HUGE:g}, -0.0 and +0.0 at two elements of the last sample", HUGE, None, (-0.0, 0.0)),
)


def with_special_values(case: Case, inputs: dict, special: SpecialPass) -> dict:
    """A copy of ``inputs`` with ``special`` applied to every float input not kept finite by the case."""
    out = {}
    for index, (name, x) in enumerate(inputs.items()):
        if not is_float(x) or name in case.special_finite_inputs:
            out[name] = x
            continue
        x = np.array(x * special.scale)  # a new array, 0-d inputs included
        if special.fill is not None and (x.ndim == 0 or x.shape[0]):
            # A 0-d input is its own first sample; an input with no samples has none to fill.
            x[0 if x.ndim else ...] = special.fill
        if x.ndim and x.shape[0] > 1 and x[-1].size:
            # Positions drawn per (case, input): deterministic, and not the same for every input.
            rng = np.random.default_rng([case.seed, index])
            positions = rng.choice(x[-1].size, min(len(special.points), x[-1].size), replace=False)
            for position, value in zip(positions, special.points):
                x[(-1, *np.unravel_index(position, x.shape[1:]))] = value
        out[name] = x
    return out


def empty_batch(case: Case, inputs: dict) -> dict:
    """``inputs`` with zero samples along each one's batch axis (inputs without one unchanged)."""
    out = {}
    for name, x in inputs.items():
        axis = case.batch_axes.get(name, 0 if np.ndim(x) else None)
        out[name] = x if axis is None else np.take(x, np.arange(0), axis=axis)
    return out


def draw_by_shape(seed: int):
    """Cotangents drawn from the outputs' shapes alone, so every implementation gets the same ones."""
    def draw(float_outputs):
        rng = np.random.default_rng(seed)
        return [rng.standard_normal(np.shape(out)) for out in float_outputs]
    return draw


def run_everything(case: Case, models: dict, state: dict, inputs: dict, cotangents, references) -> dict:
    """Each tree's and reference's :class:`Result`, or the exception it raised. Every tree starts
    from the shared state (a training forward moves batch-norm statistics); a tree that raised is
    rebuilt, since a forward cut short may leave a cache behind."""
    outcomes = {}
    for tree in TREES:
        if state:
            models[tree].load_canonical_state_dict(state)
        try:
            outcomes[tree] = run_one_tree(case, tree, models[tree], inputs, cotangents)
        except Exception as error:  # noqa: BLE001 - raising is an outcome compared across implementations
            outcomes[tree] = error
            models[tree] = build_model(case, tree, "float64")
    for name in references:
        try:
            outcomes[name] = run_reference(case, name, state, inputs, cotangents, "float64")
        except Exception as error:  # noqa: BLE001
            outcomes[name] = error
    return outcomes


def describe(error: Exception) -> str:
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line[:160]}"


def compare_outcomes(outcomes: dict, oracle: str, what: str) -> list[str]:
    """All raise or none does; each one that ran agrees with ``oracle`` (or, if that raised, with
    the first that ran) in NaN/inf pattern and finite values."""
    raised = {name: o for name, o in outcomes.items() if isinstance(o, Exception)}
    ran = {name: o for name, o in outcomes.items() if not isinstance(o, Exception)}
    failures = []
    if raised and ran:
        failures.append(f"{what}: {', '.join(ran)} ran but " + "; ".join(f"{name} raised {describe(e)}" for name, e in raised.items()))
    anchor = oracle if oracle in ran else next(iter(ran), None)
    for name, result in ran.items():
        if name != anchor:
            failures += [f"{what}: {line}" for line in compare_results({anchor: ran[anchor], name: result}, "float64", compare_special)]
    return failures


def check_special_values(case: Case, models: dict, state: dict, inputs: dict, cotangents) -> None:
    """The special-values pass and the empty batch for ``case`` (float64 ``models`` and ``inputs``)."""
    if case.special_opt_out:
        return
    references = [name for name in case.references if name not in case.special_excluded_references]
    # The oracle: the case's first reference (torch's own, by convention listed first), else numpy.
    oracle = references[0] if references else TREES[0]
    failures = []
    with np.errstate(all="ignore"):
        for special in SPECIAL_PASSES:
            outcomes = run_everything(case, models, state, with_special_values(case, inputs, special), cotangents, references)
            failures += compare_outcomes(outcomes, oracle, special.what)
        if not case.empty_batch_opt_out:
            outcomes = run_everything(case, models, state, empty_batch(case, inputs), draw_by_shape(case.seed + 4), references)
            # A reference that refuses N = 0 asks nothing of the trees, which must still agree.
            allowed = {name: o for name, o in outcomes.items() if name in TREES or not isinstance(o, Exception)}
            failures += compare_outcomes(allowed, oracle, "empty batch")
    assert_no_failures(failures, f"special values of {case.module} (float64)")
