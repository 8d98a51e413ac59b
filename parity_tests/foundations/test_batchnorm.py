"""Day 13: batch normalization in three trees, against ``torch.nn.BatchNorm1d/2d`` and
``keras.layers.BatchNormalization``.

The TF tree is channels-last: ``BatchNorm2d`` takes NHWC, so its cases set ``tf_layouts`` and the
harness transposes inputs, outputs and input gradients between NCHW and NHWC. Running statistics
(buffers) are compared here after several training steps, not by the harness.
"""
import keras
import numpy as np
import pytest
import torch

from ml100.backends import get_module
from parity_tests.harness import (NCHW_TO_NHWC, TREES, Case, Trajectory, assert_no_failures, assert_raises_exactly,
                                  check_parity, check_trajectory, compare_tensors, gradcheck_numpy, random_weights,
                                  run_tf, tf_layout_call, to_canonical, to_native, torch_module_reference)

MODULE = "foundations.batchnorm"
C = 3
#: Input shapes (canonical, channels on axis 1): few values, but several positions per channel.
SHAPES = {"BatchNorm1d": (6, C), "BatchNorm2d": (2, C, 3, 2)}
#: NCHW -> NHWC for the TF tree's images; (N, C) features need no permutation.
TO_TF = {"BatchNorm1d": None, "BatchNorm2d": NCHW_TO_NHWC}
EPS, MOMENTUM = 1e-5, 0.1


def bn_weights(name, shape, dtype, rng):
    """A non-zero batch count shows the counter is carried over (the harness already draws a positive
    running variance)."""
    if name == "num_batches_tracked":
        return np.array(7, dtype=np.int64)
    return None


def bn_inputs(cls, shape=None):
    # Off-centre and not unit-scale, so normalizing actually does something.
    return lambda dtype, rng: {"x": (2.0 * rng.standard_normal(shape or SHAPES[cls]) + 0.5).astype(dtype)}


def torch_reference(cls, train, **kwargs):
    """``torch.nn.BatchNorm1d/2d`` loaded with the canonical state (every key is torch's own)."""
    return torch_module_reference(lambda dtype: getattr(torch.nn, cls)(C, eps=EPS, momentum=MOMENTUM, **kwargs).train(train))


def keras_layer(cls, state, dtype):
    """``keras.layers.BatchNormalization`` (channels-last) with the same state: Keras' ``momentum``
    is the weight of the OLD value, 1 − torch's."""
    layer = keras.layers.BatchNormalization(axis=-1, momentum=1.0 - MOMENTUM, epsilon=EPS, dtype=dtype)
    shape = SHAPES[cls]
    layer.build((None, *shape[2:], C))
    layer.gamma.assign(state["weight"])
    layer.beta.assign(state["bias"])
    layer.moving_mean.assign(state["running_mean"])
    layer.moving_variance.assign(state["running_var"])
    return layer


def keras_reference(cls, train):
    def run(state, inputs, cotangents, dtype):
        layer = keras_layer(cls, state, dtype)
        layouts = {"x": TO_TF[cls]} if TO_TF[cls] else {}
        call = tf_layout_call(lambda x: layer(x, training=train), list(inputs), layouts, {0: TO_TF[cls]} if layouts else {})
        params = {"weight": layer.gamma, "bias": layer.beta}
        return run_tf(call, inputs, ("x",), cotangents, params, lambda g: {k: v.numpy() for k, v in g.items()})

    return run


