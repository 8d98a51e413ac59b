"""Day 19: depthwise-separable convolution, squeeze-and-excitation and a small MobileNet in three
trees. References: a ``torch.nn`` block of grouped ``nn.Conv2d`` (``F.conv2d`` with ``groups=C``),
``nn.BatchNorm2d`` and ``nn.ReLU``; the same block from ``tf.nn.depthwise_conv2d`` (NHWC, kernel
``(kh, kw, C, 1)``), ``tf.nn.conv2d`` and ``tf.nn.batch_normalization``; and
``torchvision.ops.SqueezeExcitation``, whose state dict loads unchanged into every tree."""
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch
import torchvision

from ml100.backends import get_module
from ml100.configs import MobileNetConfig
from ml100.data import load_digits_split
from parity_tests.harness import (NCHW_TO_NHWC, NHWC_TO_NCHW, TREES, Case, assert_no_failures, build_models, check_parity,
                                  compare_tensors, gradcheck_numpy, nchw_to_nhwc, nhwc_to_nchw, run_tf, run_tree, share_weights,
                                  to_canonical, to_native, torch_module_reference)

MODULE = "foundations.mobilenet"
EPS = 1e-5


class TorchSeparable(torch.nn.Module):
    """The block from torch.nn parts, with our canonical names."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.depthwise = torch.nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(in_channels)
        self.pointwise = torch.nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return torch.relu(self.bn2(self.pointwise(torch.relu(self.bn1(self.depthwise(x))))))


def torch_separable_reference(in_channels, out_channels, stride, train):
    return torch_module_reference(lambda dtype: TorchSeparable(in_channels, out_channels, stride).train(train))


def tf_separable_reference(stride, train):
    """``tf.nn.depthwise_conv2d`` → BN → ReLU → ``tf.nn.conv2d`` 1×1 → BN → ReLU on NHWC."""
    def run(state, inputs, cotangents, dtype):
        names = ["depthwise.weight", "bn1.weight", "bn1.bias", "pointwise.weight", "bn2.weight", "bn2.bias"]
        native = {
            # Canonical depthwise (C, 1, kh, kw) -> TF's (kh, kw, C, multiplier=1); pointwise OIHW -> HWIO.
            "depthwise.weight": np.transpose(state["depthwise.weight"], (2, 3, 0, 1)),
            "pointwise.weight": np.transpose(state["pointwise.weight"], (2, 3, 1, 0)),
        }
        params = {name: tf.Variable(native.get(name, state[name])) for name in names}

        def bn(y, prefix):
            if train:
                mean, var = tf.nn.moments(y, axes=[0, 1, 2])  # biased variance normalizes, as in torch
            else:
                mean, var = state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"]
            return tf.nn.batch_normalization(y, mean, var, params[f"{prefix}.bias"], params[f"{prefix}.weight"], EPS)

        def call(x):
            x = tf.transpose(x, NCHW_TO_NHWC)
            y = tf.nn.depthwise_conv2d(x, params["depthwise.weight"], [1, stride, stride, 1], [[0, 0], [1, 1], [1, 1], [0, 0]])
            y = tf.nn.relu(bn(y, "bn1"))
            y = tf.nn.relu(bn(tf.nn.conv2d(y, params["pointwise.weight"], 1, "VALID"), "bn2"))
            return tf.transpose(y, NHWC_TO_NCHW)

        def to_canonical(grads):
            out = {name: g.numpy() for name, g in grads.items()}
            out["depthwise.weight"] = np.transpose(out["depthwise.weight"], (2, 3, 0, 1))
            out["pointwise.weight"] = np.transpose(out["pointwise.weight"], (3, 2, 0, 1))
            return out

        return run_tf(call, inputs, ("x",), cotangents, params, to_canonical)

    return run


def separable_case(in_channels, out_channels, stride, train=True, size=6, batch=3):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.DepthwiseSeparableConv(in_channels, out_channels, stride, dtype=dtype, rng=rng).train(train),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((batch, in_channels, size, size)).astype(dtype)},
        references={"torch.nn": torch_separable_reference(in_channels, out_channels, stride, train),
                    "tf.nn.depthwise_conv2d": tf_separable_reference(stride, train)},
        tf_layouts={"x": NCHW_TO_NHWC},
        tf_output_layouts={0: NCHW_TO_NHWC},
        special_excluded_references={"tf.nn.depthwise_conv2d": (
            "tf.nn.relu's slope at NaN is 0 (torch's 1); tf.nn.moments of an empty batch is NaN (torch's batch norm "
            "gives zero gradients); and tf.nn.depthwise_conv2d's filter gradient for an empty batch is uninitialized "
            "memory (values like 1e-306 instead of 0)")},
    )


SEPARABLE = {"stride 1": (3, 5, 1), "stride 2": (4, 6, 2)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", SEPARABLE)
def test_separable_parity_train_mode(name, dtype):
    check_parity(separable_case(*SEPARABLE[name]), dtype)


def test_separable_parity_eval_mode():
    check_parity(separable_case(*SEPARABLE["stride 2"], train=False), "float64")


@pytest.mark.parametrize("name", SEPARABLE)
def test_separable_gradcheck(name):
    gradcheck_numpy(separable_case(*SEPARABLE[name], size=4, batch=2))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_separable_running_stats_after_a_training_forward(dtype):
    """Buffers are not in the harness's comparison: after one training forward every tree's BN
    running statistics equal each other's and those of the torch.nn block."""
    case = separable_case(*SEPARABLE["stride 2"])
    models = build_models(case, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        state = share_weights(models, case, Path(tmp))
    inputs = case.inputs(dtype, np.random.default_rng(5))
    reference = TorchSeparable(*SEPARABLE["stride 2"]).to(getattr(torch, dtype)).train()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    reference(torch.from_numpy(inputs["x"]))
    finals = {"torch.nn": {k: v.numpy() for k, v in reference.state_dict().items()}}
    for tree in TREES:
        cotangent = np.ones((3, 6, 3, 3), dtype=dtype)
        run_tree(tree, models[tree], inputs, ("x",), [cotangent], case.tf_layouts, case.tf_output_layouts)
        finals[tree] = models[tree].canonical_state_dict()
    failures = []
    for tree in TREES:
        for name in ("bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"):
            compare_tensors(name, f"{tree} vs torch.nn", finals[tree][name], finals["torch.nn"][name], dtype, failures)
        assert int(finals[tree]["bn2.num_batches_tracked"]) == int(finals["torch.nn"]["bn2.num_batches_tracked"])
    assert_no_failures(failures, f"running statistics ({dtype})")


def torchvision_se_reference(channels, squeeze_channels):
    return torch_module_reference(lambda dtype: torchvision.ops.SqueezeExcitation(channels, squeeze_channels))


def se_case(channels=6, squeeze_channels=2, size=5, batch=3):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.SqueezeExcitation(channels, squeeze_channels, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((batch, channels, size, size)).astype(dtype)},
        references={"torchvision.ops.SqueezeExcitation": torchvision_se_reference(channels, squeeze_channels)},
        tf_layouts={"x": NCHW_TO_NHWC},
        tf_output_layouts={0: NCHW_TO_NHWC},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_squeeze_excitation_parity(dtype):
    check_parity(se_case(), dtype)


def test_squeeze_excitation_gradcheck():
    """Checks both gradient paths of y = x * s(x): the direct one and the one through the pool."""
    gradcheck_numpy(se_case(channels=4, squeeze_channels=2, size=3, batch=2))


def test_squeeze_excitation_loads_torchvisions_state_dict():
    torch.manual_seed(0)
    se = torchvision.ops.SqueezeExcitation(8, 3).double()
    state = {k: v.detach().numpy() for k, v in se.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((2, 8, 4, 4))
    expected = se(torch.from_numpy(x)).detach().numpy()
    for tree in TREES:
        model = get_module(tree, MODULE).SqueezeExcitation(8, 3, dtype="float64", rng=np.random.default_rng(0))
        assert {k: v.shape for k, v in model.canonical_state_dict().items()} == {k: v.shape for k, v in state.items()}
        model.load_canonical_state_dict(state)
        y = to_canonical(tree, model(to_native(tree, x)))
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def mobilenet_case(se_reduction=4, train=True, channels=(4, 6), stem_channels=3, batch=4, size=8):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.MobileNet(MobileNetConfig(num_classes=5, in_channels=1, stem_channels=stem_channels,
                                                                channels=channels, strides=(1, 2), se_reduction=se_reduction),
                                                dtype=dtype, rng=rng).train(train),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((batch, 1, size, size)).astype(dtype)},
        tf_layouts={"x": NCHW_TO_NHWC},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("se_reduction", [4, None], ids=["with SE", "without SE"])
def test_mobilenet_parity(se_reduction, dtype):
    check_parity(mobilenet_case(se_reduction), dtype)


def test_mobilenet_parity_eval_mode():
    check_parity(mobilenet_case(train=False), "float64")


def test_mobilenet_gradcheck():
    """The whole network's backward chain, stem to fc, SE included, on a narrow MobileNet (finite
    differences cost two forwards per weight). Eval mode: with a few channels over a 4×4 last map,
    train-mode BN normalizes over a handful of values and is too curved for central differences at
    1e-6; train-mode BN inside the block is checked by test_separable_gradcheck. Not narrower: with
    channels (2, 4) the uniform(-1, 1) weights often leave most ReLUs of the 2-channel block dead, the
    input gradient ~1e-4 of the output's scale, and the differences' round-off (~1e-10 absolute)
    above 1e-6 relative; (3, 4) passes for every seed tried."""
    gradcheck_numpy(mobilenet_case(train=False, channels=(3, 4), stem_channels=2, batch=2))


@pytest.mark.parametrize("tree", TREES)
def test_default_mobilenet_takes_a_digits_batch(tree):
    x = load_digits_split(layout="NCHW").x_train[:3]  # float32
    net = get_module(tree, MODULE).MobileNet(MobileNetConfig(), rng=np.random.default_rng(0))
    logits = net(to_native(tree, x))
    assert tuple(logits.shape) == (3, 10)


@pytest.mark.parametrize("tree", TREES)
def test_count_parameters_matches_the_formulas(tree):
    m = get_module(tree, MODULE)
    rng = np.random.default_rng(0)
    c_in, c_out = 6, 10
    block = m.DepthwiseSeparableConv(c_in, c_out, 2, rng=rng)
    # conv weights by the formula, plus BN's weight and bias per channel (running stats are buffers).
    assert m.count_parameters(block) == m.separable_conv_parameters(3, c_in, c_out) + 2 * c_in + 2 * c_out == 146
    assert m.standard_conv_parameters(3, c_in, c_out) == 540
    se = m.SqueezeExcitation(c_out, 3, rng=rng)
    assert m.count_parameters(se) == c_out * 3 + 3 + 3 * c_out + c_out
    net = m.MobileNet(MobileNetConfig(num_classes=10, in_channels=1, stem_channels=8, channels=(16, 32), strides=(1, 2)),
                      rng=rng)
    expected = (9 * 1 * 8 + 2 * 8  # stem conv, bn1
                + m.separable_conv_parameters(3, 8, 16) + 2 * 8 + 2 * 16
                + m.separable_conv_parameters(3, 16, 32) + 2 * 16 + 2 * 32
                + 32 * 8 + 8 + 8 * 32 + 32  # SE, squeeze 32 // 4
                + 32 * 10 + 10)  # fc
    assert m.count_parameters(net) == expected == 1970


def test_count_parameters_equals_torchs_numel():
    torch_m = get_module("torch", MODULE)
    net = torch_m.MobileNet(MobileNetConfig(), rng=np.random.default_rng(0))
    assert torch_m.count_parameters(net) == sum(p.numel() for p in net.parameters())
    assert torch_m.count_parameters(torch_m.SqueezeExcitation(8, 3)) == sum(
        p.numel() for p in torchvision.ops.SqueezeExcitation(8, 3).parameters())


def test_separable_savings_ratio():
    """(k²C_in + C_in C_out) / (k²C_in C_out) = 1/C_out + 1/k²: about 1/8.4 at C_out = 128."""
    m = get_module("numpy", MODULE)
    ratio = m.separable_conv_parameters(3, 64, 128) / m.standard_conv_parameters(3, 64, 128)
    assert ratio == pytest.approx(1 / 128 + 1 / 9)


@pytest.mark.parametrize("tree", TREES)
def test_bad_input_is_a_clear_error(tree):
    m = get_module(tree, MODULE)
    se = m.SqueezeExcitation(4, 2, dtype="float64", rng=np.random.default_rng(0))
    block = m.DepthwiseSeparableConv(4, 6, dtype="float64", rng=np.random.default_rng(0))
    to_tree = lambda a: to_native(tree, a)
    with pytest.raises(ValueError, match="SqueezeExcitation: x must have 4 channels"):
        se(to_tree(np.zeros((2, 3, 5, 5))))
    with pytest.raises(ValueError, match="SqueezeExcitation"):
        se(to_tree(np.zeros((2, 4, 5))))
    with pytest.raises((TypeError, ValueError), match="float64"):
        se(to_tree(np.zeros((2, 4, 5, 5), dtype="float32")))
    with pytest.raises(ValueError, match="Conv2d: x must have 4 channels"):
        block(to_tree(np.zeros((2, 3, 5, 5))))
    with pytest.raises(TypeError, match="MobileNet: config must be an ml100.configs.MobileNetConfig, got NoneType"):
        m.MobileNet(None)


def test_tf_depthwise_conv2d_with_dilation_and_stride_is_not_a_strided_dilated_conv():
    """``tf.nn.depthwise_conv2d`` documents that dilation > 1 needs stride 1, but only warns: it runs
    the strided kernel inside ``with_space_to_batch`` (tensorflow/python/ops/nn_impl.py), i.e. on each
    of the rate² phase sub-images, and interleaves the results — numbers of the right shape that are
    not F.conv2d's. Our Conv2d(groups=C) in the TF tree (im2col) computes the real thing. Float64 and
    gradients on CPU work (the block reference above runs in float64)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((3, 1, 3, 3))
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, dilation=2, groups=3).numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tf_y = nhwc_to_nchw(tf.nn.depthwise_conv2d(nchw_to_nhwc(x), np.transpose(w, (2, 3, 0, 1)), [1, 2, 2, 1], "VALID",
                                                   dilations=[2, 2]))
    assert any("all values of strides must be 1" in str(item.message) for item in caught)
    assert tf_y.shape == expected.shape and np.max(np.abs(tf_y - expected)) > 1.0
    conv = get_module("tf", "foundations.conv").Conv2d(3, 3, 3, stride=2, dilation=2, groups=3, bias=False, dtype="float64")
    conv.load_canonical_state_dict({"weight": w})
    ours = to_canonical("tf", conv(to_native("tf", x)))
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
