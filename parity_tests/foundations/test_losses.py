"""Day 8: the losses in three trees, against ``torch.nn`` losses and ``keras.losses``.

Keras differs from torch in two ways, each pinned by a test below: it averages the last axis
before reducing (so only ``"mean"``, and ``"batchmean"`` for KL, compare directly), and it clips
probabilities to ``[1e-7, 1 - 1e-7]`` in BCE and KL (so the parity inputs stay inside that range).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  gradcheck_numpy, run_all_trees, run_tf, run_torch, to_tree,
                                  torch_functional_reference)

MODULE = "foundations.losses"
N, D = 4, 5


def log_softmax(x):
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def regression_inputs(dtype, rng):
    # Differences of a few units: both Huber branches are used, no |d| sits near a kink.
    return {"input": (1.5 * rng.standard_normal((N, D))).astype(dtype), "target": rng.standard_normal((N, D)).astype(dtype)}


def probability_inputs(dtype, rng):
    # Inside [1e-7, 1 - 1e-7], where Keras' clipping is inactive; soft targets.
    return {"input": rng.uniform(0.05, 0.95, (N, D)).astype(dtype), "target": rng.uniform(0, 1, (N, D)).astype(dtype)}


def kl_inputs(log_target):
    def inputs(dtype, rng):
        target = log_softmax(rng.standard_normal((N, D)))
        return {"input": log_softmax(rng.standard_normal((N, D))).astype(dtype),
                "target": (target if log_target else np.exp(target)).astype(dtype)}
    return inputs


# name -> (class, constructor kwargs, inputs, torch.nn factory(reduction), keras factory(dtype) -> call(input, target))
LOSSES = {
    "MSELoss": ("MSELoss", {}, regression_inputs, lambda r: torch.nn.MSELoss(reduction=r),
                lambda dtype: (lambda loss: lambda x, y: loss(y, x))(keras.losses.MeanSquaredError(dtype=dtype))),
    "L1Loss": ("L1Loss", {}, regression_inputs, lambda r: torch.nn.L1Loss(reduction=r),
               lambda dtype: (lambda loss: lambda x, y: loss(y, x))(keras.losses.MeanAbsoluteError(dtype=dtype))),
    "HuberLoss": ("HuberLoss", {}, regression_inputs, lambda r: torch.nn.HuberLoss(reduction=r),
                  lambda dtype: (lambda loss: lambda x, y: loss(y, x))(keras.losses.Huber(dtype=dtype))),
    "HuberLoss-delta0.5": ("HuberLoss", {"delta": 0.5}, regression_inputs, lambda r: torch.nn.HuberLoss(reduction=r, delta=0.5),
                           lambda dtype: (lambda loss: lambda x, y: loss(y, x))(keras.losses.Huber(delta=0.5, dtype=dtype))),
    "BCELoss": ("BCELoss", {}, probability_inputs, lambda r: torch.nn.BCELoss(reduction=r),
                lambda dtype: (lambda loss: lambda x, y: loss(y, x))(keras.losses.BinaryCrossentropy(dtype=dtype))),
    # Keras takes probabilities for both arguments: exp of our log-probabilities.
    "KLDivLoss": ("KLDivLoss", {}, kl_inputs(False), lambda r: torch.nn.KLDivLoss(reduction=r),
                  lambda dtype: (lambda loss: lambda x, y: loss(y, tf.exp(x)))(keras.losses.KLDivergence(dtype=dtype))),
    "KLDivLoss-log_target": ("KLDivLoss", {"log_target": True}, kl_inputs(True), lambda r: torch.nn.KLDivLoss(reduction=r, log_target=True),
                             lambda dtype: (lambda loss: lambda x, y: loss(tf.exp(y), tf.exp(x)))(keras.losses.KLDivergence(dtype=dtype))),
}
PARAMS = [(name, reduction) for name in LOSSES
          for reduction in (("none", "mean", "sum", "batchmean") if name.startswith("KLDiv") else ("none", "mean", "sum"))]


def loss_case(name, reduction):
    cls, kwargs, inputs, torch_factory, keras_factory = LOSSES[name]
    references = {"torch.nn": torch_functional_reference(torch_factory(reduction), ("input",))}
    # Keras' only reduction that equals ours: the mean over the batch of per-row means (sums for KL).
    if reduction == ("batchmean" if cls == "KLDivLoss" else "mean"):
        references["keras.losses"] = lambda state, inp, cot, dtype: run_tf(keras_factory(dtype), inp, ("input",), cot, {}, lambda g: {})
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: getattr(m, cls)(**kwargs, reduction=reduction, dtype=dtype),
        inputs=inputs,
        differentiable=("input",),
        references=references,
        special_excluded_references={"keras.losses": "Keras clips probabilities (BCE, KL) and its reduced loss of an "
                                                     "empty batch has shape (0,), not a 0-d NaN"},
    )


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")  # torch's KLDivLoss "mean" warning
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,reduction", PARAMS)
def test_loss_parity(name, reduction, dtype):
    check_parity(loss_case(name, reduction), dtype)


@pytest.mark.parametrize("name,reduction", PARAMS)
def test_loss_gradcheck(name, reduction):
    gradcheck_numpy(loss_case(name, reduction))


@pytest.mark.parametrize("tree", TREES)
def test_day3_and_day4_losses_are_reexported_not_copied(tree):
    losses = get_module(tree, MODULE)
    assert losses.BCEWithLogitsLoss is get_module(tree, "foundations.logistic_regression").BCEWithLogitsLoss
    assert losses.CrossEntropyLoss is get_module(tree, "foundations.softmax_regression").CrossEntropyLoss
    assert losses.reduce_loss is get_module(tree, "foundations.logistic_regression").reduce_loss


def test_numpy_backward_defaults_to_a_unit_cotangent():
    loss = get_module("numpy", MODULE).MSELoss(dtype="float64")
    inputs = regression_inputs("float64", np.random.default_rng(0))
    for _ in range(3):  # one forward per backward: the cache is a stack
        loss(*inputs.values())
    np.testing.assert_array_equal(loss.backward(), loss.backward(np.ones(())))
    np.testing.assert_allclose(loss.backward(), 2 * (inputs["input"] - inputs["target"]) / (N * D), rtol=1e-15)


def test_keras_reduces_the_last_axis_first():
    """Keras losses average the last axis per sample, then apply the reduction: Keras "none" is one
    value per row (torch: per element), Keras "sum" is torch's sum divided by D."""
    inputs = regression_inputs("float64", np.random.default_rng(0))
    x, y = inputs["input"], inputs["target"]
    per_element = (x - y) ** 2
    keras_none = keras.losses.MeanSquaredError(reduction="none", dtype="float64")(y, x)
    keras_sum = keras.losses.MeanSquaredError(reduction="sum", dtype="float64")(y, x)
    np.testing.assert_allclose(keras_none.numpy(), per_element.mean(-1), rtol=1e-13)
    np.testing.assert_allclose(float(keras_sum), per_element.sum() / D, rtol=1e-13)
    torch_none = torch.nn.MSELoss(reduction="none")(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(torch_none, per_element, rtol=1e-15)


def test_keras_bce_clips_probabilities_where_torch_floors_the_log():
    """Keras clips p to [1e-7, 1 - 1e-7] (cost at most -log(1e-7) = 16.1); torch and our trees floor
    each log at -100 (cost at most 100) and leave p in (e^-100, 1) alone."""
    p = np.array([[0.0, 1.0, 1e-9, 0.3]])
    y = np.array([[1.0, 0.0, 1.0, 1.0]])
    expected = np.array([100.0, 100.0, -np.log(1e-9), -np.log(0.3)])
    torch_terms = torch.nn.BCELoss(reduction="none")(torch.from_numpy(p), torch.from_numpy(y)).numpy()[0]
    np.testing.assert_allclose(torch_terms, expected, rtol=1e-13)
    for tree in TREES:
        ours = np.asarray(get_module(tree, MODULE).BCELoss(reduction="none", dtype="float64")(to_tree(tree, p), to_tree(tree, y)))
        np.testing.assert_allclose(ours[0], expected, rtol=1e-13, err_msg=tree)
    keras_loss = float(keras.losses.BinaryCrossentropy(reduction="none", dtype="float64")(y, p)[0])
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    np.testing.assert_allclose(keras_loss, np.mean(-(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))), rtol=1e-13)
    assert abs(keras_loss - expected.mean()) > 40


