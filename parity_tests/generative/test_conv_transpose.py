"""Day 30: ConvTranspose2d in three trees, against ``torch.nn.ConvTranspose2d`` (same state dict),
``F.conv_transpose2d`` and ``tf.nn.conv2d_transpose`` (converted kernel), over strides, paddings,
output paddings, dilations and groups; finite differences of the NumPy backward, the harness's
special-values and empty-batch passes, a layer used twice, torch's initialization, and the
constructor and input checks in every tree."""
import math

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from ml100.geometry import conv_transpose_geometry, conv_transpose_output_size
from parity_tests.harness import (NCHW_TO_NHWC, NHWC_TO_NCHW, TOLERANCES, Case, check_parity, gradcheck_numpy, run_tf,
                                  run_torch, to_tree, torch_module_reference)

MODULE = "generative.conv_transpose"

# (in, out, kernel, stride, padding, output_padding, groups, dilation, H, W)
CONFIGS = {
    "3x3 stride 1": (3, 4, 3, 1, 0, 0, 1, 1, 4, 5),
    "stride 2 pad 1 output_padding 1": (2, 3, 3, 2, 1, 1, 1, 1, 4, 3),
    "4x4 stride 2 pad 1 (DCGAN)": (3, 2, 4, 2, 1, 0, 1, 1, 3, 3),
    "non-square": (2, 3, (3, 2), (2, 3), (1, 0), (1, 2), 1, 1, 3, 4),
    "padding past the kernel": (2, 2, 3, 1, 3, 0, 1, 2, 5, 5),
    "dilation 2 output_padding 1": (2, 3, 3, 1, 1, 1, 1, 2, 4, 4),
    "groups 2": (4, 6, 3, 2, 1, 0, 2, 1, 3, 4),
    "depthwise": (3, 3, 2, 2, 0, 1, 3, 1, 3, 3),
}


def torch_conv_transpose_reference(config, bias=True):
    """``torch.nn.ConvTranspose2d`` with the same geometry, strictly loaded with the canonical state
    (``weight`` ``(in, out/groups, kh, kw)``: no conversion)."""
    c_in, c_out, k, s, p, op, g, d, h, w = config
    return torch_module_reference(lambda dtype: torch.nn.ConvTranspose2d(
        c_in, c_out, k, stride=s, padding=p, output_padding=op, groups=g, bias=bias, dilation=d))


def f_conv_transpose2d_reference(config, bias=True):
    """``F.conv_transpose2d`` on the canonical tensors themselves."""
    c_in, c_out, k, s, p, op, g, d, h, w = config

    def run(state, inputs, cotangents, dtype):
        params = {name: torch.tensor(value, requires_grad=True) for name, value in state.items()}
        call = lambda x: F.conv_transpose2d(x, params["weight"], params.get("bias"), stride=s, padding=p,
                                            output_padding=op, groups=g, dilation=d)
        return run_torch(call, inputs, ("x",), cotangents, params=params)

    return run


def canonical_to_conv2d_transpose_filter(weight: np.ndarray) -> np.ndarray:
    """Canonical ``(in, out, kh, kw)`` -> ``tf.nn.conv2d_transpose``'s filter ``(kh, kw, out, in)``
    (Keras' ``Conv2DTranspose`` kernel too): the permutation ``(2, 3, 1, 0)``."""
    return np.transpose(weight, (2, 3, 1, 0))


def conv2d_transpose_filter_to_canonical(kernel: np.ndarray) -> np.ndarray:
    """The inverse permutation ``(3, 2, 0, 1)``."""
    return np.transpose(kernel, (3, 2, 0, 1))


