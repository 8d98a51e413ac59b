"""Day 12: dropout, L2 weight decay and early stopping in three trees.

Dropout's randomness is an input (the keep-mask), so the three trees are compared number for number
through the harness; ``torch.nn.functional.dropout``, ``tf.nn.dropout`` and ``keras.layers.Dropout``
draw their own masks and cannot be fed ours, so they are checked statistically (keep rate) and
exactly (every output is 0 or x/(1-p)). Weight decay is checked against ``torch.optim.SGD``'s
``weight_decay``; early stopping against ``keras.callbacks.EarlyStopping`` on a scripted sequence.
"""
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F

from ml100.backends import get_module
from parity_tests.harness import TREES, Case, assert_no_failures, check_parity, compare_tensors, gradcheck_numpy, to_tree

MODULE = "foundations.regularization"
P = 0.3
SHAPE = (4, 6)


def dropout_case(training=True, float_mask=False):
    def inputs(dtype, rng):
        x = rng.standard_normal(SHAPE).astype(dtype)
        mask = get_module("numpy", MODULE).dropout_mask(SHAPE, P, rng)
        # Both mask forms are accepted: bool, or 0/1 in x's dtype.
        return {"x": x, "mask": mask.astype(dtype) if float_mask else mask}

    def build(m, dtype, rng):
        layer = m.Dropout(P, dtype=dtype, rng=rng)
        return layer if training else layer.eval()

    # The mask is an extra, non-differentiable input: only x's gradient is compared.
    return Case(module=MODULE, build=build, inputs=inputs, differentiable=("x",))


def trees(name="Dropout", **kwargs):
    return {tree: getattr(get_module(tree, MODULE), name)(**kwargs) for tree in TREES}


