"""Days 55-56: the Vision Transformer (Hugging Face's ``ViTModel`` / ``ViTForImageClassification``) in three trees.

Reference: ``transformers.ViTModel(config, add_pooling_layer=False)`` and
``ViTForImageClassification`` built offline from a small ``ViTConfig`` (no download), the canonical
state loaded through :func:`vit_state_to_hf`. Every output and every gradient (pixels and
parameters) is compared in float64 and float32; the TF tree takes NHWC pixels (the harness
permutes them).

Two framework differences, each pinned by a test:

- Names. The canonical state keeps the names of the ViT checkpoints on the Hub
  (``encoder.layer.0.attention.attention.query.weight``, ...), which every release before
  transformers 5 used as module names. The installed transformers (5.x) renamed its modules
  (``layers.0.attention.q_proj``, ``o_proj``, ``mlp.fc1``, ``mlp.fc2``) and converts old
  checkpoints on load; :func:`vit_state_to_hf` is that renaming, written once
  (:func:`test_hf_state_dict_round_trip`).
- Precision. Hugging Face's eager attention runs its softmax in float32 whatever the model's
  dtype, so a ``.double()`` eager model is about 1e-8 off (:func:`test_hf_eager_softmax_is_float32`).
  The float64 reference therefore uses ``attn_implementation="sdpa"`` (torch's math kernel, in
  float64); float32 uses eager.

Hugging Face refuses an empty batch (its ``view(..., -1, head_dim)`` is ambiguous on 0 elements);
the trees return empty outputs (:func:`test_empty_batch`); the harness's empty-batch pass leaves the
refusing reference out and the NaN/inf pass compares it like a fourth tree.
"""
import re

import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import ViTConfig as HFViTConfig
from transformers import ViTForImageClassification as HFViTForImageClassification
from transformers import ViTModel as HFViTModel

from ml100.backends import get_module
from ml100.configs import ConfigError, ViTConfig
from parity_tests.harness import (NCHW_TO_NHWC, TREES, Case, WithoutParameters, assert_no_failures, assert_raises_exactly,
                                  check_parity, compare_results, gradcheck_numpy, run_numpy, run_torch, run_tree)

MODULE = "modern.vit"
B = 2
#: The issue's reference shapes: 8x8 one-channel images, 4x4 patches (4 patches + the class token).
CONFIG = ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=2,
                   num_attention_heads=4, intermediate_size=48, layer_norm_eps=1e-6, num_labels=10)
#: 2x2 patches (16 + 1 tokens), three channels, no qkv biases.
SMALL_PATCHES = ViTConfig(image_size=8, patch_size=2, num_channels=3, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=40, qkv_bias=False, num_labels=3)
#: The smallest model for finite differences.
TINY = ViTConfig(image_size=4, patch_size=2, num_channels=1, hidden_size=4, num_hidden_layers=1,
                 num_attention_heads=2, intermediate_size=6, layer_norm_eps=1e-5, num_labels=3)

#: Each tree's array type from a NumPy array.
CONVERTERS = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}

