"""Day 16: max, average, global average and adaptive average pooling in three trees, against
``torch.nn.functional`` (``max_pool2d`` with and without ``ceil_mode``, ``avg_pool2d``,
``adaptive_avg_pool2d``), ``keras.layers`` (``MaxPooling2D``, ``AveragePooling2D``,
``GlobalAveragePooling2D``, ``AdaptiveAveragePooling2D``) and ``tf.nn.max_pool2d``; NaN, ±inf and
all -inf windows against torch, the empty batch, a layer used twice, and the constructor checks.

The NumPy and torch trees are NCHW; the TF tree NHWC (``tf_layouts``/``tf_output_layouts``), and
the Keras references are fed NHWC likewise. Keras pools only with ``"valid"`` or ``"same"``
padding; ``"same"`` is not torch's symmetric padding (see ``test_keras_same_padding_is_not_symmetric``),
so Keras is a reference for the unpadded configurations only.
"""
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from ml100.geometry import adaptive_bins, pool_geometry
from parity_tests.harness import (NCHW_TO_NHWC, NHWC_TO_NCHW, TOLERANCES, TREES, Case, assert_no_failures, check_parity,
                                  compare_results, compare_special, gradcheck_numpy, nchw_to_nhwc, nhwc_to_nchw, run_all_trees,
                                  run_reference, run_tf, to_tree, torch_functional_reference)

MODULE = "foundations.pooling"