def bn_case(cls, train, **kwargs):
    references = {f"torch.nn.{cls}": torch_reference(cls, train, **kwargs)}
    if not kwargs:
        references["keras.layers.BatchNormalization"] = keras_reference(cls, train)
    layouts = {"x": TO_TF[cls]} if TO_TF[cls] else {}
    # torch (and the trees) train on an empty batch: empty output, zero parameter gradients,
    # estimates untouched, the batch counted.
    excluded = {"keras.layers.BatchNormalization": "Keras' training-mode gradient of gamma on an empty batch is NaN "
                                                   "(its moments divide 0 by 0); torch's is 0"} if train and not kwargs else {}
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: getattr(m, cls)(C, eps=EPS, momentum=MOMENTUM, dtype=dtype, **kwargs).train(train),
        inputs=bn_inputs(cls),
        references=references,
        weights=bn_weights,
        tf_layouts=layouts,
        tf_output_layouts={0: TO_TF[cls]} if layouts else {},
        special_excluded_references=excluded,
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls", list(SHAPES))
def test_batchnorm_parity(cls, train, dtype):
    check_parity(bn_case(cls, train), dtype)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_without_affine_or_running_stats(train):
    """``affine=False, track_running_stats=False``: no parameters, no buffers, and batch statistics
    even in eval mode (there is nothing else to normalize with), as in torch."""
    check_parity(bn_case("BatchNorm2d", train, affine=False, track_running_stats=False), "float64")


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls", list(SHAPES))
def test_batchnorm_gradcheck(cls, train):
    gradcheck_numpy(bn_case(cls, train))


def train_steps(cls, dtype, steps=3):
    """Three training forwards on different batches in every tree, torch.nn and Keras, all from one
    state; returns the final states (canonical names; Keras' under its own) and the batches."""
    models = {tree: getattr(get_module(tree, MODULE), cls)(C, eps=EPS, momentum=MOMENTUM, dtype=dtype) for tree in TREES}
    state = random_weights(models["numpy"].canonical_state_dict(), np.random.default_rng(1), bn_weights)
    for model in models.values():
        model.load_canonical_state_dict(state)
    reference = getattr(torch.nn, cls)(C, eps=EPS, momentum=MOMENTUM, dtype=getattr(torch, dtype))
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    keras_bn = keras_layer(cls, state, dtype)
    rng = np.random.default_rng(2)
    batches = [bn_inputs(cls)(dtype, rng)["x"] * (step + 1) for step in range(steps)]
    for x in batches:
        for tree, model in models.items():
            model(to_native(tree, x))
        reference(torch.from_numpy(x))
        keras_bn(to_native("tf", x), training=True)
    finals = {tree: model.canonical_state_dict() for tree, model in models.items()}
    finals[f"torch.nn.{cls}"] = {name: value.detach().numpy() for name, value in reference.state_dict().items()}
    keras_state = {"running_mean": keras_bn.moving_mean.numpy(), "running_var": keras_bn.moving_variance.numpy()}
    return state, finals, keras_state, batches


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cls", list(SHAPES))
def test_running_stats_after_several_steps(cls, dtype):
    """After 3 training steps every tree's running_mean, running_var and num_batches_tracked equal
    torch's (and each other's), and Keras' moving mean equals them too."""
    state, finals, keras_state, batches = train_steps(cls, dtype)
    failures = []
    names = list(finals)
    for a, b in zip(names, names[1:]):
        assert finals[a].keys() == finals[b].keys(), f"state names differ: {a} {sorted(finals[a])} vs {b} {sorted(finals[b])}"
        for name in finals[a]:
            if name == "num_batches_tracked":
                if finals[a][name] != finals[b][name]:
                    failures.append(f"num_batches_tracked [{a} vs {b}]: {finals[a][name]} vs {finals[b][name]}")
            else:
                compare_tensors(name, f"{a} vs {b}", finals[a][name], finals[b][name], dtype, failures)
    compare_tensors("running_mean", "numpy vs keras", finals["numpy"]["running_mean"], keras_state["running_mean"], dtype, failures)
    assert_no_failures(failures, f"running statistics of {cls} ({dtype})")
    for final in finals.values():
        assert final["num_batches_tracked"].dtype == np.int64 and final["num_batches_tracked"].shape == ()
        assert int(final["num_batches_tracked"]) == 7 + len(batches)


