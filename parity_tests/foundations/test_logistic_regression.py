"""Day 3: logistic regression and BCE-with-logits in three trees, against ``torch.nn.BCEWithLogitsLoss``
and ``keras.losses.BinaryCrossentropy(from_logits=True)``."""
import keras
import numpy as np
import pytest
import torch

from ml100.backends import get_module
from parity_tests.harness import (
    Case, TREES, check_parity, gradcheck_numpy, gradient_descent_curves, keras_dense_reference,
    run_all_trees, run_tf, run_torch, to_tree, torch_linear_reference
)

MODULE = "foundations.logistic_regression"
IN, N, D = 5, 6, 3
REDUCTIONS = ("none", "mean", "sum")






def model_case():
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.LogisticRegression(IN, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((N, IN)).astype(dtype)},
        references={"torch.nn.Linear": torch_linear_reference(IN, 1, "linear.", squeeze=True),
                    "keras.layers.Dense": keras_dense_reference(IN, 1, "linear.", squeeze=True)},
    )


def bce_inputs(dtype, rng):
    # Soft targets in [0, 1] exercise the full formula; logits span both signs.
    return {"logits": (3 * rng.standard_normal((N, D))).astype(dtype), "target": rng.uniform(0, 1, (N, D)).astype(dtype)}


def torch_bce(reduction):
    return lambda state, inputs, cot, dtype: run_torch(torch.nn.BCEWithLogitsLoss(reduction=reduction), inputs, ("logits",), cot, params={})


def keras_bce(state, inputs, cotangents, dtype):
    loss = keras.losses.BinaryCrossentropy(from_logits=True, dtype=dtype)
    return run_tf(lambda logits, target: loss(target, logits), inputs, ("logits",), cotangents, {}, lambda g: {})


def bce_case(reduction, inputs=bce_inputs):
    references = {"torch.nn.BCEWithLogitsLoss": torch_bce(reduction)}
    if reduction == "mean":
        # Keras averages the last axis, then the batch ("sum_over_batch_size"): equal to torch only for
        # "mean" (see test_keras_bce_reduces_the_last_axis_first).
        references["keras.losses.BinaryCrossentropy"] = keras_bce
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.BCEWithLogitsLoss(reduction=reduction, dtype=dtype),
        inputs=inputs,
        differentiable=("logits",),
        references=references,
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logistic_regression_parity(dtype):
    check_parity(model_case(), dtype)