def test_keras_kl_clips_zero_targets():
    """A target probability of 0 contributes 0 log 0 = 0 in torch and our trees; Keras clips it to 1e-7
    first and adds 1e-7 log(1e-7 / q)."""
    q = np.array([[0.5, 0.3, 0.2]])
    y = np.array([[0.0, 0.4, 0.6]])
    exact = (y[:, 1:] * np.log(y[:, 1:] / q[:, 1:])).sum()
    torch_kl = float(torch.nn.KLDivLoss(reduction="batchmean")(torch.from_numpy(np.log(q)), torch.from_numpy(y)))
    np.testing.assert_allclose(torch_kl, exact, rtol=1e-13)
    for tree in TREES:
        ours = float(np.asarray(get_module(tree, MODULE).KLDivLoss(dtype="float64")(to_tree(tree, np.log(q)), to_tree(tree, y))))
        np.testing.assert_allclose(ours, exact, rtol=1e-13, err_msg=tree)
    keras_kl = float(keras.losses.KLDivergence(dtype="float64")(y, q))
    np.testing.assert_allclose(keras_kl, exact + 1e-7 * np.log(1e-7 / 0.5), rtol=1e-13)
    assert keras_kl != pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bce_at_zero_and_one_stays_finite_and_equal_in_every_tree(dtype):
    """At p = 0 and p = 1 (a saturated float32 sigmoid gives exactly 1) the floored log keeps the loss at
    most 100, as torch's, and every tree's gradient stays finite: the inner ``where`` never lets log see 0."""
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.25], dtype=dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5], dtype=dtype)
    inputs, cotangents = {"input": p, "target": y}, [np.ones((), dtype)]
    results = run_all_trees(loss_case("BCELoss", "sum"), dtype, inputs, cotangents)
    torch_loss = float(torch.nn.BCELoss(reduction="sum")(torch.from_numpy(p), torch.from_numpy(y)))
    for tree, result in results.items():
        assert np.all(np.isfinite(result.input_grads["input"])), tree
        np.testing.assert_allclose(result.outputs[0], torch_loss, rtol=1e-6, err_msg=tree)
    assert_no_failures(compare_results(results, dtype), f"BCELoss at 0 and 1 ({dtype})")