# --- Dropout: parity ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_dropout_parity(training, dtype):
    check_parity(dropout_case(training), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dropout_parity_float_mask(dtype):
    check_parity(dropout_case(float_mask=True), dtype)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_dropout_gradcheck(training):
    gradcheck_numpy(dropout_case(training))


def test_dropout_is_exactly_x_over_keep_prob_or_zero():
    """With a given mask every tree gives exactly 0 or the correctly rounded x/(1-p), and eval is x."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE).astype("float32")
    mask = get_module("numpy", MODULE).dropout_mask(SHAPE, P, rng)
    expected = np.where(mask, x / np.float32(1 - P), np.float32(0))
    for tree, layer in trees(p=P, dtype="float32").items():
        np.testing.assert_array_equal(np.asarray(layer(to_tree(tree, x), to_tree(tree, mask))), expected, err_msg=tree)
        layer.eval()
        np.testing.assert_array_equal(np.asarray(layer(to_tree(tree, x), to_tree(tree, mask))), x, err_msg=tree)


def test_same_rng_state_gives_the_same_mask_in_every_tree():
    """Without a mask each tree draws one with ``dropout_mask`` from its ``rng``: equal seeds, equal outputs."""
    x = np.random.default_rng(1).standard_normal(SHAPE)
    outs = {tree: np.asarray(layer(to_tree(tree, x)))
            for tree, layer in {t: getattr(get_module(t, MODULE), "Dropout")(P, "float64", np.random.default_rng(7))
                                for t in TREES}.items()}
    for tree in TREES[1:]:
        np.testing.assert_array_equal(outs[tree], outs["numpy"], err_msg=tree)
    assert 0 < np.count_nonzero(outs["numpy"]) < x.size


# --- Dropout: statistics ------------------------------------------------------------------------
# A keep decision is a Bernoulli(1-p) draw; over n draws the kept fraction has standard error
# sqrt(p(1-p)/n). Each statistic is allowed 5 standard errors: a correct implementation fails with
# probability ~6e-7 per check (seeds are fixed anyway), while a wrong rate (p kept instead of 1-p,
# or no rescaling) is off by hundreds of standard errors at these n.
N_DRAWS = 200_000
Z = 5.0


def keep_rate_tolerance(p, n):
    return Z * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_keep_rate_and_unbiased_output(p):
    np_mod = get_module("numpy", MODULE)
    rng = np.random.default_rng(3)
    mask = np_mod.dropout_mask((N_DRAWS,), p, rng)
    assert mask.dtype == bool
    assert abs(mask.mean() - (1 - p)) < keep_rate_tolerance(p, N_DRAWS)
    # E[y] = x: for each of 8 fixed inputs, average y over n masks. y_i = x_i m_i/(1-p) has standard
    # deviation |x_i| sqrt(p/(1-p)), so the mean over n has standard error |x_i| sqrt(p/((1-p) n)).
    n = N_DRAWS // 8
    x = np.linspace(-2.0, 2.0, 8)
    layer = np_mod.Dropout(p, "float64", rng=rng)
    # n rows of the same x: each row gets its own mask, drawn in one call.
    y = layer(np.tile(x, (n, 1)))  # (n, 8)
    se = np.abs(x) * np.sqrt(p / ((1 - p) * n))
    assert np.all(np.abs(y.mean(axis=0) - x) <= Z * se + 1e-12)


def check_reference_dropout(y, x, p):
    """Every output is exactly 0 or x/(1-p) (to 1 ulp: a framework may multiply by 1/(1-p) rather
    than divide), and the kept fraction is 1-p within the binomial tolerance."""
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) < keep_rate_tolerance(p, y.size)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=2 * np.finfo(y.dtype).eps, atol=0)


# x is never 0, so an output of 0 means "dropped".
def nonzero_x(dtype):
    rng = np.random.default_rng(5)
    return (rng.choice([-1, 1], N_DRAWS) * rng.uniform(0.5, 2.0, N_DRAWS)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("p", [0.5, 0.3])
def test_torch_dropout_keep_rate_and_scaling(p, dtype):
    x = nonzero_x(dtype)
    torch.manual_seed(0)
    y = F.dropout(torch.from_numpy(x), p, training=True).numpy()
    check_reference_dropout(y, x, p)
    np.testing.assert_array_equal(F.dropout(torch.from_numpy(x), p, training=False).numpy(), x)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("p", [0.5, 0.3])
def test_tf_and_keras_dropout_keep_rate_and_scaling(p, dtype):
    x = nonzero_x(dtype)
    check_reference_dropout(tf.nn.dropout(tf.constant(x), rate=p, seed=1).numpy(), x, p)
    layer = keras.layers.Dropout(p, seed=2, dtype=dtype)
    check_reference_dropout(np.asarray(layer(x, training=True)), x, p)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_framework_dropout_multiplies_by_a_rounded_inverse_keep_prob(dtype):
    """torch's ``F.dropout`` and ``tf.nn.dropout`` / Keras scale kept values by a precomputed
    ``1/(1-p)`` rounded to x's dtype (torch divides in x's dtype, TF rounds the double quotient),
    where our trees divide, ``x / (1-p)``: up to 1 ulp apart (why the checks above allow 2 eps)."""
    p = 0.3
    x = nonzero_x(dtype)
    torch.manual_seed(1)
    y = F.dropout(torch.from_numpy(x), p, training=True).numpy()
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept] * (np.asarray(1, dtype) / np.asarray(1 - p, dtype)))
    assert not np.array_equal(y[kept], x[kept] / (1 - p))
    for z in (tf.nn.dropout(tf.constant(x), rate=p, seed=3).numpy(),
              np.asarray(keras.layers.Dropout(p, seed=4, dtype=dtype)(x, training=True))):
        kept = z != 0
        np.testing.assert_array_equal(z[kept], x[kept] * np.asarray(1 / (1 - p), dtype))
        assert not np.array_equal(z[kept], x[kept] / (1 - p))


def test_p_equal_to_one_behaviour_differs_by_framework():
    """p = 1 is rejected here (1/(1-p) is undefined); torch's F.dropout and Keras return zeros."""
    x = np.ones(4)
    assert np.all(F.dropout(torch.from_numpy(x), 1.0, training=True).numpy() == 0)
    assert np.all(np.asarray(keras.layers.Dropout(1.0)(x, training=True)) == 0)
    for tree in TREES:
        with pytest.raises(ValueError, match=r"p must be in \[0.0, 1.0\)"):
            getattr(get_module(tree, MODULE), "Dropout")(1.0)


# --- Dropout: bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("tree", TREES)
def test_dropout_bad_input(tree):
    m = get_module(tree, MODULE)
    for p in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="Dropout: p must be in"):
            m.Dropout(p)
    with pytest.raises(TypeError, match="Dropout: p must be a real number"):
        m.Dropout("0.5")
    # A seed where a generator belongs: refused at construction, not at the first forward.
    with pytest.raises(TypeError) as raised:
        m.Dropout(0.5, rng=0)
    assert str(raised.value) == "Dropout: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"
    with pytest.raises(ValueError, match="dropout_mask: p must be in"):
        m.dropout_mask((3,), 1.0, np.random.default_rng(0))
    layer = m.Dropout(0.5, dtype="float32")
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"Dropout: mask must have shape \(2, 3\), got \(3, 2\)"):
        layer(to_tree(tree, x), to_tree(tree, np.ones((3, 2), bool)))
    with pytest.raises(TypeError, match="Dropout: x must have dtype float32, got float64"):
        layer(to_tree(tree, x.astype(np.float64)), to_tree(tree, np.ones((2, 3), bool)))
    with pytest.raises(TypeError, match="Dropout: mask must have dtype bool or float32, got int64"):
        layer(to_tree(tree, x), to_tree(tree, np.ones((2, 3), np.int64)))
    with pytest.raises(ValueError, match="Dropout: a float mask must hold only 0 and 1"):
        layer(to_tree(tree, x), to_tree(tree, np.full((2, 3), 0.5, np.float32)))


