"""Day 14: LayerNorm, RMSNorm and GroupNorm in three trees, against ``torch.nn`` and Keras.

The TF tree's GroupNorm (and Keras' ``GroupNormalization``) take channels-last input: the case's
``tf_layouts`` moves the canonical NCHW input to NHWC and the output back, so inputs, outputs and
input gradients are compared in NCHW everywhere.
"""
import keras
import numpy as np
import pytest
import torch

from ml100.backends import get_module
from parity_tests.harness import (TOLERANCES, TREES, Case, assert_raises_exactly, channels_last, check_parity,
                                  gradcheck_numpy, max_errors, run_tf, tf_layout_call, to_tree, torch_module_reference)

MODULE = "foundations.normalization"
# Epsilons that differ from every framework default, so a forgotten argument shows up as a mismatch.
LN_EPS, RMS_EPS, GN_EPS = 1e-4, 1e-3, 2e-4


def inputs_of(shape):
    # Offset and scaled so the mean and variance being removed are far from 0 and 1.
    return lambda dtype, rng: {"x": (1.5 * rng.standard_normal(shape) + 0.7).astype(dtype)}


def keras_reference(make, names, x_shape, layout=None):
    """A Keras layer built by ``make(dtype)`` on ``x_shape`` (its native layout); ``names`` maps our
    canonical names to its weight attributes (``weight`` -> ``gamma``); ``layout`` as ``Case.tf_layouts``."""
    def run(state, inputs, cotangents, dtype):
        layer = make(dtype)
        native_shape = x_shape if layout is None else tuple(x_shape[i] for i in layout)
        layer.build(native_shape)
        params = {ours: getattr(layer, theirs) for ours, theirs in names.items()}
        for ours, variable in params.items():
            variable.assign(state[ours])
        call = tf_layout_call(layer, ["x"], {"x": layout} if layout else {}, {0: layout} if layout else {})
        return run_tf(call, inputs, ("x",), cotangents, params, lambda g: {k: v.numpy() for k, v in g.items()})

    return run


def layer_norm_case(shape, normalized_shape):
    k = len(normalized_shape)
    axis = -1 if k == 1 else tuple(range(-k, 0))
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.LayerNorm(normalized_shape, eps=LN_EPS, dtype=dtype),
        inputs=inputs_of(shape),
        references={
            "torch.nn.LayerNorm": torch_module_reference(lambda dtype: torch.nn.LayerNorm(normalized_shape, eps=LN_EPS)),
            # Keras' default epsilon is 1e-3 and its axis -1: both set.
            "keras.layers.LayerNormalization": keras_reference(
                lambda dt: keras.layers.LayerNormalization(axis=axis, epsilon=LN_EPS, dtype=dt),
                {"weight": "gamma", "bias": "beta"}, shape),
        },
    )


def rms_norm_case(shape, normalized_shape):
    k = len(normalized_shape)
    axis = -1 if k == 1 else tuple(range(-k, 0))
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.RMSNorm(normalized_shape, eps=RMS_EPS, dtype=dtype),
        inputs=inputs_of(shape),
        references={
            # torch's default eps=None would be finfo(dtype).eps: set explicitly.
            "torch.nn.RMSNorm": torch_module_reference(lambda dtype: torch.nn.RMSNorm(normalized_shape, eps=RMS_EPS)),
            # Not LayerNormalization(rms_scaling=True): see test_keras_rms_scaling_is_not_rmsnorm.
            "keras.layers.RMSNormalization": keras_reference(
                lambda dt: keras.layers.RMSNormalization(axis=axis, epsilon=RMS_EPS, dtype=dt), {"weight": "scale"}, shape),
        },
    )


def group_norm_case(groups, shape):
    channels, layout = shape[1], channels_last(len(shape))
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.GroupNorm(groups, channels, eps=GN_EPS, dtype=dtype),
        inputs=inputs_of(shape),
        tf_layouts={"x": layout},
        tf_output_layouts={0: layout},
        references={
            "torch.nn.GroupNorm": torch_module_reference(lambda dtype: torch.nn.GroupNorm(groups, channels, eps=GN_EPS)),
            "keras.layers.GroupNormalization": keras_reference(
                lambda dt: keras.layers.GroupNormalization(groups=groups, axis=-1, epsilon=GN_EPS, dtype=dt),
                {"weight": "gamma", "bias": "beta"}, shape, layout),
        },
    )