# name -> (constructor kwargs, input shape (N, C, H, W))
CONFIGS = {
    "k2s2": ({"kernel_size": 2}, (2, 3, 4, 6)),
    "k3s1p1": ({"kernel_size": 3, "stride": 1, "padding": 1}, (2, 2, 5, 4)),
    "k3s2p1-odd": ({"kernel_size": 3, "stride": 2, "padding": 1}, (1, 3, 7, 5)),
    "k3s2-odd-floor": ({"kernel_size": 3, "stride": 2}, (2, 2, 6, 8)),
    "nonsquare": ({"kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 1)}, (2, 2, 5, 7)),
}
# Max pooling also takes ceil_mode: a last, partial window over the leftover rows and columns.
MAX_CONFIGS = {
    **CONFIGS,
    "k2s2-ceil-odd": ({"kernel_size": 2, "ceil_mode": True}, (2, 2, 5, 7)),
    "k3s3-ceil": ({"kernel_size": 3, "ceil_mode": True}, (2, 2, 7, 8)),
    # H = 5: the ceiling gives 4 rows of windows, but the 4th would start in the bottom padding
    # ((4-1)*2 >= 5+1), so torch drops it; W = 6 keeps its 4th, which starts on the last pixel.
    "k2s2p1-ceil-drop": ({"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 5, 6)),
}


def to_nhwc(x):
    return tf.transpose(x, NCHW_TO_NHWC)


def keras_valid(layer_cls, kwargs):
    """A reference runner: a Keras pooling layer on NHWC input (output transposed back to NCHW),
    or None if the config pads or takes ceil_mode. The layer needs ``dtype``: Keras' default policy
    computes in float32."""
    if kwargs.get("padding", 0) not in (0, (0, 0)) or kwargs.get("ceil_mode"):
        return None

    def run(state, inputs, cot, dtype):
        layer = layer_cls(pool_size=kwargs["kernel_size"], strides=kwargs.get("stride"), padding="valid", dtype=dtype)
        return run_tf(lambda x: tf.transpose(layer(to_nhwc(x)), NHWC_TO_NCHW), inputs, ("x",), cot, {}, lambda g: {})
    return run


def distinct_inputs(shape):
    """A random permutation of well-separated values: no ties, so finite differences never cross
    a change of winner in max pooling."""
    def inputs(dtype, rng):
        values = rng.permutation(np.prod(shape)).reshape(shape) * 0.1 - 0.05 * np.prod(shape)
        return {"x": (values + rng.uniform(-0.01, 0.01, shape)).astype(dtype)}
    return inputs


def max_case(name, inputs=None):
    kwargs, shape = MAX_CONFIGS[name]
    references = {"torch.nn.functional": torch_functional_reference(lambda x: F.max_pool2d(x, **kwargs))}
    if (keras_run := keras_valid(keras.layers.MaxPooling2D, kwargs)) is not None:
        references["keras.layers"] = keras_run
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.MaxPool2d(**kwargs, dtype=dtype),
        inputs=inputs or distinct_inputs(shape),
        references=references,
        tf_layouts={"x": NCHW_TO_NHWC},
        tf_output_layouts={0: NCHW_TO_NHWC},
        special_excluded_references={"keras.layers": "TF's max pool skips NaN and turns an all -inf window into the "
                                                     "lowest float: see test_tf_max_pool_skips_nan"},
    )


def avg_case(name, count_include_pad=True):
    kwargs, shape = CONFIGS[name]
    references = {"torch.nn.functional": torch_functional_reference(
        lambda x: F.avg_pool2d(x, **kwargs, count_include_pad=count_include_pad))}
    if (keras_run := keras_valid(keras.layers.AveragePooling2D, kwargs)) is not None:
        references["keras.layers"] = keras_run
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.AvgPool2d(**kwargs, count_include_pad=count_include_pad, dtype=dtype),
        inputs=lambda dtype, rng: {"x": rng.standard_normal(shape).astype(dtype)},
        references=references,
        tf_layouts={"x": NCHW_TO_NHWC},
        tf_output_layouts={0: NCHW_TO_NHWC},
    )


def global_case():
    shape = (3, 4, 5, 6)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.GlobalAvgPool2d(dtype=dtype),
        inputs=lambda dtype, rng: {"x": rng.standard_normal(shape).astype(dtype)},
        references={
            "torch": torch_functional_reference(lambda x: F.adaptive_avg_pool2d(x, 1)[:, :, 0, 0]),
            "keras.layers": lambda state, inputs, cot, dtype: run_tf(
                lambda x: keras.layers.GlobalAveragePooling2D(dtype=dtype)(to_nhwc(x)), inputs, ("x",), cot, {}, lambda g: {}),
        },
        tf_layouts={"x": NCHW_TO_NHWC},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", MAX_CONFIGS)
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


@pytest.mark.parametrize("name", MAX_CONFIGS)
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
@pytest.mark.parametrize("name", MAX_CONFIGS)
def test_max_pool_ties_go_to_the_first_max_like_torch(name, dtype):
    """With ties, ``F.max_pool2d`` gives the whole gradient to the FIRST maximum of the window in
    row-major order; all three trees do the same (not split it, as ``amax``/``reduce_max`` would).
    The harness compares every input gradient exactly to that reference (float64: 1e-9)."""
    check_parity(max_case(name, inputs=tie_inputs(MAX_CONFIGS[name][1])), dtype)


@pytest.mark.parametrize("name", CONFIGS)
def test_tf_max_pool2d_gradient_also_takes_the_first_max(name):
    """``tf.nn.max_pool2d``'s gradient (MaxPoolGrad on CPU) also routes a tie to the first maximum
    in row-major window order — verified here against torch on tie-filled inputs, with the
    explicit symmetric padding ``tf.nn.max_pool2d`` accepts. (Its docs promise nothing; on GPU,
    cuDNN's may differ. ``tf.reduce_max``'s gradient, by contrast, splits a tie evenly — why the
    TF tree selects the first max by mask.)"""
    kwargs, shape = CONFIGS[name]
    k, s, p = pool_geometry("test", kwargs["kernel_size"], kwargs.get("stride"), kwargs.get("padding", 0))
    x = tie_inputs(shape)("float64", np.random.default_rng(7))["x"]
    g = np.random.default_rng(8).standard_normal(F.max_pool2d(torch.from_numpy(x), k, s, p).shape)
    xt = torch.tensor(x, requires_grad=True)
    (F.max_pool2d(xt, k, s, p) * torch.from_numpy(g)).sum().backward()
    xf = tf.constant(nchw_to_nhwc(x))
    with tf.GradientTape() as tape:
        tape.watch(xf)
        y = tf.nn.max_pool2d(xf, k, s, [[0, 0], [p[0], p[0]], [p[1], p[1]], [0, 0]])
        loss = tf.reduce_sum(y * nchw_to_nhwc(g))
    np.testing.assert_array_equal(nhwc_to_nchw(tape.gradient(loss, xf)), xt.grad.numpy())
    # And reduce_max splits: a window of four equal values gives each a quarter.
    ones = tf.ones((4,), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(ones)
        m = tf.reduce_max(ones)
    np.testing.assert_array_equal(tape.gradient(m, ones).numpy(), [0.25] * 4)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
       h=st.integers(3, 7), w=st.integers(3, 7), ceil_mode=st.booleans(), data=st.data())
def test_pooling_fuzz_shapes(kh, kw, sh, sw, h, w, ceil_mode, data):
    """Random kernel, stride, legal padding and image size: max pooling (with or without
    ``ceil_mode``) on tie-filled input and average pooling (both ``count_include_pad``), every
    tree against torch, float64."""
    ph, pw = data.draw(st.integers(0, kh // 2)), data.draw(st.integers(0, kw // 2))
    kwargs = {"kernel_size": (kh, kw), "stride": (sh, sw), "padding": (ph, pw)}
    shape = (2, 2, h, w)
    tf_io = {"tf_layouts": {"x": NCHW_TO_NHWC}, "tf_output_layouts": {0: NCHW_TO_NHWC}}
    check_parity(Case(module=MODULE, build=lambda m, dtype, rng: m.MaxPool2d(**kwargs, ceil_mode=ceil_mode, dtype=dtype),
                      inputs=tie_inputs(shape),
                      references={"torch.nn.functional": torch_functional_reference(
                          lambda x: F.max_pool2d(x, **kwargs, ceil_mode=ceil_mode))}, **tf_io),
                 "float64")
    include = data.draw(st.booleans())
    check_parity(Case(module=MODULE, build=lambda m, dtype, rng: m.AvgPool2d(**kwargs, count_include_pad=include, dtype=dtype),
                      inputs=lambda dtype, rng: {"x": rng.standard_normal(shape).astype(dtype)},
                      references={"torch.nn.functional": torch_functional_reference(
                          lambda x: F.avg_pool2d(x, **kwargs, count_include_pad=include))}, **tf_io),
                 "float64")


def test_tf_max_pool_skips_nan():
    """``tf.nn.max_pool2d`` (so Keras' ``MaxPooling2D``) is no reference for special values: a
    window holding NaN gives the maximum of the rest (torch: NaN), and a window of -inf gives the
    lowest finite float (torch: -inf). The trees follow torch."""
    x = np.array([[np.nan, 1.0, -np.inf, -np.inf], [2.0, 3.0, -np.inf, -np.inf]]).reshape(1, 2, 4, 1)
    tf_out = tf.nn.max_pool2d(tf.constant(x), 2, 2, "VALID").numpy().ravel()
    torch_out = F.max_pool2d(torch.from_numpy(nhwc_to_nchw(x)), 2).numpy().ravel()
    np.testing.assert_array_equal(tf_out, [3.0, np.finfo(np.float64).min])
    np.testing.assert_array_equal(torch_out, [np.nan, -np.inf])


def test_keras_same_padding_is_not_symmetric():
    """Keras ``padding="same"`` pads ``total = max((Ho-1)s + k - H, 0)`` with the extra row/column
    at the bottom/right (TF's SAME), and its average divides by the real-pixel count; torch pads
    ``p`` on both sides. For k=2, s=2 on a 5x5 image Keras SAME gives 3x3 windows starting at 0
    (no top pad), torch's padding=1 gives windows starting at -1: different results."""
    x = np.arange(25, dtype=np.float64).reshape(1, 5, 5, 1)
    same = keras.layers.MaxPooling2D(2, 2, padding="same")(x).numpy()[0, :, :, 0]
    torch_p1 = F.max_pool2d(torch.from_numpy(nhwc_to_nchw(x)), 2, 2, 1).numpy()[0, 0]
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


@pytest.mark.parametrize("tree", ["numpy", "torch", "tf"])
def test_bad_input_is_rejected(tree):
    m = get_module(tree, MODULE)
    x = np.zeros((1, 2, 4, 4))
    for layer in (m.MaxPool2d(2, dtype="float64"), m.AvgPool2d(2, dtype="float64"), m.GlobalAvgPool2d(dtype="float64")):
        with pytest.raises(ValueError, match="must have 4 dimensions"):
            layer(to_tree(tree, x[0]))
        with pytest.raises(TypeError, match="must have dtype float64"):
            layer(to_tree(tree, x.astype(np.float32)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        m.MaxPool2d(5, dtype="float64")(to_tree(tree, x))
    for cls in (m.MaxPool2d, m.AvgPool2d):
        with pytest.raises(ValueError, match="at most half the kernel"):
            cls(3, padding=2)
        with pytest.raises(ValueError, match="at most half the kernel"):
            cls((2, 4), padding=(1, 3))
        with pytest.raises(ValueError, match="kernel_size must be an int >= 1 or a pair of them"):
            cls((2, 2, 2))
        with pytest.raises(ValueError, match="stride must be an int >= 1"):
            cls(2, stride=0)


def test_torch_rejects_the_same_padding():
    """Our padding rule is torch's: ``F.max_pool2d`` refuses padding > kernel/2 too."""
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        F.max_pool2d(torch.zeros(1, 1, 4, 4), 3, 1, 2)


# --- adaptive average pooling ----------------------------------------------------------------

# name -> (output_size, input shape (N, C, H, W))
ADAPTIVE_CONFIGS = {
    "7x5 to 3x2 (overlapping bins)": ((3, 2), (2, 3, 7, 5)),
    "5x4 to 7x3 (more rows out than in)": ((7, 3), (2, 2, 5, 4)),
    "6x9 to 3 (divisible)": (3, (2, 2, 6, 9)),
    "keep the height": ((None, 2), (2, 2, 5, 7)),
    "to 1x1": (1, (2, 3, 4, 5)),
}


def adaptive_case(name, inputs=None):
    output_size, shape = ADAPTIVE_CONFIGS[name]
    references = {"torch.nn.functional": torch_functional_reference(lambda x: F.adaptive_avg_pool2d(x, output_size))}
    # Keras' layer has torch's bins, but no None ("keep this axis").
    if None not in np.atleast_1d(output_size):
        references["keras.layers"] = lambda state, inputs, cot, dtype: run_tf(
            lambda x: tf.transpose(keras.layers.AdaptiveAveragePooling2D(output_size, dtype=dtype)(to_nhwc(x)), NHWC_TO_NCHW),
            inputs, ("x",), cot, {}, lambda g: {})
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.AdaptiveAvgPool2d(output_size, dtype=dtype),
        inputs=inputs or (lambda dtype, rng: {"x": rng.standard_normal(shape).astype(dtype)}),
        references=references,
        tf_layouts={"x": NCHW_TO_NHWC},
        tf_output_layouts={0: NCHW_TO_NHWC},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ADAPTIVE_CONFIGS)
def test_adaptive_avg_pool_parity(name, dtype):
    check_parity(adaptive_case(name), dtype)


@pytest.mark.parametrize("name", ADAPTIVE_CONFIGS)
def test_adaptive_avg_pool_gradcheck(name):
    gradcheck_numpy(adaptive_case(name))


def test_adaptive_bins_are_torchs():
    """Bin i covers [floor(iH/O), ceil((i+1)H/O)): overlapping when O does not divide H."""
    index, valid, count = adaptive_bins(7, 3)
    assert [index[i][valid[i]].tolist() for i in range(3)] == [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    assert count.tolist() == [3, 3, 3]
    index, valid, count = adaptive_bins(5, 7)
    assert [index[i][valid[i]].tolist() for i in range(7)] == [[0], [0, 1], [1, 2], [2], [2, 3], [3, 4], [4]]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 9), w=st.integers(1, 9), out_h=st.one_of(st.none(), st.integers(1, 6)), out_w=st.integers(1, 6))
def test_adaptive_avg_pool_fuzz(h, w, out_h, out_w):
    """Any input size to any output size (larger, smaller, None), every tree against torch, float64."""
    check_parity(Case(module=MODULE, build=lambda m, dtype, rng: m.AdaptiveAvgPool2d((out_h, out_w), dtype=dtype),
                      inputs=lambda dtype, rng: {"x": rng.standard_normal((2, 2, h, w)).astype(dtype)},
                      references={"torch.nn.functional": torch_functional_reference(
                          lambda x: F.adaptive_avg_pool2d(x, (out_h, out_w)))},
                      tf_layouts={"x": NCHW_TO_NHWC}, tf_output_layouts={0: NCHW_TO_NHWC}),
                 "float64")


# --- special values and the empty batch -------------------------------------------------------

def special_inputs(shape):
    """Well-separated values, then: the first image's first channel all -inf (every window, padded
    or not, ties at -inf: the gradient must go to its first REAL pixel); NaN pixels, some windows
    holding two (torch picks the last); a row of +inf and -inf pixels beside it (an average over
    both is NaN)."""
    def inputs(dtype, rng):
        x = distinct_inputs(shape)(dtype, rng)["x"]
        x[0, 0] = -np.inf
        x[0, -1, ::2, ::3] = np.nan
        x[-1, -1, 1, :] = np.inf
        x[-1, -1, 2, 1::2] = -np.inf
        return {"x": x}
    return inputs


def check_outcomes(case, inputs, what):
    """Every tree and torch on ``inputs`` (float64): the same shapes and NaN, +inf and -inf
    positions in the outputs and input gradients, finite values within tolerance."""
    # One cotangent per output shape, the same for everyone.
    draw = lambda outputs: [np.random.default_rng(5).standard_normal(np.shape(out)) for out in outputs]
    with np.errstate(all="ignore"):
        results = run_all_trees(case, "float64", inputs, draw)
        results.update({name: run_reference(case, name, {}, inputs, draw, "float64")
                        for name in case.references if name.startswith("torch")})
    assert_no_failures(compare_results(results, "float64", compare_special), f"{case.module} on {what}")


def float64_inputs(case):
    return case.inputs("float64", np.random.default_rng(case.seed))


@pytest.mark.parametrize("name", MAX_CONFIGS)
def test_max_pool_special_values_as_torch(name):
    """A window holding NaN is NaN, with its gradient on its last NaN; an all -inf window is -inf,
    with its gradient on its first real pixel (never the padding); inf wins its windows."""
    case = max_case(name, inputs=special_inputs(MAX_CONFIGS[name][1]))
    check_outcomes(case, float64_inputs(case), "NaN, +inf and all -inf windows")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("name", CONFIGS)
def test_avg_pool_special_values_as_torch(name, count_include_pad):
    """A window's mean is NaN with a NaN or with both infinities in it, ±inf with one of them."""
    case = avg_case(name, count_include_pad)
    check_outcomes(case, special_inputs(CONFIGS[name][1])("float64", np.random.default_rng(0)), "NaN and ±inf")


@pytest.mark.parametrize("name", ADAPTIVE_CONFIGS)
def test_adaptive_and_global_avg_pool_special_values_as_torch(name):
    """A NaN or inf reaches only the bins that hold it (overlapping bins: several)."""
    x = special_inputs(ADAPTIVE_CONFIGS[name][1])("float64", np.random.default_rng(0))
    check_outcomes(adaptive_case(name), x, "NaN and ±inf")
    check_outcomes(global_case(), x, "NaN and ±inf")


def empty_batch_cases():
    return {
        **{f"max {name}": max_case(name) for name in MAX_CONFIGS},
        **{f"avg {name}": avg_case(name, False) for name in CONFIGS},
        **{f"adaptive {name}": adaptive_case(name) for name in ADAPTIVE_CONFIGS},
        "global": global_case(),
    }


@pytest.mark.parametrize("name", empty_batch_cases())
def test_empty_batch(name):
    """N = 0 pools to N = 0 in every tree, forward and backward, as in torch."""
    case = empty_batch_cases()[name]
    x = float64_inputs(case)["x"]
    check_outcomes(case, {"x": x[:0]}, "an empty batch")


@pytest.mark.parametrize("tree", TREES)
def test_empty_image_is_refused_as_torch_does(tree):
    """torch pools no image with zero rows or columns; every tree says so plainly."""
    m = get_module(tree, MODULE)
    x = np.zeros((2, 0, 4, 3) if tree == "tf" else (2, 3, 0, 4))
    for layer in (m.MaxPool2d(1, dtype="float64"), m.AvgPool2d(1, dtype="float64"), m.GlobalAvgPool2d(dtype="float64"),
                  m.AdaptiveAvgPool2d(2, dtype="float64")):
        with pytest.raises(ValueError, match=r"the spatial size must be at least 1x1, got \(0, 4\)"):
            layer(to_tree(tree, x))
    with pytest.raises(RuntimeError):
        F.max_pool2d(torch.zeros(2, 3, 0, 4), 1)


# --- a layer used twice, constructor checks ---------------------------------------------------

# name -> (NumPy layer, the same in torch.nn.functional, input shape): shapes allow y = m(m(x)).
DOUBLE_USE = {
    "MaxPool2d": (lambda m: m.MaxPool2d(3, stride=1, padding=1, dtype="float64"), lambda x: F.max_pool2d(x, 3, 1, 1), (2, 3, 5, 5)),
    "MaxPool2d ceil_mode": (lambda m: m.MaxPool2d(2, ceil_mode=True, dtype="float64"),
                            lambda x: F.max_pool2d(x, 2, ceil_mode=True), (2, 3, 7, 6)),
    "AvgPool2d": (lambda m: m.AvgPool2d(3, stride=1, padding=1, count_include_pad=False, dtype="float64"),
                  lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False), (2, 3, 5, 5)),
    "AdaptiveAvgPool2d": (lambda m: m.AdaptiveAvgPool2d((3, 4), dtype="float64"),
                          lambda x: F.adaptive_avg_pool2d(x, (3, 4)), (2, 3, 7, 5)),
}


@pytest.mark.parametrize("name", DOUBLE_USE)
def test_numpy_layer_used_twice_matches_torch(name):
    """``y = m(m(x))`` then ``m.backward(m.backward(g))``: both uses backpropagated, last first."""
    make, fn, shape = DOUBLE_USE[name]
    layer = make(get_module("numpy", MODULE))
    x = distinct_inputs(shape)("float64", np.random.default_rng(0))["x"]
    y = layer(layer(x))
    g = np.random.default_rng(1).standard_normal(y.shape)
    grad_x = layer.backward(layer.backward(g))
    xt = torch.tensor(x, requires_grad=True)
    yt = fn(fn(xt))
    (yt * torch.from_numpy(g)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=TOLERANCES["float64"], atol=0)
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-15)
    with pytest.raises(RuntimeError, match="nothing cached"):
        layer.backward(g)


def test_numpy_global_pool_called_twice_backpropagates_in_reverse_order():
    layer = get_module("numpy", MODULE).GlobalAvgPool2d(dtype="float64")
    rng = np.random.default_rng(2)
    x1, x2, g1, g2 = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((3, 3, 2, 2)), rng.standard_normal((2, 3)), rng.standard_normal((3, 3))
    layer(x1)
    layer(x2)
    grad_2, grad_1 = layer.backward(g2), layer.backward(g1)  # the later call first: the cache is a stack
    for x, g, grad in ((x1, g1, grad_1), (x2, g2, grad_2)):
        xt = torch.tensor(x, requires_grad=True)
        (xt.mean(dim=(2, 3)) * torch.from_numpy(g)).sum().backward()
        np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=TOLERANCES["float64"], atol=0)
    with pytest.raises(RuntimeError, match="nothing cached"):
        layer.backward(g1)


#: (constructor, message): one rule, one ValueError message, the same in every tree.
BAD_POOLS = [
    (lambda m: m.MaxPool2d(0), "MaxPool2d: kernel_size must be an int >= 1 or a pair of them, got 0"),
    (lambda m: m.MaxPool2d(2.0), "MaxPool2d: kernel_size must be an int >= 1 or a pair of them, got 2.0"),
    (lambda m: m.MaxPool2d(2, stride=(1, 0)), "MaxPool2d: stride must be an int >= 1 or a pair of them, got (1, 0)"),
    (lambda m: m.AvgPool2d(3, padding=-1), "AvgPool2d: padding must be an int >= 0 or a pair of them, got -1"),
    (lambda m: m.AvgPool2d(3, padding=2),
     "AvgPool2d: padding must be at most half the kernel size, got padding (2, 2) for kernel (3, 3)"),
    (lambda m: m.AdaptiveAvgPool2d(0),
     "AdaptiveAvgPool2d: output_size must be an int >= 1 or a pair of them (None keeps that axis), got 0"),
    (lambda m: m.AdaptiveAvgPool2d((3, None, 1)),
     "AdaptiveAvgPool2d: output_size must be an int >= 1 or a pair of them (None keeps that axis), got (3, None, 1)"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("index", range(len(BAD_POOLS)))
def test_bad_pool_arguments_are_refused_with_one_message(tree, index):
    make, message = BAD_POOLS[index]
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make(get_module(tree, MODULE))