def test_torch_bce_gradient_is_not_the_derivative_of_its_floored_forward():
    """torch's BCELoss backward is ``(p - y) / max(p (1 - p), ε)``, ε = float32(1e-12). Our trees differentiate the
    forward itself: ``-y/p + (1-y)/(1-p)``, with 0 for a floored log (p = 0, p = 1, p < e^-100).
    They agree for p(1-p) >= 1e-12 (all parity inputs), and differ below."""
    p = np.array([1e-13, 0.0, 1.0, 1e-50, 0.3])
    y = np.array([1.0, 1.0, 1.0, 1.0, 0.5])
    inputs, cotangents = {"input": p, "target": y}, [np.ones(())]
    ours = run_all_trees(loss_case("BCELoss", "sum"), "float64", inputs, cotangents)
    exact = np.array([-1e13, 0.0, -1.0, 0.0, -0.5 / 0.3 + 0.5 / 0.7])
    for tree, result in ours.items():
        np.testing.assert_allclose(result.input_grads["input"], exact, rtol=1e-13, err_msg=tree)
    reference = run_torch(torch.nn.BCELoss(reduction="sum"), inputs, ("input",), cotangents, params={})
    # torch's EPSILON is the C++ float 1e-12, i.e. float32(1e-12) = 9.99999996e-13 even in float64.
    np.testing.assert_allclose(reference.input_grads["input"], (p - y) / np.maximum(p * (1 - p), float(np.float32(1e-12))), rtol=1e-13)
    np.testing.assert_allclose(reference.input_grads["input"][4], exact[4], rtol=1e-13)
    np.testing.assert_allclose(reference.outputs[0], ours["numpy"].outputs[0], rtol=1e-13)


