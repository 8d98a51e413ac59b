"""Day 57: MLP-Mixer (timm's ``MlpMixer``) in three trees.

Reference: ``timm.models.mlp_mixer.MlpMixer`` built offline from the same arguments with its own
random init; the trees' canonical names are timm's ``state_dict`` names, so the state loads into timm
unchanged (:func:`mixer_state_to_timm` is the identity, written once and round-tripped by
:func:`test_timm_state_dict_round_trip`). Logits, the pixels' gradient and every parameter gradient
are compared in float64 and float32; the TF tree takes NHWC pixels (the harness permutes them).
timm takes an empty batch as the trees do, so the special-values pass keeps it as a reference throughout.

One gradient is zero by the math: the token MLP's ``fc2.bias`` ``(N,)`` adds ``b_n`` to every channel of
token ``n``, and everything that reads the residual stream (the next ``norm1``/``norm2``, the final
``norm``) is a LayerNorm over channels, which removes a per-token constant. Its gradient is rounding
noise (~1e-16) in every implementation, which no relative tolerance can compare (ViT's key bias has the
same rule): the parity cases leave it out, and :func:`test_token_fc2_bias_gradient_is_zero` checks it.
"""
import re

import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from timm.models.mlp_mixer import MlpMixer as TimmMlpMixer

from ml100.backends import get_module
from ml100.configs import ConfigError, MixerConfig
from parity_tests.harness import (NCHW_TO_NHWC, TREES, Case, WithoutParameters, assert_no_failures, assert_raises_exactly,
                                  check_parity, compare_results, gradcheck_numpy, run_numpy, run_torch, run_tree)

MODULE = "modern.mlp_mixer"
B = 2
#: The issue's reference shapes: 8x8 one-channel images, 4x4 patches (4 tokens), 10 classes.
CONFIG = MixerConfig(img_size=8, patch_size=4, in_chans=1, num_classes=10, num_blocks=2, embed_dim=16)
#: 2x2 patches (16 tokens), three channels, other MLP ratios.
SMALL_PATCHES = MixerConfig(img_size=8, patch_size=2, in_chans=3, num_classes=5, num_blocks=2, embed_dim=24,
                            mlp_ratio=(0.25, 2.0))
#: The smallest model for finite differences.
TINY = MixerConfig(img_size=4, patch_size=2, in_chans=1, num_classes=3, num_blocks=1, embed_dim=4, mlp_ratio=(1.0, 1.5))

#: Each tree's array type from a NumPy array.
CONVERTERS = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}


#: Parameters whose gradient is exactly 0 in exact arithmetic (see the module docstring).
TOKEN_FC2_BIAS = re.compile(r"blocks\.\d+\.mlp_tokens\.fc2\.bias$")


def _without_token_fc2_bias(named: dict) -> dict:
    """``named`` less the token MLPs' ``fc2.bias`` (:data:`TOKEN_FC2_BIAS`)."""
    return {name: value for name, value in named.items() if not TOKEN_FC2_BIAS.search(name)}


def mixer_state_to_timm(state: dict) -> dict:
    """The canonical MLP-Mixer state as timm's ``MlpMixer.state_dict``: the same names and layouts (identity)."""
    return dict(state)


def timm_model(config: MixerConfig, dtype: str) -> TimmMlpMixer:
    """timm's MlpMixer of the same architecture, random init, no download; its defaults are the trees' fixed
    choices (LayerNorm eps 1e-6, exact GELU, average pooling, no dropout)."""
    model = TimmMlpMixer(img_size=config.img_size, patch_size=config.patch_size, in_chans=config.in_chans,
                         num_classes=config.num_classes, num_blocks=config.num_blocks, embed_dim=config.embed_dim,
                         mlp_ratio=config.mlp_ratio)
    return model.to(getattr(torch, dtype)).eval()


def timm_reference(config: MixerConfig):
    def run(state, inputs, cotangents, dtype):
        model = timm_model(config, dtype)
        model.load_state_dict({name: torch.from_numpy(value) for name, value in mixer_state_to_timm(state).items()})
        params = _without_token_fc2_bias(dict(model.named_parameters()))
        return run_torch(model, inputs, ("pixel_values",), cotangents, params)
    return run


def mixer_case(config: MixerConfig, batch: int = B) -> Case:
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: WithoutParameters(m.MlpMixer(config, dtype=dtype, rng=rng), TOKEN_FC2_BIAS),
        inputs=lambda dtype, rng: {"pixel_values": rng.standard_normal(
            (batch, config.in_chans, config.img_size, config.img_size)).astype(dtype)},
        differentiable=("pixel_values",),
        references={"timm MlpMixer": timm_reference(config)},
        tf_layouts={"pixel_values": NCHW_TO_NHWC},
        output_names=("logits",),
    )