def tf_conv2d_transpose_reference(config):
    """``tf.nn.conv2d_transpose`` (no groups; explicit padding) fed the converted filter: it needs
    the ``output_shape`` spelled out — the output size is ambiguous at stride > 1, which is what
    torch's ``output_padding`` resolves."""
    c_in, c_out, k, s, p, op, g, d, h, w = config
    kernel_size, stride, padding, output_padding, dilation = conv_transpose_geometry("ConvTranspose2d", c_in, c_out, k, s, p,
                                                                                     op, d, g)
    ho, wo = conv_transpose_output_size("ConvTranspose2d", (h, w), kernel_size, stride, padding, output_padding, dilation)
    # TF's explicit padding is the one of the convolution being transposed (symmetric p); the
    # output_padding rows are implied by output_shape.
    explicit = [[0, 0], [padding[0]] * 2, [padding[1]] * 2, [0, 0]]

    def run(state, inputs, cotangents, dtype):
        kernel = tf.Variable(canonical_to_conv2d_transpose_filter(state["weight"]))
        bias = tf.Variable(state["bias"])

        def call(x):
            output_shape = (x.shape[0], ho, wo, c_out)
            y = tf.nn.conv2d_transpose(tf.transpose(x, NCHW_TO_NHWC), kernel, output_shape, strides=stride, padding=explicit) + bias
            return tf.transpose(y, NHWC_TO_NCHW)

        to_canonical = lambda grads: {"weight": conv2d_transpose_filter_to_canonical(grads["weight"].numpy()),
                                      "bias": grads["bias"].numpy()}
        return run_tf(call, inputs, ("x",), cotangents, {"weight": kernel, "bias": bias}, to_canonical)

    return run


def conv_transpose_case(config, batch=2, bias=True, seed=0):
    c_in, c_out, k, s, p, op, g, d, h, w = config
    references = {"torch.nn.ConvTranspose2d": torch_conv_transpose_reference(config, bias),
                  "F.conv_transpose2d": f_conv_transpose2d_reference(config, bias)}
    # tf.nn.conv2d_transpose has no groups, and on CPU refuses dilation > 1 even forward (it is
    # Conv2DBackpropInput: "Current CPU implementations do not yet support dilation rates larger than 1").
    if bias and g == 1 and d == 1:
        references["tf.nn.conv2d_transpose"] = tf_conv2d_transpose_reference(config)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.ConvTranspose2d(c_in, c_out, k, stride=s, padding=p, output_padding=op, groups=g,
                                                      bias=bias, dilation=d, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((batch, c_in, h, w)).astype(dtype)},
        references=references,
        tf_layouts={"x": NCHW_TO_NHWC},
        tf_output_layouts={0: NCHW_TO_NHWC},
        seed=seed,
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CONFIGS)
def test_conv_transpose_parity(name, dtype):
    check_parity(conv_transpose_case(CONFIGS[name]), dtype)


def test_conv_transpose_without_bias():
    check_parity(conv_transpose_case(CONFIGS["groups 2"], bias=False), "float64")