#: Inside an encoder layer: Hub checkpoint names (the canonical ones) -> the installed transformers 5 module names.
LAYER_RENAMES = {"attention.attention.query": "attention.q_proj", "attention.attention.key": "attention.k_proj",
                 "attention.attention.value": "attention.v_proj", "attention.output.dense": "attention.o_proj",
                 "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
CANONICAL_LAYER = re.compile(r"^(vit\.)?encoder\.layer\.(\d+)\.(.*)$")
HF_LAYER = re.compile(r"^(vit\.)?layers\.(\d+)\.(.*)$")


def _rename_layer(name: str, pattern: re.Pattern, layer_prefix: str, renames: dict) -> str:
    """``name`` with its encoder-layer part renamed by ``renames`` (other names unchanged)."""
    match = pattern.match(name)
    if match is None:
        return name
    model_prefix, index, rest = match.groups()
    for old, new in renames.items():
        if rest.startswith(old + "."):
            rest = new + rest[len(old):]
            break
    return f"{model_prefix or ''}{layer_prefix}{index}.{rest}"


def vit_state_to_hf(state: dict) -> dict:
    """The canonical ViT state (Hub checkpoint names) -> the installed transformers' ``state_dict`` names;
    layouts are the same (``nn.Linear`` ``(out, in)``, ``Conv2d`` OIHW)."""
    return {_rename_layer(name, CANONICAL_LAYER, "layers.", LAYER_RENAMES): value for name, value in state.items()}


def hf_state_to_vit(hf_state: dict) -> dict:
    """The installed transformers' ViT ``state_dict`` -> the canonical state, the inverse of :func:`vit_state_to_hf`."""
    inverse = {new: old for old, new in LAYER_RENAMES.items()}
    return {_rename_layer(name, HF_LAYER, "encoder.layer.", inverse): value for name, value in hf_state.items()}


#: A key bias adds q . b_k to every score of a row: softmax ignores it, so its gradient is 0 in exact
#: arithmetic and rounding noise (~1e-16) in every implementation, which no relative tolerance can
#: compare (day 67's test_gqa has the same rule). The parity cases leave these tensors out;
#: test_key_bias_gradient_is_zero checks them against the scale of the query bias's gradient instead.
KEY_BIAS = re.compile(r"encoder\.layer\.\d+\.attention\.attention\.key\.bias$")


def _without_key_bias(named: dict) -> dict:
    """``named`` less the key biases (:data:`KEY_BIAS`)."""
    return {name: value for name, value in named.items() if not KEY_BIAS.search(name)}


def hf_model(config: ViTConfig, dtype: str, classifier: bool):
    """Hugging Face's ViT of the same architecture, built offline: sdpa in float64 (see the module docstring)."""
    hf_config = HFViTConfig(**config.to_dict(), attn_implementation="sdpa" if dtype == "float64" else "eager")
    model = HFViTForImageClassification(hf_config) if classifier else HFViTModel(hf_config, add_pooling_layer=False)
    return model.to(getattr(torch, dtype)).eval()


class HFCalled(torch.nn.Module):
    """A Hugging Face ViT called as the trees are: one tensor out (logits or the last hidden state)."""

    def __init__(self, model, classifier: bool):
        super().__init__()
        self.model, self.classifier = model, classifier

    def forward(self, pixel_values):
        out = self.model(pixel_values=pixel_values)
        return out.logits if self.classifier else out.last_hidden_state


def hf_reference(config: ViTConfig, classifier: bool):
    def run(state, inputs, cotangents, dtype):
        model = hf_model(config, dtype, classifier)
        model.load_state_dict({name: torch.from_numpy(value) for name, value in vit_state_to_hf(state).items()})
        # The gradients come back under the canonical names.
        hf_params = dict(model.named_parameters())
        params = _without_key_bias({name: hf_params[hf_name]
                                    for name, hf_name in zip(state, vit_state_to_hf(dict.fromkeys(state)))})
        return run_torch(HFCalled(model, classifier), inputs, ("pixel_values",), cotangents, params)
    return run


def vit_case(config: ViTConfig, classifier: bool = True, batch: int = B) -> Case:
    model_class = "ViTForImageClassification" if classifier else "ViTModel"
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: WithoutParameters(getattr(m, model_class)(config, dtype=dtype, rng=rng), KEY_BIAS),
        inputs=lambda dtype, rng: {"pixel_values": rng.standard_normal(
            (batch, config.num_channels, config.image_size, config.image_size)).astype(dtype)},
        differentiable=("pixel_values",),
        references={f"transformers {model_class}": hf_reference(config, classifier)},
        tf_layouts={"pixel_values": NCHW_TO_NHWC},
        output_names=("logits" if classifier else "last_hidden_state",),
    )


