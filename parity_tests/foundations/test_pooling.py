"""Day 16: max, average and global average pooling in three trees, against ``torch.nn.functional``
(``max_pool2d``, ``avg_pool2d``), ``keras.layers`` (``MaxPooling2D``, ``AveragePooling2D``,
``GlobalAveragePooling2D``) and ``tf.nn.max_pool2d``.

The NumPy and torch trees are NCHW; the TF tree NHWC (``tf_layouts``/``tf_output_layouts``), and
the Keras references are fed NHWC likewise. Keras pools only with ``"valid"`` or ``"same"``
padding; ``"same"`` is not torch's symmetric padding (see ``test_keras_same_padding_is_not_symmetric``),
so Keras is a reference for the unpadded configurations only.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import Case, check_parity, gradcheck_numpy, run_tf, run_torch

NHWC = (0, 2, 3, 1)
MODULE = "foundations.pooling"

# name -> (constructor kwargs, input shape (N, C, H, W))
CONFIGS = {
    "k2s2": ({"kernel_size": 2}, (2, 3, 4, 6)),
    "k3s1p1": ({"kernel_size": 3, "stride": 1, "padding": 1}, (2, 2, 5, 4)),
    "k3s2p1-odd": ({"kernel_size": 3, "stride": 2, "padding": 1}, (1, 3, 7, 5)),
    "k3s2-odd-floor": ({"kernel_size": 3, "stride": 2}, (2, 2, 6, 8)),
    "nonsquare": ({"kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 1)}, (2, 2, 5, 7)),
}


def to_nhwc(x):
    return tf.transpose(x, NHWC)


def keras_valid(layer_cls, kwargs):
    """A reference runner: a Keras pooling layer on NHWC input (output transposed back to NCHW),
    or None if the config pads. The layer needs ``dtype``: Keras' default policy computes in float32."""
    if kwargs.get("padding", 0) not in (0, (0, 0)):
        return None

    def run(state, inputs, cot, dtype):
        layer = layer_cls(pool_size=kwargs["kernel_size"], strides=kwargs.get("stride"), padding="valid", dtype=dtype)
        return run_tf(lambda x: tf.transpose(layer(to_nhwc(x)), (0, 3, 1, 2)), inputs, ("x",), cot, {}, lambda g: {})
    return run


def torch_reference(fn):
    return lambda state, inputs, cot, dtype: run_torch(fn, inputs, ("x",), cot, params={})


def distinct_inputs(shape):
    """A random permutation of well-separated values: no ties, so finite differences never cross
    a change of winner in max pooling."""
    def inputs(dtype, rng):
        values = rng.permutation(np.prod(shape)).reshape(shape) * 0.1 - 0.05 * np.prod(shape)
        return {"x": (values + rng.uniform(-0.01, 0.01, shape)).astype(dtype)}
    return inputs


def max_case(name, inputs=None):
    kwargs, shape = CONFIGS[name]
    references = {"torch.nn.functional": torch_reference(lambda x: F.max_pool2d(x, **kwargs))}
    if (keras_run := keras_valid(keras.layers.MaxPooling2D, kwargs)) is not None:
        references["keras.layers"] = keras_run
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.MaxPool2d(**kwargs, dtype=dtype),
        inputs=inputs or distinct_inputs(shape),
        references=references,
        tf_layouts={"x": NHWC},
        tf_output_layouts={0: NHWC},
    )


def avg_case(name, count_include_pad=True):
    kwargs, shape = CONFIGS[name]
    references = {"torch.nn.functional": torch_reference(
        lambda x: F.avg_pool2d(x, **kwargs, count_include_pad=count_include_pad))}
    if (keras_run := keras_valid(keras.layers.AveragePooling2D, kwargs)) is not None:
        references["keras.layers"] = keras_run
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.AvgPool2d(**kwargs, count_include_pad=count_include_pad, dtype=dtype),
        inputs=lambda dtype, rng: {"x": rng.standard_normal(shape).astype(dtype)},
        references=references,
        tf_layouts={"x": NHWC},
        tf_output_layouts={0: NHWC},
    )


