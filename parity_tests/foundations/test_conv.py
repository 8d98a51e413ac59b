"""Day 15: Conv2d by im2col in three trees, against ``F.conv2d`` and ``tf.nn.conv2d``, with
hypothesis fuzzing over shapes, strides, paddings, dilations and groups; NaN and ±inf pixels and
the empty batch against ``F.conv2d``, a layer used twice, and the constructor checks."""
import re

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from ml100.geometry import conv_geometry, conv_padding
from parity_tests.harness import (NCHW_TO_NHWC, NHWC_TO_NCHW, TOLERANCES, TREES, Case, assert_no_failures, build_models,
                                  check_parity, compare_results, compare_special, gradcheck_numpy, nchw_to_nhwc, nhwc_to_nchw,
                                  random_weights, run_all_trees, run_reference, run_tf, run_torch, to_tree)

MODULE = "foundations.conv"

# (in, out, kernel, stride, padding, dilation, groups, H, W)
CONFIGS = {
    "3x3 pad 1": (3, 4, 3, 1, 1, 1, 1, 6, 5),
    "stride 2 pad 1": (2, 3, 3, 2, 1, 1, 1, 7, 6),
    "same stride 2 even": (2, 3, 3, 2, "same", 1, 1, 6, 6),
    "same stride 1": (2, 2, (3, 2), 1, "same", 1, 1, 5, 4),
    "valid": (3, 2, 2, 1, "valid", 1, 1, 5, 5),
    "dilation 2": (2, 3, 3, 1, 2, 2, 1, 7, 7),
    "groups 2": (4, 6, 3, 1, 1, 1, 2, 5, 5),
    "depthwise": (3, 3, 3, 2, (1, 0), 1, 3, 6, 5),
    "1x1 non-square stride": (3, 5, 1, (2, 1), 0, 1, 1, 4, 5),
}


def torch_padding(config):
    """F.conv2d's explicit padding for a config: ``"same"`` is TF's possibly asymmetric split."""
    c_in, c_out, k, s, p, d, g, h, w = config
    kernel, stride, padding, dilation = conv_geometry("Conv2d", c_in, c_out, k, s, p, d, g)
    return conv_padding(padding, (h, w), kernel, stride, dilation)


def f_conv2d_reference(config, bias=True):
    c_in, c_out, k, s, p, d, g, h, w = config
    (top, bottom), (left, right) = torch_padding(config)

    def run(state, inputs, cotangents, dtype):
        weight = torch.tensor(state["weight"], requires_grad=True)
        params = {"weight": weight}
        if bias:
            params["bias"] = torch.tensor(state["bias"], requires_grad=True)
        call = lambda x: F.conv2d(F.pad(x, (left, right, top, bottom)), weight, params.get("bias"), stride=s, dilation=d, groups=g)
        return run_torch(call, inputs, ("x",), cotangents, params=params)

    return run


def tf_conv2d_reference(config):
    c_in, c_out, k, s, p, d, g, h, w = config
    (top, bottom), (left, right) = torch_padding(config)
    padding = "SAME" if p == "same" else [[0, 0], [top, bottom], [left, right], [0, 0]]

    def run(state, inputs, cotangents, dtype):
        kernel = tf.Variable(np.transpose(state["weight"], (2, 3, 1, 0)))  # OIHW -> HWIO
        bias = tf.Variable(state["bias"])
        def call(x):
            y = tf.nn.conv2d(tf.transpose(x, NCHW_TO_NHWC), kernel, strides=s, padding=padding, dilations=d) + bias
            return tf.transpose(y, NHWC_TO_NCHW)
        to_canonical = lambda grads: {"weight": np.transpose(grads["weight"].numpy(), (3, 2, 0, 1)), "bias": grads["bias"].numpy()}
        return run_tf(call, inputs, ("x",), cotangents, {"weight": kernel, "bias": bias}, to_canonical)

    return run


