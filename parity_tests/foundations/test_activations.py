"""Day 5: activations in three trees, against ``torch.nn.functional`` and ``keras.activations``;
special values (NaN, ±inf, ±0, extreme and tiny magnitudes) value by value against torch, the
tails against closed forms, the empty batch, a layer used twice, and the constructor checks."""
import re

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import erfc, expit

from ml100.backends import get_module
from parity_tests.harness import (TOLERANCES, TREES, Case, assert_no_failures, check_parity, compare_special, gradcheck_numpy,
                                  run_tf, run_torch, run_tree, to_tree)

MODULE = "foundations.activations"

# name -> (constructor kwargs, torch.nn.functional reference, keras reference)
ACTIVATIONS = {
    "ReLU": ({}, F.relu, keras.activations.relu),
    # 0.25 is exact in float32, which matters: see test_keras_leaky_relu_rounds_its_slope_to_float32.
    "LeakyReLU": ({"negative_slope": 0.25}, lambda x: F.leaky_relu(x, 0.25), lambda x: keras.activations.leaky_relu(x, 0.25)),
    "ELU": ({"alpha": 1.3}, lambda x: F.elu(x, 1.3), lambda x: keras.activations.elu(x, 1.3)),
    # keras.activations.gelu defaults to the tanh form: both variants are set explicitly.
    "GELU": ({"approximate": "none"}, lambda x: F.gelu(x, approximate="none"), lambda x: keras.activations.gelu(x, approximate=False)),
    "GELU-tanh": ({"approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh"), lambda x: keras.activations.gelu(x, approximate=True)),
    "SiLU": ({}, F.silu, keras.activations.silu),
    "Sigmoid": ({}, torch.sigmoid, keras.activations.sigmoid),
    "Tanh": ({}, torch.tanh, keras.activations.tanh),
    "Softplus": ({}, F.softplus, keras.activations.softplus),
}


# tf.nn.gelu builds its constants (1/sqrt(2), 0.044715) as float32 and casts them up, so Keras'
# float64 GELU is float32-accurate only: see test_keras_gelu_constants_are_float32.
KERAS_FLOAT32_ONLY = {"GELU", "GELU-tanh"}


# TF's ReluGrad and EluGrad give a NaN input another slope than torch (1 for ReLU, NaN for ELU).
KERAS_SLOPE_AT_NAN = {"ReLU": 0.0, "ELU": 1.3}


def build(tree, name, dtype):
    """The activation ``name`` (``"GELU-tanh"`` is ``GELU(approximate="tanh")``) of ``tree``."""
    kwargs = ACTIVATIONS[name][0]
    return getattr(get_module(tree, MODULE), name.split("-")[0])(**kwargs, dtype=dtype)


def activation_case(name, dtype="float64"):
    kwargs, torch_fn, keras_fn = ACTIVATIONS[name]
    references = {
        "torch.nn.functional": lambda state, inputs, cot, dtype: run_torch(torch_fn, inputs, ("x",), cot, params={}),
        "keras.activations": lambda state, inputs, cot, dtype: run_tf(keras_fn, inputs, ("x",), cot, {}, lambda g: {}),
    }
    if dtype == "float64" and name in KERAS_FLOAT32_ONLY:
        del references["keras.activations"]
    # The special-values pass compares against torch; these references differ there by design.
    excluded = {}
    if name == "ELU":
        excluded["torch.nn.functional"] = ("torch's ELU slope at NaN depends on where the element sits (NaN from the "
                                           "vectorized loop, 1 from the scalar remainder): see TORCH_KERNEL_SPLITS")
    if name in KERAS_SLOPE_AT_NAN:
        excluded["keras.activations"] = f"TF's slope at NaN is {KERAS_SLOPE_AT_NAN[name]}: see test_keras_slope_at_nan"
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: getattr(m, name.split("-")[0])(**kwargs, dtype=dtype),
        # Away from 0 so the kink of ReLU-like functions is never straddled by finite differences.
        inputs=lambda dtype, rng: {"x": (rng.choice([-1, 1], (4, 6)) * rng.uniform(0.05, 4.0, (4, 6))).astype(dtype)},
        references=references,
        special_excluded_references=excluded,
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_parity(name, dtype):
    check_parity(activation_case(name, dtype), dtype)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradcheck(name):
    gradcheck_numpy(activation_case(name))


