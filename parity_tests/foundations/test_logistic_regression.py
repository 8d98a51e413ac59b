"""Day 3: logistic regression and BCE-with-logits in three trees, against ``torch.nn.BCEWithLogitsLoss``
and ``keras.losses.BinaryCrossentropy(from_logits=True)``."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy,
                                  gradient_descent_curves, keras_dense_reference, run_all_trees, run_tf, run_torch,
                                  to_tree, torch_linear_reference, torch_module_reference)

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


#: Why Keras sits out the special-values pass (it agrees on NaN and ±inf, not on the empty batch).
KERAS_EMPTY_BATCH = "Keras' reduced loss of an empty batch has shape (0,), not a 0-d NaN"


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
        special_excluded_references={"keras.losses.BinaryCrossentropy": KERAS_EMPTY_BATCH},
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
    """At z = 0 exactly the gradient is sigmoid(0) - y = 1/2 - y. Written with ``clamp_min``/``abs``,
    torch's autograd takes slope 0 for both kinks and returns -y (TF's ``tf.maximum`` has slope 1:
    1 - y; test_library_facts.py): one ``where(z >= 0)`` for both kinks keeps the trees right (a
    zero-initialized model starts at z = 0)."""
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


# --- PyTorch's options: pos_weight (one per class, the last axis) and weight ---

# name -> constructor kwargs; the arrays are placeholders of the right shape, the case draws the
# values (positive) and the torch reference loads them as its own buffers.
BCE_OPTIONS = {
    "pos_weight": dict(pos_weight=np.ones(D)),
    "weight per class": dict(weight=np.ones(D)),
    "weight per element": dict(weight=np.ones((N, D))),
    "weight+pos_weight": dict(weight=np.ones(D), pos_weight=np.ones(D)),
}


def positive_weights(name, shape, dtype, rng):
    return rng.uniform(0.5, 3.0, shape).astype(dtype)


#: Why TF's weighted loss sits out the special-values pass (see test_tf_weighted_bce_gradient_at_zero_logit).
TF_KINK = "at z = 0 exactly its gradient is 1 - y (abs and max both taken with slope 0), torch's l sigmoid(0) - p y"


def tf_weighted_bce(reduction):
    """``tf.nn.weighted_cross_entropy_with_logits``: TF's own pos_weight loss (same formula as
    torch's), reduced as torch reduces."""
    reduce = {"none": lambda loss: loss, "mean": tf.reduce_mean, "sum": tf.reduce_sum}[reduction]

    def run(state, inputs, cotangents, dtype):
        call = lambda logits, target: reduce(tf.nn.weighted_cross_entropy_with_logits(target, logits, state["pos_weight"]))
        return run_tf(call, inputs, ("logits",), cotangents, {}, lambda g: {})
    return run


def bce_option_case(option, reduction):
    kwargs = BCE_OPTIONS[option]
    references = {"torch.nn.BCEWithLogitsLoss": torch_module_reference(
        lambda dtype: torch.nn.BCEWithLogitsLoss(**{k: torch.from_numpy(v) for k, v in kwargs.items()}, reduction=reduction),
        ("logits",))}
    if option == "pos_weight":
        references["tf.nn.weighted_cross_entropy_with_logits"] = tf_weighted_bce(reduction)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.BCEWithLogitsLoss(**kwargs, reduction=reduction, dtype=dtype),
        inputs=bce_inputs,
        differentiable=("logits",),
        references=references,
        weights=positive_weights,
        special_finite_inputs={"target": "a probability in [0, 1]; at an infinite target torch's hand-written backward "
                                         "(l sigmoid(z) - p y) is NaN where the derivative of its forward is ±inf"},
        special_excluded_references={"tf.nn.weighted_cross_entropy_with_logits": TF_KINK},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", BCE_OPTIONS)
def test_bce_with_logits_option_parity(option, reduction, dtype):
    check_parity(bce_option_case(option, reduction), dtype)


@pytest.mark.parametrize("option", BCE_OPTIONS)
def test_bce_with_logits_option_gradcheck(option):
    gradcheck_numpy(bce_option_case(option, "sum"))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pos_weight_stays_finite_at_extreme_logits(dtype):
    """Logits of ±1e4 with pos_weight: torch's stable form (l * softplus(-z), never exp of a positive
    number) in every tree, finite and equal to torch's."""
    inputs = {"logits": np.array([[-1e4, 1e4, -30.0], [1e4, -1e4, 30.0]], dtype),
              "target": np.array([[1.0, 0.0, 0.25], [1.0, 0.0, 0.5]], dtype)}
    case = bce_option_case("pos_weight", "sum")
    state = {"pos_weight": np.array([2.0, 0.5, 3.0], dtype)}
    models = {tree: case.build(get_module(tree, MODULE), dtype, None) for tree in TREES}
    for model in models.values():
        model.load_canonical_state_dict(state)
    results = run_all_trees(case, dtype, inputs, [np.ones((), dtype)], models)
    reference = case.references["torch.nn.BCEWithLogitsLoss"](state, inputs, [np.ones((), dtype)], dtype)
    # 2 * 1e4 (target 1 at -1e4, weighted 2) + 1e4 (target 0 at +1e4) + the two moderate terms.
    assert reference.outputs[0] > 2.9e4
    for tree, result in results.items():
        assert np.all(np.isfinite(result.outputs[0])) and np.all(np.isfinite(result.input_grads["logits"])), tree
        np.testing.assert_allclose(result.outputs[0], reference.outputs[0], rtol=1e-6 if dtype == "float32" else 1e-13, err_msg=tree)
        np.testing.assert_allclose(result.input_grads["logits"], reference.input_grads["logits"], rtol=1e-6, atol=1e-7, err_msg=tree)