CASES = {
    "LayerNorm-last1": lambda: layer_norm_case((4, 6), (6,)),
    "LayerNorm-last2": lambda: layer_norm_case((2, 3, 4, 5), (4, 5)),
    "RMSNorm-last1": lambda: rms_norm_case((4, 6), (6,)),
    "RMSNorm-last2": lambda: rms_norm_case((2, 3, 4), (3, 4)),
    "GroupNorm-G1": lambda: group_norm_case(1, (2, 6, 3, 2)),
    "GroupNorm-G2": lambda: group_norm_case(2, (2, 6, 3, 2)),
    "GroupNorm-GC": lambda: group_norm_case(6, (2, 6, 3, 2)),
    "GroupNorm-1d": lambda: group_norm_case(2, (3, 4, 5)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CASES)
def test_normalization_parity(name, dtype):
    check_parity(CASES[name](), dtype)


@pytest.mark.parametrize("name", CASES)
def test_normalization_gradcheck(name):
    gradcheck_numpy(CASES[name]())


@pytest.mark.parametrize("tree", TREES)
def test_without_affine_parameters(tree):
    """``elementwise_affine=False`` / ``affine=False`` / ``bias=False``: fewer canonical names, same output."""
    m = get_module(tree, MODULE)
    assert set(m.LayerNorm(6, elementwise_affine=False).canonical_state_dict()) == set()
    assert set(m.LayerNorm(6, bias=False).canonical_state_dict()) == {"weight"}
    assert set(m.RMSNorm(6, elementwise_affine=False).canonical_state_dict()) == set()
    assert set(m.GroupNorm(2, 6, affine=False).canonical_state_dict()) == set()
    x = np.random.default_rng(0).standard_normal((3, 6))
    y = np.asarray(m.LayerNorm(6, elementwise_affine=False, dtype="float64")(to_tree(tree, x)))
    np.testing.assert_allclose(y, torch.nn.functional.layer_norm(torch.from_numpy(x), (6,)).numpy(), rtol=1e-12, atol=1e-12)


def test_numpy_backward_without_affine_parameters():
    for name, build in {"LayerNorm": lambda m, d, r: m.LayerNorm((3, 4), elementwise_affine=False, dtype=d),
                        "RMSNorm": lambda m, d, r: m.RMSNorm(4, elementwise_affine=False, dtype=d),
                        "GroupNorm": lambda m, d, r: m.GroupNorm(2, 4, affine=False, dtype=d)}.items():
        gradcheck_numpy(Case(module=MODULE, build=build, inputs=inputs_of((2, 4, 3, 4) if name != "GroupNorm" else (2, 4, 3))))


def test_keras_rms_scaling_is_not_rmsnorm():
    """``keras.layers.LayerNormalization(rms_scaling=True)`` divides by ``sqrt(var + eps)`` — the
    *centered* variance — without subtracting the mean: ``x * rsqrt(var(x) + eps) * gamma``. That
    is RMSNorm only when the input's mean over the axis is 0; ``keras.layers.RMSNormalization``
    (``x * rsqrt(mean(x**2) + eps) * scale``) is the RMSNorm reference."""
    rng = np.random.default_rng(0)
    x = 1.5 * rng.standard_normal((4, 6)) + 0.7
    gamma = rng.uniform(-1, 1, 6)
    # Keras itself now says so: the argument is deprecated with exactly this explanation.
    with pytest.warns(UserWarning, match="incorrectly scales the input by the variance"):
        layer = keras.layers.LayerNormalization(epsilon=RMS_EPS, rms_scaling=True, dtype="float64")
    layer.build(x.shape)
    layer.gamma.assign(gamma)
    with pytest.warns(UserWarning, match="rms_scaling"):
        on_raw, on_centered = layer(x).numpy(), layer(x - x.mean(axis=-1, keepdims=True)).numpy()
    var = x.var(axis=-1, keepdims=True)
    np.testing.assert_allclose(on_raw, x / np.sqrt(var + RMS_EPS) * gamma, rtol=1e-12)
    ours = get_module("numpy", MODULE).RMSNorm(6, eps=RMS_EPS, dtype="float64")
    ours.load_canonical_state_dict({"weight": gamma})
    assert not np.allclose(on_raw, ours(x), rtol=1e-3)
    np.testing.assert_allclose(on_centered, ours(x - x.mean(axis=-1, keepdims=True)), rtol=1e-12)


def test_torch_rmsnorm_default_eps_is_machine_epsilon():
    """``torch.nn.RMSNorm(eps=None)`` uses ``torch.finfo(x.dtype).eps`` (2**-23 in float32, 2**-52 in
    float64): a dtype-dependent model. Ours defaults to an explicit eps (1e-6, Keras'); ``eps=None``
    asks for torch's value, resolved from the module's dtype."""
    x = np.random.default_rng(0).standard_normal((3, 5)) * 1e-4
    ours = get_module("numpy", MODULE)
    for dtype in ("float32", "float64"):
        xd = x.astype(dtype)
        expected = ours.RMSNorm(5, eps=float(np.finfo(dtype).eps), dtype=dtype)(xd)
        got = torch.nn.RMSNorm(5, dtype=getattr(torch, dtype))(torch.from_numpy(xd)).detach().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == "float32" else 1e-12)
        for tree in TREES:
            assert get_module(tree, MODULE).RMSNorm(5, eps=None, dtype=dtype).eps == np.finfo(dtype).eps, tree


