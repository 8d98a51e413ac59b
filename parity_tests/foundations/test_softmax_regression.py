"""Day 4: softmax regression and log-sum-exp cross-entropy in three trees, against ``F.cross_entropy``
(``torch.nn.CrossEntropyLoss``) and ``keras.losses.CategoricalCrossentropy(from_logits=True)``."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F

from ml100.backends import get_module
from parity_tests.harness import (
    Case, TREES, assert_no_failures, check_parity, compare_results, compare_tensors,
    gradcheck_numpy, gradient_descent_curves, keras_dense_reference, run_all_trees, run_tf,
    run_torch, to_tree, torch_linear_reference
)

MODULE = "foundations.softmax_regression"
IN, N, C = 5, 6, 4
REDUCTIONS = ("none", "mean", "sum")
#: Keras' names for the same reductions.
KERAS_REDUCTIONS = {"none": "none", "mean": "sum_over_batch_size", "sum": "sum"}






def model_case():
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.SoftmaxRegression(IN, C, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((N, IN)).astype(dtype)},
        references={"torch.nn.Linear": torch_linear_reference(IN, C, "linear."),
                    "keras.layers.Dense": keras_dense_reference(IN, C, "linear.")},
    )


def ce_inputs(dtype, rng):
    return {"logits": (2 * rng.standard_normal((N, C))).astype(dtype), "target": rng.integers(0, C, N).astype(np.int64)}


def torch_ce(reduction, label_smoothing):
    loss = torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=label_smoothing)
    return lambda state, inputs, cot, dtype: run_torch(loss, inputs, ("logits",), cot, params={})


def keras_ce(reduction, label_smoothing):
    """Keras' sparse loss has no label smoothing: the categorical one on one-hot targets does."""
    def run(state, inputs, cotangents, dtype):
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing,
                                                    reduction=KERAS_REDUCTIONS[reduction], dtype=dtype)
        call = lambda logits, target: loss(tf.one_hot(target, C, dtype=dtype), logits)
        return run_tf(call, inputs, ("logits",), cotangents, {}, lambda g: {})
    return run


def ce_case(reduction="mean", label_smoothing=0.0):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.CrossEntropyLoss(label_smoothing=label_smoothing, reduction=reduction, dtype=dtype),
        inputs=ce_inputs,
        differentiable=("logits",),
        references={"F.cross_entropy": torch_ce(reduction, label_smoothing),
                    "keras.losses.CategoricalCrossentropy": keras_ce(reduction, label_smoothing)},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_regression_parity(dtype):
    check_parity(model_case(), dtype)


def test_softmax_regression_gradcheck():
    gradcheck_numpy(model_case())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_parity(reduction, label_smoothing, dtype):
    check_parity(ce_case(reduction, label_smoothing), dtype)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_gradcheck(reduction, label_smoothing):
    gradcheck_numpy(ce_case(reduction, label_smoothing))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("function", ["log_softmax", "softmax"])
def test_softmax_functions_parity(function, dtype):
    """``log_softmax``/``softmax`` over the last axis, including logits of ±1e4 (a naive exp overflows):
    same values in every tree and as ``F.log_softmax``/``tf.nn.log_softmax``; autograd of the torch and
    TF versions equals that of torch's own (``stop_gradient`` on the shift loses nothing)."""
    x = np.random.default_rng(0).standard_normal((2, 3, C)).astype(dtype)
    x[1, 0] = [1e4, -1e4, 0.0, 1e4]
    cotangent = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    ours = {tree: getattr(get_module(tree, MODULE), function) for tree in TREES}
    results = {
        "torch": run_torch(ours["torch"], {"x": x}, ("x",), [cotangent], params={}),
        "tf": run_tf(ours["tf"], {"x": x}, ("x",), [cotangent], {}, lambda g: {}),
        "torch.nn.functional": run_torch(lambda t: getattr(F, function)(t, dim=-1), {"x": x}, ("x",), [cotangent], params={}),
        "tf.nn": run_tf(getattr(tf.nn, function), {"x": x}, ("x",), [cotangent], {}, lambda g: {}),
    }
    failures = compare_results(results, dtype)
    # NumPy has no autograd: its forward is compared here, its gradient by the cross-entropy tests.
    compare_tensors("output[0]", "numpy vs torch.nn.functional", ours["numpy"](x), results["torch.nn.functional"].outputs[0], dtype, failures)
    assert_no_failures(failures, f"{function} ({dtype})")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_extreme_logits_stay_finite(label_smoothing, dtype):
    """Logits of ±1e4: exp overflows without the max shift. Loss and gradient stay finite in every
    tree and equal ``F.cross_entropy`` (a loss of 2e4 for a target whose logit is 2e4 below the max)."""
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4, 1e4]], dtype=dtype)
    inputs = {"logits": logits, "target": np.array([1, 1, 2], dtype=np.int64)}
    cotangents = [np.ones((), dtype)]
    case = ce_case("sum", label_smoothing)
    results = run_all_trees(case, dtype, inputs, cotangents)
    reference = torch_ce("sum", label_smoothing)(None, inputs, cotangents, dtype)
    assert reference.outputs[0] > 1.9e4
    for tree, result in results.items():
        assert np.all(np.isfinite(result.outputs[0])) and np.all(np.isfinite(result.input_grads["logits"])), tree
        results[tree] = result
    results["F.cross_entropy"] = reference
    assert_no_failures(compare_results(results, dtype), f"cross-entropy at ±1e4 ({dtype})")


