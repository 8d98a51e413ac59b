"""The harness's own tests: each case kind passes when the trees agree and names a planted mismatch.

The topics here are fakes written for the test, one per tree on that tree's own ``Module`` base, so
that one tree can be made wrong on purpose (a float output off by 1e-6, an integer off by one, an
int32 where int64 is due, a NaN turned into 0) and the failure message checked for the tensor,
the pair and the step it must name.
"""
import numpy as np
import pytest
import tensorflow as tf
import torch

from ml100.backends import BACKENDS, get_module
from parity_tests.harness import (SPECIAL_PASSES, TREES, Case, Result, Trajectory, check_parity, check_trajectory,
                                  compare_results, compare_special, gradcheck_numpy, torch_functional_reference,
                                  torch_module_reference)
from parity_tests.harness.special import empty_batch, with_special_values

WIDTH, N = 4, 3
TREE_OF_PACKAGE = {package: tree for tree, package in BACKENDS.items()}


def tree_of(module) -> str:
    """The tree a module of ``numpy_impl``/``torch_impl``/``tf_impl`` belongs to."""
    return TREE_OF_PACKAGE[module.__name__.split(".")[0]]


# --- A stateful step with an integer input and an integer output --------------------------------
#     output = x * weight + h0;  h_n = tanh(x) * h0;  c_n = x[n, ids[n]];  lengths = ids + 1
#     returned as (output, (h_n, c_n), lengths), the shape of an RNN's (output, (h_n, c_n)).

class NumpyStep(get_module("numpy", "module").Module):
    def __init__(self, dtype, plant=None):
        super().__init__(dtype)
        self.params["weight"] = np.zeros(WIDTH, self.dtype)
        self.zero_grad()
        self.plant = plant

    def forward(self, x, h0, ids):
        self.save_for_backward(x, h0, ids)
        outputs = x * self.params["weight"] + h0, (np.tanh(x) * h0, x[np.arange(len(ids)), ids]), ids + 1
        return outputs if self.plant is None else self.plant(outputs)

    def backward(self, g_output, g_h_n, g_c_n):
        x, h0, ids = self.saved_for_backward()
        self.grads["weight"] += (g_output * x).sum(axis=0)  # (W,)
        g_x = g_output * self.params["weight"] + g_h_n * (1 - np.tanh(x) ** 2) * h0  # (N, W)
        # c_n picks one element per row: its cotangent goes back to that element only.
        np.add.at(g_x, (np.arange(len(ids)), ids), g_c_n)
        return g_x, g_output + g_h_n * np.tanh(x)


class TorchStep(get_module("torch", "module").Module):
    def __init__(self, dtype, plant=None):
        super().__init__(dtype)
        self.weight = torch.nn.Parameter(torch.zeros(WIDTH, dtype=getattr(torch, dtype)))
        self.plant = plant

    def forward(self, x, h0, ids):
        outputs = x * self.weight + h0, (torch.tanh(x) * h0, x[torch.arange(len(ids)), ids]), ids + 1
        return outputs if self.plant is None else self.plant(outputs)


class TFStep(get_module("tf", "module").Module):
    def __init__(self, dtype, plant=None):
        super().__init__(dtype)
        self.weight = self.add_param("weight", np.zeros(WIDTH))
        self.plant = plant

    def forward(self, x, h0, ids):
        outputs = x * self.weight + h0, (tf.tanh(x) * h0, tf.gather(x, ids, batch_dims=1)), ids + 1
        return outputs if self.plant is None else self.plant(outputs)


STEPS = {"numpy": NumpyStep, "torch": TorchStep, "tf": TFStep}