CASES = {
    "ViTForImageClassification, 4x4 patches": lambda: vit_case(CONFIG),
    "ViTModel, 4x4 patches": lambda: vit_case(CONFIG, classifier=False),
    "ViTModel, 2x2 patches, 3 channels, no qkv bias": lambda: vit_case(SMALL_PATCHES, classifier=False),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    check_parity(CASES[name](), dtype)


@pytest.mark.parametrize("classifier", [True, False], ids=["classifier", "model"])
def test_gradcheck_numpy(classifier):
    gradcheck_numpy(vit_case(TINY, classifier, batch=2))


@pytest.mark.parametrize("tree", TREES)
def test_key_bias_gradient_is_zero(tree):
    """Softmax is blind to the key bias (it shifts a whole row of scores by q . b_k): in every tree its
    gradient is rounding noise, below 1e-12 of the query bias's gradient."""
    case = vit_case(CONFIG)
    rng = np.random.default_rng(11)
    model = case.build(get_module(tree, MODULE), "float64", rng).model
    model.load_canonical_state_dict({name: rng.uniform(-1.0, 1.0, value.shape)
                                     for name, value in model.canonical_state_dict().items()})
    inputs = case.inputs("float64", rng)
    result = run_tree(tree, model, inputs, ("pixel_values",), [rng.standard_normal((B, CONFIG.num_labels))],
                      case.tf_layouts)
    for layer in range(CONFIG.num_hidden_layers):
        prefix = f"vit.encoder.layer.{layer}.attention.attention"
        query_scale = np.abs(result.param_grads[f"{prefix}.query.bias"]).max()
        assert query_scale > 1e-3
        assert np.abs(result.param_grads[f"{prefix}.key.bias"]).max() <= 1e-12 * query_scale, (tree, layer)


def test_hf_eager_softmax_is_float32():
    """A ``.double()`` eager Hugging Face ViT misses the float64 result (sdpa, and the NumPy tree) by more
    than float64's tolerance but less than float32's: its softmax ran in float32."""
    rng = np.random.default_rng(4)
    state = {name: rng.uniform(-1.0, 1.0, value.shape) for name, value in
             get_module("numpy", MODULE).ViTModel(CONFIG, dtype="float64").canonical_state_dict().items()}
    pixels = rng.standard_normal((B, 1, 8, 8))
    outputs = {}
    for implementation in ("eager", "sdpa"):
        model = HFViTModel(HFViTConfig(**CONFIG.to_dict(), attn_implementation=implementation),
                           add_pooling_layer=False).double().eval()
        model.load_state_dict({name: torch.from_numpy(value) for name, value in vit_state_to_hf(state).items()})
        with torch.no_grad():
            outputs[implementation] = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    numpy_vit = get_module("numpy", MODULE).ViTModel(CONFIG, dtype="float64")
    numpy_vit.load_canonical_state_dict(state)
    ours = numpy_vit(pixels)
    scale = np.abs(ours).max()
    assert np.abs(outputs["sdpa"] - ours).max() <= 1e-12 * scale
    assert 1e-9 * scale < np.abs(outputs["eager"] - ours).max() < 1e-5 * scale


def test_hf_state_dict_round_trip():
    """A Hugging Face state dict loads into every tree through ``hf_state_to_vit``, and each tree's canonical
    state goes back through ``vit_state_to_hf`` into Hugging Face unchanged (strict), for both models."""
    for classifier in (False, True):
        model = hf_model(CONFIG, "float32", classifier)
        hf_state = {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}
        for tree in TREES:
            vit = get_module(tree, MODULE)
            ours = (vit.ViTForImageClassification if classifier else vit.ViTModel)(CONFIG, rng=np.random.default_rng(1))
            ours.load_canonical_state_dict(hf_state_to_vit(hf_state))
            back = vit_state_to_hf(ours.canonical_state_dict())
            assert sorted(back) == sorted(hf_state), tree
            for name, value in hf_state.items():
                np.testing.assert_array_equal(back[name], value, err_msg=f"{tree} {name}")
    assert "vit.encoder.layer.1.attention.attention.query.weight" in hf_state_to_vit(hf_state)


def test_empty_batch():
    """B = 0: Hugging Face refuses; every tree returns empty logits, and the NumPy backward an empty pixel gradient."""
    model = hf_model(CONFIG, "float64", classifier=True)
    with pytest.raises(RuntimeError, match="ambiguous"):
        model(pixel_values=torch.zeros((0, 1, 8, 8), dtype=torch.float64))
    empty = np.zeros((0, 1, 8, 8))
    for tree in TREES:
        vit = get_module(tree, MODULE).ViTForImageClassification(CONFIG, dtype="float64")
        pixels = empty.transpose(0, 2, 3, 1) if tree == "tf" else empty
        logits = vit(CONVERTERS[tree](pixels))
        assert tuple(logits.shape) == (0, CONFIG.num_labels), tree
    numpy_vit = get_module("numpy", MODULE).ViTForImageClassification(CONFIG, dtype="float64")
    numpy_vit(empty)
    assert numpy_vit.backward(np.zeros((0, CONFIG.num_labels))).shape == empty.shape


def test_numpy_model_used_twice_sums_gradients():
    """Two forwards, two backwards (LIFO) in the NumPy tree = autograd through the sum of both in torch."""
    rng = np.random.default_rng(7)
    models = {tree: get_module(tree, MODULE).ViTForImageClassification(CONFIG, dtype="float64",
                                                                       rng=np.random.default_rng(0))
              for tree in ("numpy", "torch")}
    models["torch"].load_canonical_state_dict(models["numpy"].canonical_state_dict())
    pixels = [rng.standard_normal((B, 1, 8, 8)) for _ in range(2)]
    cotangents = [rng.standard_normal((B, CONFIG.num_labels)) for _ in range(2)]
    numpy_vit = models["numpy"]
    numpy_vit.zero_grad()
    numpy_vit(pixels[0])
    numpy_vit(pixels[1])
    numpy_vit.backward(cotangents[1])
    numpy_vit.backward(cotangents[0])
    total = sum((models["torch"](torch.from_numpy(x)) * torch.from_numpy(g)).sum() for x, g in zip(pixels, cotangents))
    total.backward()
    grads = numpy_vit.canonical_grads()
    for name, param in models["torch"].named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def error_cases():
    """(what, call(module, tree) -> None, error type, message): one bad argument each, the same text in every
    tree (the channel message names each tree's layout: ``None`` here, built in :func:`test_errors`)."""
    def pixels(tree, shape):
        # The TF tree takes channels-last images: the same bad image, permuted.
        array = np.zeros(shape, dtype=np.float32)
        return array.transpose(0, 2, 3, 1) if tree == "tf" and array.ndim == 4 else array
    return [
        ("wrong channel count", lambda m, tree: m.ViTModel(CONFIG)(CONVERTERS[tree](pixels(tree, (1, 3, 8, 8)))),
         ValueError, None),
        ("wrong image size", lambda m, tree: m.ViTModel(CONFIG)(CONVERTERS[tree](pixels(tree, (1, 1, 12, 12)))),
         ValueError, "ViTModel: pixel_values must be 8x8 images (image_size), got 12x12"),
        ("3-d pixels", lambda m, tree: m.ViTModel(CONFIG)(CONVERTERS[tree](pixels(tree, (1, 8, 8)))),
         ValueError, "ViTModel: pixel_values must have 4 dimensions, got shape (1, 8, 8)"),
        ("float64 pixels into a float32 model",
         lambda m, tree: m.ViTModel(CONFIG)(CONVERTERS[tree](pixels(tree, (1, 1, 8, 8)).astype(np.float64))),
         TypeError, "ViTModel: pixel_values must have dtype float32, got float64 (cast it explicitly)"),
        ("a dict for a config", lambda m, tree: m.ViTForImageClassification(CONFIG.to_dict()), TypeError,
         f"ViTForImageClassification: config must be an ml100.configs.ViTConfig, got dict {CONFIG.to_dict()!r}; "
         "build one with ViTConfig.from_dict(...)"),
    ]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, call, error, message", error_cases(), ids=[case[0] for case in error_cases()])
def test_errors(tree, what, call, error, message):
    if message is None:
        # The layout in the message is the tree's own.
        layout = "(B, H, W, C)" if tree == "tf" else "(B, C, H, W)"
        shape = (1, 8, 8, 3) if tree == "tf" else (1, 3, 8, 8)
        message = f"ViTModel: pixel_values must have num_channels = 1 channels {layout}, got shape {shape}"
    assert_raises_exactly(error, message, lambda: call(get_module(tree, MODULE), tree))


@pytest.mark.parametrize("changes, message", [
    ({"patch_size": 3}, "ViTConfig: patch_size must divide image_size = 8, got 3"),
    ({"num_attention_heads": 5}, "ViTConfig: num_attention_heads must divide hidden_size = 32, got 5"),
    ({"hidden_dropout_prob": 0.1}, "ViTConfig: hidden_dropout_prob must be 0.0 (this ViT has no dropout), got 0.1"),
    ({"layer_norm_eps": 0.0}, "ViTConfig: layer_norm_eps must be > 0 (a constant row would divide 0 by 0), got 0.0"),
    ({"hidden_act": "relu"}, "ViTConfig: hidden_act must be one of: gelu, got 'relu'"),
])
def test_config_errors(changes, message):
    assert_raises_exactly(ConfigError, message, lambda: ViTConfig(**{**CONFIG.to_dict(), **changes}))


def test_parameter_count_and_initial_state_match_across_trees():
    """The same parameters as Hugging Face's classifier, and one rng draws the same initial state in every tree."""
    expected = sum(p.numel() for p in hf_model(CONFIG, "float32", classifier=True).parameters())
    states = {tree: get_module(tree, MODULE).ViTForImageClassification(CONFIG, dtype="float64",
                                                                       rng=np.random.default_rng(3))
              .canonical_state_dict() for tree in TREES}
    for tree, state in states.items():
        assert sum(v.size for v in state.values()) == expected, tree
        for name, value in states["numpy"].items():
            np.testing.assert_array_equal(state[name], value, err_msg=f"{tree} {name}")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 3), patch=st.sampled_from([2, 4]), heads=st.sampled_from([1, 2, 4]),
       layers=st.integers(1, 2), channels=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_hugging_face(batch, patch, heads, layers, channels, seed):
    """Random small models and images: the NumPy tree's logits and every gradient equal Hugging Face's (float64)."""
    config = ViTConfig(image_size=8, patch_size=patch, num_channels=channels, hidden_size=8, num_hidden_layers=layers,
                       num_attention_heads=heads, intermediate_size=6, num_labels=3)
    rng = np.random.default_rng(seed)
    model = get_module("numpy", MODULE).ViTForImageClassification(config, dtype="float64", rng=rng)
    state = {name: rng.uniform(-1.0, 1.0, value.shape) for name, value in model.canonical_state_dict().items()}
    model.load_canonical_state_dict(state)
    inputs = {"pixel_values": rng.standard_normal((batch, channels, 8, 8))}
    cotangents = [rng.standard_normal((batch, 3))]
    ours = run_numpy(WithoutParameters(model, KEY_BIAS), inputs, ("pixel_values",), cotangents)
    theirs = hf_reference(config, True)(state, inputs, cotangents, "float64")
    assert_no_failures(compare_results({"numpy": ours, "transformers": theirs}, "float64"), "fuzz")
