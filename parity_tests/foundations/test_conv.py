"""Day 15: Conv2d by im2col in three trees, against ``F.conv2d`` and ``tf.nn.conv2d``, with
hypothesis fuzzing over shapes, strides, paddings, dilations and groups."""
import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import Case, check_parity, gradcheck_numpy, run_tf, run_torch

MODULE = "foundations.conv"
NCHW_TO_NHWC = (0, 2, 3, 1)

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
    module = get_module("numpy", MODULE)
    c_in, c_out, k, s, p, d, g, h, w = config
    return module.conv_padding(p, (h, w), module.pair(k, "k"), module.pair(s, "s"), module.pair(d, "d"))


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
            return tf.transpose(y, (0, 3, 1, 2))
        to_canonical = lambda grads: {"weight": np.transpose(grads["weight"].numpy(), (3, 2, 0, 1)), "bias": grads["bias"].numpy()}
        return run_tf(call, inputs, ("x",), cotangents, {"weight": kernel, "bias": bias}, to_canonical)

    return run


def conv_case(config, batch=2, bias=True, seed=0):
    c_in, c_out, k, s, p, d, g, h, w = config
    references = {"F.conv2d": f_conv2d_reference(config, bias)}
    # tf.nn.conv2d on CPU has no gradient for dilation > 1 ("Current CPU implementations do not yet
    # support dilation rates larger than 1") and is only asked here for ungrouped kernels.
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
    """TF "SAME" at stride 2 on an even size pads (0, 1); torch's symmetric padding=1 pads (1, 1) and
    gives a different result. Our "same" is TF's, equal to tf.nn.conv2d(padding="SAME")."""
    conv = get_module("numpy", MODULE)
    assert conv.conv_padding("same", (6, 6), (3, 3), (2, 2), (1, 1)) == ((0, 1), (0, 1))
    assert conv.conv_padding("same", (7, 7), (3, 3), (2, 2), (1, 1)) == ((1, 1), (1, 1))
    layer = conv.Conv2d(2, 3, 3, stride=2, padding="same", dtype="float64", rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6))
    ours = layer(x)
    kernel = np.transpose(layer.params["weight"], (2, 3, 1, 0))
    tf_same = tf.nn.conv2d(np.transpose(x, NCHW_TO_NHWC), kernel, 2, "SAME").numpy().transpose(0, 3, 1, 2) + layer.params["bias"][:, None, None]
    torch_pad1 = F.conv2d(torch.from_numpy(x), torch.from_numpy(layer.params["weight"]), torch.from_numpy(layer.params["bias"]), stride=2, padding=1).numpy()
    np.testing.assert_allclose(ours, tf_same, rtol=1e-12, atol=1e-12)
    assert ours.shape == torch_pad1.shape and not np.allclose(ours, torch_pad1)


@pytest.mark.parametrize("tree", ["numpy", "torch", "tf"])
def test_conv_bad_input(tree):
    conv = get_module(tree, MODULE)
    layer = conv.Conv2d(3, 4, 3, dtype="float64")
    native = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}[tree]
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
    with pytest.raises(ValueError, match="padding must be an int, a pair or one of"):
        conv.Conv2d(3, 4, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size must be a non-negative int or a pair"):
        conv.Conv2d(3, 4, (3, 3, 3))
