"""Days 1-2: linear regression, polynomial features and ridge in three trees.

The model's forward and backward go through the parity harness (references ``torch.nn.Linear`` and
``keras.layers.Dense``). The closed forms are judged by independent routes: ``numpy.linalg.lstsq``
on the augmented matrix ``[X, 1]`` (and, for ridge, on ``[X, 1; sqrt(N*l2) I, 0]``) and
scikit-learn's ``Ridge`` (whose ``alpha`` is our ``N * l2``: it has no 1/N). Gradient descent
and SGD must give the same loss curve in every tree, step by step, and land on the closed form.
"""
import itertools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch
from sklearn.linear_model import Ridge
from sklearn.preprocessing import PolynomialFeatures

from ml100.backends import get_module
from ml100.checks import dtype_name
from parity_tests.harness import (
    Case, TOLERANCES, TREES, assert_no_failures, build_models, check_parity, compare_tensors,
    gradcheck_numpy, keras_dense_reference, max_errors, share_weights, to_tree,
    torch_linear_reference
)

MODULE = "foundations.linear_regression"
IN, OUT = 3, 2


def make_regression_data(n, in_features, out_features=1, noise=0.1, rng=None, dtype="float64"):
    """``y = x @ true_w.T + true_b + noise * eps`` with standard normal ``x`` and ``eps``.

    Returns ``(x (n, in), y (n, out), true_w (out, in), true_b (out,))`` as NumPy arrays.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    x = rng.standard_normal((n, in_features))  # (N, in)
    true_w = rng.uniform(-2.0, 2.0, (out_features, in_features))  # (out, in)
    true_b = rng.uniform(-1.0, 1.0, out_features)  # (out,)
    y = x @ true_w.T + true_b + noise * rng.standard_normal((n, out_features))  # (N, out)
    return x.astype(dtype), y.astype(dtype), true_w, true_b


#: Each tree's own tensor type.
NATIVE = {"numpy": np.ndarray, "torch": torch.Tensor, "tf": tf.Tensor}


def module(tree):
    return get_module(tree, MODULE)


# ---------------------------------------------------------------------------------------------
# The model: forward and backward through the harness.





def regression_case():
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.LinearRegression(IN, OUT, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((5, IN)).astype(dtype)},
        references={"torch.nn.Linear": torch_linear_reference(IN, OUT, "linear."),
                    "keras.layers.Dense": keras_dense_reference(IN, OUT, "linear.")},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_linear_regression_parity(dtype):
    check_parity(regression_case(), dtype)


def test_linear_regression_gradcheck():
    gradcheck_numpy(regression_case())


def test_canonical_names_are_torch_style():
    for tree in TREES:
        model = module(tree).LinearRegression(IN, OUT, dtype="float64", rng=np.random.default_rng(0))
        state = model.canonical_state_dict()
        assert {k: v.shape for k, v in state.items()} == {"linear.weight": (OUT, IN), "linear.bias": (OUT,)}, tree


# ---------------------------------------------------------------------------------------------
# The loss convention: (1/N) sum_i ||pred_i - y_i||^2.

def test_mse_loss_convention_against_torch_mse_loss():
    """One output: our loss is ``torch.nn.MSELoss`` exactly; ``out`` outputs: ``out`` times it (we sum
    over outputs, average over rows)."""
    rng = np.random.default_rng(3)
    for out in (1, 4):
        pred, target = rng.standard_normal((6, out)), rng.standard_normal((6, out))
        expected = out * torch.nn.MSELoss()(torch.from_numpy(pred), torch.from_numpy(target)).item()
        for tree in TREES:
            got = float(module(tree).mse_loss(to_tree(tree, pred), to_tree(tree, target)))
            assert abs(got - expected) <= 1e-12 * abs(expected), f"{tree} mse_loss with {out} outputs: {got} vs {expected}"


# ---------------------------------------------------------------------------------------------
# Closed forms against independent routes.

def lstsq_solution(x, y, l2=0.0):
    """Least squares by SVD (no normal equations) on ``[X, 1]``, with ridge as extra rows
    ``sqrt(N*l2) [I, 0]`` against zero targets: ``||A t - y||^2 + N*l2 ||W||^2`` is that system's residual."""
    n, d = x.shape
    a = np.concatenate([x, np.ones((n, 1))], axis=1)  # (N, d+1)
    rows = np.sqrt(n * l2) * np.eye(d, d + 1)  # (d, d+1), zero in the bias column
    a_aug = np.concatenate([a, rows], axis=0)  # (N+d, d+1)
    y_aug = np.concatenate([y, np.zeros((d, y.shape[1]))], axis=0)  # (N+d, out)
    theta, *_ = np.linalg.lstsq(a_aug, y_aug, rcond=None)  # (d+1, out)
    return theta[:d].T, theta[d]