@pytest.mark.parametrize("cls", list(SHAPES))
def test_keras_moving_variance_is_biased(cls):
    """Keras updates its moving variance with the BIASED batch variance σ² (divide by n), torch
    (and all three trees) with the UNBIASED one n/(n−1)·σ² — the same normalization in training,
    different running statistics and therefore different eval outputs. Proven exactly: after
    3 steps from the same r₀, both follow r ← 0.9 r + 0.1 s, with s = σ² for Keras and
    s = n/(n−1)·σ² for torch, and after ONE step (ours − 0.9 r₀)/(Keras − 0.9 r₀) = n/(n−1)."""
    dtype = "float64"
    state, finals, keras_state, batches = train_steps(cls, dtype)
    axes = tuple(a for a in range(batches[0].ndim) if a != 1)
    n = batches[0].size // C
    ours, keras_var = state["running_var"].copy(), state["running_var"].copy()
    for x in batches:
        biased = x.var(axis=axes)  # (C,)
        ours = (1 - MOMENTUM) * ours + MOMENTUM * biased * n / (n - 1)
        keras_var = (1 - MOMENTUM) * keras_var + MOMENTUM * biased
    np.testing.assert_allclose(finals["numpy"]["running_var"], ours, rtol=1e-12)
    np.testing.assert_allclose(keras_state["running_var"], keras_var, rtol=1e-12)
    # The difference is real (not rounding): well above the float64 tolerance.
    assert np.max(np.abs(ours - keras_var) / np.abs(ours)) > 1e-3

    _, one, keras_one, _ = train_steps(cls, dtype, steps=1)
    r0 = (1 - MOMENTUM) * state["running_var"]
    ratio = (one["numpy"]["running_var"] - r0) / (keras_one["running_var"] - r0)
    np.testing.assert_allclose(ratio, np.full(C, n / (n - 1)), rtol=1e-10)


@pytest.mark.parametrize("cls", list(SHAPES))
def test_state_dict_is_torchs(cls):
    """Keys, shapes and dtypes are ``torch.nn.BatchNorm*d``'s (so torchvision checkpoints load), with
    and without ``affine``/``track_running_stats``; a torch state dict loads into every tree."""
    for kwargs in ({}, {"affine": False}, {"track_running_stats": False}):
        expected = {name: (tuple(t.shape), str(t.dtype).replace("torch.", ""))
                    for name, t in getattr(torch.nn, cls)(C, **kwargs).state_dict().items()}
        for tree in TREES:
            model = getattr(get_module(tree, MODULE), cls)(C, **kwargs)
            got = {name: (v.shape, v.dtype.name) for name, v in model.canonical_state_dict().items()}
            assert list(got) == list(expected), f"{tree} {kwargs}: {list(got)} vs {list(expected)}"
            assert got == expected, f"{tree} {kwargs}: {got} vs {expected}"
    trained = getattr(torch.nn, cls)(C)
    trained(torch.randn(SHAPES[cls]) * 3 + 1)
    torch_state = {name: t.numpy() for name, t in trained.state_dict().items()}
    for tree in TREES:
        model = getattr(get_module(tree, MODULE), cls)(C)
        model.load_canonical_state_dict(torch_state)
        for name, value in model.canonical_state_dict().items():
            np.testing.assert_array_equal(value, torch_state[name], err_msg=f"{tree} {name}")


def test_defaults_match_torch():
    """Fresh layers: γ = 1, β = 0, running mean 0, running variance 1, no batches tracked."""
    expected = {name: t.numpy() for name, t in torch.nn.BatchNorm2d(C).state_dict().items()}
    for tree in TREES:
        got = get_module(tree, MODULE).BatchNorm2d(C).canonical_state_dict()
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{tree} {name}")


