"""Day 4: softmax regression and log-sum-exp cross-entropy in three trees, against ``F.cross_entropy``
(``torch.nn.CrossEntropyLoss``) and ``keras.losses.CategoricalCrossentropy(from_logits=True)``."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  compare_tensors, gradcheck_numpy, gradient_descent_curves, keras_dense_reference,
                                  run_all_trees, run_tf, run_torch, tf_functional_reference, to_tree,
                                  torch_linear_reference, torch_module_reference)

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


#: Why Keras sits out the special-values pass of the cross-entropy cases.
KERAS_CE_SPECIAL = ("Keras multiplies the one-hot target into every log-probability (0 * -inf = NaN where torch "
                    "picks the target's), and its reduced loss of an empty batch has shape (0,), not a 0-d NaN")


def ce_case(reduction="mean", label_smoothing=0.0):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.CrossEntropyLoss(label_smoothing=label_smoothing, reduction=reduction, dtype=dtype),
        inputs=ce_inputs,
        differentiable=("logits",),
        references={"F.cross_entropy": torch_ce(reduction, label_smoothing),
                    "keras.losses.CategoricalCrossentropy": keras_ce(reduction, label_smoothing)},
        special_excluded_references={"keras.losses.CategoricalCrossentropy": KERAS_CE_SPECIAL},
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
    with pytest.raises(ValueError, match=r"target must lie in \[0, 4\) or equal ignore_index \(-100\), got \[4\]"):
        loss(to(logits), to(np.array([0, 1, C], np.int64)))
    with pytest.raises(ValueError, match=r"target must lie in \[0, 4\) or equal ignore_index \(-100\), got \[-1\]"):
        loss(to(logits), to(np.array([0, -1, 2], np.int64)))
    with pytest.raises(TypeError, match="integer class indices"):
        loss(to(logits), to(np.array([0.0, 1.0, 2.0], np.float32)))
    with pytest.raises(ValueError, match=r"target must have shape \(3,\)"):
        loss(to(logits), to(np.array([[0], [1], [2]], np.int64)))
    with pytest.raises(TypeError, match="logits must have dtype float32"):
        loss(to(logits.astype(np.float64)), to(np.array([0, 1, 2], np.int64)))
    with pytest.raises(ValueError, match="logits must have at least 2 dimensions"):
        loss(to(np.zeros((C,), np.float32)), to(np.array([0], np.int64)))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\), got \(3,\)"):
        m.CrossEntropyLoss(weight=np.ones(3))(to(logits), to(np.array([0, 1, 2], np.int64)))
    with pytest.raises(TypeError, match=r"target must have dtype float32, got float64"):
        loss(to(logits), to(np.full((3, C), 0.25)))
    with pytest.raises(ValueError, match=r"ignore_index is not supported with probability targets"):
        m.CrossEntropyLoss(ignore_index=0)(to(logits), to(np.full((3, C), 0.25, np.float32)))


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


# --- PyTorch's options: class weights, ignore_index, probability targets, (N, C, d1, ...) logits ---

#: Positions per sample of the sequence cases: logits (N, C, T), targets (N, T).
T = 3

# name -> (constructor kwargs besides reduction and smoothing, target kind, sequence?). ``weight``
# is a constant buffer: the case draws it positive (below), and the torch reference loads it as its own.
OPTIONS = {
    "weight": (dict(weight=np.ones(C)), "classes", False),
    "ignore_index": (dict(), "ignored", False),
    "ignore_index is a class": (dict(ignore_index=1), "classes", False),
    "weight+ignore_index": (dict(weight=np.ones(C)), "ignored", False),
    "probabilities": (dict(), "probabilities", False),
    "probabilities+weight": (dict(weight=np.ones(C)), "probabilities", False),
    "sequence+weight+ignore_index": (dict(weight=np.ones(C)), "ignored", True),
    "sequence probabilities": (dict(), "probabilities", True),
}


def option_inputs(targets, sequence):
    """Logits ``(N, C)`` or ``(N, C, T)``; targets as integer classes (some equal to the default
    ignore_index, -100, for ``"ignored"``) or as probabilities shaped like the logits."""
    def inputs(dtype, rng):
        positions = (N, T) if sequence else (N,)
        logits = (2 * rng.standard_normal((positions[0], C, *positions[1:]))).astype(dtype)
        if targets == "probabilities":
            rows = rng.dirichlet(np.ones(C), size=positions)  # (N, *d, C)
            return {"logits": logits, "target": np.moveaxis(rows, -1, 1).astype(dtype)}
        target = rng.integers(0, C, positions)
        if targets == "ignored":
            target.flat[[1, 4]] = -100
        return {"logits": logits, "target": target.astype(np.int64)}
    return inputs


def class_weights(name, shape, dtype, rng):
    """Class weights are positive (a weighted mean of losses), unlike the harness' default draw."""
    return rng.uniform(0.5, 2.0, shape).astype(dtype) if name == "weight" else None