def step_case(plants=None, output_names=("output", "h_n", "c_n", "lengths"), **fields):
    """``plants`` maps a tree to a function that spoils its nested outputs."""
    plants = plants or {}

    def inputs(dtype, rng):
        return {"x": rng.standard_normal((N, WIDTH)).astype(dtype), "h0": rng.standard_normal((N, WIDTH)).astype(dtype),
                "ids": rng.integers(0, WIDTH, N)}

    return Case(
        module="module",
        build=lambda m, dtype, rng: STEPS[tree_of(m)](dtype, plants.get(tree_of(m))),
        inputs=inputs,
        differentiable=("x", "h0"),
        output_names=output_names,
        references={"torch reference": torch_module_reference(lambda dtype: TorchStep(dtype), ("x", "h0"))},
        **fields,
    )


def spoil_c_n(outputs):
    output, (h_n, c_n), lengths = outputs
    return output, (h_n, c_n * (1 + 1e-6)), lengths


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_several_inputs_and_outputs_with_state_and_integers(dtype):
    results = check_parity(step_case(), dtype)
    lengths = results["tf"].outputs[3]
    assert lengths.dtype == np.int64 and set(results["numpy"].input_grads) == {"x", "h0"}
    assert results["numpy"].output_names == ("output", "h_n", "c_n", "lengths")


def test_several_inputs_and_outputs_gradcheck():
    gradcheck_numpy(step_case())


def test_a_float_output_off_by_1e_6_is_named_in_float64_only():
    planted = step_case({"tf": spoil_c_n})
    with pytest.raises(AssertionError, match=r"output c_n \[numpy vs tf\]: max abs err .* > 1e-09"):
        check_parity(planted, "float64")
    check_parity(planted, "float32")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_integer_output_off_by_one_is_named(dtype):
    def add_one(outputs):
        output, state, lengths = outputs
        return output, state, lengths + (torch.arange(len(lengths)) == 1)

    with pytest.raises(AssertionError, match=r"output lengths \[numpy vs torch\]: 1 element\(s\) differ, first at \(1,\)"):
        check_parity(step_case({"torch": add_one}), dtype)


def test_an_integer_output_of_another_dtype_is_named():
    def as_int32(outputs):
        output, state, lengths = outputs
        return output, state, tf.cast(lengths, tf.int32)

    with pytest.raises(AssertionError, match=r"output lengths \[numpy vs tf\]: dtypes differ int64 vs int32"):
        check_parity(step_case({"tf": as_int32}), "float32")


def test_a_wrong_gradient_of_a_state_input_is_named(monkeypatch):
    backward = NumpyStep.backward
    monkeypatch.setattr(NumpyStep, "backward", lambda self, *g: (lambda gx, gh: (gx, gh * (1 + 1e-6)))(*backward(self, *g)))
    with pytest.raises(AssertionError, match=r"grad of input h0 \[numpy vs torch\]"):
        check_parity(step_case(), "float64")


def test_output_names_must_match_the_outputs():
    with pytest.raises(AssertionError, match=r"numpy returned 4 outputs, the case names 3"):
        check_parity(step_case(output_names=("output", "h_n", "c_n")), "float64")


def test_results_compare_integers_exactly_whatever_the_dtype():
    a = Result([np.array([1, 2, 3])], {}, {})
    b = Result([np.array([1, 2, 4])], {}, {})
    assert compare_results({"numpy": a, "torch": b}, "float32") == [
        "output[0] [numpy vs torch]: 1 element(s) differ, first at (2,): np.int64(3) vs np.int64(4)"]


# --- Forward-only: no backward anywhere; integers exact, floats by tolerance ----------------------

FORWARD = {
    "numpy": lambda x: (np.sort(x, axis=-1), np.argsort(x, axis=-1, kind="stable")),
    "torch": lambda x: torch.sort(x, dim=-1, stable=True),
    # tf.argsort returns int32: cast, as a forward-only topic in the TF tree must.
    "tf": lambda x: (tf.sort(x, axis=-1), tf.cast(tf.argsort(x, axis=-1, stable=True), tf.int64)),
}