def test_logistic_regression_gradcheck():
    gradcheck_numpy(model_case())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_parity(reduction, dtype):
    check_parity(bce_case(reduction), dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_gradcheck(reduction):
    gradcheck_numpy(bce_case(reduction))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bce_with_logits_extreme_logits_stay_finite(dtype):
    """Logits of ±1e4 overflow a naive exp (or log(sigmoid)); the loss and its gradient stay finite
    in every tree and equal torch's: ``max(z,0) - zy + log1p(exp(-|z|))`` and ``sigmoid(z) - y``."""
    logits = np.array([[-1e4, 1e4, -30.0], [1e4, -1e4, 30.0]], dtype=dtype)
    target = np.array([[1.0, 0.0, 0.25], [1.0, 0.0, 0.5]], dtype=dtype)
    inputs = {"logits": logits, "target": target}
    cotangents = [np.ones((), dtype)]
    results = run_all_trees(bce_case("sum"), dtype, inputs, cotangents)
    reference = torch_bce("sum")(None, inputs, cotangents, dtype)
    np.testing.assert_allclose(reference.outputs[0], 2e4 + 30 * 0.25 + 30 * 0.5 + 2 * np.log1p(np.exp(-30.0)), rtol=1e-6)
    for tree, result in results.items():
        assert np.all(np.isfinite(result.outputs[0])) and np.all(np.isfinite(result.input_grads["logits"])), tree
        np.testing.assert_allclose(result.outputs[0], reference.outputs[0], rtol=1e-6 if dtype == "float32" else 1e-13, err_msg=tree)
        np.testing.assert_allclose(result.input_grads["logits"], reference.input_grads["logits"], rtol=1e-6, atol=1e-7, err_msg=tree)


def test_bce_with_logits_gradient_at_zero_logit():
    """At z = 0 exactly the gradient is sigmoid(0) - y = 1/2 - y. Written with ``clamp``/``abs``,
    autograd would take max(z,0)' = 1 and |z|' = 0 there and return 1 - y: one ``where(z >= 0)``
    for both kinks keeps the trees right (a zero-initialized model starts at z = 0)."""
    inputs = {"logits": np.zeros((4,)), "target": np.array([0.0, 1.0, 0.25, 0.5])}
    cotangents = [np.ones(())]
    results = run_all_trees(bce_case("sum"), "float64", inputs, cotangents)
    reference = torch_bce("sum")(None, inputs, cotangents, "float64")
    np.testing.assert_allclose(reference.input_grads["logits"], 0.5 - inputs["target"], rtol=0, atol=1e-15)
    for tree, result in results.items():
        np.testing.assert_allclose(result.input_grads["logits"], 0.5 - inputs["target"], rtol=0, atol=1e-15, err_msg=tree)
        np.testing.assert_allclose(result.outputs[0], 4 * np.log(2.0), rtol=1e-15, err_msg=tree)


def test_keras_bce_reduces_the_last_axis_first():
    """``keras.losses.binary_crossentropy`` averages over the last axis before the Loss reduction:
    Keras "none" gives one value per row (torch: per element), and Keras "sum" is torch's sum / D."""
    inputs = bce_inputs("float64", np.random.default_rng(0))
    logits, target = torch.from_numpy(inputs["logits"]), torch.from_numpy(inputs["target"])
    per_element = torch.nn.BCEWithLogitsLoss(reduction="none")(logits, target).numpy()
    keras_none = keras.losses.BinaryCrossentropy(from_logits=True, reduction="none", dtype="float64")(inputs["target"], inputs["logits"])
    keras_sum = keras.losses.BinaryCrossentropy(from_logits=True, reduction="sum", dtype="float64")(inputs["target"], inputs["logits"])
    np.testing.assert_allclose(keras_none.numpy(), per_element.mean(axis=-1), rtol=1e-13)
    np.testing.assert_allclose(float(keras_sum), per_element.sum() / D, rtol=1e-13)


def test_keras_bce_from_logits_does_not_clip():
    """Keras clips *probabilities* to [1e-7, 1 - 1e-7], but not logits: from_logits=True goes through
    ``tf.nn.sigmoid_cross_entropy_with_logits``, so a logit of -50 with target 1 costs 50, as in torch."""
    loss = keras.losses.BinaryCrossentropy(from_logits=True, dtype="float64")(np.array([1.0]), np.array([-50.0]))
    np.testing.assert_allclose(float(loss), 50.0, rtol=1e-13)


def test_logistic_regression_training_parity():
    """Twenty full-batch gradient-descent steps on separable-ish data: identical float64 loss curves."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, IN))
    y = (x @ rng.standard_normal(IN) + 0.3 * rng.standard_normal(32) > 0).astype(np.float64)
    curves = gradient_descent_curves(MODULE, lambda m: m.LogisticRegression(IN, dtype="float64", rng=np.random.default_rng(0)),
                                     lambda m: m.BCEWithLogitsLoss(dtype="float64"), x, y, steps=20, lr=0.5)
    assert np.all(np.diff(curves["numpy"]) < 0) and curves["numpy"][-1] < 0.6 * curves["numpy"][0]
    for tree in ("torch", "tf"):
        np.testing.assert_allclose(curves[tree], curves["numpy"], rtol=1e-12, err_msg=tree)


@pytest.mark.parametrize("tree", TREES)
def test_bce_with_logits_rejects_bad_input(tree):
    m = get_module(tree, MODULE)
    to = lambda array: to_tree(tree, array)
    logits = np.zeros((4,), np.float32)
    with pytest.raises(ValueError, match="reduction must be one of"):
        m.BCEWithLogitsLoss(reduction="batchmean")
    loss = m.BCEWithLogitsLoss()
    with pytest.raises(ValueError, match=r"target must have shape \(4,\)"):
        loss(to(logits), to(np.zeros((4, 1), np.float32)))  # no broadcasting
    with pytest.raises(TypeError, match="target must have dtype float32"):
        loss(to(logits), to(np.zeros((4,), np.float64)))
    with pytest.raises(TypeError, match="logits must have dtype float32"):
        loss(to(logits.astype(np.float64)), to(np.zeros((4,), np.float32)))
    with pytest.raises(ValueError, match="x must have 2 dimensions"):
        m.LogisticRegression(IN)(to(np.zeros((IN,), np.float32)))


@pytest.mark.parametrize("tree", TREES)
def test_logistic_regression_predicts(tree):
    m = get_module(tree, MODULE)
    model = m.LogisticRegression(2, dtype="float64", rng=np.random.default_rng(0))
    model.load_canonical_state_dict({"linear.weight": np.array([[1.0, -1.0]]), "linear.bias": np.array([0.0])})
    x = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    to = lambda array: to_tree(tree, array)
    np.testing.assert_allclose(np.asarray(model.predict_proba(to(x))), [1 / (1 + np.exp(-2)), 1 / (1 + np.exp(2)), 0.5], rtol=1e-15)
    np.testing.assert_array_equal(np.asarray(model.predict(to(x))), [1, 0, 1])