def conv_case(config, batch=2, bias=True, seed=0):
    c_in, c_out, k, s, p, d, g, h, w = config
    references = {"F.conv2d": f_conv2d_reference(config, bias)}
    # tf.nn.conv2d on CPU has no gradient for dilation > 1 in float64 or with explicit padding
    # ("Current CPU implementations do not yet support dilation rates larger than 1"; float32 with
    # "VALID"/"SAME" works: test_library_facts.py). The cases run both dtypes and explicit padding,
    # so it is asked only for dilation 1, and only for ungrouped kernels.
    if bias and g == 1 and d == 1:
        references["tf.nn.conv2d"] = tf_conv2d_reference(config)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, groups=g, bias=bias, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((batch, c_in, h, w)).astype(dtype)},
        references=references,
        tf_layouts={"x": NCHW_TO_NHWC},
        tf_output_layouts={0: NCHW_TO_NHWC},
        seed=seed,
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CONFIGS)
def test_conv_parity(name, dtype):
    check_parity(conv_case(CONFIGS[name]), dtype)


def test_conv_without_bias():
    check_parity(conv_case(CONFIGS["groups 2"], bias=False), "float64")


@pytest.mark.parametrize("name", ["3x3 pad 1", "same stride 2 even", "dilation 2", "groups 2", "depthwise"])
def test_conv_gradcheck(name):
    gradcheck_numpy(conv_case(CONFIGS[name], batch=1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    c_in_per_group=st.integers(1, 3), c_out_per_group=st.integers(1, 3), groups=st.integers(1, 2),
    kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 2),
    dh=st.integers(1, 2), dw=st.integers(1, 2), h=st.integers(3, 8), w=st.integers(3, 8),
    padding=st.one_of(st.sampled_from(["same", "valid"]), st.tuples(st.integers(0, 2), st.integers(0, 2))),
)
def test_conv_fuzz(c_in_per_group, c_out_per_group, groups, kh, kw, sh, sw, dh, dw, h, w, padding):
    config = (c_in_per_group * groups, c_out_per_group * groups, (kh, kw), (sh, sw), padding, (dh, dw), groups, h, w)
    (top, bottom), (left, right) = torch_padding(config)
    if h + top + bottom < dh * (kh - 1) + 1 or w + left + right < dw * (kw - 1) + 1:
        return  # the dilated kernel does not fit: covered by test_conv_bad_input
    case = conv_case(config, batch=2)
    case.references.pop("tf.nn.conv2d", None)  # F.conv2d judges every drawn configuration
    check_parity(case, "float64")


def test_same_padding_is_tf_asymmetric_at_stride_2():
    """TF "SAME" with a 3x3 kernel at stride 2 on an even size pads (0, 1); torch's symmetric
    padding=1 pads (1, 1) and gives a different result. Our "same" is TF's, equal to
    tf.nn.conv2d(padding="SAME") (other kernels and strides: test_tf_same_padding_totals)."""
    conv = get_module("numpy", MODULE)
    assert conv_padding("same", (6, 6), (3, 3), (2, 2), (1, 1)) == ((0, 1), (0, 1))
    assert conv_padding("same", (7, 7), (3, 3), (2, 2), (1, 1)) == ((1, 1), (1, 1))
    layer = conv.Conv2d(2, 3, 3, stride=2, padding="same", dtype="float64", rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6))
    ours = layer(x)
    kernel = np.transpose(layer.params["weight"], (2, 3, 1, 0))
    tf_same = nhwc_to_nchw(tf.nn.conv2d(nchw_to_nhwc(x), kernel, 2, "SAME")) + layer.params["bias"][:, None, None]
    torch_pad1 = F.conv2d(torch.from_numpy(x), torch.from_numpy(layer.params["weight"]), torch.from_numpy(layer.params["bias"]), stride=2, padding=1).numpy()
    np.testing.assert_allclose(ours, tf_same, rtol=1e-12, atol=1e-12)
    assert ours.shape == torch_pad1.shape and not np.allclose(ours, torch_pad1)


