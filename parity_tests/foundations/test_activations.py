"""Day 5: activations in three trees, against ``torch.nn.functional`` and ``keras.activations``."""
import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from parity_tests.harness import Case, check_parity, gradcheck_numpy, run_tf, run_torch

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


def activation_case(name, dtype="float64"):
    kwargs, torch_fn, keras_fn = ACTIVATIONS[name]
    cls = name.split("-")[0]
    references = {
        "torch.nn.functional": lambda state, inputs, cot, dtype: run_torch(torch_fn, inputs, ("x",), cot, params={}),
        "keras.activations": lambda state, inputs, cot, dtype: run_tf(keras_fn, inputs, ("x",), cot, {}, lambda g: {}),
    }
    if dtype == "float64" and name in KERAS_FLOAT32_ONLY:
        del references["keras.activations"]
    return Case(
        module="foundations.activations",
        build=lambda m, dtype, rng: getattr(m, cls)(**kwargs, dtype=dtype),
        # Away from 0 so the kink of ReLU-like functions is never straddled by finite differences.
        inputs=lambda dtype, rng: {"x": (rng.choice([-1, 1], (4, 6)) * rng.uniform(0.05, 4.0, (4, 6))).astype(dtype)},
        references=references,
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
    from ml100.backends import get_module

    kwargs, torch_fn, _ = ACTIVATIONS[name]
    x = np.array([-1000.0, -50.0, 0.5, 50.0, 1000.0])
    expected = torch_fn(torch.from_numpy(x)).numpy()
    for tree in ("numpy", "torch", "tf"):
        layer = getattr(get_module(tree, "foundations.activations"), name)(**kwargs, dtype="float64")
        got = np.asarray(layer(x if tree == "numpy" else (torch.from_numpy(x) if tree == "torch" else __import__("tensorflow").constant(x))))
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


def test_keras_gelu_constants_are_float32():
    """``tf.nn.gelu`` casts the Python constants 1/sqrt(2) and 0.044715 through float32 before use,
    so on float64 inputs it equals GELU with those float32-rounded constants (a ~4e-9 relative
    difference from the exact formula): why Keras is a float32-only reference for GELU."""
    from scipy.special import erfc

    x = np.linspace(-4.0, 4.0, 9)
    inv_sqrt2 = float(np.float32(1 / np.sqrt(2.0)))
    np.testing.assert_allclose(keras.activations.gelu(x, approximate=False).numpy(),
                               0.5 * x * erfc(-x * inv_sqrt2), rtol=1e-12, atol=1e-300)
    c = float(np.float32(0.044715))
    np.testing.assert_allclose(keras.activations.gelu(x, approximate=True).numpy(),
                               0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + c * x**3))), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_slope_at_exactly_zero_matches_torch(name):
    """At x = 0 a kink (ReLU) or an ``abs`` inside a stable formula (sigmoid, softplus) decides the
    slope; every tree must give the slope torch's autograd gives."""
    import tensorflow as tf

    from ml100.backends import get_module

    kwargs, torch_fn, _ = ACTIVATIONS[name]
    cls = name.split("-")[0]
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    torch_fn(x).sum().backward()
    expected = x.grad.numpy()
    layers = {tree: getattr(get_module(tree, "foundations.activations"), cls)(**kwargs, dtype="float64") for tree in ("numpy", "torch", "tf")}
    layers["numpy"].forward(np.zeros(3))
    got = {"numpy": layers["numpy"].backward(np.ones(3))}
    xt = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    layers["torch"](xt).sum().backward()
    got["torch"] = xt.grad.numpy()
    xf = tf.zeros(3, dtype=tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(xf)
        y = tf.reduce_sum(layers["tf"](xf))
    got["tf"] = tape.gradient(y, xf).numpy()
    for tree, grad in got.items():
        np.testing.assert_allclose(grad, expected, rtol=1e-15, atol=0, err_msg=f"{tree} {name} slope at 0")