def rms_norm_eps_none_case(shape, normalized_shape):
    """``RMSNorm(eps=None)`` on inputs of scale 1e-6, where the mean square (~1e-12) is comparable to
    float32's epsilon (1.2e-7, dominant) and float64's (2.2e-16, a 1e-4 effect): a wrong epsilon fails."""
    k = len(normalized_shape)
    axis = -1 if k == 1 else tuple(range(-k, 0))
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.RMSNorm(normalized_shape, eps=None, dtype=dtype),
        inputs=lambda dtype, rng: {"x": (1e-6 * rng.standard_normal(shape)).astype(dtype)},
        references={
            "torch.nn.RMSNorm(eps=None)": torch_module_reference(lambda dtype: torch.nn.RMSNorm(normalized_shape)),
            # Keras has no such option: its epsilon set to the same machine epsilon.
            "keras.layers.RMSNormalization": keras_reference(
                lambda dt: keras.layers.RMSNormalization(axis=axis, epsilon=float(np.finfo(dt).eps), dtype=dt),
                {"weight": "scale"}, shape),
        },
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape, normalized_shape", [((4, 6), (6,)), ((2, 3, 4), (3, 4))])
def test_rmsnorm_eps_none_matches_torch(shape, normalized_shape, dtype):
    case = rms_norm_eps_none_case(shape, normalized_shape)
    check_parity(case, dtype)
    # The epsilon matters at this scale: without it the output differs by far more than the tolerance.
    x = case.inputs(dtype, np.random.default_rng(0))["x"]
    m = get_module("numpy", MODULE)
    with_eps, without_eps = (m.RMSNorm(normalized_shape, eps=eps, dtype=dtype)(x) for eps in (None, 0.0))
    assert max_errors(with_eps, without_eps)[1] > 100 * TOLERANCES[dtype]


@pytest.mark.parametrize("tree", TREES)
def test_zero_size_normalized_shape_gives_an_empty_output(tree):
    """torch builds ``LayerNorm(0)`` and ``RMSNorm(0)`` and returns an empty output: so do the trees,
    without a warning (the NumPy tree's means over no element are NaN quietly, as torch's)."""
    m = get_module(tree, MODULE)
    for layer in (m.LayerNorm(0, dtype="float64"), m.RMSNorm(0, dtype="float64")):
        assert tuple(layer(to_tree(tree, np.zeros((2, 0)))).shape) == (2, 0)
    assert tuple(torch.nn.LayerNorm(0)(torch.zeros(2, 0)).shape) == (2, 0)