@pytest.mark.parametrize("name", ["Sigmoid", "Softplus", "SiLU", "ELU", "Tanh"])
def test_activation_extreme_inputs_stay_finite(name):
    """Inputs of ±1000 overflow a naive exp; every tree must stay finite and agree with torch."""
    kwargs, torch_fn, _ = ACTIVATIONS[name]
    x = np.array([-1000.0, -50.0, 0.5, 50.0, 1000.0])
    expected = torch_fn(torch.from_numpy(x)).numpy()
    for tree in TREES:
        got = np.asarray(build(tree, name, "float64")(to_tree(tree, x)))
        assert np.all(np.isfinite(got)), f"{tree} {name} overflowed: {got}"
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, err_msg=f"{tree} {name} at extreme inputs")


def test_keras_leaky_relu_rounds_its_slope_to_float32():
    """TF's LeakyRelu op keeps ``alpha`` as a float32 attribute, even on float64 tensors: a slope of
    0.2 acts as float32(0.2) = 0.20000000298…, a 1.5e-8 relative difference from our float64 trees
    (documented in docs/conventions.md). The parity test above uses 0.25, exact in both."""
    x = np.array([-3.0, -1.0, 2.0])
    got = keras.activations.leaky_relu(x, 0.2).numpy()
    np.testing.assert_array_equal(got, np.where(x > 0, x, x * float(np.float32(0.2))))
    assert not np.array_equal(got, np.where(x > 0, x, x * 0.2))


@pytest.mark.parametrize("name", KERAS_SLOPE_AT_NAN)
def test_keras_slope_at_nan(name):
    """TF's ReLU and ELU gradients test ``x > 0`` / ``x < 0`` their own way: at NaN, ReLU's slope is
    0 (torch: 1, NaN passes through) and ELU's is alpha (torch: NaN). Why the special-values pass
    leaves Keras out for these two; the trees follow torch."""
    import tensorflow as tf

    x = tf.constant(np.full(COPIES, np.nan))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(ACTIVATIONS[name][2](x))
    keras_slope = tape.gradient(y, x).numpy()
    np.testing.assert_array_equal(keras_slope, KERAS_SLOPE_AT_NAN[name])
    assert not np.array_equal(torch_value_and_slope(name, x.numpy())[1], keras_slope, equal_nan=True)


def test_keras_gelu_constants_are_float32():
    """``tf.nn.gelu`` casts the Python constants 1/sqrt(2) and 0.044715 through float32 before use,
    so on float64 inputs it equals GELU with those float32-rounded constants (~4e-9 relative to the
    exact formula for x > 0, up to ~3e-7 at x = -4: test_library_facts.py): why Keras is a
    float32-only reference for GELU."""
    x = np.linspace(-4.0, 4.0, 9)
    inv_sqrt2 = float(np.float32(1 / np.sqrt(2.0)))
    np.testing.assert_allclose(keras.activations.gelu(x, approximate=False).numpy(),
                               0.5 * x * erfc(-x * inv_sqrt2), rtol=1e-12, atol=1e-300)
    c = float(np.float32(0.044715))
    np.testing.assert_allclose(keras.activations.gelu(x, approximate=True).numpy(),
                               0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + c * x**3))), rtol=1e-12, atol=1e-300)


# --- special values --------------------------------------------------------------------------

#: Written into the inputs, per dtype: NaN, both infinities, both zeros, the largest magnitudes
#: the dtype holds (and 1e10, past every saturation), and tiny ones. ±0 also pins down the slope
#: at the kink of ReLU and LeakyReLU, and where an ``abs`` inside a stable formula could zero it.
SPECIAL_VALUES = {
    "float64": (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 1e10, -1e10, 1e-300, -1e-300),
    "float32": (np.nan, np.inf, -np.inf, 0.0, -0.0, 3e38, -3e38, 1e10, -1e10, 1e-30, -1e-30),
}
#: Where torch's own CPU kernels disagree with each other — the vectorized loop (what every tensor
#: of more than a few elements gets) against the scalar one (a single element, a tensor's last
#: few) — and which one the trees follow: (name, dtype, "value" or "slope", str(x in dtype)) -> (kernel, why).
TORCH_KERNEL_SPLITS = {
    **{("ELU", dtype, "slope", "nan"): ("vectorized", "NaN: the scalar backward tests x <= 0, which NaN fails, and "
                                                      "gives the identity's slope 1") for dtype in SPECIAL_VALUES},
    ("GELU", "float32", "value", "inf"): ("scalar", "inf, the limit, as float64 gives: torch's vectorized float32 "
                                                    "erf is NaN at +inf"),
    ("GELU", "float32", "value", "3e+38"): ("scalar", "3e38, exact: the vectorized float32 kernel overflows an "
                                                      "intermediate to inf"),
}
#: Enough copies of each value for torch's vectorized loop to take them all (no remainder).
COPIES = 64