def check_closed_form(x, y, l2, expected_w, expected_b, dtype, reference):
    failures = []
    for tree in TREES:
        weight, bias = module(tree).normal_equation(to_tree(tree, x.astype(dtype)), to_tree(tree, y.astype(dtype)), l2)
        assert isinstance(weight, NATIVE[tree]) and isinstance(bias, NATIVE[tree]), f"{tree} must return its native tensors"
        assert dtype_name(weight.dtype) == dtype, f"{tree} normal_equation returned {weight.dtype} for {dtype} input"
        compare_tensors("weight", f"{tree} vs {reference}", np.asarray(weight), expected_w, dtype, failures)
        compare_tensors("bias", f"{tree} vs {reference}", np.asarray(bias), expected_b, dtype, failures)
    assert_no_failures(failures, f"normal_equation (l2={l2}, {dtype}) against {reference}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("out", [1, 3])
def test_normal_equation_matches_lstsq(out, dtype):
    x, y, _, _ = make_regression_data(40, 4, out, noise=0.3, rng=np.random.default_rng(4))
    check_closed_form(x, y, 0.0, *lstsq_solution(x, y), dtype, "numpy.linalg.lstsq")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("l2", [0.01, 0.5, 10.0])
def test_ridge_matches_augmented_lstsq(l2, dtype):
    x, y, _, _ = make_regression_data(40, 4, 2, noise=0.3, rng=np.random.default_rng(5))
    check_closed_form(x, y, l2, *lstsq_solution(x, y, l2), dtype, "lstsq on [X, 1; sqrt(N*l2) I, 0]")


@pytest.mark.parametrize("l2", [0.01, 0.5, 10.0])
def test_ridge_matches_sklearn_ridge(l2):
    """scikit-learn minimizes ``||Y - X W^T - b||^2 + alpha ||W||^2`` (no 1/N): ``alpha = N * l2``."""
    x, y, _, _ = make_regression_data(40, 4, 2, noise=0.3, rng=np.random.default_rng(6))
    ridge = Ridge(alpha=len(x) * l2, fit_intercept=True, solver="svd").fit(x, y)
    check_closed_form(x, y, l2, ridge.coef_, ridge.intercept_, "float64", "sklearn Ridge(alpha=N*l2)")


def test_ridge_shrinks_weights_but_not_bias():
    """A huge penalty drives W to 0 and leaves b at the mean target: the bias is unpenalized."""
    x, y, _, _ = make_regression_data(40, 4, 2, noise=0.3, rng=np.random.default_rng(7))
    for tree in TREES:
        weight, bias = module(tree).normal_equation(to_tree(tree, x), to_tree(tree, y), 1e9)
        assert np.max(np.abs(np.asarray(weight))) < 1e-6, tree
        np.testing.assert_allclose(np.asarray(bias), y.mean(axis=0), rtol=1e-6, err_msg=tree)


# ---------------------------------------------------------------------------------------------
# Polynomial features against scikit-learn.

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("d,degree", [(1, 1), (1, 5), (2, 3), (3, 4)])
def test_polynomial_features_match_sklearn(d, degree, dtype):
    x = np.random.default_rng(8).uniform(-1.5, 1.5, (7, d)).astype(dtype)
    expected = PolynomialFeatures(degree, include_bias=False).fit_transform(x.astype(np.float64))
    failures = []
    for tree in TREES:
        got = module(tree).polynomial_features(to_tree(tree, x), degree)
        assert dtype_name(got.dtype) == dtype, f"{tree} changed the dtype to {got.dtype}"
        compare_tensors("features", f"{tree} vs sklearn PolynomialFeatures", np.asarray(got), expected, dtype, failures)
    assert_no_failures(failures, f"polynomial_features(d={d}, degree={degree}, {dtype})")


# ---------------------------------------------------------------------------------------------
# Training: the same loss curve in every tree, step by step.

def assert_same_curves(curves: dict[str, list[float]], dtype: str, what: str) -> None:
    """Every pair of trees, every step, within the dtype's tolerance; a failure names the first bad step."""
    failures = []
    for (name_a, a), (name_b, b) in itertools.combinations(curves.items(), 2):
        if len(a) != len(b):
            failures.append(f"[{name_a} vs {name_b}]: {len(a)} vs {len(b)} steps")
            continue
        for step, (la, lb) in enumerate(zip(a, b)):
            abs_err, rel_err = max_errors(np.array(la), np.array(lb))
            if not (np.isfinite(la) and np.isfinite(lb)) or rel_err > TOLERANCES[dtype]:
                failures.append(f"step {step} [{name_a} vs {name_b}]: loss {la!r} vs {lb!r}, "
                                f"abs err {abs_err:.3e}, rel err {rel_err:.3e} > {TOLERANCES[dtype]:.0e}")
                break
    assert_no_failures(failures, what)


def trained_models(fit, dtype, x, y):
    """The model built in each tree, the same random weights loaded through a safetensors file, then ``fit``."""
    case = Case(module=MODULE, build=lambda m, dtype, rng: m.LinearRegression(IN, OUT, dtype=dtype, rng=rng),
                inputs=lambda dtype, rng: {})
    models = build_models(case, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        share_weights(models, case, Path(tmp))
    curves = {tree: fit(tree, models[tree], to_tree(tree, x.astype(dtype)), to_tree(tree, y.astype(dtype))) for tree in TREES}
    return models, curves


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_fit_gd_same_curve_and_reaches_closed_form(l2, dtype):
    x, y, _, _ = make_regression_data(64, IN, OUT, noise=0.1, rng=np.random.default_rng(9))
    fit = lambda tree, model, xs, ys: module(tree).fit_gd(model, xs, ys, lr=0.2, steps=100, l2=l2)
    models, curves = trained_models(fit, dtype, x, y)
    assert_same_curves(curves, dtype, f"fit_gd loss curves (l2={l2}, {dtype})")
    assert curves["numpy"][-1] < 0.1 * curves["numpy"][0], "gradient descent did not reduce the loss"
    weight, bias = lstsq_solution(x, y, l2)
    failures = []
    for tree, model in models.items():
        state = model.canonical_state_dict()
        compare_tensors("linear.weight", f"{tree} GD vs closed form", state["linear.weight"], weight, dtype, failures)
        compare_tensors("linear.bias", f"{tree} GD vs closed form", state["linear.bias"], bias, dtype, failures)
    assert_no_failures(failures, f"fit_gd final weights (l2={l2}, {dtype})")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_fit_sgd_same_curve_and_nears_closed_form(l2, dtype):
    x, y, _, _ = make_regression_data(64, IN, OUT, noise=0.1, rng=np.random.default_rng(10))
    # One seed per tree, the same in each: the batch order is identical by construction.
    fit = lambda tree, model, xs, ys: module(tree).fit_sgd(model, xs, ys, lr=0.05, epochs=10, batch_size=8,
                                                           rng=np.random.default_rng(11), l2=l2)
    models, curves = trained_models(fit, dtype, x, y)
    assert len(curves["numpy"]) == 10 * (64 // 8)
    assert_same_curves(curves, dtype, f"fit_sgd loss curves (l2={l2}, {dtype})")
    # Constant-step SGD hovers around the optimum at a distance set by lr and the noise: close, not exact.
    weight, bias = lstsq_solution(x, y, l2)
    for tree, model in models.items():
        state = model.canonical_state_dict()
        np.testing.assert_allclose(state["linear.weight"], weight, atol=2e-2, err_msg=f"{tree} SGD weight")
        np.testing.assert_allclose(state["linear.bias"], bias, atol=2e-2, err_msg=f"{tree} SGD bias")


def test_fit_sgd_follows_the_rng_batch_order():
    """The batches are ``ml100.data.batch_indices(n, batch_size, rng)``: the first recorded loss is the
    loss of the first batch that generator yields."""
    from ml100.data import batch_indices

    x, y, _, _ = make_regression_data(16, IN, OUT, rng=np.random.default_rng(12))
    first = next(batch_indices(16, 4, np.random.default_rng(13)))
    for tree in TREES:
        m = module(tree)
        model = m.LinearRegression(IN, OUT, dtype="float64", rng=np.random.default_rng(0))
        state = model.canonical_state_dict()
        pred = x[first] @ state["linear.weight"].T + state["linear.bias"]  # (4, OUT)
        expected = np.sum((pred - y[first]) ** 2) / len(first)
        losses = m.fit_sgd(model, to_tree(tree, x), to_tree(tree, y), lr=0.1, epochs=1, batch_size=4, rng=np.random.default_rng(13))
        assert abs(losses[0] - expected) <= 1e-12 * expected, tree


# ---------------------------------------------------------------------------------------------
# Day 2: train/validation curves.

def sklearn_validation_curve(x_train, y_train, x_val, y_val, degrees, l2s):
    """The same grid through scikit-learn alone: PolynomialFeatures + Ridge(alpha=N*l2), our loss."""
    train, val = np.zeros((len(degrees), len(l2s))), np.zeros((len(degrees), len(l2s)))
    for i, degree in enumerate(degrees):
        poly = PolynomialFeatures(degree, include_bias=False)
        phi_train, phi_val = poly.fit_transform(x_train), poly.transform(x_val)
        for j, l2 in enumerate(l2s):
            ridge = Ridge(alpha=len(x_train) * l2, solver="svd").fit(phi_train, y_train)
            # Ridge.predict drops a single output's axis: restore it before subtracting (no broadcasting).
            train[i, j] = np.sum((ridge.predict(phi_train).reshape(y_train.shape) - y_train) ** 2) / len(x_train)
            val[i, j] = np.sum((ridge.predict(phi_val).reshape(y_val.shape) - y_val) ** 2) / len(x_val)
    return train, val


def test_validation_curve_matches_sklearn_and_overfits():
    rng = np.random.default_rng(14)
    x = rng.uniform(-1.0, 1.0, (30, 1))
    y = np.sin(3.0 * x) + 0.2 * rng.standard_normal((30, 1))  # (30, 1)
    x_train, y_train, x_val, y_val = x[:20], y[:20], x[20:], y[20:]
    degrees, l2s = (1, 2, 3, 5, 8), (0.0, 1e-3, 1e-1)
    expected_train, expected_val = sklearn_validation_curve(x_train, y_train, x_val, y_val, degrees, l2s)
    failures = []
    for tree in TREES:
        train, val = module(tree).validation_curve(to_tree(tree, x_train), to_tree(tree, y_train), to_tree(tree, x_val),
                                                   to_tree(tree, y_val), degrees, l2s)
        assert train.shape == val.shape == (len(degrees), len(l2s))
        compare_tensors("train mse", f"{tree} vs sklearn", train, expected_train, "float64", failures)
        compare_tensors("val mse", f"{tree} vs sklearn", val, expected_val, "float64", failures)
    assert_no_failures(failures, "validation_curve")
    # Nested models: without a penalty more degree never fits the training set worse...
    assert np.all(np.diff(expected_train[:, 0]) <= 1e-12)
    # ...while the validation error of degree 8 is worse than the best: overfitting.
    assert expected_val[-1, 0] > expected_val[:, 0].min()
    # A penalty raises training error (it no longer minimizes it alone).
    assert np.all(expected_train[:, 2] >= expected_train[:, 0] - 1e-12)


# ---------------------------------------------------------------------------------------------
# Bad input: clear errors in every tree.

@pytest.mark.parametrize("tree", TREES)
def test_bad_input_gives_clear_errors(tree):
    m = module(tree)
    x, y, _, _ = make_regression_data(8, IN, OUT, rng=np.random.default_rng(15))
    xs, ys = to_tree(tree, x), to_tree(tree, y)
    model = m.LinearRegression(IN, OUT, dtype="float64", rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="LinearRegression: x must have dtype float64, got float32"):
        model(to_tree(tree, x.astype(np.float32)))
    with pytest.raises(ValueError, match=r"LinearRegression: x must have shape \(\.\.\., 3\)"):
        model(to_tree(tree, np.zeros((8, IN + 1))))
    with pytest.raises(ValueError, match="LinearRegression: x must have 2 dimensions"):
        model(to_tree(tree, np.zeros((2, 8, IN))))
    with pytest.raises(ValueError, match=r"fit_gd: y must have shape \(8, 2\), got \(7, 2\)"):
        m.fit_gd(model, xs, to_tree(tree, y[:7]), lr=0.1, steps=1)
    with pytest.raises(ValueError, match="fit_gd: y must have 2 dimensions"):
        m.fit_gd(model, xs, to_tree(tree, y[:, 0]), lr=0.1, steps=1)
    with pytest.raises(ValueError, match=r"fit_sgd: y must have shape \(8, 2\), got \(8, 3\)"):
        m.fit_sgd(model, xs, to_tree(tree, np.zeros((8, 3))), lr=0.1, epochs=1, batch_size=4, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="fit_sgd: y must have dtype float64, got float32"):
        m.fit_sgd(model, xs, to_tree(tree, y.astype(np.float32)), lr=0.1, epochs=1, batch_size=4, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="fit_sgd: l2 must be >= 0"):
        m.fit_sgd(model, xs, ys, lr=0.1, epochs=1, batch_size=4, rng=np.random.default_rng(0), l2=-0.1)
    with pytest.raises(ValueError, match="fit_gd: l2 must be >= 0"):
        m.fit_gd(model, xs, ys, lr=0.1, steps=1, l2=-1.0)
    with pytest.raises(ValueError, match=r"normal_equation: y must have shape \(8, 2\), got \(6, 2\)"):
        m.normal_equation(xs, to_tree(tree, y[:6]))
    with pytest.raises(TypeError, match="normal_equation: x must have dtype float32 or float64, got int64"):
        m.normal_equation(to_tree(tree, np.arange(8 * IN).reshape(8, IN)), ys)
    with pytest.raises(TypeError, match="normal_equation: y must have dtype float64, got float32"):
        m.normal_equation(xs, to_tree(tree, y.astype(np.float32)))
    with pytest.raises(ValueError, match="normal_equation: l2 must be >= 0"):
        m.normal_equation(xs, ys, l2=-1e-3)
    for degree in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="polynomial_features: degree must be an integer >= 1"):
            m.polynomial_features(xs, degree)
    with pytest.raises(TypeError, match="polynomial_features: x must have dtype float32 or float64, got int64"):
        m.polynomial_features(to_tree(tree, np.arange(6).reshape(3, 2)), 2)
    with pytest.raises(ValueError, match="mse_loss: target must have shape"):
        m.mse_loss(ys, to_tree(tree, y[:, :1]))
    with pytest.raises(ValueError, match=r"validation_curve: x_val must have shape \(\.\.\., 3\)"):
        m.validation_curve(xs, ys, to_tree(tree, np.zeros((4, IN + 1))), to_tree(tree, np.zeros((4, OUT))), (1,))
    with pytest.raises(ValueError, match="validation_curve: degree must be an integer >= 1"):
        m.validation_curve(xs, ys, xs, ys, degrees=(0,))
    with pytest.raises(ValueError, match="validation_curve: l2 must be >= 0"):
        m.validation_curve(xs, ys, xs, ys, degrees=(1,), l2s=(-1.0,))