def keras_option_reference(option, reduction, label_smoothing, sequence):
    """Keras where it has the same thing: ``CategoricalCrossentropy`` on probability targets (any
    smoothing, no class weights), ``SparseCategoricalCrossentropy(ignore_class=...)`` (no smoothing)."""
    kwargs, targets, _ = OPTIONS[option]
    layouts = {"logits": (0, 2, 1), "target": (0, 2, 1)} if sequence else {}
    if targets == "probabilities" and "weight" not in kwargs:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing,
                                                    reduction=KERAS_REDUCTIONS[reduction], dtype="float64")
    elif "weight" not in kwargs and label_smoothing == 0.0:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=kwargs.get("ignore_index", -100),
                                                          reduction=KERAS_REDUCTIONS[reduction], dtype="float64")
        layouts.pop("target", None)
    else:
        return {}
    name = f"keras.losses.{type(loss).__name__}"
    return {name: tf_functional_reference(lambda logits, target: loss(target, logits), ("logits",), layouts)}


def ce_option_case(option, reduction, label_smoothing):
    kwargs, targets, sequence = OPTIONS[option]
    references = {"torch.nn.CrossEntropyLoss": torch_module_reference(
        lambda dtype: torch.nn.CrossEntropyLoss(**{k: torch.from_numpy(v) if k == "weight" else v for k, v in kwargs.items()},
                                                reduction=reduction, label_smoothing=label_smoothing), ("logits",))}
    keras_reference = keras_option_reference(option, reduction, label_smoothing, sequence)
    references.update(keras_reference)
    # The TF tree is channels-last: its sequence logits (and probability targets) are (N, T, C).
    layouts = {"logits": (0, 2, 1), **({"target": (0, 2, 1)} if targets == "probabilities" else {})} if sequence else {}
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.CrossEntropyLoss(**kwargs, reduction=reduction, label_smoothing=label_smoothing, dtype=dtype),
        inputs=option_inputs(targets, sequence),
        differentiable=("logits",),
        references=references,
        weights=class_weights,
        tf_layouts=layouts,
        special_excluded_references={name: KERAS_CE_SPECIAL for name in keras_reference},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", OPTIONS)
def test_cross_entropy_option_parity(option, reduction, label_smoothing, dtype):
    check_parity(ce_option_case(option, reduction, label_smoothing), dtype)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("option", OPTIONS)
def test_cross_entropy_option_gradcheck(option, label_smoothing):
    gradcheck_numpy(ce_option_case(option, "mean", label_smoothing))


def test_weighted_mean_divides_by_the_weights_of_the_kept_targets():
    """torch's weighted mean, written out: sum_i w_{y_i} l_i / sum_i w_{y_i} over the targets not
    ignored; every tree gives it (and it is not the plain mean of the weighted terms)."""
    rng = np.random.default_rng(0)
    logits, target, weight = rng.standard_normal((N, C)), np.array([0, 1, -100, 3, 3, 2]), np.array([0.5, 1.0, 2.0, 1.5])
    kept = target != -100
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    terms = -weight[target[kept]] * log_p[kept, target[kept]]
    expected = terms.sum() / weight[target[kept]].sum()
    assert abs(expected - terms.mean()) > 1e-3
    torch_loss = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weight))(torch.from_numpy(logits), torch.from_numpy(target))
    np.testing.assert_allclose(float(torch_loss), expected, rtol=1e-13)
    for tree in TREES:
        loss = get_module(tree, MODULE).CrossEntropyLoss(weight=weight, dtype="float64")
        np.testing.assert_allclose(float(np.asarray(loss(to_tree(tree, logits), to_tree(tree, target)))), expected, rtol=1e-13,
                                   err_msg=tree)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_all_targets_ignored_gives_nan_mean_and_zero_gradient(label_smoothing):
    """Every target ignored: the mean is 0/0 = NaN, as torch's, and no gradient flows (zeros, not
    NaN: the ignored terms are constants) — in every tree, the NumPy one included, whose mean's
    scale 1/0 is infinite."""
    inputs = {"logits": np.random.default_rng(0).standard_normal((N, C)), "target": np.full(N, -100, np.int64)}
    case = ce_option_case("weight+ignore_index", "mean", label_smoothing)
    results = run_all_trees(case, "float64", inputs, [np.ones(())])
    reference = case.references["torch.nn.CrossEntropyLoss"]({"weight": np.ones(C)}, inputs, [np.ones(())], "float64")
    for name, result in {**results, "torch.nn.CrossEntropyLoss": reference}.items():
        assert np.isnan(result.outputs[0]), name
        np.testing.assert_array_equal(result.input_grads["logits"], np.zeros((N, C)), err_msg=name)


