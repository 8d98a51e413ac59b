"""Day 23: global-norm and value clipping of a ``{canonical name: gradient}`` dict in three trees,
against ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` (the reference: same formula,
same 1e-6, same NaN/inf results) and ``tf.clip_by_global_norm`` (another formula, converted by
:func:`tf_global_norm_to_torch`). Plus the day's figure script, ``examples/gradient_norms.py``.
"""
import math

import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TREES, assert_no_failures, assert_raises_exactly, compare_special, compare_tensors,
                                  to_canonical, to_tree)
from parity_tests.scripts import load_script, refusal

# Shapes of a small model's gradients: a matrix, a vector, an all-zero one (a dead unit's), a scalar.
SHAPES = {"weight_ih_l0": (4, 3), "bias_ih_l0": (4,), "zero": (2, 2), "scale": ()}
NORM_TYPES = (1.0, 2.0, math.inf, 3.0)


def clipping(tree: str):
    return get_module(tree, "generative.clipping")


def random_grads(dtype: str, seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    grads = {name: (scale * rng.standard_normal(shape)).astype(dtype) for name, shape in SHAPES.items()}
    grads["zero"][...] = 0
    return grads


def torch_reference(function: str, grads: dict[str, np.ndarray], *args, **kwargs):
    """``torch.nn.utils.<function>`` on parameters whose ``.grad`` are the gradients (None: no .grad);
    returns its result and the gradients after it."""
    params = {}
    for name, g in grads.items():
        params[name] = torch.nn.Parameter(torch.zeros(g.shape, dtype=getattr(torch, str(g.dtype))))
        params[name].grad = torch.from_numpy(np.array(g))
    result = getattr(torch.nn.utils, function)(list(params.values()), *args, **kwargs)
    return result, {name: p.grad.numpy() for name, p in params.items()}


def run_tree(tree: str, function: str, grads: dict[str, np.ndarray], *args, **kwargs):
    """The tree's ``<function>`` on its own tensors; returns its result and the dict's gradients after it."""
    tensors = {name: None if g is None else to_tree(tree, g) for name, g in grads.items()}
    result = getattr(clipping(tree), function)(tensors, *args, **kwargs)
    result = None if result is None else to_canonical(tree, result)
    return result, {name: None if g is None else to_canonical(tree, g) for name, g in tensors.items()}


def compare_with_torch(function: str, grads: dict, dtype: str, *args, compare=compare_tensors, **kwargs) -> None:
    """Every tree's result and clipped gradients against torch's, for one call."""
    expected, expected_grads = torch_reference(function, grads, *args, **kwargs)
    failures = []
    for tree in TREES:
        result, clipped = run_tree(tree, function, grads, *args, **kwargs)
        if expected is not None:
            compare("total norm", f"{tree} vs torch.nn.utils", result, expected.numpy(), dtype, failures)
        for name, g in clipped.items():
            compare(f"clipped {name}", f"{tree} vs torch.nn.utils", g, expected_grads[name], dtype, failures)
    assert_no_failures(failures, f"{function}{args} {kwargs}, {dtype}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("max_norm", [0.5, 1e3, 0.0])
def test_clip_grad_norm_matches_torch(dtype, norm_type, max_norm):
    # 0.5 clips, 1e3 leaves the gradients as they are (coefficient clamped to 1), 0 zeroes them.
    compare_with_torch("clip_grad_norm_", random_grads(dtype), dtype, max_norm, norm_type)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_clip_grad_value_matches_torch(dtype):
    compare_with_torch("clip_grad_value_", random_grads(dtype), dtype, 0.5)


@pytest.mark.parametrize("tree", TREES)
def test_the_total_norm_is_torchs_with_its_1e_minus_6(tree):
    # |(3, 4)| = 5: clipped to max_norm 1 the gradient is (3, 4) / (5 + 1e-6), not (3, 4) / 5.
    result, clipped = run_tree(tree, "clip_grad_norm_", {"w": np.array([3.0, 4.0])}, 1.0)
    assert result == 5.0 and result.dtype == np.float64
    np.testing.assert_allclose(clipped["w"], np.array([3.0, 4.0]) / (5.0 + 1e-6), rtol=1e-15)
    assert not np.allclose(clipped["w"], [0.6, 0.8], rtol=1e-9, atol=0)


@pytest.mark.parametrize("tree", TREES)
def test_the_gradients_change_in_the_callers_dict(tree):
    """NumPy arrays and torch tensors are changed in place (a model holding them sees the clipped
    values); TF tensors are immutable, so the dict's entries are replaced."""
    tensors = {"w": to_tree(tree, np.array([3.0, 4.0]))}
    before = tensors["w"]
    clipping(tree).clip_grad_norm_(tensors, 1.0)
    assert np.allclose(to_canonical(tree, tensors["w"]), [0.6, 0.8], rtol=1e-5)
    assert (tensors["w"] is before) == (tree != "tf")
    if tree != "tf":
        assert np.allclose(to_canonical(tree, before), [0.6, 0.8], rtol=1e-5)


# Special values, in float64, for every norm type: torch's NaN/inf pattern in the norm and the gradients.
SPECIAL = {
    "NaN": lambda g: g.__setitem__((0, 1), np.nan),
    "+inf": lambda g: g.__setitem__((0, 1), np.inf),
    "-inf": lambda g: g.__setitem__((0, 1), -np.inf),
    "huge": lambda g: g.__setitem__((0, 1), 1e100),
    "overflow": lambda g: g.__setitem__((0, 1), 1e200),
}


@pytest.mark.parametrize("special", SPECIAL)
@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_special_values_match_torch(special, norm_type):
    """A NaN gradient makes the norm and every gradient NaN; an inf norm makes finite entries 0 and
    infinite ones NaN; |x|^p overflowing (1e200 squared) is an inf norm, as torch (no rescaling)."""
    grads = random_grads("float64")
    SPECIAL[special](grads["weight_ih_l0"])
    compare_with_torch("clip_grad_norm_", grads, "float64", 1.0, norm_type, compare=compare_special)
    compare_with_torch("clip_grad_value_", grads, "float64", 0.5, compare=compare_special)


@pytest.mark.parametrize("grads", [{}, {"w": None}], ids=["empty dict", "only None"])
def test_no_gradients_give_torchs_float32_zero(grads):
    expected, _ = torch_reference("clip_grad_norm_", {}, 1.0)
    for tree in TREES:
        result, after = run_tree(tree, "clip_grad_norm_", grads, 1.0)
        assert result.dtype == expected.numpy().dtype == np.float32 and result == expected.numpy() == 0
        assert after == grads
        run_tree(tree, "clip_grad_value_", grads, 1.0)


def test_none_gradients_are_skipped_as_torch_skips_parameters_without_grad():
    grads = random_grads("float64")
    expected, expected_grads = torch_reference("clip_grad_norm_", grads, 0.5)
    for tree in TREES:
        tensors = {**{name: to_tree(tree, g) for name, g in grads.items()}, "frozen": None}
        result = clipping(tree).clip_grad_norm_(tensors, 0.5)
        assert tensors["frozen"] is None
        np.testing.assert_allclose(to_canonical(tree, result), expected.numpy(), rtol=1e-9)
        np.testing.assert_allclose(to_canonical(tree, tensors["weight_ih_l0"]), expected_grads["weight_ih_l0"], rtol=1e-9)


NONFINITE = ("get_total_norm: the total norm of order 2.0 of the gradients is non-finite, so it cannot be clipped. "
             "To scale the gradients by the non-finite norm anyway, set error_if_nonfinite=False")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_error_if_nonfinite_raises_as_torch_and_changes_nothing(value):
    grads = {"w": np.array([1.0, value]), "b": np.array([2.0])}
    with pytest.raises(RuntimeError, match="non-finite, so it cannot be clipped"):
        torch_reference("clip_grad_norm_", grads, 1.0, error_if_nonfinite=True)
    for tree in TREES:
        tensors = {name: to_tree(tree, g) for name, g in grads.items()}
        assert_raises_exactly(RuntimeError, NONFINITE,
                              lambda: clipping(tree).clip_grad_norm_(tensors, 1.0, error_if_nonfinite=True))
        assert to_canonical(tree, tensors["b"]) == 2.0


def test_error_if_nonfinite_inside_tf_function_raises_when_the_graph_runs():
    """Inside ``tf.function`` the norm has no value while tracing: TF's own check raises at run time."""
    step = tf.function(lambda g: clipping("tf").clip_grad_norm_({"w": g}, 1.0, error_if_nonfinite=True))
    assert float(step(tf.constant([3.0, 4.0]))) == pytest.approx(5.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite, so it cannot be clipped"):
        step(tf.constant([3.0, np.nan]))


def test_the_inf_norm_of_an_empty_gradient_is_refused_as_torch_refuses_it():
    grads = {"w": np.ones(2), "empty": np.zeros((3, 0))}
    with pytest.raises(RuntimeError, match="cannot compute the infinity norm on an empty tensor"):
        torch_reference("clip_grad_norm_", grads, 1.0, math.inf)
    message = ("get_total_norm: cannot compute the inf norm of the empty gradient(s) ['empty']: "
               "a max over no elements has no value")
    for tree in TREES:
        tensors = {name: to_tree(tree, g) for name, g in grads.items()}
        assert_raises_exactly(RuntimeError, message, lambda: clipping(tree).clip_grad_norm_(tensors, 1.0, "inf"))
    # Any finite p: the empty gradient's norm is 0, as torch's.
    compare_with_torch("clip_grad_norm_", grads, "float64", 1.0, 2.0)


def tf_global_norm_to_torch(clipped: list, global_norm: float, clip_norm: float) -> list[np.ndarray]:
    """``tf.clip_by_global_norm``'s ``g * c / max(nu, c)`` as torch's ``g * min(c / (nu + 1e-6), 1)``:
    where TF clips, times ``nu / (nu + 1e-6)``; where it does not, the same."""
    factor = global_norm / (global_norm + 1e-6) if global_norm > clip_norm else 1.0
    return [np.asarray(g) * factor for g in clipped]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_tf_clip_by_global_norm_after_conversion(dtype, max_norm):
    """TF's formula has no 1e-6: its clipped gradients differ from torch's by the factor
    nu / (nu + 1e-6) (2e-7 relative here: beyond float64's 1e-9), which the conversion applies."""
    grads = random_grads(dtype)
    clipped, global_norm = tf.clip_by_global_norm([tf.constant(g) for g in grads.values()], max_norm)
    converted = tf_global_norm_to_torch(clipped, float(global_norm), max_norm)
    failures = []
    for tree in TREES:
        result, ours = run_tree(tree, "clip_grad_norm_", grads, max_norm)
        compare_tensors("total norm", f"{tree} vs tf.clip_by_global_norm", result, np.asarray(global_norm), dtype, failures)
        for name, g in zip(grads, converted):
            compare_tensors(f"clipped {name}", f"{tree} vs tf.clip_by_global_norm", ours[name], g, dtype, failures)
    assert_no_failures(failures, f"tf.clip_by_global_norm, {dtype}")
    if max_norm < float(global_norm) and dtype == "float64":
        unconverted = np.asarray(clipped[0])
        assert not np.allclose(ours["weight_ih_l0"], unconverted, rtol=1e-9, atol=0)


def test_tf_clip_by_global_norm_of_zero_gradients_with_clip_norm_zero_is_nan():
    """TF's ``c * min(1/nu, 1/c)`` is 0 * inf = NaN for nu = c = 0; torch's 1e-6 gives 0."""
    clipped, _ = tf.clip_by_global_norm([tf.zeros(3, tf.float64)], 0.0)
    assert np.all(np.isnan(clipped[0]))
    for tree in TREES:
        _, ours = run_tree(tree, "clip_grad_norm_", {"w": np.zeros(3)}, 0.0)
        assert np.array_equal(ours["w"], np.zeros(3))


def test_tf_indexed_slices_are_made_dense_before_the_norm():
    """The gradient of a gather with a repeated index is ``IndexedSlices``; ``tf.clip_by_global_norm``
    takes the norm of its rows as they are (sqrt(6) here), ours of the dense sum (sqrt(10))."""
    table = tf.Variable(tf.ones((4, 2)))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table, [1, 1, 2]))
    grads = {"weight": tape.gradient(loss, table)}
    assert isinstance(grads["weight"], tf.IndexedSlices)
    assert float(tf.clip_by_global_norm([grads["weight"]], 100.0)[1]) == pytest.approx(math.sqrt(6))
    assert float(clipping("tf").clip_grad_norm_(grads, 100.0)) == pytest.approx(math.sqrt(10))
    assert isinstance(grads["weight"], tf.Tensor)


@pytest.mark.parametrize("tree", TREES)
def test_a_clipped_training_step_matches_torch(tree):
    """Gradients from the tree's own Linear and MSE loss, clipped, then one SGD step: the same
    weights as torch.nn.Linear + clip_grad_norm_ + torch.optim.SGD."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 5)), 10 * rng.standard_normal((8, 3))
    state = {"weight": rng.standard_normal((3, 5)), "bias": rng.standard_normal(3)}
    linear = torch.nn.Linear(5, 3, dtype=torch.float64)
    linear.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    torch.nn.functional.mse_loss(linear(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    expected_norm = torch.nn.utils.clip_grad_norm_(linear.parameters(), 1.0)
    torch.optim.SGD(linear.parameters(), lr=0.1).step()

    model = get_module(tree, "foundations.linear").Linear(5, 3, dtype="float64")
    model.load_canonical_state_dict(state)
    loss_fn = get_module(tree, "foundations.losses").MSELoss(dtype="float64")
    optimizer = get_module(tree, "foundations.optim").SGD(dict(model.named_parameters()), lr=0.1)
    if tree == "numpy":
        model.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward(np.ones(())))
        grads = dict(model.named_grads())
    elif tree == "torch":
        loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        grads = {name: p.grad for name, p in model.named_parameters()}
    else:
        params = dict(model.named_parameters())
        with tf.GradientTape() as tape:
            loss = loss_fn(model(tf.constant(x)), tf.constant(y))
        grads = dict(zip(params, tape.gradient(loss, list(params.values()))))
    total_norm = clipping(tree).clip_grad_norm_(grads, 1.0)
    optimizer.step(grads)
    assert float(total_norm) == pytest.approx(float(expected_norm), rel=1e-12)
    for name, value in model.canonical_state_dict().items():
        np.testing.assert_allclose(value, linear.state_dict()[name].numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("call, error, message", [
    (lambda m: m.clip_grad_norm_([np.ones(2)], 1.0), TypeError,
     "get_total_norm: grads must be a dict {canonical name: gradient}, got list"),
    (lambda m: m.clip_grad_norm_({"w": np.ones(2)}, -1.0), ValueError,
     "clip_grad_norm_: max_norm must be a real number >= 0, got -1.0"),
    (lambda m: m.clip_grad_norm_({"w": np.ones(2)}, float("nan")), ValueError,
     "clip_grad_norm_: max_norm must be a real number >= 0, got nan"),
    (lambda m: m.clip_grad_norm_({"w": np.ones(2)}, "1"), TypeError, "clip_grad_norm_: max_norm must be a real number, got '1'"),
    (lambda m: m.clip_grad_norm_({"w": np.ones(2)}, 1.0, 0), ValueError,
     "get_total_norm: norm_type must be a real number > 0, inf or 'inf', got 0"),
    (lambda m: m.clip_grad_norm_({"w": np.ones(2)}, 1.0, -math.inf), ValueError,
     "get_total_norm: norm_type must be a real number > 0, inf or 'inf', got -inf"),
    (lambda m: m.clip_grad_norm_({"w": np.ones(2)}, 1.0, "two"), TypeError,
     "get_total_norm: norm_type must be a real number, got 'two'"),
    (lambda m: m.clip_grad_norm_({"w": np.ones(2)}, 1.0, 2.0, 1), TypeError,
     "get_total_norm: error_if_nonfinite must be a bool (True or False), got 1"),
    (lambda m: m.clip_grad_norm_({"w": np.ones(2), "b": np.ones(2, np.float32)}, 1.0), TypeError,
     "get_total_norm: the gradients must share one dtype among ('float32', 'float64'), got ['float32', 'float64']"),
    (lambda m: m.clip_grad_norm_({"w": np.ones(2, np.int64)}, 1.0), TypeError,
     "get_total_norm: the gradients must share one dtype among ('float32', 'float64'), got ['int64']"),
    (lambda m: m.clip_grad_value_({"w": np.ones(2)}, -0.5), ValueError,
     "clip_grad_value_: clip_value must be a real number >= 0, got -0.5"),
], ids=["list", "negative max_norm", "NaN max_norm", "string max_norm", "norm_type 0", "norm_type -inf", "norm_type string",
        "error_if_nonfinite int", "mixed dtypes", "int dtype", "negative clip_value"])
@pytest.mark.parametrize("tree", TREES)
def test_bad_arguments_give_one_error_in_every_tree(tree, call, error, message):
    """torch accepts a negative max_norm (it flips every gradient), norm_type 0 (a count of
    non-zeros) and mixed dtypes (promoted): refused here. The arrays are the tree's own."""
    module = clipping(tree)

    class TreeArrays:
        """``module`` whose functions get the tree's tensors in place of the NumPy arrays written above."""
        def __getattr__(self, name):
            def call_with_tree_arrays(grads, *args):
                if isinstance(grads, dict):
                    grads = {k: to_tree(tree, v) for k, v in grads.items()}
                return getattr(module, name)(grads, *args)
            return call_with_tree_arrays

    assert_raises_exactly(error, message, lambda: call(TreeArrays()))


@pytest.mark.parametrize("tree, other", [("numpy", "torch"), ("torch", "numpy"), ("tf", "numpy")])
def test_another_frameworks_gradient_is_refused(tree, other):
    expected = {"numpy": "numpy.ndarray", "torch": "torch.Tensor", "tf": "tf.Tensor or tf.IndexedSlices"}[tree]
    grads = {"w": to_tree(other, np.ones(2))}
    got = type(grads["w"]).__name__
    assert_raises_exactly(TypeError, f"get_total_norm: grads['w'] must be a {expected}, got {got}",
                          lambda: clipping(tree).clip_grad_norm_(grads, 1.0))


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 6), min_size=1, max_size=4), seed=st.integers(0, 2**16),
       log_scale=st.floats(-3, 3), norm_type=st.sampled_from((1.0, 2.0, 0.5, 4.0)),
       max_norm=st.one_of(st.just(0.0), st.floats(1e-3, 10)))