def cumulative_average_trajectory(cls, loaded: bool, steps=5) -> Trajectory:
    """``momentum=None`` in every tree and in ``torch.nn``: ``steps`` training forwards on
    different batches, the output and every state tensor compared after each. ``loaded`` starts
    from the shared random state (``num_batches_tracked`` = 7, so the first factor is 1/8),
    otherwise from a fresh layer (factor 1: the first batch's statistics replace the defaults)."""
    def batch(dtype, t):
        return bn_inputs(cls)(dtype, np.random.default_rng(10 + t))["x"] * t

    def initial_state(model):
        if loaded:
            model.load_canonical_state_dict(random_weights(model.canonical_state_dict(), np.random.default_rng(1), bn_weights))
        return model

    def start(tree, dtype):
        return tree, dtype, initial_state(getattr(get_module(tree, MODULE), cls)(C, eps=EPS, momentum=None, dtype=dtype))

    def step(state, t):
        tree, dtype, model = state
        output = model(to_native(tree, batch(dtype, t)))
        return {"output": to_canonical(tree, output), **model.canonical_state_dict()}

    def torch_start(dtype):
        layer = getattr(torch.nn, cls)(C, eps=EPS, momentum=None, dtype=getattr(torch, dtype))
        # Fed torch tensors, as the torch tree is.
        return "torch", dtype, initial_state(CanonicalTorch(layer))

    return Trajectory(steps, start, step, {f"torch.nn.{cls}(momentum=None)": (torch_start, step)})