# --- L2 weight decay ----------------------------------------------------------------------------

def test_l2_penalty_and_its_gradient_agree_across_trees():
    rng = np.random.default_rng(8)
    params = {"weight": rng.standard_normal((3, 4)), "other": rng.standard_normal(5)}
    lam = 0.07
    expected = 0.5 * lam * sum(np.sum(w**2) for w in params.values())
    np_mod = get_module("numpy", MODULE)
    np.testing.assert_allclose(np_mod.l2_penalty(params, lam), expected, rtol=1e-14)
    hand = np_mod.l2_penalty_grad(params, lam)
    # torch: autograd of the penalty equals the written-out gradient λw.
    torch_params = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tm = get_module("torch", MODULE)
    penalty = tm.l2_penalty(torch_params, lam)
    penalty.backward()
    # tf: the tape on the penalty, too.
    tf_params = {k: tf.Variable(v) for k, v in params.items()}
    fm = get_module("tf", MODULE)
    with tf.GradientTape() as tape:
        tf_penalty = fm.l2_penalty(tf_params, lam)
    tf_grads = dict(zip(tf_params, tape.gradient(tf_penalty, list(tf_params.values()))))
    failures = []
    compare_tensors("penalty", "numpy vs torch", expected, penalty.detach().numpy(), "float64", failures)
    compare_tensors("penalty", "numpy vs tf", expected, tf_penalty.numpy(), "float64", failures)
    for name in params:
        compare_tensors(f"grad {name}", "hand vs torch autograd", hand[name], torch_params[name].grad.numpy(), "float64", failures)
        compare_tensors(f"grad {name}", "hand vs tf tape", hand[name], tf_grads[name].numpy(), "float64", failures)
        compare_tensors(f"grad {name}", "hand vs torch l2_penalty_grad", hand[name],
                        tm.l2_penalty_grad(torch_params, lam)[name].numpy(), "float64", failures)
        compare_tensors(f"grad {name}", "hand vs tf l2_penalty_grad", hand[name],
                        fm.l2_penalty_grad(tf_params, lam)[name].numpy(), "float64", failures)
    assert_no_failures(failures, "l2 penalty")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_l2_gradient_step_equals_torch_sgd_weight_decay(dtype):
    """One SGD step on an MSE loss: NumPy's hand-written gradient + ``l2_penalty_grad`` (weight only),
    torch and TF differentiating loss + ``l2_penalty``, all equal ``torch.optim.SGD(weight_decay=λ)``
    applied to the weight with the plain loss (its ``weight_decay`` adds λw to the gradient)."""
    lr, lam = 0.1, 0.05
    rng = np.random.default_rng(9)
    W = rng.uniform(-1, 1, (3, 4)).astype(dtype)
    b = rng.uniform(-1, 1, 3).astype(dtype)
    x = rng.standard_normal((5, 4)).astype(dtype)
    t = rng.standard_normal((5, 3)).astype(dtype)

    # Reference: torch.optim.SGD with weight_decay on the weight only (bias undecayed).
    w_ref, b_ref = torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)
    opt = torch.optim.SGD([{"params": [w_ref], "weight_decay": lam}, {"params": [b_ref], "weight_decay": 0.0}], lr=lr)
    ((torch.from_numpy(x) @ w_ref.T + b_ref - torch.from_numpy(t)) ** 2).mean().backward()
    opt.step()
    reference = {"weight": w_ref.detach().numpy(), "bias": b_ref.detach().numpy()}

    # NumPy: hand-written MSE and linear backward, then + λw from l2_penalty_grad.
    np_mod = get_module("numpy", MODULE)
    y = x @ W.T + b  # (5, 3)
    g = 2 * (y - t) / y.size  # (5, 3)
    grads = {"weight": g.T @ x, "bias": g.sum(axis=0)}
    decay = np_mod.l2_penalty_grad({"weight": W}, lam)
    grads["weight"] = grads["weight"] + decay["weight"]
    ours = {"numpy": {"weight": W - lr * grads["weight"], "bias": b - lr * grads["bias"]}}

    # torch tree: autograd through loss + l2_penalty, plain SGD step (weight_decay=0).
    tm = get_module("torch", MODULE)
    w_t, b_t = torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)
    loss = ((torch.from_numpy(x) @ w_t.T + b_t - torch.from_numpy(t)) ** 2).mean() + tm.l2_penalty({"weight": w_t}, lam)
    loss.backward()
    ours["torch"] = {"weight": (w_t - lr * w_t.grad).detach().numpy(), "bias": (b_t - lr * b_t.grad).detach().numpy()}

    # tf tree: the tape on loss + l2_penalty.
    fm = get_module("tf", MODULE)
    w_f, b_f = tf.Variable(W), tf.Variable(b)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((x @ tf.transpose(w_f) + b_f - t) ** 2) + fm.l2_penalty({"weight": w_f}, lam)
    gw, gb = tape.gradient(loss, [w_f, b_f])
    ours["tf"] = {"weight": (w_f - lr * gw).numpy(), "bias": (b_f - lr * gb).numpy()}

    failures = []
    for tree, new in ours.items():
        for name in new:
            compare_tensors(name, f"{tree} vs torch.optim.SGD(weight_decay)", new[name], reference[name], dtype, failures)
    assert_no_failures(failures, f"L2 step ({dtype})")