def test_random_gradients_match_torch(sizes, seed, log_scale, norm_type, max_norm):
    """Thresholds are 0 or at least 1e-3, so the clipping coefficient max_norm / norm stays a normal
    number: TF's CPU kernels flush subnormals to zero (a coefficient of 1e-313 / norm becomes 0
    there; hypothesis found even max_norm = 2.2e-308, the smallest normal, divided by a norm above 1),
    torch and NumPy keep them — see test_tf_flushes_subnormals_to_zero."""
    rng = np.random.default_rng(seed)
    grads = {f"g{i}": 10.0 ** log_scale * rng.standard_normal(size) for i, size in enumerate(sizes)}
    compare_with_torch("clip_grad_norm_", grads, "float64", max_norm, norm_type)


def test_tf_flushes_subnormals_to_zero():
    """Why the fuzz draws normal thresholds only: the same clipping with a subnormal max_norm."""
    grads = {"w": np.array([3.0, 4.0])}
    expected, expected_grads = torch_reference("clip_grad_norm_", grads, 1e-310)
    assert expected_grads["w"][0] > 0
    assert run_tree("numpy", "clip_grad_norm_", grads, 1e-310)[1]["w"][0] == expected_grads["w"][0]
    assert run_tree("tf", "clip_grad_norm_", grads, 1e-310)[1]["w"][0] == 0