def global_case():
    shape = (3, 4, 5, 6)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.GlobalAvgPool2d(dtype=dtype),
        inputs=lambda dtype, rng: {"x": rng.standard_normal(shape).astype(dtype)},
        references={
            "torch": torch_reference(lambda x: F.adaptive_avg_pool2d(x, 1)[:, :, 0, 0]),
            "keras.layers": lambda state, inputs, cot, dtype: run_tf(
                lambda x: keras.layers.GlobalAveragePooling2D(dtype=dtype)(to_nhwc(x)), inputs, ("x",), cot, {}, lambda g: {}),
        },
        tf_layouts={"x": NHWC},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CONFIGS)
def test_max_pool_parity(name, dtype):
    check_parity(max_case(name), dtype)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CONFIGS)
def test_avg_pool_parity(name, dtype, count_include_pad):
    check_parity(avg_case(name, count_include_pad), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_global_avg_pool_parity(dtype):
    check_parity(global_case(), dtype)


@pytest.mark.parametrize("name", CONFIGS)
def test_max_pool_gradcheck(name):
    gradcheck_numpy(max_case(name))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("name", CONFIGS)
def test_avg_pool_gradcheck(name, count_include_pad):
    gradcheck_numpy(avg_case(name, count_include_pad))


def test_global_avg_pool_gradcheck():
    gradcheck_numpy(global_case())


def tie_inputs(shape):
    """Integers in {0, 1, 2}, plus one all-equal channel: nearly every window holds a tie."""
    def inputs(dtype, rng):
        x = rng.integers(0, 3, shape).astype(dtype)
        x[:, 0] = 1.0
        return {"x": x}
    return inputs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CONFIGS)
def test_max_pool_ties_go_to_the_first_max_like_torch(name, dtype):
    """With ties, ``F.max_pool2d`` gives the whole gradient to the FIRST maximum of the window in
    row-major order; all three trees do the same (not split it, as ``amax``/``reduce_max`` would).
    The harness compares every input gradient exactly to that reference (float64: 1e-9)."""
    check_parity(max_case(name, inputs=tie_inputs(CONFIGS[name][1])), dtype)


@pytest.mark.parametrize("name", CONFIGS)
def test_tf_max_pool2d_gradient_also_takes_the_first_max(name):
    """``tf.nn.max_pool2d``'s gradient (MaxPoolGrad on CPU) also routes a tie to the first maximum
    in row-major window order — verified here against torch on tie-filled inputs, with the
    explicit symmetric padding ``tf.nn.max_pool2d`` accepts. (Its docs promise nothing; on GPU,
    cuDNN's may differ. ``tf.reduce_max``'s gradient, by contrast, splits a tie evenly — why the
    TF tree selects the first max by mask.)"""
    kwargs, shape = CONFIGS[name]
    k, s, p = get_module("numpy", MODULE).pool_geometry("test", kwargs["kernel_size"], kwargs.get("stride"), kwargs.get("padding", 0))
    x = tie_inputs(shape)("float64", np.random.default_rng(7))["x"]
    g = np.random.default_rng(8).standard_normal(F.max_pool2d(torch.from_numpy(x), k, s, p).shape)
    xt = torch.tensor(x, requires_grad=True)
    (F.max_pool2d(xt, k, s, p) * torch.from_numpy(g)).sum().backward()
    xf = tf.constant(x.transpose(NHWC))
    with tf.GradientTape() as tape:
        tape.watch(xf)
        y = tf.nn.max_pool2d(xf, k, s, [[0, 0], [p[0], p[0]], [p[1], p[1]], [0, 0]])
        loss = tf.reduce_sum(y * g.transpose(NHWC))
    np.testing.assert_array_equal(tape.gradient(loss, xf).numpy().transpose(0, 3, 1, 2), xt.grad.numpy())
    # And reduce_max splits: a window of four equal values gives each a quarter.
    ones = tf.ones((4,), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(ones)
        m = tf.reduce_max(ones)
    np.testing.assert_array_equal(tape.gradient(m, ones).numpy(), [0.25] * 4)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
       h=st.integers(3, 7), w=st.integers(3, 7), data=st.data())