@pytest.mark.parametrize("tree", TREES)
def test_l2_bad_input(tree):
    m = get_module(tree, MODULE)
    with pytest.raises(ValueError, match=r"l2_penalty: weight_decay must be in \[0.0, inf\)"):
        m.l2_penalty({"w": to_tree(tree, np.ones(2))}, -1.0)
    with pytest.raises(ValueError, match=r"l2_penalty_grad: weight_decay must be in"):
        m.l2_penalty_grad({"w": to_tree(tree, np.ones(2))}, -1.0)


# --- Early stopping -----------------------------------------------------------------------------

# (patience, min_delta, mode, metrics, index of the step that returns True or None, best, best_step)
SCRIPTS = {
    "min": (2, 0.0, "min", [1.0, 0.8, 0.9, 0.7, 0.75, 0.71], 5, 0.7, 3),
    "min-delta": (2, 0.05, "min", [1.0, 0.97, 0.9, 0.88, 0.86], 4, 0.9, 2),
    "max": (1, 0.0, "max", [0.5, 0.6, 0.6], 2, 0.6, 1),
    "never": (3, 0.0, "min", [5.0, 4.0, 4.5, 3.0, 3.1, 2.0], None, 2.0, 5),
    "patience-0": (0, 0.0, "min", [1.0, 0.5, 0.5], 2, 0.5, 1),
    "nan": (1, 0.0, "min", [1.0, float("nan")], 1, 1.0, 0),
}


def keras_stop_step(patience, min_delta, mode, metrics):
    """``keras.callbacks.EarlyStopping`` fed the same sequence as epoch-end logs."""
    cb = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, min_delta=min_delta, mode=mode)
    cb.set_model(types.SimpleNamespace(stop_training=False))
    cb.on_train_begin()
    for epoch, value in enumerate(metrics):
        cb.on_epoch_end(epoch, {"val_loss": value})
        if cb.model.stop_training:
            return epoch, float(cb.best), cb.best_epoch
    return None, float(cb.best), cb.best_epoch


@pytest.mark.parametrize("name", SCRIPTS)
def test_early_stopping_on_a_scripted_sequence(name):
    patience, min_delta, mode, metrics, stop_at, best, best_step = SCRIPTS[name]
    assert keras_stop_step(patience, min_delta, mode, metrics) == (stop_at, best, best_step)
    for tree, stopper in trees("EarlyStopping", patience=patience, min_delta=min_delta, mode=mode).items():
        stops = [stopper.step(to_tree(tree, np.array(v)) if tree != "numpy" else v) for v in metrics]
        first = stops.index(True) if True in stops else None
        assert first == stop_at, f"{tree}: stopped at {first}, expected {stop_at} ({stops})"
        assert stopper.should_stop == stops[-1]
        assert (stopper.best, stopper.best_step) == (best, best_step), tree


@pytest.mark.parametrize("tree", TREES)
def test_early_stopping_bad_input(tree):
    m = get_module(tree, MODULE)
    with pytest.raises(ValueError, match="EarlyStopping: patience must be an int >= 0"):
        m.EarlyStopping(-1)
    with pytest.raises(ValueError, match="EarlyStopping: patience must be an int >= 0"):
        m.EarlyStopping(2.5)
    with pytest.raises(ValueError, match="EarlyStopping: min_delta must be in"):
        m.EarlyStopping(2, min_delta=-0.1)
    with pytest.raises(ValueError, match="EarlyStopping: mode must be one of"):
        m.EarlyStopping(2, mode="auto")