def torch_value_and_slope(name, x):
    """torch.nn's value and slope (the gradient of a sum) at every element of ``x``."""
    xt = torch.tensor(x, requires_grad=True)
    y = ACTIVATIONS[name][1](xt)
    y.sum().backward()
    return y.detach().numpy(), xt.grad.numpy()


def tree_value_and_slope(tree, name, x):
    """One tree's value and slope at every element of ``x`` (NumPy: forward, then backward of ones)."""
    result = run_tree(tree, build(tree, name, x.dtype.name), {"x": x}, ("x",), [np.ones_like(x)])
    return result.outputs[0], result.input_grads["x"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_special_values_give_torchs_value_and_slope(name, dtype):
    """Every tree gives torch.nn's value and slope at each special value: the same NaN and ±inf,
    finite values within the dtype's tolerance (the sign of a zero is not compared). Where torch's
    two CPU kernels disagree, ``TORCH_KERNEL_SPLITS`` says which one the trees follow and why; a
    disagreement not listed there fails, so a new one is decided and documented, not absorbed."""
    values = np.array(SPECIAL_VALUES[dtype], dtype=dtype)
    x = np.repeat(values[:, None], COPIES, axis=1)  # (V, COPIES): one value per row
    failures = []
    # NumPy warns at inf * 0 and overflowing squares; those are the cases under test here.
    with np.errstate(all="ignore"):
        vectorized = torch_value_and_slope(name, x)
        trees = {tree: tree_value_and_slope(tree, name, x) for tree in TREES}
        for row, value in enumerate(values):
            scalar = torch_value_and_slope(name, values[row:row + 1])
            for k, kind in enumerate(("value", "slope")):
                label = f"{name} {kind} at {value!r}"
                split = TORCH_KERNEL_SPLITS.get((name, dtype, kind, str(value)))
                if split is None:
                    compare_special(label, "torch vectorized vs scalar kernel (undocumented split)",
                                    vectorized[k][row, :1], scalar[k], dtype, failures)
                want = scalar[k] if split and split[0] == "scalar" else vectorized[k][row, :1]
                for tree, got in trees.items():
                    compare_special(label, f"{tree} vs torch.nn", got[k][row], np.broadcast_to(want, (COPIES,)), dtype, failures)
    assert_no_failures(failures, f"{name} ({dtype}) at special values")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_kernels_split_where_documented(dtype):
    """The splits ``TORCH_KERNEL_SPLITS`` documents are torch's, seen here: the two kernels give
    different answers at those points (if torch unifies them, this fails and the table shrinks)."""
    for (name, split_dtype, kind, value), (kernel, why) in TORCH_KERNEL_SPLITS.items():
        if split_dtype != dtype:
            continue
        k = ("value", "slope").index(kind)
        x = np.full((COPIES,), value, dtype=dtype)
        vectorized, scalar = torch_value_and_slope(name, x)[k][0], torch_value_and_slope(name, x[:1])[k][0]
        assert not np.array_equal(vectorized, scalar, equal_nan=True), f"{name} {kind} at {value}: no split ({why})"


def exact_value_and_slope(name, x):
    """Closed forms in float64 from SciPy's ``expit``/``erfc`` (accurate in both tails)."""
    alpha = ACTIVATIONS["ELU"][0]["alpha"]
    forms = {
        "ELU": (np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))), np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0)))),
        "Sigmoid": (expit(x), expit(x) * expit(-x)),
        "Softplus": (np.logaddexp(0.0, x), expit(x)),
        "SiLU": (x * expit(x), expit(x) * (1 + x * expit(-x))),
        "GELU": (x * 0.5 * erfc(-x / np.sqrt(2)), 0.5 * erfc(-x / np.sqrt(2)) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)),
    }
    return forms[name]