def sort_case(plant_tf=None):
    """A forward-only topic (as NMS or BPE will be): sorted values and the permutation, per row."""
    def build(m, dtype, rng):
        fn = FORWARD[tree_of(m)]
        return fn if tree_of(m) != "tf" or plant_tf is None else (lambda x: plant_tf(*fn(x)))

    return Case(
        module="module",
        build=build,
        inputs=lambda dtype, rng: {"x": rng.standard_normal((N, 5)).astype(dtype)},
        differentiable=(),
        forward_only=True,
        output_names=("values", "indices"),
        references={"torch.sort": torch_functional_reference(lambda x: torch.sort(x, dim=-1, stable=True), (),
                                                             forward_only=True)},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forward_only_case(dtype):
    results = check_parity(sort_case(), dtype)
    assert results["tf"].outputs[1].dtype == np.int64 and results["tf"].input_grads == {} == results["tf"].param_grads


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forward_only_integer_output_off_by_one(dtype):
    with pytest.raises(AssertionError, match=r"output indices \[numpy vs tf\]: 1 element\(s\) differ, first at \(0, 0\)"):
        check_parity(sort_case(lambda values, indices: (values, tf.tensor_scatter_nd_add(indices, [[0, 0]], tf.ones(1, tf.int64)))),
                     dtype)


def test_forward_only_integer_dtype_and_float_tolerance():
    with pytest.raises(AssertionError, match=r"output indices \[numpy vs tf\]: dtypes differ int64 vs int32"):
        check_parity(sort_case(lambda values, indices: (values, tf.cast(indices, tf.int32))), "float64")
    with pytest.raises(AssertionError, match=r"output values \[numpy vs tf\]: max abs err"):
        check_parity(sort_case(lambda values, indices: (values * (1 + 1e-6), indices)), "float64")


# --- Trajectories: every named array after every step ---------------------------------------------

def decay_trajectory(plant=None, steps=4):
    """A stateful process: p <- p / 2 + 1 and a step counter, in every 'tree' and a reference;
    ``plant(tree, t, arrays)`` may spoil one of them."""
    def start(name, dtype):
        return {"name": name, "p": np.linspace(-1.0, 1.0, 3).astype(dtype), "count": np.zeros((), np.int64)}

    def step(state, t):
        state["p"] = state["p"] / 2 + 1
        state["count"] = state["count"] + 1
        arrays = {"p": state["p"], "count": state["count"]}
        return arrays if plant is None else plant(state["name"], t, arrays)

    return Trajectory(steps, start, step, references={"reference": (lambda dtype: start("reference", dtype), step)})


def test_trajectory_passes_and_keeps_every_step():
    histories = check_trajectory(decay_trajectory(), "float64", "decay")
    assert set(histories) == {*TREES, "reference"} and len(histories["tf"]) == 4
    np.testing.assert_array_equal(histories["numpy"][0]["p"], [0.5, 1.0, 1.5])
    assert int(histories["reference"][-1]["count"]) == 4


def test_trajectory_names_the_step_and_tensor():
    def spoil(name, t, arrays):
        return {**arrays, "p": arrays["p"] * (1 + 1e-6)} if name == "tf" and t >= 3 else arrays

    with pytest.raises(AssertionError, match=r"decay: first divergence at step 3 of 4 \(float64\).*\n.*p after step 3 \[numpy vs tf\]"):
        check_trajectory(decay_trajectory(spoil), "float64", "decay")


def test_trajectory_compares_integers_exactly():
    def skip_a_count(name, t, arrays):
        return {**arrays, "count": arrays["count"] + 1} if name == "reference" and t == 2 else arrays

    with pytest.raises(AssertionError, match=r"count after step 2 \[numpy vs reference\]: 1 element\(s\) differ"):
        check_trajectory(decay_trajectory(skip_a_count), "float32", "decay")


def test_trajectory_names_a_missing_array():
    def drop(name, t, arrays):
        return {"p": arrays["p"]} if name == "torch" else arrays

    with pytest.raises(AssertionError, match=r"step 1 \[numpy vs torch\]: names differ \['count'\]"):
        check_trajectory(decay_trajectory(drop), "float64", "decay")


# --- The special-values pass and the empty batch ---------------------------------------------------

def nan_to_zero(outputs):
    """The ReLU-written-as-where bug: NaN comes out as 0."""
    output, (h_n, c_n), lengths = outputs
    return output, (tf.where(tf.math.is_nan(h_n), tf.zeros_like(h_n), h_n), c_n), lengths


def test_special_values_catch_nan_turned_into_zero():
    planted = step_case({"tf": nan_to_zero})
    check_parity(planted, "float32")  # no NaN in ordinary inputs: the bug is invisible there
    with pytest.raises(AssertionError, match=r"special values of module \(float64\).*\n.*nan in sample 0 and at one element "
                                             r"of the last: output h_n \[torch reference vs tf\]: NaN at \d+ vs 0 position"):
        check_parity(planted, "float64")


def test_special_values_catch_the_wrong_sign_of_inf():
    def flip_infinities(outputs):
        output, (h_n, c_n), lengths = outputs
        return output, (h_n, np.where(np.isinf(c_n), -c_n, c_n)), lengths

    with pytest.raises(AssertionError, match=r"-inf in sample 0, \+inf at one element of the last: output c_n "
                                             r"\[torch reference vs numpy\]: \+inf at .* first difference at \(0,\): "
                                             r"np.float64\(-inf\) vs np.float64\(inf\)"):
        check_parity(step_case({"numpy": flip_infinities}), "float64")


def test_special_values_catch_an_overflow_at_extreme_magnitudes():
    def overflow(outputs):
        output, (h_n, c_n), lengths = outputs
        return torch.where(output.abs() > 1e50, torch.full_like(output, torch.inf), output), (h_n, c_n), lengths

    with pytest.raises(AssertionError, match=r"inputs times 1e\+100, -0.0 and \+0.0 at two elements of the last sample: "
                                             r"output output \[torch reference vs torch\]: \+inf at 0 vs \d+ position"):
        check_parity(step_case({"torch": overflow}), "float64")


def test_special_values_catch_a_gradient_that_drops_nan(monkeypatch):
    backward = NumpyStep.backward

    def drops_nan(self, *cotangents):
        g_x, g_h0 = backward(self, *cotangents)
        return np.nan_to_num(g_x, nan=0.0), g_h0

    monkeypatch.setattr(NumpyStep, "backward", drops_nan)
    with pytest.raises(AssertionError, match=r"nan in sample 0 .*: grad of input x \[torch reference vs numpy\]: NaN at"):
        check_parity(step_case(), "float64")


def test_raising_is_an_outcome_all_must_share():
    def refuse_nan(outputs):
        if torch.isnan(outputs[0]).any():
            raise ValueError("x must be finite")
        return outputs

    with pytest.raises(AssertionError, match=r"nan in sample 0 .*: numpy, tf, torch reference ran but torch raised "
                                             r"ValueError: x must be finite"):
        check_parity(step_case({"torch": refuse_nan}), "float64")


def test_empty_batch_catches_a_tree_that_crashes():
    def crash_on_empty(outputs):
        if len(outputs[2]) == 0:
            raise IndexError("no rows")
        return outputs

    with pytest.raises(AssertionError, match=r"empty batch: torch, tf, torch reference ran but numpy raised IndexError: no rows"):
        check_parity(step_case({"numpy": crash_on_empty}), "float64")


def test_empty_batch_leaves_out_a_reference_that_refuses_it():
    def refusing_reference(state, inputs, cotangents, dtype):
        if len(inputs["ids"]) == 0:
            raise RuntimeError("stack expects a non-empty TensorList")
        return torch_module_reference(lambda dtype: TorchStep(dtype), ("x", "h0"))(state, inputs, cotangents, dtype)

    case = step_case()
    case.references = {"per-row reference": refusing_reference}
    check_parity(case, "float64")


def test_opt_outs_are_explicit_and_honoured():
    planted = step_case({"tf": nan_to_zero}, special_opt_out="written reason: the test covers special values itself")
    check_parity(planted, "float64")
    # A reference left out of the pass is not run there; the trees are still compared to each other.
    reference_only = step_case(special_excluded_references={"torch reference": "written reason"})
    check_parity(reference_only, "float64")
    with pytest.raises(AssertionError, match=r"output h_n \[numpy vs tf\]: NaN at"):
        check_parity(step_case({"tf": nan_to_zero}, special_excluded_references={"torch reference": "written reason"}), "float64")


def test_special_inputs_keep_integers_and_finite_inputs_untouched():
    case = step_case(special_finite_inputs={"h0": "finite by contract (written reason)"})
    inputs = case.inputs("float64", np.random.default_rng(0))
    nan_pass, inf_pass, huge_pass = SPECIAL_PASSES
    special = with_special_values(case, inputs, nan_pass)
    np.testing.assert_array_equal(special["ids"], inputs["ids"])
    np.testing.assert_array_equal(special["h0"], inputs["h0"])
    assert np.all(np.isnan(special["x"][0])) and np.isnan(special["x"][-1]).sum() == 1 and np.all(np.isfinite(special["x"][1]))
    special = with_special_values(case, inputs, inf_pass)
    assert np.all(special["x"][0] == -np.inf) and np.sum(special["x"][-1] == np.inf) == 1
    special = with_special_values(case, inputs, huge_pass)
    assert np.sum(special["x"][-1] == 0) == 2 and np.sum(np.signbit(special["x"][-1]) & (special["x"][-1] == 0)) == 1
    np.testing.assert_array_equal(special["x"][0], inputs["x"][0] * 1e100)
    # The same elements every run.
    np.testing.assert_array_equal(with_special_values(case, inputs, nan_pass)["x"], with_special_values(case, inputs, nan_pass)["x"])


def test_compare_special_patterns_and_values():
    a = np.array([np.nan, np.inf, -np.inf, 1.0, 0.0])
    failures = []
    compare_special("t", "a vs b", a, a.copy(), "float64", failures)
    compare_special("t", "a vs b", a, np.array([np.nan, np.inf, -np.inf, 1.0, -0.0]), "float64", failures)
    assert failures == [], "equal patterns, equal values, zeros of either sign"
    compare_special("t", "a vs b", a, np.array([0.0, np.inf, -np.inf, 1.0, 0.0]), "float64", failures)
    compare_special("t", "a vs b", a, np.array([np.nan, -np.inf, -np.inf, 1.0, 0.0]), "float64", failures)
    compare_special("t", "a vs b", a, np.array([np.nan, np.inf, -np.inf, 1.0 + 1e-6, 0.0]), "float64", failures)
    assert [f.split(":")[1].strip() for f in failures] == ["NaN at 1 vs 0 position(s); first difference at (0,)",
                                                           "+inf at 1 vs 0 position(s); first difference at (1,)",
                                                           "max abs err 1.000e-06, max rel err 1.000e-06 > 1e-09"]


def test_empty_batch_follows_each_inputs_batch_axis():
    case = step_case(batch_axes={"h0": 1, "ids": None})
    inputs = case.inputs("float64", np.random.default_rng(0))
    empty = empty_batch(case, inputs)
    assert empty["x"].shape == (0, WIDTH) and empty["h0"].shape == (N, 0) and empty["ids"].shape == (N,)
    assert empty["ids"].dtype == np.int64 and empty["x"].dtype == np.float64


def test_output_layouts_by_name_or_index():
    case = step_case(tf_output_layouts={"h_n": (1, 0), 0: (1, 0)})
    assert case.output_layouts() == {1: (1, 0), 0: (1, 0)}