@pytest.mark.parametrize("tree", ["numpy", "torch", "tf"])
def test_conv_bad_input(tree):
    conv = get_module(tree, MODULE)
    layer = conv.Conv2d(3, 4, 3, dtype="float64")
    native = lambda array: to_tree(tree, array)
    wrong_channels = (2, 5, 5, 2) if tree == "tf" else (2, 2, 5, 5)
    with pytest.raises(ValueError, match="Conv2d: x must have 3 channels"):
        layer(native(np.zeros(wrong_channels)))
    with pytest.raises(ValueError, match="must have 4 dimensions"):
        layer(native(np.zeros((3, 5, 5))))
    with pytest.raises(TypeError, match="must have dtype float64, got float32"):
        layer(native(np.zeros((2, 5, 5, 3) if tree == "tf" else (2, 3, 5, 5), dtype=np.float32)))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        layer(native(np.zeros((1, 2, 2, 3) if tree == "tf" else (1, 3, 2, 2))))
    with pytest.raises(ValueError, match="divisible by groups"):
        conv.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding must be an int >= 0, a pair of them or one of"):
        conv.Conv2d(3, 4, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size must be an int >= 1 or a pair of them"):
        conv.Conv2d(3, 4, (3, 3, 3))


# --- special values and the empty batch -------------------------------------------------------

def check_outcomes(config, x, what):
    """Every tree and ``F.conv2d`` on ``x`` (float64) with the same random weights: the same
    shapes and NaN, +inf and -inf positions in the output and in every gradient (input, weight,
    bias), finite values within tolerance."""
    case = conv_case(config)
    models = build_models(case, "float64")
    state = random_weights(models["numpy"].canonical_state_dict(), np.random.default_rng(1))
    for model in models.values():
        model.load_canonical_state_dict(state)
    # One cotangent per output shape, the same for everyone.
    draw = lambda outputs: [np.random.default_rng(5).standard_normal(np.shape(out)) for out in outputs]
    with np.errstate(all="ignore"):
        results = run_all_trees(case, "float64", {"x": x}, draw, models)
        results["F.conv2d"] = run_reference(case, "F.conv2d", state, {"x": x}, draw, "float64")
    assert_no_failures(compare_results(results, "float64", compare_special), f"Conv2d on {what}")


@pytest.mark.parametrize("name", CONFIGS)
def test_special_values_as_torch(name):
    """A NaN pixel, a +inf pixel, a -inf pixel and a whole image of +inf: NaN and inf reach the
    outputs whose windows hold them, and the weight gradients through them, as in ``F.conv2d``."""
    c_in, c_out, k, s, p, d, g, h, w = CONFIGS[name]
    x = np.random.default_rng(0).standard_normal((3, c_in, h, w))
    x[0, 0, 1, 1] = np.nan
    x[1, -1, h // 2, w - 1] = np.inf
    x[1, 0, h - 1, 0] = -np.inf
    x[2] = np.inf
    check_outcomes(CONFIGS[name], x, "NaN and ±inf pixels")


@pytest.mark.parametrize("name", CONFIGS)
def test_empty_batch(name):
    """N = 0 convolves to N = 0 in every tree, forward and backward, with zero weight and bias
    gradients, as in torch (TF's extract_patches cannot differentiate an empty batch on its own)."""
    c_in, c_out, k, s, p, d, g, h, w = CONFIGS[name]
    check_outcomes(CONFIGS[name], np.zeros((0, c_in, h, w)), "an empty batch")


# --- a layer used twice, constructor checks ---------------------------------------------------

# name -> (in = out channels, kernel, stride, padding, groups, input H = W): shapes allow m(m(x)).
DOUBLE_USE = {
    "stride 1 (input gradient by convolution)": (3, 3, 1, 1, 1, 6),
    "stride 2 (col2im)": (3, 3, 2, 1, 1, 8),
    "depthwise": (3, 3, 1, "same", 3, 5),
}


@pytest.mark.parametrize("name", DOUBLE_USE)
def test_numpy_layer_used_twice_matches_torch(name):
    """``y = m(m(x))`` then ``m.backward(m.backward(g))``: both uses backpropagated, last first,
    the weight and bias gradients summed over both — as torch's autograd of ``conv(conv(x))``."""
    c, k, s, p, g, size = DOUBLE_USE[name]
    layer = get_module("numpy", MODULE).Conv2d(c, c, k, stride=s, padding=p, groups=g, dtype="float64",
                                               rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, c, size, size))
    layer.zero_grad()
    y = layer(layer(x))
    grad_out = rng.standard_normal(y.shape)
    grad_x = layer.backward(layer.backward(grad_out))

    weight = torch.tensor(layer.params["weight"], requires_grad=True)
    bias = torch.tensor(layer.params["bias"], requires_grad=True)
    (top, bottom), (left, right) = conv_padding(layer.padding, (size, size), layer.kernel_size, layer.stride, layer.dilation)
    conv = lambda t: F.conv2d(F.pad(t, (left, right, top, bottom)), weight, bias, stride=s, groups=g)
    xt = torch.tensor(x, requires_grad=True)
    yt = conv(conv(xt))
    (yt * torch.from_numpy(grad_out)).sum().backward()
    for label, got, want in (("output", y, yt.detach()), ("grad of x", grad_x, xt.grad), ("grad of weight", layer.grads["weight"], weight.grad),
                             ("grad of bias", layer.grads["bias"], bias.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=TOLERANCES["float64"], atol=1e-12, err_msg=label)
    with pytest.raises(RuntimeError, match="nothing cached"):
        layer.backward(grad_out)


#: (constructor arguments, message): one rule, one ValueError message, the same in every tree.
BAD_CONVS = [
    ((0, 4, 3), "Conv2d: in_channels must be an int >= 1, got 0"),
    ((3, 2.0, 3), "Conv2d: out_channels must be an int >= 1, got 2.0"),
    ((3, 4, 3, 1, 0, 1, 0), "Conv2d: groups must be an int >= 1, got 0"),
    ((3, 4, 3, 1, 0, 1, 2), "Conv2d: in_channels (3) must be divisible by groups (2)"),
    ((4, 3, 3, 1, 0, 1, 2), "Conv2d: out_channels (3) must be divisible by groups (2)"),
    ((3, 4, (3, 0)), "Conv2d: kernel_size must be an int >= 1 or a pair of them, got (3, 0)"),
    ((3, 4, 3, 0), "Conv2d: stride must be an int >= 1 or a pair of them, got 0"),
    ((3, 4, 3, 1, 0, (1, -1)), "Conv2d: dilation must be an int >= 1 or a pair of them, got (1, -1)"),
    ((3, 4, 3, 1, -1), "Conv2d: padding must be an int >= 0 or a pair of them, got -1"),
    ((3, 4, 3, 1, "full"), "Conv2d: padding must be an int >= 0, a pair of them or one of ('same', 'valid'), got 'full'"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("index", range(len(BAD_CONVS)))
def test_bad_conv_arguments_are_refused_with_one_message(tree, index):
    args, message = BAD_CONVS[index]
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        get_module(tree, MODULE).Conv2d(*args, dtype="float64")


def test_tf_conv_traces_once_for_any_batch_size():
    """A ``tf.function`` traced with an unknown batch (``TensorSpec((None, ...))``) serves every batch
    size, the empty one included, and gives the eager results (im2col reshapes with -1, not the static N)."""
    conv = get_module("tf", "foundations.conv").Conv2d(3, 4, 3, stride=2, padding=1, groups=1, dtype="float64",
                                                        rng=np.random.default_rng(0))
    traced = tf.function(conv.forward, input_signature=[tf.TensorSpec((None, 7, 6, 3), tf.float64)])
    for n in (0, 1, 5):
        x = tf.constant(np.random.default_rng(n).standard_normal((n, 7, 6, 3)))
        np.testing.assert_array_equal(traced(x).numpy(), conv(x).numpy(), err_msg=f"batch {n}")
    assert traced.experimental_get_tracing_count() == 1