CASES = {
    "4x4 patches, 1 channel": lambda: mixer_case(CONFIG),
    "2x2 patches, 3 channels, mlp_ratio (0.25, 2)": lambda: mixer_case(SMALL_PATCHES),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    check_parity(CASES[name](), dtype)


def test_gradcheck_numpy():
    gradcheck_numpy(mixer_case(TINY, batch=2))


@pytest.mark.parametrize("tree", TREES)
def test_token_fc2_bias_gradient_is_zero(tree):
    """Row-wise LayerNorm is blind to the token MLP's output bias: in every tree its gradient is rounding
    noise, below 1e-12 of the channel MLP's output-bias gradient."""
    case = mixer_case(CONFIG)
    rng = np.random.default_rng(11)
    model = case.build(get_module(tree, MODULE), "float64", rng).model
    model.load_canonical_state_dict({name: rng.uniform(-1.0, 1.0, value.shape)
                                     for name, value in model.canonical_state_dict().items()})
    result = run_tree(tree, model, case.inputs("float64", rng), ("pixel_values",),
                      [rng.standard_normal((B, CONFIG.num_classes))], case.tf_layouts)
    for block in range(CONFIG.num_blocks):
        scale = np.abs(result.param_grads[f"blocks.{block}.mlp_channels.fc2.bias"]).max()
        assert scale > 1e-3
        assert np.abs(result.param_grads[f"blocks.{block}.mlp_tokens.fc2.bias"]).max() <= 1e-12 * scale, (tree, block)


def test_timm_state_dict_round_trip():
    """timm's own state dict (its init, not ours) loads into every tree, and each tree's canonical state goes
    back into timm strictly and unchanged; the parameter count is timm's."""
    model = timm_model(CONFIG, "float32")
    timm_state = {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}
    assert "blocks.1.mlp_tokens.fc1.weight" in timm_state and timm_state["blocks.1.mlp_tokens.fc1.weight"].shape == (8, 4)
    for tree in TREES:
        ours = get_module(tree, MODULE).MlpMixer(CONFIG, rng=np.random.default_rng(1))
        ours.load_canonical_state_dict(timm_state)
        back = mixer_state_to_timm(ours.canonical_state_dict())
        model.load_state_dict({name: torch.from_numpy(value) for name, value in back.items()}, strict=True)
        assert sum(value.size for value in back.values()) == sum(p.numel() for p in model.parameters()), tree
        for name, value in timm_state.items():
            np.testing.assert_array_equal(back[name], value, err_msg=f"{tree} {name}")


def test_initial_state_matches_across_trees():
    """One rng draws the same initial state in every tree."""
    states = {tree: get_module(tree, MODULE).MlpMixer(CONFIG, dtype="float64", rng=np.random.default_rng(3))
              .canonical_state_dict() for tree in TREES}
    for tree, state in states.items():
        for name, value in states["numpy"].items():
            np.testing.assert_array_equal(state[name], value, err_msg=f"{tree} {name}")


def test_empty_batch():
    """B = 0: timm and every tree return empty logits; the NumPy backward gives an empty pixel gradient."""
    empty = np.zeros((0, 1, 8, 8))
    assert tuple(timm_model(CONFIG, "float64")(torch.from_numpy(empty)).shape) == (0, CONFIG.num_classes)
    for tree in TREES:
        mixer = get_module(tree, MODULE).MlpMixer(CONFIG, dtype="float64")
        pixels = empty.transpose(0, 2, 3, 1) if tree == "tf" else empty
        assert tuple(mixer(CONVERTERS[tree](pixels)).shape) == (0, CONFIG.num_classes), tree
    numpy_mixer = get_module("numpy", MODULE).MlpMixer(CONFIG, dtype="float64")
    numpy_mixer(empty)
    assert numpy_mixer.backward(np.zeros((0, CONFIG.num_classes))).shape == empty.shape


def test_numpy_model_used_twice_sums_gradients():
    """Two forwards, two backwards (LIFO) in the NumPy tree = autograd through the sum of both in torch."""
    rng = np.random.default_rng(7)
    models = {tree: get_module(tree, MODULE).MlpMixer(CONFIG, dtype="float64", rng=np.random.default_rng(0))
              for tree in ("numpy", "torch")}
    pixels = [rng.standard_normal((B, 1, 8, 8)) for _ in range(2)]
    cotangents = [rng.standard_normal((B, CONFIG.num_classes)) for _ in range(2)]
    numpy_mixer = models["numpy"]
    numpy_mixer.zero_grad()
    numpy_mixer(pixels[0])
    numpy_mixer(pixels[1])
    numpy_mixer.backward(cotangents[1])
    numpy_mixer.backward(cotangents[0])
    total = sum((models["torch"](torch.from_numpy(x)) * torch.from_numpy(g)).sum() for x, g in zip(pixels, cotangents))
    total.backward()
    grads = numpy_mixer.canonical_grads()
    for name, param in models["torch"].named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def error_cases():
    """(what, call(module, tree) -> None, error type, message): one bad argument each, the same text in every tree."""
    def pixels(tree, shape):
        # The TF tree takes channels-last images: the same bad image, permuted.
        array = np.zeros(shape, dtype=np.float32)
        return array.transpose(0, 2, 3, 1) if tree == "tf" and array.ndim == 4 else array
    return [
        ("wrong image size", lambda m, tree: m.MlpMixer(CONFIG)(CONVERTERS[tree](pixels(tree, (1, 1, 12, 12)))),
         ValueError, "MlpMixer: pixel_values must be 8x8 images (img_size), got 12x12"),
        ("3-d pixels", lambda m, tree: m.MlpMixer(CONFIG)(CONVERTERS[tree](pixels(tree, (1, 8, 8)))),
         ValueError, "MlpMixer: pixel_values must have 4 dimensions, got shape (1, 8, 8)"),
        ("float64 pixels into a float32 model",
         lambda m, tree: m.MlpMixer(CONFIG)(CONVERTERS[tree](pixels(tree, (1, 1, 8, 8)).astype(np.float64))),
         TypeError, "MlpMixer: pixel_values must have dtype float32, got float64 (cast it explicitly)"),
        ("a dict for a config", lambda m, tree: m.MlpMixer(CONFIG.to_dict()), TypeError,
         f"MlpMixer: config must be an ml100.configs.MixerConfig, got dict {CONFIG.to_dict()!r}; "
         "build one with MixerConfig.from_dict(...)"),
    ]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, call, error, message", error_cases(), ids=[case[0] for case in error_cases()])
def test_errors(tree, what, call, error, message):
    assert_raises_exactly(error, message, lambda: call(get_module(tree, MODULE), tree))


@pytest.mark.parametrize("tree", TREES)
def test_wrong_channel_count(tree):
    """The message names the tree's own layout."""
    layout, shape = ("(B, H, W, C)", (1, 8, 8, 3)) if tree == "tf" else ("(B, C, H, W)", (1, 3, 8, 8))
    mixer = get_module(tree, MODULE).MlpMixer(CONFIG)
    assert_raises_exactly(ValueError, f"MlpMixer: pixel_values must have in_chans = 1 channels {layout}, got shape {shape}",
                          lambda: mixer(CONVERTERS[tree](np.zeros(shape, dtype=np.float32))))


@pytest.mark.parametrize("changes, message", [
    ({"patch_size": 3}, "MixerConfig: patch_size must divide img_size = 8, got 3"),
    ({"mlp_ratio": (0.01, 4.0)},
     "MixerConfig: mlp_ratio must give MLP widths >= 1 (int(ratio * embed_dim), embed_dim = 16), got (0.01, 4.0)"),
    ({"mlp_ratio": (0.5,)}, "MixerConfig: mlp_ratio must have 2 entries, got (0.5,)"),
    ({"num_blocks": 0}, "MixerConfig: num_blocks must be an int >= 1, got 0"),
])
def test_config_errors(changes, message):
    assert_raises_exactly(ConfigError, message, lambda: MixerConfig(**{**CONFIG.to_dict(), **changes}))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 3), patch=st.sampled_from([2, 4]), blocks=st.integers(1, 2), channels=st.integers(1, 3),
       ratios=st.sampled_from([(0.5, 4.0), (1.0, 2.0), (0.25, 1.0)]), seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_timm(batch, patch, blocks, channels, ratios, seed):
    """Random small models and images: the NumPy tree's logits and every gradient equal timm's (float64)."""
    config = MixerConfig(img_size=8, patch_size=patch, in_chans=channels, num_classes=3, num_blocks=blocks,
                         embed_dim=8, mlp_ratio=ratios)
    rng = np.random.default_rng(seed)
    model = get_module("numpy", MODULE).MlpMixer(config, dtype="float64", rng=rng)
    state = {name: rng.uniform(-1.0, 1.0, value.shape) for name, value in model.canonical_state_dict().items()}
    model.load_canonical_state_dict(state)
    inputs = {"pixel_values": rng.standard_normal((batch, channels, 8, 8))}
    cotangents = [rng.standard_normal((batch, 3))]
    ours = run_numpy(WithoutParameters(model, TOKEN_FC2_BIAS), inputs, ("pixel_values",), cotangents)
    theirs = timm_reference(config)(state, inputs, cotangents, "float64")
    assert_no_failures(compare_results({"numpy": ours, "timm": theirs}, "float64"), "fuzz")