#: Far in the tails, where the value or slope is a tiny number that a careless formula rounds to 0.
TAILS = {"float64": (-700.0, -100.0, -30.0, 30.0, 100.0, 700.0), "float32": (-80.0, -30.0, 30.0, 80.0)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["ELU", "Sigmoid", "Softplus", "SiLU", "GELU"])
def test_tails_keep_their_relative_accuracy(name, dtype):
    """Each tree's value and slope in the tails agree with the closed form element by element,
    relative to the element itself (up to the dtype's smallest normal number: TF flushes
    subnormals to 0). The torch tree's ELU needs ``exp(x) - 1`` there: see the next test."""
    x = np.array(TAILS[dtype], dtype=dtype)
    exact = exact_value_and_slope(name, x.astype(np.float64))
    failures = []
    for tree in TREES:
        for kind, got, want in zip(("value", "slope"), tree_value_and_slope(tree, name, x), exact):
            error = np.abs(got.astype(np.float64) - want)
            bad = error > TOLERANCES[dtype] * np.maximum(np.abs(got), np.abs(want)) + np.finfo(dtype).tiny
            if bad.any():
                failures.append(f"{tree} {kind} at {x[bad].tolist()}: got {got[bad].tolist()}, exact {want[bad].tolist()}")
    assert_no_failures(failures, f"{name} ({dtype}) in the tails")


def test_torch_loses_tails_that_the_trees_keep():
    """Why the tails are checked against closed forms, not torch.nn: ``torch.sigmoid``'s backward
    is σ(1-σ), 0 once σ rounds to 1 (the trees use σ(x)σ(-x)); torch's GELU is ½x(1+erf), 0 in the
    negative tail (the trees use erfc); autograd of ``torch.expm1`` is expm1(x)+1, 0 in the
    negative tail, while ``F.elu``'s own slope there is exact (so the torch tree's ELU switches to
    exp(x) - 1 below -1)."""
    x = torch.tensor([40.0, -40.0], dtype=torch.float64, requires_grad=True)
    torch.sigmoid(x).sum().backward()
    assert x.grad[0] == 0 and expit(40.0) * expit(-40.0) > 4e-18
    assert F.gelu(torch.tensor(-30.0, dtype=torch.float64)) == 0 and exact_value_and_slope("GELU", -30.0)[0] < -1e-196
    x.grad = None
    torch.expm1(x).sum().backward()
    assert x.grad[1] == 0
    x.grad = None
    F.elu(x).sum().backward()
    assert x.grad[1] == np.exp(-40.0)


#: Where the torch and TF trees are autograd of a formula with two product-rule terms (x·Φ(x),
#: e/(1+e), …), an infinite gradient from above splits into both and meets inf - inf = NaN where
#: torch.nn's fused derivative gives ±inf: see test_autograd_of_a_formula_can_meet_inf_minus_inf.
COMPOSITE_FORMULAS = {"GELU", "GELU-tanh", "SiLU", "Sigmoid", "Softplus"}


@pytest.mark.parametrize("from_above", ["nan", "inf"])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_non_finite_gradients_from_above_as_in_torch(name, from_above):
    """A NaN or ±inf arriving from above (``grad_out``) gives torch's input gradient: where the
    slope is exactly 0 — ReLU's flat side — torch *selects* 0 rather than multiplying (inf * 0
    would be NaN), and so do the trees; elsewhere it is grad_out times the slope. The NumPy tree
    multiplies by the derivative as torch.nn does, so it matches for ±inf too; the other trees are
    compared on ±inf except where ``COMPOSITE_FORMULAS`` says why not."""
    x_values = np.array([-2.0, -0.0, 0.0, 3.0, -np.inf, np.inf, -1e300, 1e300])
    g_values = np.array([np.nan] if from_above == "nan" else [np.inf, -np.inf])
    x = np.repeat(np.repeat(x_values, len(g_values))[:, None], COPIES, axis=1)  # (X*G, COPIES)
    g = np.repeat(np.tile(g_values, len(x_values))[:, None], COPIES, axis=1)  # (X*G, COPIES)
    xt = torch.tensor(x, requires_grad=True)
    trees = [tree for tree in TREES if tree == "numpy" or from_above == "nan" or name not in COMPOSITE_FORMULAS]
    failures = []
    with np.errstate(all="ignore"):
        (ACTIVATIONS[name][1](xt) * torch.from_numpy(g)).sum().backward()
        for tree in trees:
            result = run_tree(tree, build(tree, name, "float64"), {"x": x}, ("x",), [g])
            compare_special(f"{name} input gradient", f"{tree} vs torch.nn", result.input_grads["x"], xt.grad.numpy(),
                            "float64", failures)
    assert_no_failures(failures, f"{name} with {from_above} gradients from above")