def test_tf_weighted_bce_gradient_at_zero_logit():
    """``tf.nn.weighted_cross_entropy_with_logits`` writes ``log1p(exp(-abs(z))) + max(-z, 0)``: at
    z = 0 exactly the tape takes slope 0 for both kinks and returns 1 - y; torch (and the trees,
    whose softplus takes one side of both kinks) return l sigmoid(0) - p y with l = 1 + (p - 1) y."""
    target, pos_weight = np.array([0.0, 1.0, 0.5]), np.array([2.0, 2.0, 3.0])
    inputs, cotangents = {"logits": np.zeros(3), "target": target}, [np.ones(())]
    case = bce_option_case("pos_weight", "sum")
    log_weight = 1 + (pos_weight - 1) * target
    expected = log_weight * 0.5 - pos_weight * target
    reference = case.references["torch.nn.BCEWithLogitsLoss"]({"pos_weight": pos_weight}, inputs, cotangents, "float64")
    np.testing.assert_allclose(reference.input_grads["logits"], expected, rtol=1e-15)
    tf_result = tf_weighted_bce("sum")({"pos_weight": pos_weight}, inputs, cotangents, "float64")
    np.testing.assert_allclose(tf_result.input_grads["logits"], 1 - target, rtol=1e-15)
    models = {tree: case.build(get_module(tree, MODULE), "float64", None) for tree in TREES}
    for model in models.values():
        model.load_canonical_state_dict({"pos_weight": pos_weight})
    for tree, result in run_all_trees(case, "float64", inputs, cotangents, models).items():
        np.testing.assert_allclose(result.input_grads["logits"], expected, rtol=1e-15, err_msg=tree)


def test_bce_weights_are_buffers_named_as_torchs():
    """``weight`` and ``pos_weight`` are in the state dict as ``torch.nn.BCEWithLogitsLoss`` keeps them
    (buffers, in this order; absent when not given), never parameters."""
    weight, pos_weight = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.25])
    torch_state = torch.nn.BCEWithLogitsLoss(weight=torch.from_numpy(weight), pos_weight=torch.from_numpy(pos_weight)).state_dict()
    for tree in TREES:
        m = get_module(tree, MODULE)
        loss = m.BCEWithLogitsLoss(weight=weight, pos_weight=pos_weight, dtype="float64")
        state = loss.canonical_state_dict()
        assert list(state) == list(torch_state) == ["weight", "pos_weight"], tree
        for name, value in torch_state.items():
            np.testing.assert_array_equal(state[name], value.numpy(), err_msg=f"{tree} {name}")
        assert not dict(loss.named_parameters()), tree
        assert list(m.BCEWithLogitsLoss(pos_weight=pos_weight).canonical_state_dict()) == ["pos_weight"], tree


@pytest.mark.parametrize("tree", TREES)
def test_bce_weight_shapes_are_checked_at_forward(tree):
    """Nothing is broadcast silently: ``pos_weight`` must be the logits' last axis, ``weight`` their
    trailing axes (torch would broadcast a ``(N, 1)`` pos_weight)."""
    m = get_module(tree, MODULE)
    logits, target = to_tree(tree, np.zeros((N, D))), to_tree(tree, np.zeros((N, D)))
    with pytest.raises(ValueError, match=r"BCEWithLogitsLoss: pos_weight must have the shape of the input's trailing axes "
                                         r"\(a suffix of \(6, 3\)\), got \(2,\)"):
        m.BCEWithLogitsLoss(pos_weight=np.ones(2), dtype="float64")(logits, target)
    with pytest.raises(ValueError, match=r"weight must have the shape of the input's trailing axes \(a suffix of \(6, 3\)\), got \(6, 1\)"):
        m.BCEWithLogitsLoss(weight=np.ones((N, 1)), dtype="float64")(logits, target)


#: (class, arguments, keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "2-D pos_weight": ("BCEWithLogitsLoss", (), dict(pos_weight=np.ones((2, 2))), ValueError,
                       "BCEWithLogitsLoss: pos_weight must have 1 dimension(s), got shape (2, 2)"),
    "negative pos_weight": ("BCEWithLogitsLoss", (), dict(pos_weight=[1.0, -2.0]), ValueError,
                            "BCEWithLogitsLoss: pos_weight must hold finite values >= 0, got [1.0, -2.0]"),
    "infinite weight": ("BCEWithLogitsLoss", (), dict(weight=[float("inf")]), ValueError,
                        "BCEWithLogitsLoss: weight must hold finite values >= 0, got [inf]"),
    "bool weight": ("BCEWithLogitsLoss", (), dict(weight=[True, False]), TypeError,
                    "BCEWithLogitsLoss: weight must be None or an array of real numbers, got list"),
    "negative in_features": ("LogisticRegression", (-1,), {}, ValueError, "LogisticRegression: in_features must be an int >= 0, got -1"),
    "seed as rng": ("LogisticRegression", (IN,), dict(rng=42), TypeError,
                    "LogisticRegression: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    cls, args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: getattr(get_module(tree, MODULE), cls)(*args, **kwargs))