@pytest.mark.parametrize("name", ["stride 2 pad 1 output_padding 1", "non-square", "dilation 2 output_padding 1", "groups 2"])
def test_conv_transpose_gradcheck(name):
    gradcheck_numpy(conv_transpose_case(CONFIGS[name], batch=1))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    c_in_per_group=st.integers(1, 2), c_out_per_group=st.integers(1, 2), groups=st.integers(1, 2),
    kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 2),
    dh=st.integers(1, 2), dw=st.integers(1, 2), ph=st.integers(0, 2), pw=st.integers(0, 2),
    oph=st.integers(0, 2), opw=st.integers(0, 2), h=st.integers(1, 4), w=st.integers(1, 4),
)
def test_conv_transpose_fuzz(c_in_per_group, c_out_per_group, groups, kh, kw, sh, sw, dh, dw, ph, pw, oph, opw, h, w):
    oph, opw = oph % max(sh, dh), opw % max(sw, dw)
    if (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph < 0 or (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw < 0:
        return  # an empty output: covered by test_conv_transpose_bad_input
    config = (c_in_per_group * groups, c_out_per_group * groups, (kh, kw), (sh, sw), (ph, pw), (oph, opw), groups,
              (dh, dw), h, w)
    case = conv_transpose_case(config)
    for name in ("F.conv_transpose2d", "tf.nn.conv2d_transpose"):
        case.references.pop(name, None)  # torch.nn.ConvTranspose2d judges every drawn configuration
    check_parity(case, "float64")


def test_initialization_is_torch_s():
    """Kaiming-uniform (a = √5) on ``(in, out/G, kh, kw)``: the weight and bias bounds are both
    ``1/√(out/G · kh kw)`` — torch's reset_parameters on that shape — and every tree draws the same."""
    layers = {tree: get_module(tree, MODULE).ConvTranspose2d(4, 6, 3, groups=2, dtype="float64", rng=np.random.default_rng(3))
              for tree in ("numpy", "torch", "tf")}
    states = {tree: layer.canonical_state_dict() for tree, layer in layers.items()}
    bound = 1 / math.sqrt(3 * 3 * 3)
    assert states["numpy"]["weight"].shape == torch.nn.ConvTranspose2d(4, 6, 3, groups=2).weight.shape == (4, 3, 3, 3)
    for name in ("weight", "bias"):
        assert np.abs(states["numpy"][name]).max() <= bound and np.abs(states["numpy"][name]).max() > 0.8 * bound
        for tree in ("torch", "tf"):
            np.testing.assert_array_equal(states[tree][name], states["numpy"][name])


def test_numpy_layer_used_twice_sums_gradients_as_torch():
    """The same layer applied twice (y = f(f(x)) with in = out) accumulates both uses' gradients."""
    numpy_layer = get_module("numpy", MODULE).ConvTranspose2d(2, 2, 3, stride=1, padding=1, dtype="float64",
                                                              rng=np.random.default_rng(0))
    torch_layer = torch.nn.ConvTranspose2d(2, 2, 3, padding=1, dtype=torch.float64)
    torch_layer.load_state_dict({name: torch.from_numpy(value) for name, value in numpy_layer.canonical_state_dict().items()})
    x = np.random.default_rng(1).standard_normal((2, 2, 4, 4))
    cotangent = np.random.default_rng(2).standard_normal((2, 2, 4, 4))
    y = numpy_layer(numpy_layer(x))
    grad_x = numpy_layer.backward(numpy_layer.backward(cotangent))
    x_t = torch.tensor(x, requires_grad=True)
    torch_layer(torch_layer(x_t)).backward(torch.from_numpy(cotangent))
    pairs = {"y": (y, torch_layer(torch_layer(torch.from_numpy(x))).detach().numpy()), "grad x": (grad_x, x_t.grad.numpy())}
    pairs.update({f"grad {name}": (numpy_layer.grads[name], parameter.grad.numpy()) for name, parameter in torch_layer.named_parameters()})
    for what, (ours, theirs) in pairs.items():
        # Relative to the largest magnitude, the dtype's tolerance.
        assert np.abs(ours - theirs).max() <= TOLERANCES["float64"] * np.abs(theirs).max(), what


@pytest.mark.parametrize("tree", ["numpy", "torch", "tf"])
def test_conv_transpose_bad_input(tree):
    module = get_module(tree, MODULE)
    layer = module.ConvTranspose2d(3, 4, 3, padding=2, dtype="float64")
    native = lambda array: to_tree(tree, array)
    nchw = lambda n, c, h, w: (n, h, w, c) if tree == "tf" else (n, c, h, w)
    with pytest.raises(ValueError, match="ConvTranspose2d: x must have 3 channels"):
        layer(native(np.zeros(nchw(2, 2, 5, 5))))
    with pytest.raises(ValueError, match="must have 4 dimensions"):
        layer(native(np.zeros((3, 5, 5))))
    with pytest.raises(TypeError, match="must have dtype float64, got float32"):
        layer(native(np.zeros(nchw(2, 3, 5, 5), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"ConvTranspose2d: input of spatial size \(1, 1\) gives an empty output"):
        layer(native(np.zeros(nchw(1, 3, 1, 1))))
    with pytest.raises(ValueError, match="spatial size must be at least 1x1"):
        layer(native(np.zeros(nchw(1, 3, 0, 4))))
    with pytest.raises(ValueError, match=r"ConvTranspose2d: output_padding must be smaller than max\(stride, dilation\)"):
        module.ConvTranspose2d(3, 4, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="ConvTranspose2d: padding must be an int >= 0 or a pair of them"):
        module.ConvTranspose2d(3, 4, 3, padding="same")
    with pytest.raises(ValueError, match="divisible by groups"):
        module.ConvTranspose2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="kernel_size must be an int >= 1 or a pair of them"):
        module.ConvTranspose2d(3, 4, (3, 3, 3))


def test_torch_refuses_the_same_output_padding():
    """Our constructor's output_padding rule is torch's (which checks it at call time)."""
    with pytest.raises(RuntimeError, match="output padding must be smaller than either stride or dilation"):
        torch.nn.ConvTranspose2d(3, 4, 3, stride=2, output_padding=2)(torch.zeros(1, 3, 4, 4))


@pytest.mark.parametrize("kernel, same_as_torch", [(3, False), (4, True)])
def test_tf_same_is_a_crop_of_the_unpadded_output(kernel, same_as_torch):
    """``tf.nn.conv2d_transpose(padding="SAME")`` with ``output_shape`` ``H s`` crops the padding=0
    output the way the SAME convolution pads (``total = (H-1)s + k - Hs``, the odd pixel after):
    ours with ``padding=0`` cropped to ``[top : top + Hs]``. At k = 3, s = 2 that is ``top = 0`` —
    not torch's ``padding=1, output_padding=1`` (which crops 1 on top); at k = 4 it is the DCGAN
    ``padding=1``."""
    module = get_module("numpy", MODULE)
    layer = module.ConvTranspose2d(2, 3, kernel, stride=2, dtype="float64", rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((1, 2, 3, 3))
    total = (3 - 1) * 2 + kernel - 6
    top = total // 2
    ours = layer(x)[:, :, top:top + 6, top:top + 6]
    filters = canonical_to_conv2d_transpose_filter(layer.params["weight"])
    tf_same = tf.nn.conv2d_transpose(np.transpose(x, NCHW_TO_NHWC), filters, (1, 6, 6, 3), 2, "SAME").numpy()
    tf_same = np.transpose(tf_same, NHWC_TO_NCHW) + layer.params["bias"][:, None, None]
    np.testing.assert_allclose(tf_same, ours, rtol=TOLERANCES["float64"], atol=TOLERANCES["float64"])
    torch_padded = module.ConvTranspose2d(2, 3, kernel, stride=2, padding=1, output_padding=kernel % 2, dtype="float64")
    torch_padded.load_canonical_state_dict(layer.canonical_state_dict())
    assert np.allclose(torch_padded(x), tf_same) == same_as_torch


# --- Upsample --------------------------------------------------------------------------------

# (size, scale_factor, mode, align_corners, H, W)
UPSAMPLE_CONFIGS = {
    "nearest x2": (None, 2, "nearest", None, 3, 4),
    "nearest to 7x5": ((7, 5), None, "nearest", None, 3, 4),
    "nearest x1.5": (None, 1.5, "nearest", None, 3, 4),
    "bilinear x2": (None, 2, "bilinear", None, 3, 4),
    "bilinear to 7x9": ((7, 9), None, "bilinear", None, 3, 4),
    "bilinear x(1.7, 2.5)": (None, (1.7, 2.5), "bilinear", None, 3, 4),
    "bilinear align_corners x2": (None, 2, "bilinear", True, 3, 4),
    "bilinear align_corners to 7x1": ((7, 1), None, "bilinear", True, 3, 4),
}


def tf_resize_reference(size, mode, align_corners):
    """TF's resize ops at an explicit ``size`` (TF takes no scale factor): ``tf.image.resize``
    bilinear is half-pixel (torch's ``align_corners=False``); the corner-aligned bilinear and torch's
    floor-rule nearest exist only as ``tf.compat.v1`` ops (``tf.image.resize``'s nearest is
    half-pixel: ``test_tf_resize_nearest_is_torch_nearest_exact``)."""
    if mode == "nearest":
        op = lambda x: tf.compat.v1.image.resize_nearest_neighbor(x, size, align_corners=False, half_pixel_centers=False)
    elif align_corners:
        op = lambda x: tf.compat.v1.image.resize_bilinear(x, size, align_corners=True)
    else:
        op = lambda x: tf.image.resize(x, size, method="bilinear")

    def run(state, inputs, cotangents, dtype):
        call = lambda x: tf.transpose(op(tf.transpose(x, NCHW_TO_NHWC)), NHWC_TO_NCHW)
        return run_tf(call, inputs, ("x",), cotangents, {}, lambda grads: {})

    return run


def upsample_case(config, dtype="float64", batch=2):
    size, scale_factor, mode, align_corners, h, w = config
    references = {"torch.nn.Upsample": torch_module_reference(
        lambda dtype: torch.nn.Upsample(size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners))}
    # TF takes a size, and computes its scale as H / H_o: equal to torch's 1 / scale_factor only
    # when the factor is an integer. TF's bilinear resize computes and returns float32 whatever the image dtype, so
    # it is a float32 reference only (test_tf_bilinear_resize_computes_in_float32).
    if (size is not None or isinstance(scale_factor, int)) and (mode == "nearest" or dtype == "float32"):
        out = size or (h * scale_factor, w * scale_factor)
        references["tf.image resize"] = tf_resize_reference(out, mode, align_corners)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.Upsample(size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners,
                                               dtype=dtype),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((batch, 3, h, w)).astype(dtype)},
        references=references,
        tf_layouts={"x": NCHW_TO_NHWC},
        tf_output_layouts={0: NCHW_TO_NHWC},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", UPSAMPLE_CONFIGS)
def test_upsample_parity(name, dtype):
    check_parity(upsample_case(UPSAMPLE_CONFIGS[name], dtype), dtype)


@pytest.mark.parametrize("name", ["nearest x1.5", "bilinear x(1.7, 2.5)", "bilinear align_corners to 7x1"])
def test_upsample_gradcheck(name):
    gradcheck_numpy(upsample_case(UPSAMPLE_CONFIGS[name], batch=1))


@pytest.mark.parametrize("align_corners", [False, True])
def test_tf_bilinear_resize_computes_in_float32(align_corners):
    """TF's bilinear resize returns float32 for a float64 image (``tf.image.resize`` documents it;
    the v1 corner-aligned op does the same): it equals our float32 layer, and differs from our
    float64 one by ~1e-7 — so TF's bilinear is a float32 reference only."""
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 2))
    op = (lambda v: tf.compat.v1.image.resize_bilinear(v, (7, 5), align_corners=True)) if align_corners else (
        lambda v: tf.image.resize(v, (7, 5), method="bilinear"))
    tf_out = np.transpose(op(np.transpose(x, NCHW_TO_NHWC)).numpy(), NHWC_TO_NCHW)
    layer = lambda dtype: get_module("numpy", MODULE).Upsample(size=(7, 5), mode="bilinear", align_corners=align_corners, dtype=dtype)
    assert tf_out.dtype == np.float32
    np.testing.assert_allclose(tf_out, layer("float32")(x.astype(np.float32)), rtol=TOLERANCES["float32"], atol=TOLERANCES["float32"])
    assert np.abs(tf_out - layer("float64")(x)).max() > TOLERANCES["float64"]


def test_tf_resize_nearest_is_torch_nearest_exact():
    """``tf.image.resize(method="nearest")`` reads the half-pixel source ``floor((i + 0.5) H / H_o)``:
    torch's ``"nearest-exact"``, not its ``"nearest"`` (``floor(i H / H_o)``, ours)."""
    x = np.random.default_rng(0).standard_normal((1, 1, 3, 3))
    tf_nearest = np.transpose(tf.image.resize(np.transpose(x, NCHW_TO_NHWC), (5, 5), method="nearest").numpy(), NHWC_TO_NCHW)
    exact = F.interpolate(torch.from_numpy(x), size=(5, 5), mode="nearest-exact").numpy()
    ours = get_module("numpy", MODULE).Upsample(size=(5, 5), dtype="float64")(x)
    np.testing.assert_array_equal(tf_nearest, exact)
    assert not np.array_equal(ours, tf_nearest)


@pytest.mark.parametrize("tree", ["numpy", "torch", "tf"])
def test_upsample_bad_input(tree):
    module = get_module(tree, MODULE)
    with pytest.raises(ValueError, match="Upsample: give exactly one of size and scale_factor"):
        module.Upsample()
    with pytest.raises(ValueError, match="Upsample: give exactly one of size and scale_factor"):
        module.Upsample(size=4, scale_factor=2)
    with pytest.raises(ValueError, match="Upsample: mode must be one of"):
        module.Upsample(scale_factor=2, mode="bicubic")
    with pytest.raises(ValueError, match="Upsample: align_corners can only be set with mode 'bilinear'"):
        module.Upsample(scale_factor=2, align_corners=True)
    with pytest.raises(ValueError, match="Upsample: scale_factor must be a number > 0 or a pair of them"):
        module.Upsample(scale_factor=-1.0)
    layer = module.Upsample(scale_factor=0.3, dtype="float64")
    shape = (1, 2, 2, 3) if tree == "tf" else (1, 3, 2, 2)
    with pytest.raises(ValueError, match=r"Upsample: input of spatial size \(2, 2\) times scale_factor"):
        layer(to_tree(tree, np.zeros(shape)))
    with pytest.raises(ValueError, match="must have 4 dimensions"):
        layer(to_tree(tree, np.zeros((3, 5, 5))))