# --- the day's figure --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "argument --steps: expected an integer >= 1, got '0'"),
    (["--backend", "jax"], "argument --backend: invalid choice: 'jax'"),
    (["--radius", "0", "2"], "argument --radius: expected a finite number > 0, got '0'"),
    (["--max-norm", "-1"], "argument --max-norm: expected a finite number > 0, got '-1'"),
    (["--plot", "norms.txt"], "'norms.txt' needs one of matplotlib's extensions"),
    (["--plot", "no/such/folder/norms.png"], "folder 'no/such/folder' of 'no/such/folder/norms.png' does not exist"),
])
def test_gradient_norms_refuses_bad_arguments(argv, message, capsys):
    assert message in refusal(load_script("examples/gradient_norms.py").main, argv, capsys)


@pytest.mark.parametrize("backend", TREES)
def test_gradient_norms_writes_the_png(backend, tmp_path, capsys):
    path = tmp_path / "norms.png"
    assert load_script("examples/gradient_norms.py").main(["--backend", backend, "--steps", "6", "--plot", str(path)]) == 0
    assert path.read_bytes().startswith(b"\x89PNG")
    out = capsys.readouterr().out
    assert f"saved to {path}" in out and "exploding" in out and "vanishing" in out


def test_gradient_norms_per_step_agree_across_trees():
    """The figure's numbers do not depend on the backend: the per-step norms from the three trees' RNNs
    agree in float64, shrink for radius 0.5 and grow for radius 3."""
    script = load_script("examples/gradient_norms.py")
    args = script.build_parser().parse_args(["--steps", "8"])
    failures = []
    for radius in (0.5, 3.0):
        problem = script.rnn_problem(radius, args, np.random.default_rng(0))
        norms = {tree: script.step_norms(tree, *problem) for tree in TREES}
        for tree in TREES[1:]:
            compare_tensors(f"||dL/dh_t||, radius {radius}", f"{tree} vs numpy", norms[tree], norms["numpy"], "float64", failures)
        assert (norms["numpy"][0] < norms["numpy"][-1]) == (radius < 1)
    assert_no_failures(failures, "gradient_norms.py")