def test_weight_is_a_buffer_named_as_torchs():
    """``weight`` is in the state dict exactly as ``torch.nn.CrossEntropyLoss(weight=...)`` keeps
    it (a buffer, not a parameter: no gradient), and absent without it."""
    weight = np.array([0.5, 1.0, 2.0, 1.5])
    expected = {name: t.numpy() for name, t in torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weight)).state_dict().items()}
    assert list(expected) == ["weight"] and not list(torch.nn.CrossEntropyLoss().state_dict())
    for tree in TREES:
        m = get_module(tree, MODULE)
        state = m.CrossEntropyLoss(weight=weight, dtype="float64").canonical_state_dict()
        assert list(state) == ["weight"], tree
        np.testing.assert_array_equal(state["weight"], expected["weight"], err_msg=tree)
        assert not m.CrossEntropyLoss().canonical_state_dict(), tree
        assert not dict(m.CrossEntropyLoss(weight=weight).named_parameters()), tree


def test_keras_class_weights_divide_by_the_batch_size():
    """Keras has no class weights in its losses; the idiom (``class_weight`` in ``fit``, or
    ``sample_weight=w[y]``) weighs each term but still divides by the batch size, where torch
    divides by the sum of the targets' weights."""
    rng = np.random.default_rng(0)
    logits, target, weight = rng.standard_normal((N, C)), rng.integers(0, C, N), np.array([0.5, 1.0, 2.0, 1.5])
    weighted_sum = float(torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weight), reduction="sum")(
        torch.from_numpy(logits), torch.from_numpy(target)))
    keras_loss = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")(
        target, logits, sample_weight=weight[target]))
    np.testing.assert_allclose(keras_loss, weighted_sum / N, rtol=1e-13)
    torch_loss = float(torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weight))(torch.from_numpy(logits), torch.from_numpy(target)))
    np.testing.assert_allclose(torch_loss, weighted_sum / weight[target].sum(), rtol=1e-13)
    assert abs(keras_loss - torch_loss) > 1e-3


#: (keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_CE_ARGUMENTS = {
    "label_smoothing above 1": (dict(label_smoothing=1.5), ValueError, "CrossEntropyLoss: label_smoothing must be in [0, 1], got 1.5"),
    "string label_smoothing": (dict(label_smoothing="0.1"), TypeError, "CrossEntropyLoss: label_smoothing must be a real number, got '0.1'"),
    "float ignore_index": (dict(ignore_index=-100.0), ValueError, "CrossEntropyLoss: ignore_index must be an int, got -100.0"),
    "bool ignore_index": (dict(ignore_index=True), ValueError, "CrossEntropyLoss: ignore_index must be an int, got True"),
    "2-D weight": (dict(weight=np.ones((2, 2))), ValueError, "CrossEntropyLoss: weight must have 1 dimension(s), got shape (2, 2)"),
    "negative weight": (dict(weight=[1.0, -1.0]), ValueError, "CrossEntropyLoss: weight must hold finite values >= 0, got [1.0, -1.0]"),
    "NaN weight": (dict(weight=[1.0, float("nan")]), ValueError, "CrossEntropyLoss: weight must hold finite values >= 0, got [1.0, nan]"),
    "string weight": (dict(weight="heavy"), TypeError, "CrossEntropyLoss: weight must be None or an array of real numbers, got str"),
    "unknown reduction": (dict(reduction="batchmean"), ValueError,
                          "CrossEntropyLoss: reduction must be one of ('none', 'mean', 'sum'), got 'batchmean'"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_CE_ARGUMENTS))
def test_bad_cross_entropy_arguments_raise_one_clear_error(what, tree):
    kwargs, error, message = BAD_CE_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: get_module(tree, MODULE).CrossEntropyLoss(**kwargs))


BAD_MODEL_ARGUMENTS = {
    "negative in_features": ((-1, C), ValueError, "SoftmaxRegression: in_features must be an int >= 0, got -1"),
    "zero classes": ((IN, 0), ValueError, "SoftmaxRegression: num_classes must be an int >= 1, got 0"),
    "float classes": ((IN, 3.0), ValueError, "SoftmaxRegression: num_classes must be an int >= 1, got 3.0"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_MODEL_ARGUMENTS))
def test_bad_model_arguments_raise_one_clear_error(what, tree):
    args, error, message = BAD_MODEL_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: get_module(tree, MODULE).SoftmaxRegression(*args))