class CanonicalTorch:
    """A ``torch.nn`` layer seen through the trees' canonical state API (its names already are)."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, x):
        return self.layer(x)

    def canonical_state_dict(self):
        return {name: value.detach().numpy().copy() for name, value in self.layer.state_dict().items()}

    def load_canonical_state_dict(self, state):
        self.layer.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loaded", [False, True], ids=["fresh", "loaded"])
@pytest.mark.parametrize("cls", list(SHAPES))
def test_momentum_none_is_torchs_cumulative_average(cls, loaded, dtype):
    check_trajectory(cumulative_average_trajectory(cls, loaded), dtype, f"{cls}(momentum=None)")


def test_momentum_none_averages_every_batch_equally():
    """From a fresh layer, after T batches the running estimates are the plain means of the T
    batch statistics (the factor 1/t weighs every batch alike), not an exponential average."""
    trajectory = cumulative_average_trajectory("BatchNorm2d", loaded=False, steps=4)
    state = trajectory.start("numpy", "float64")
    final = [trajectory.step(state, t) for t in range(1, 5)][-1]
    batches = [bn_inputs("BatchNorm2d")("float64", np.random.default_rng(10 + t))["x"] * t for t in range(1, 5)]
    axes = (0, 2, 3)
    np.testing.assert_allclose(final["running_mean"], np.mean([x.mean(axis=axes) for x in batches], axis=0), rtol=1e-13)
    np.testing.assert_allclose(final["running_var"], np.mean([x.var(axis=axes, ddof=1) for x in batches], axis=0), rtol=1e-13)
    assert int(final["num_batches_tracked"]) == 4


@pytest.mark.parametrize("cls", list(SHAPES))
def test_empty_training_batch_is_counted_but_changes_no_estimate(cls):
    """torch's behaviour, in every tree: an empty batch in training mode gives an empty output,
    adds 1 to ``num_batches_tracked`` and leaves the running mean and variance as they were."""
    state = random_weights(getattr(get_module("numpy", MODULE), cls)(C, dtype="float64").canonical_state_dict(),
                           np.random.default_rng(1), bn_weights)
    empty = np.zeros((0, *SHAPES[cls][1:]))
    reference = getattr(torch.nn, cls)(C, dtype=torch.float64)
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    assert reference(torch.from_numpy(empty)).shape == empty.shape
    expected = {name: value.detach().numpy() for name, value in reference.state_dict().items()}
    assert int(expected["num_batches_tracked"]) == 8
    for tree in TREES:
        model = getattr(get_module(tree, MODULE), cls)(C, dtype="float64")
        model.load_canonical_state_dict(state)
        assert to_canonical(tree, model(to_native(tree, empty))).shape == empty.shape, tree
        for name, value in model.canonical_state_dict().items():
            np.testing.assert_array_equal(value, expected[name], err_msg=f"{tree} {name}")


#: (class, arguments, keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "negative num_features": ("BatchNorm2d", (-3,), {}, ValueError, "BatchNorm2d: num_features must be an int >= 1, got -3"),
    "zero num_features": ("BatchNorm1d", (0,), {}, ValueError, "BatchNorm1d: num_features must be an int >= 1, got 0"),
    "float num_features": ("BatchNorm2d", (3.5,), {}, ValueError, "BatchNorm2d: num_features must be an int >= 1, got 3.5"),
    "negative eps": ("BatchNorm2d", (C,), {"eps": -1}, ValueError, "BatchNorm2d: eps must be in [0.0, inf), got -1"),
    "NaN eps": ("BatchNorm1d", (C,), {"eps": float("nan")}, ValueError, "BatchNorm1d: eps must be in [0.0, inf), got nan"),
    "momentum above 1": ("BatchNorm2d", (C,), {"momentum": 1.5}, ValueError, "BatchNorm2d: momentum must be in [0, 1], got 1.5"),
    "string momentum": ("BatchNorm2d", (C,), {"momentum": "0.1"}, TypeError, "BatchNorm2d: momentum must be a real number, got '0.1'"),
    "string affine": ("BatchNorm2d", (C,), {"affine": "no"}, TypeError, "BatchNorm2d: affine must be a bool (True or False), got 'no'"),
    "int track_running_stats": ("BatchNorm1d", (C,), {"track_running_stats": 1}, TypeError,
                                "BatchNorm1d: track_running_stats must be a bool (True or False), got 1"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    """Before: ``BatchNorm2d(-3)`` raised three different exception types across the trees and
    ``eps=-1`` gave an all-NaN output silently; now one message, at construction."""
    cls, args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: getattr(get_module(tree, MODULE), cls)(*args, **kwargs))


BAD_INPUTS = {
    # (class, canonical shape, dtype, exception, message fragment)
    "wrong channel count": ("BatchNorm2d", (2, C + 1, 3, 2), "float32", ValueError, "channels"),
    "wrong ndim 2d": ("BatchNorm2d", (2, C, 3), "float32", ValueError, "dimensions"),
    "wrong ndim 1d": ("BatchNorm1d", (2, C, 4), "float32", ValueError, "dimensions"),
    "wrong dtype": ("BatchNorm1d", (4, C), "float64", TypeError, "dtype float32"),
    "one value per channel": ("BatchNorm1d", (1, C), "float32", ValueError, "more than 1 value per channel"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error(what, tree):
    cls, shape, dtype, error, fragment = BAD_INPUTS[what]
    layer = getattr(get_module(tree, MODULE), cls)(C, dtype="float32")
    with pytest.raises(error, match=fragment):
        layer(to_native(tree, np.ones(shape, dtype=dtype)))


def test_scalar_buffer_survives_the_weights_file(tmp_path):
    """``num_batches_tracked`` is 0-d; ``save_weights`` once wrote it as shape ``(1,)`` because
    ``np.ascontiguousarray`` promotes 0-d arrays to 1-d, and the strict load then refused it."""
    from ml100.weights import load_weights, save_weights

    state = get_module("numpy", MODULE).BatchNorm2d(C).canonical_state_dict()
    save_weights(tmp_path / "bn.safetensors", state)
    loaded = load_weights(tmp_path / "bn.safetensors")
    assert loaded["num_batches_tracked"].shape == () and loaded["num_batches_tracked"].dtype == np.int64
    for tree in TREES:
        getattr(get_module(tree, MODULE), "BatchNorm2d")(C).load_canonical_state_dict(loaded)