def test_pooling_fuzz_shapes(kh, kw, sh, sw, h, w, data):
    """Random kernel, stride, legal padding and image size: max pooling on tie-filled input and
    average pooling (both ``count_include_pad``), every tree against torch, float64."""
    ph, pw = data.draw(st.integers(0, kh // 2)), data.draw(st.integers(0, kw // 2))
    kwargs = {"kernel_size": (kh, kw), "stride": (sh, sw), "padding": (ph, pw)}
    shape = (2, 2, h, w)
    tf_io = {"tf_layouts": {"x": NHWC}, "tf_output_layouts": {0: NHWC}}
    check_parity(Case(module=MODULE, build=lambda m, dtype, rng: m.MaxPool2d(**kwargs, dtype=dtype),
                      inputs=tie_inputs(shape),
                      references={"torch.nn.functional": torch_reference(lambda x: F.max_pool2d(x, **kwargs))}, **tf_io),
                 "float64")
    include = data.draw(st.booleans())
    check_parity(Case(module=MODULE, build=lambda m, dtype, rng: m.AvgPool2d(**kwargs, count_include_pad=include, dtype=dtype),
                      inputs=lambda dtype, rng: {"x": rng.standard_normal(shape).astype(dtype)},
                      references={"torch.nn.functional": torch_reference(
                          lambda x: F.avg_pool2d(x, **kwargs, count_include_pad=include))}, **tf_io),
                 "float64")


def test_keras_same_padding_is_not_symmetric():
    """Keras ``padding="same"`` pads ``total = max((Ho-1)s + k - H, 0)`` with the extra row/column
    at the bottom/right (TF's SAME), and its average divides by the real-pixel count; torch pads
    ``p`` on both sides. For k=2, s=2 on a 5x5 image Keras SAME gives 3x3 windows starting at 0
    (no top pad), torch's padding=1 gives windows starting at -1: different results."""
    x = np.arange(25, dtype=np.float64).reshape(1, 5, 5, 1)
    same = keras.layers.MaxPooling2D(2, 2, padding="same")(x).numpy()[0, :, :, 0]
    torch_p1 = F.max_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), 2, 2, 1).numpy()[0, 0]
    np.testing.assert_array_equal(same, [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    np.testing.assert_array_equal(torch_p1, [[0, 2, 4], [10, 12, 14], [20, 22, 24]])


def test_keras_pooling_layers_compute_in_float32_by_default():
    """A Keras layer built without ``dtype`` follows the global policy, ``"float32"``: it casts a
    float64 input down and returns float32 (a ~3e-8 relative difference, what the float64 parity
    test showed before the references were built with ``dtype=dtype``)."""
    x = np.full((1, 2, 2, 1), 0.1)
    y = keras.layers.AveragePooling2D(2)(x)
    assert y.dtype == tf.float32 and y.numpy().item() == np.float32(0.1)
    assert keras.layers.AveragePooling2D(2, dtype="float64")(x).numpy().item() == 0.1


def call_tree(tree, layer, x):
    if tree == "numpy":
        return layer(x)
    if tree == "torch":
        return layer(torch.from_numpy(x))
    return layer(tf.constant(x))


@pytest.mark.parametrize("tree", ["numpy", "torch", "tf"])
def test_bad_input_is_rejected(tree):
    m = get_module(tree, MODULE)
    x = np.zeros((1, 2, 4, 4))
    for layer in (m.MaxPool2d(2, dtype="float64"), m.AvgPool2d(2, dtype="float64"), m.GlobalAvgPool2d(dtype="float64")):
        with pytest.raises(ValueError, match="must have 4 dimensions"):
            call_tree(tree, layer, x[0])
        with pytest.raises(TypeError, match="must have dtype float64"):
            call_tree(tree, layer, x.astype(np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        call_tree(tree, m.MaxPool2d(5, dtype="float64"), x)
    for cls in (m.MaxPool2d, m.AvgPool2d):
        with pytest.raises(ValueError, match="at most half the kernel"):
            cls(3, padding=2)
        with pytest.raises(ValueError, match="at most half the kernel"):
            cls((2, 4), padding=(1, 3))
        with pytest.raises(ValueError, match="kernel_size must be a non-negative int or a pair of them"):
            cls((2, 2, 2))
        with pytest.raises(ValueError, match=">= 1"):
            cls(2, stride=0)


def test_torch_rejects_the_same_padding():
    """Our padding rule is torch's: ``F.max_pool2d`` refuses padding > kernel/2 too."""
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        F.max_pool2d(torch.zeros(1, 1, 4, 4), 3, 1, 2)