@pytest.mark.parametrize("tree", TREES)
def test_losses_reject_bad_arguments(tree):
    m, to = get_module(tree, MODULE), lambda array: to_tree(tree, array)
    x = np.full((3, 2), 0.5, np.float32)
    for cls in ("MSELoss", "L1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss"):
        with pytest.raises(ValueError, match=rf"{cls}: reduction must be one of \('none', 'mean', 'sum'\), got 'batchmean'"):
            getattr(m, cls)(reduction="batchmean")
        loss = getattr(m, cls)()
        with pytest.raises(ValueError, match=r"target must have shape \(3, 2\), got \(3, 1\)"):
            loss(to(x), to(x[:, :1]))  # no broadcasting
        with pytest.raises(TypeError, match="target must have dtype float32, got float64"):
            loss(to(x), to(x.astype(np.float64)))
    with pytest.raises(ValueError, match="reduction must be one of"):
        m.KLDivLoss(reduction="average")
    assert m.KLDivLoss(reduction="batchmean").reduction == "batchmean"
    with pytest.raises(ValueError, match=r"HuberLoss: delta must be > 0, got 0.0"):
        m.HuberLoss(delta=0.0)
    with pytest.raises(ValueError, match="probabilities in"):
        m.BCELoss()(to(x + 1.0), to(x))
    # NaN is not a probability either (torch refuses it too).
    with pytest.raises(ValueError, match="probabilities in"):
        m.BCELoss()(to(np.where(x > 0, np.nan, x).astype(np.float32)), to(x))


@pytest.mark.parametrize("tree", TREES)
def test_batchmean_divides_by_the_first_axis_only(tree):
    m, to = get_module(tree, MODULE), lambda array: to_tree(tree, array)
    inputs = kl_inputs(False)("float64", np.random.default_rng(0))
    args = (to(inputs["input"]), to(inputs["target"]))
    total = float(np.asarray(m.KLDivLoss(reduction="sum", dtype="float64")(*args)))
    np.testing.assert_allclose(float(np.asarray(m.KLDivLoss(dtype="float64")(*args))), total / N, rtol=1e-15)
    np.testing.assert_allclose(float(np.asarray(m.KLDivLoss(reduction="mean", dtype="float64")(*args))), total / (N * D), rtol=1e-15)


#: (class, keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "negative delta": ("HuberLoss", dict(delta=-1.0), ValueError, "HuberLoss: delta must be > 0, got -1.0"),
    "NaN delta": ("HuberLoss", dict(delta=float("nan")), ValueError, "HuberLoss: delta must be > 0, got nan"),
    "string delta": ("HuberLoss", dict(delta="1"), TypeError, "HuberLoss: delta must be a real number, got '1'"),
    "string log_target": ("KLDivLoss", dict(log_target="yes"), TypeError, "KLDivLoss: log_target must be a bool (True or False), got 'yes'"),
    "unknown reduction": ("MSELoss", dict(reduction="avg"), ValueError, "MSELoss: reduction must be one of ('none', 'mean', 'sum'), got 'avg'"),
    "CE label_smoothing": ("CrossEntropyLoss", dict(label_smoothing=-0.1), ValueError,
                           "CrossEntropyLoss: label_smoothing must be in [0, 1], got -0.1"),
    "BCE pos_weight": ("BCEWithLogitsLoss", dict(pos_weight=[[1.0]]), ValueError,
                       "BCEWithLogitsLoss: pos_weight must have 1 dimension(s), got shape (1, 1)"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    cls, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: getattr(get_module(tree, MODULE), cls)(**kwargs))