def test_autograd_of_a_formula_can_meet_inf_minus_inf():
    """GELU at x = -2 with an infinite gradient from above: torch.nn's fused backward gives
    inf * GELU'(-2) = -inf; autograd of x·Φ(x) adds inf·Φ(-2) and inf·(-2)·φ(-2), inf - inf = NaN
    — in the torch and TF trees alike (the NumPy tree multiplies by the derivative: -inf)."""
    x, g = np.array([-2.0]), np.array([np.inf])
    xt = torch.tensor(x, requires_grad=True)
    (F.gelu(xt) * torch.from_numpy(g)).sum().backward()
    assert xt.grad.item() == -np.inf
    got = {tree: run_tree(tree, build(tree, "GELU", "float64"), {"x": x}, ("x",), [g]).input_grads["x"].item()
           for tree in TREES}
    assert got["numpy"] == -np.inf and np.isnan(got["torch"]) and np.isnan(got["tf"]), got


# --- empty batch, a layer used twice, constructor checks ------------------------------------

@pytest.mark.parametrize("name", ACTIVATIONS)
def test_empty_batch(name):
    """Zero samples in, zero samples out, forward and backward, in every tree (as in torch)."""
    x = np.zeros((0, 6))
    want = torch_value_and_slope(name, x)
    for tree in TREES:
        for kind, got, expected in zip(("value", "slope"), tree_value_and_slope(tree, name, x), want):
            assert got.shape == expected.shape == (0, 6), f"{tree} {name} {kind}: shape {got.shape}"


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_numpy_layer_used_twice_matches_torch(name):
    """``y = m(m(x))`` then ``m.backward(m.backward(g))``: the cache is a stack, so the NumPy layer
    backpropagates both uses in reverse order, as torch's autograd of f(f(x)) does."""
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    layer = build("numpy", name, "float64")
    y = layer(layer(x))
    grad_x = layer.backward(layer.backward(g))
    xt = torch.tensor(x, requires_grad=True)
    fn = ACTIVATIONS[name][1]
    yt = fn(fn(xt))
    (yt * torch.from_numpy(g)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=TOLERANCES["float64"], atol=0)
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=TOLERANCES["float64"], atol=0)
    with pytest.raises(RuntimeError, match="nothing cached"):
        layer.backward(g)


#: (constructor, the exception, its message): one rule, one message, the same in every tree.
BAD_HYPERPARAMETERS = [
    (lambda m: m.LeakyReLU(negative_slope="0.1"), TypeError, "LeakyReLU: negative_slope must be a real number, got '0.1'"),
    (lambda m: m.LeakyReLU(negative_slope=float("nan")), ValueError, "LeakyReLU: negative_slope must be finite, got nan"),
    (lambda m: m.ELU(alpha=True), TypeError, "ELU: alpha must be a real number, got True"),
    (lambda m: m.ELU(alpha=float("inf")), ValueError, "ELU: alpha must be finite, got inf"),
    (lambda m: m.GELU(approximate="erf"), ValueError, "GELU: approximate must be one of ('none', 'tanh'), got 'erf'"),
    (lambda m: m.GELU(approximate=None), ValueError, "GELU: approximate must be one of ('none', 'tanh'), got None"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("index", range(len(BAD_HYPERPARAMETERS)))
def test_bad_hyperparameters_are_refused_with_one_message(tree, index):
    make, error, message = BAD_HYPERPARAMETERS[index]
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make(get_module(tree, MODULE))