#: (class, arguments, keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "empty normalized_shape": ("LayerNorm", ((),), {}, ValueError,
                               "LayerNorm: normalized_shape must be an int >= 0 or a non-empty sequence of them, got ()"),
    "negative normalized_shape": ("RMSNorm", (-2,), {}, ValueError,
                                  "RMSNorm: normalized_shape must be an int >= 0 or a non-empty sequence of them, got -2"),
    "float in normalized_shape": ("LayerNorm", ((3, 2.5),), {}, ValueError,
                                  "LayerNorm: normalized_shape must be an int >= 0 or a non-empty sequence of them, got (3, 2.5)"),
    "negative LayerNorm eps": ("LayerNorm", (4,), {"eps": -1e-5}, ValueError, "LayerNorm: eps must be in [0.0, inf), got -1e-05"),
    "string LayerNorm bias": ("LayerNorm", (4,), {"bias": "no"}, TypeError, "LayerNorm: bias must be a bool (True or False), got 'no'"),
    "string RMSNorm eps": ("RMSNorm", (4,), {"eps": "1e-6"}, TypeError, "RMSNorm: eps must be a real number, got '1e-6'"),
    "negative RMSNorm eps": ("RMSNorm", (4,), {"eps": -1.0}, ValueError, "RMSNorm: eps must be in [0.0, inf), got -1.0"),
    "None elementwise_affine": ("RMSNorm", (4,), {"elementwise_affine": None}, TypeError,
                                "RMSNorm: elementwise_affine must be a bool (True or False), got None"),
    "zero num_groups": ("GroupNorm", (0, 4), {}, ValueError, "GroupNorm: num_groups must be an int >= 1, got 0"),
    "zero num_channels": ("GroupNorm", (2, 0), {}, ValueError, "GroupNorm: num_channels must be an int >= 1, got 0"),
    "indivisible channels": ("GroupNorm", (4, 6), {}, ValueError, "GroupNorm: num_channels (6) must be divisible by num_groups (4)"),
    "negative GroupNorm eps": ("GroupNorm", (2, 4), {"eps": -1}, ValueError, "GroupNorm: eps must be in [0.0, inf), got -1"),
    "int affine": ("GroupNorm", (2, 4), {"affine": 1}, TypeError, "GroupNorm: affine must be a bool (True or False), got 1"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    cls, args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: getattr(get_module(tree, MODULE), cls)(*args, **kwargs))


@pytest.mark.parametrize("tree", TREES)
def test_bad_input_gives_clear_errors(tree):
    m, to = get_module(tree, MODULE), lambda array: to_tree(tree, array)
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"LayerNorm: x must have shape \(\.\.\., 3, 5\), got \(2, 3, 4\)"):
        m.LayerNorm((3, 5))(to(x))
    with pytest.raises(ValueError, match=r"RMSNorm: x must have shape \(\.\.\., 5\), got \(2, 3, 4\)"):
        m.RMSNorm(5)(to(x))
    with pytest.raises(ValueError, match=r"LayerNorm: x must have shape \(\.\.\., 2, 3, 4, 5\), got \(2, 3, 4\)"):
        m.LayerNorm((2, 3, 4, 5))(to(x))
    for layer in (m.LayerNorm(4), m.RMSNorm(4)):
        with pytest.raises(TypeError, match="x must have dtype float32, got float64"):
            layer(to(x.astype(np.float64)))
    with pytest.raises(ValueError, match=r"GroupNorm: num_channels \(6\) must be divisible by num_groups \(4\)"):
        m.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"GroupNorm: x must have shape .*6.* got \(2, 3, 4\)"):
        m.GroupNorm(2, 6)(to(x))
    with pytest.raises(TypeError, match="GroupNorm: x must have dtype float64, got float32"):
        m.GroupNorm(2, 4, dtype="float64")(to(np.zeros((2, 4, 4), np.float32)))