def test_keras_label_smoothing_is_epsilon_over_num_classes():
    """Keras' ``categorical_crossentropy`` smooths ``y * (1 - ε) + ε / C`` exactly as torch does
    (``binary_crossentropy`` instead uses ``y * (1 - ε) + ε / 2``, i.e. two classes)."""
    inputs = ce_inputs("float64", np.random.default_rng(0))
    logits, target = inputs["logits"], inputs["target"]
    q = 0.8 * np.eye(C)[target] + 0.2 / C
    by_hand = -(q * (logits - np.log(np.exp(logits).sum(-1, keepdims=True)))).sum(-1).mean()
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2, dtype="float64")(np.eye(C)[target], logits)
    torch_loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), label_smoothing=0.2)
    np.testing.assert_allclose([float(keras_loss), float(torch_loss)], by_hand, rtol=1e-13)


def test_softmax_regression_training_parity():
    """Twenty full-batch gradient-descent steps with label smoothing: identical float64 loss curves."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, IN))
    y = np.argmax(x @ rng.standard_normal((IN, C)), axis=-1).astype(np.int64)
    curves = gradient_descent_curves(MODULE, lambda m: m.SoftmaxRegression(IN, C, dtype="float64", rng=np.random.default_rng(0)),
                                     lambda m: m.CrossEntropyLoss(label_smoothing=0.05, dtype="float64"), x, y, steps=20, lr=0.5)
    assert np.all(np.diff(curves["numpy"]) < 0) and curves["numpy"][-1] < 0.6 * curves["numpy"][0]
    for tree in ("torch", "tf"):
        np.testing.assert_allclose(curves[tree], curves["numpy"], rtol=1e-12, err_msg=tree)


def test_tf_cross_entropy_traces_under_tf_function():
    """The TF trainer wraps the loss in ``tf.function``: labels are symbolic there, so only their
    dtype and shape are checked, and the value equals the eager one."""
    m = get_module("tf", MODULE)
    loss_fn = m.CrossEntropyLoss(label_smoothing=0.1, dtype="float64")
    inputs = ce_inputs("float64", np.random.default_rng(0))
    eager = loss_fn(tf.constant(inputs["logits"]), tf.constant(inputs["target"]))
    traced = tf.function(loss_fn.forward)(tf.constant(inputs["logits"]), tf.constant(inputs["target"]))
    np.testing.assert_allclose(traced.numpy(), eager.numpy(), rtol=1e-15)
    with pytest.raises(TypeError, match="integer class indices"):
        tf.function(loss_fn.forward)(tf.constant(inputs["logits"]), tf.constant(inputs["target"].astype(np.float64)))


@pytest.mark.parametrize("tree", TREES)
def test_cross_entropy_rejects_bad_input(tree):
    m, to = get_module(tree, MODULE), lambda array: to_tree(tree, array)
    logits = np.zeros((3, C), np.float32)
    with pytest.raises(ValueError, match="reduction must be one of"):
        m.CrossEntropyLoss(reduction="batchmean")
    with pytest.raises(ValueError, match="label_smoothing"):
        m.CrossEntropyLoss(label_smoothing=1.5)
    loss = m.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"target must lie in \[0, 4\)"):
        loss(to(logits), to(np.array([0, 1, C], np.int64)))
    with pytest.raises(ValueError, match=r"target must lie in \[0, 4\)"):
        loss(to(logits), to(np.array([0, -1, 2], np.int64)))
    with pytest.raises(TypeError, match="integer class indices"):
        loss(to(logits), to(np.array([0.0, 1.0, 2.0], np.float32)))
    with pytest.raises(ValueError, match=r"target must have shape \(3,\)"):
        loss(to(logits), to(np.array([[0], [1], [2]], np.int64)))
    with pytest.raises(TypeError, match="logits must have dtype float32"):
        loss(to(logits.astype(np.float64)), to(np.array([0, 1, 2], np.int64)))
    with pytest.raises(ValueError, match="logits must have 2 dimensions"):
        loss(to(np.zeros((C,), np.float32)), to(np.array([0], np.int64)))


@pytest.mark.parametrize("tree", TREES)
def test_softmax_regression_predicts(tree):
    m, to = get_module(tree, MODULE), lambda array: to_tree(tree, array)
    model = m.SoftmaxRegression(2, 3, dtype="float64", rng=np.random.default_rng(0))
    model.load_canonical_state_dict({"linear.weight": np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), "linear.bias": np.zeros(3)})
    x = np.array([[2.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    proba = np.asarray(model.predict_proba(to(x)))
    np.testing.assert_allclose(proba.sum(-1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(proba[0], np.exp([2.0, 0.0, -2.0]) / np.exp([2.0, 0.0, -2.0]).sum(), rtol=1e-14)
    np.testing.assert_array_equal(np.asarray(model.predict(to(x))), [0, 1, 2])
