"""Comparison: tolerances from the dtype alone, every mismatch named by tensor and pair.

Floating-point tensors agree when ``max |a - b|`` relative to the larger of the two tensors' max
magnitudes is within ``TOLERANCES[dtype]``; integer and bool tensors (token ids, indices, counts,
masks) agree only exactly, dtype included. Each helper appends human-readable lines to a
``failures`` list, and :func:`assert_no_failures` raises one ``AssertionError`` listing them all.
"""
from __future__ import annotations

import itertools

import numpy as np

from .record import record

#: Max |a - b| relative to the larger of the two tensors' max magnitudes.
TOLERANCES = {"float64": 1e-9, "float32": 1e-4}
#: The "dtype" under which integer and bool comparisons are recorded (:mod:`.record`): their number is
#: the share of elements that differ, and nothing but 0 passes.
EXACT = "exact"


def tolerance_of(dtype: str) -> float:
    """A recorded comparison's limit: the float dtype's tolerance, 0 for an exact comparison."""
    return 0.0 if dtype == EXACT else TOLERANCES[dtype]


def is_float(array) -> bool:
    """Whether an array holds floating-point values (compared by tolerance, differentiated)."""
    return np.asarray(array).dtype.kind == "f"


def max_errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Max absolute error, and that error relative to the larger tensor's max magnitude."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0, 0.0
    abs_err = float(np.max(np.abs(a - b)))
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), np.finfo(np.float64).tiny)
    return abs_err, abs_err / scale


def compare_exact(label: str, pair: str, a, b, failures: list[str]) -> None:
    """Integer or bool tensors: same dtype, same shape, same values (recorded as the share that differ)."""
    a, b = np.asarray(a), np.asarray(b)
    same_kind = a.dtype == b.dtype and a.shape == b.shape
    record(label, pair, EXACT, float(np.mean(a != b)) if same_kind and a.size else float(not same_kind))
    if a.dtype != b.dtype:
        failures.append(f"{label} [{pair}]: dtypes differ {a.dtype} vs {b.dtype}")
    elif a.shape != b.shape:
        failures.append(f"{label} [{pair}]: shapes differ {a.shape} vs {b.shape}")
    elif not np.array_equal(a, b):
        where = np.argwhere(a != b)
        first = tuple(int(i) for i in where[0])
        failures.append(f"{label} [{pair}]: {len(where)} element(s) differ, first at {first}: {a[first]!r} vs {b[first]!r}")


def floats_of_one_shape(label: str, pair: str, a: np.ndarray, b: np.ndarray, failures: list[str]) -> bool:
    """True if both are float tensors of one shape, ready for a tolerance; otherwise integers and bools
    have been compared exactly, or a shape mismatch recorded, and there is nothing more to compare."""
    if not (is_float(a) and is_float(b)):
        compare_exact(label, pair, a, b, failures)
        return False
    if a.shape != b.shape:
        failures.append(f"{label} [{pair}]: shapes differ {a.shape} vs {b.shape}")
        return False
    return True


def compare_tensors(label: str, pair: str, a, b, dtype: str, failures: list[str]) -> None:
    """Append a message to ``failures`` if ``a`` and ``b`` differ beyond the dtype's tolerance
    (exactly, for integer and bool tensors)."""
    a, b = np.asarray(a), np.asarray(b)
    if not floats_of_one_shape(label, pair, a, b, failures):
        return
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        failures.append(f"{label} [{pair}]: non-finite values")
        return
    abs_err, rel_err = max_errors(a, b)
    record(label, pair, dtype, rel_err)
    if rel_err > TOLERANCES[dtype]:
        failures.append(f"{label} [{pair}]: max abs err {abs_err:.3e}, max rel err {rel_err:.3e} > {TOLERANCES[dtype]:.0e}")


def compare_special(label: str, pair: str, a, b, dtype: str, failures: list[str]) -> None:
    """Like :func:`compare_tensors`, for tensors that may hold NaN and ±inf: the NaN, +inf and
    -inf positions must be identical, and the finite values agree within the dtype's tolerance
    (relative to the larger finite magnitude). The sign of a zero is not compared."""
    a, b = np.asarray(a), np.asarray(b)
    if not floats_of_one_shape(label, pair, a, b, failures):
        return
    for what, mask in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        ma, mb = mask(a), mask(b)
        if not np.array_equal(ma, mb):
            first = tuple(int(i) for i in np.argwhere(ma != mb)[0])
            failures.append(f"{label} [{pair}]: {what} at {int(ma.sum())} vs {int(mb.sum())} position(s); first difference "
                            f"at {first}: {a[first]!r} vs {b[first]!r}")
            return
    finite = np.isfinite(a)
    compare_tensors(label, pair, a[finite], b[finite], dtype, failures)


def compare_named(label: str, pair: str, a: dict, b: dict, dtype: str, failures: list[str], compare=compare_tensors) -> None:
    """Two dicts of tensors: the same names, and every tensor compared under ``{label} {name}``."""
    if set(a) != set(b):
        failures.append(f"{label} [{pair}]: names differ {sorted(set(a) ^ set(b))}")
    for name in sorted(set(a) & set(b)):
        compare(f"{label} {name}".strip(), pair, a[name], b[name], dtype, failures)


def compare_results(results: dict, dtype: str, compare=compare_tensors) -> list[str]:
    """Every output, input gradient and parameter gradient, for every pair of
    :class:`~parity_tests.harness.runners.Result`\\ s; ``compare`` is :func:`compare_tensors` or
    :func:`compare_special`."""
    failures: list[str] = []
    for (name_a, ra), (name_b, rb) in itertools.combinations(results.items(), 2):
        pair = f"{name_a} vs {name_b}"
        if len(ra.outputs) != len(rb.outputs):
            failures.append(f"outputs [{pair}]: {len(ra.outputs)} vs {len(rb.outputs)} outputs")
        for label, a, b in zip(ra.output_labels(), ra.outputs, rb.outputs):
            compare(label, pair, a, b, dtype, failures)
        compare_named("grad of input", pair, ra.input_grads, rb.input_grads, dtype, failures, compare)
        compare_named("grad of", pair, ra.param_grads, rb.param_grads, dtype, failures, compare)
    return failures


def assert_no_failures(failures: list[str], what: str) -> None:
    if failures:
        raise AssertionError(f"{what}: {len(failures)} mismatch(es)\n  " + "\n  ".join(failures))


def assert_raises_exactly(error: type, message: str, call) -> None:
    """``call()`` raises exactly ``error`` (not a subclass) with exactly ``message``: how every tree
    reports one bad argument with one text."""
    try:
        call()
    except Exception as raised:  # noqa: BLE001 - any other exception is the failure reported below
        if type(raised) is error and str(raised) == message:
            return
        raise AssertionError(f"expected {error.__name__}({message!r}), got {type(raised).__name__}({str(raised)!r})") from raised
    raise AssertionError(f"expected {error.__name__}({message!r}), nothing was raised")
