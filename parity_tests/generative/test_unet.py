"""Day 38: the U-Net noise predictor in three trees.

- ``timestep_embedding`` against diffusers' ``get_timestep_embedding`` for every flag (float32:
  diffusers computes in float32 whatever the input, so it is the float32 reference) and against the
  closed form evaluated with Python's ``math`` in float64 (the float64 reference);
- ``ResBlock`` against diffusers' own ``ResnetBlock2D`` (its state dict maps one to one: same
  names, same layouts) and against a Keras model (``GroupNormalization``, ``Conv2D``, ``Dense``);
- ``UNet`` against a torch model written here from diffusers' ``ResnetBlock2D`` and
  ``TimestepEmbedding`` blocks, ``nn.Embedding``, ``nn.Conv2d``, ``nn.ConvTranspose2d`` and
  ``nn.GroupNorm``, named as the trees name theirs (the sinusoid in float64 torch ops, since
  diffusers' is float32 only), and against the same model in Keras layers fed
  :func:`keras_unet_weights`.
"""
import itertools
import math

import numpy as np
import pytest
import torch
from diffusers.models.embeddings import TimestepEmbedding as DiffusersTimestepEmbedding
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.resnet import ResnetBlock2D
from hypothesis import given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from ml100.configs import ConfigError, UNetConfig
from parity_tests.harness import (NCHW_TO_NHWC, TOLERANCES, TREES, Case, assert_raises_exactly, check_parity,
                                  compare_tensors, gradcheck_numpy, random_weights, run_tf, tf_layout_call, to_tree,
                                  torch_functional_reference, torch_module_reference)

MODULE = "generative.unet"
CONFIG = UNetConfig(in_channels=1, image_size=8, channels=(4, 6), time_embed_dim=5, num_classes=3, groups=2)
#: One group: with a single channel per group (groups == width) the norm after the added embedding
#: would subtract it again, and its gradient would be 0 up to rounding (see the day page's exercise).
TINY = UNetConfig(in_channels=1, image_size=4, channels=(2, 2), time_embed_dim=2, num_classes=2, groups=1)
BATCH = 3
DIFFUSERS = "diffusers.get_timestep_embedding"
KERAS = "keras.layers (GroupNormalization, Conv2D, Dense)"
KERAS_UNET = "keras.layers (+ Conv2DTranspose, Embedding)"

# ---- the sinusoidal timestep embedding ---------------------------------------------------------

#: Every flag of get_timestep_embedding, each with a non-default value: (flip, shift, scale, max_period).
FLAGS = list(itertools.product((False, True), (1.0, 0.0, 0.5), (1.0, 2.5), (10000, 100)))
DIMS = (8, 7)


def math_sinusoid(timesteps, embedding_dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period) -> np.ndarray:
    """The float64 reference: the closed form element by element with Python's ``math``."""
    half = embedding_dim // 2
    rows = []
    for t in np.asarray(timesteps, dtype=np.float64):
        angles = [scale * t * math.exp(-math.log(max_period) * i / (half - downscale_freq_shift)) for i in range(half)]
        sines, cosines = [math.sin(a) for a in angles], [math.cos(a) for a in angles]
        rows.append((cosines + sines if flip_sin_to_cos else sines + cosines) + [0.0] * (embedding_dim % 2))
    return np.array(rows, dtype=np.float64).reshape(len(rows), embedding_dim)


def embedding_case(dim, flags, integer: bool = True) -> Case:
    flip, shift, scale, max_period = flags

    def inputs(dtype, rng):
        # 0, the last DDPM step, and values between (fractional ones when float).
        values = np.array([0, 1, 17, 500, 999]) if integer else np.array([0.0, 0.5, 17.25, 999.75])
        return {"timesteps": values.astype(np.int64 if integer else dtype)}

    def build(m, dtype, rng):
        return lambda t: m.timestep_embedding(t, dim, flip, shift, scale, max_period, dtype=dtype)

    references = {
        "float64 closed form (math)": lambda state, inputs, cotangents, dtype: _result(
            math_sinusoid(inputs["timesteps"], dim, flip, shift, scale, max_period)),
        DIFFUSERS: torch_functional_reference(lambda t: get_timestep_embedding(t, dim, flip, shift, scale, max_period),
                                              differentiable=(), forward_only=True),
    }
    return Case(module=MODULE, build=build, inputs=inputs, differentiable=(), references=references, forward_only=True,
                output_names=("embedding",))


def _result(output: np.ndarray):
    from parity_tests.harness import Result

    return Result([output], {}, {})


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("integer", [True, False], ids=["int64", "float"])
def test_timestep_embedding_float32_matches_diffusers_for_every_flag(dim, integer):
    """float32: three trees, diffusers and the float64 closed form, for all 24 flag combinations."""
    for flags in FLAGS:
        check_parity(embedding_case(dim, flags, integer), "float32")


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("integer", [True, False], ids=["int64", "float"])
def test_timestep_embedding_float64_matches_the_closed_form_for_every_flag(dim, integer):
    """float64: three trees and the closed form to 1e-9. diffusers casts the timesteps and its
    frequencies to float32 whatever the input (``timesteps.float()``, ``arange(dtype=float32)``), so
    it is a float32-precision reference only: checked here to the float32 tolerance."""
    for flags in FLAGS:
        case = embedding_case(dim, flags, integer)
        diffusers = case.references.pop(DIFFUSERS)
        results = check_parity(case, "float64")
        ours = results["numpy"].outputs[0]
        theirs = diffusers({}, case.inputs("float64", None), None, "float64").outputs[0]
        failures = []
        compare_tensors(f"embedding {flags}", "numpy float64 vs diffusers float32", ours, theirs, "float32", failures)
        assert not failures, failures


@settings(max_examples=15, deadline=None)
@given(dim=st.integers(1, 12), flip=st.booleans(), shift=st.sampled_from([0.0, 1.0, -0.5]),
       timesteps=st.lists(st.integers(0, 999), min_size=0, max_size=4))
def test_timestep_embedding_fuzz_against_diffusers(dim, flip, shift, timesteps):
    """Any width (odd, 1), any batch (empty too): the float32 trees agree with diffusers."""
    if dim // 2 and dim // 2 == shift:
        return
    t = np.array(timesteps, dtype=np.int64)
    expected = get_timestep_embedding(torch.from_numpy(t), dim, flip, shift).numpy()
    for tree in TREES:
        out = np.asarray(get_module(tree, MODULE).timestep_embedding(to_tree(tree, t), dim, flip, shift))
        failures = []
        compare_tensors(f"embedding dim={dim}", f"{tree} vs diffusers", out, expected, "float32", failures)
        assert out.shape == (len(timesteps), dim) and not failures, (tree, failures)


@pytest.mark.parametrize("tree", TREES)
def test_timestep_embedding_refuses_bad_arguments(tree):
    embed = get_module(tree, MODULE).timestep_embedding
    t = to_tree(tree, np.array([1, 2], dtype=np.int64))
    assert_raises_exactly(TypeError, "timestep_embedding: timesteps must have dtype int64 or float32, got int32 (cast it "
                          "explicitly)", lambda: embed(to_tree(tree, np.array([1], dtype=np.int32)), 4))
    assert_raises_exactly(ValueError, "timestep_embedding: timesteps must have 1 dimensions, got shape (2, 1)",
                          lambda: embed(to_tree(tree, np.zeros((2, 1), dtype=np.int64)), 4))
    assert_raises_exactly(ValueError, "timestep_embedding: embedding_dim must be an int >= 1, got 0", lambda: embed(t, 0))
    assert_raises_exactly(ValueError, "timestep_embedding: downscale_freq_shift (1.0) must differ from embedding_dim // 2 "
                          "(1): the frequency exponent divides by their difference", lambda: embed(t, 3))
    assert_raises_exactly(TypeError, "timestep_embedding: flip_sin_to_cos must be a bool (True or False), got 1",
                          lambda: embed(t, 4, 1))
    assert_raises_exactly(ValueError, "timestep_embedding: max_period must be > 0, got 0", lambda: embed(t, 4, max_period=0))


# ---- ResBlock ----------------------------------------------------------------------------------

#: Canonical -> Keras by rank: conv kernels OIHW -> HWIO (Conv2D), and the transposed convolution's
#: (in, out, kh, kw) -> (kh, kw, out, in) (Conv2DTranspose: the same permutation, day 30); dense
#: kernels (out, in) -> (in, out); gamma, beta and biases as they are.
TO_KERAS = {4: (2, 3, 1, 0), 2: (1, 0), 1: (0,)}
#: Stored by Keras as by torch: the class table (V, D) is Keras' Embedding.embeddings unchanged.
KERAS_AS_STORED = ("class_embedding.weight",)


def keras_permutation(name: str, ndim: int) -> tuple[int, ...]:
    return tuple(range(ndim)) if name in KERAS_AS_STORED else TO_KERAS[ndim]


def keras_unet_weights(state: dict) -> dict[str, np.ndarray]:
    """Canonical -> Keras (the day-38 conversion, ResBlock and UNet), keyed by canonical name."""
    return {name: value.transpose(keras_permutation(name, value.ndim)) for name, value in state.items()}


def keras_grads_to_canonical(grads: dict) -> dict[str, np.ndarray]:
    """Keras -> canonical: the inverse permutations; the class table's IndexedSlices made dense."""
    import tensorflow as tf

    dense = {name: tf.convert_to_tensor(g).numpy() for name, g in grads.items()}
    return {name: g.transpose(np.argsort(keras_permutation(name, g.ndim))) for name, g in dense.items()}


def built_once(make):
    """``make(dtype)`` called once per dtype: the references are loaded afresh on every run, but
    building diffusers' blocks and Keras layers again for each special-values pass would dominate
    the file's time."""
    built = {}

    def build(dtype):
        if dtype not in built:
            built[dtype] = make(dtype)
        return built[dtype]

    return build


def keras_resblock(in_channels, out_channels, temb_channels, groups, dtype, prefix=""):
    """The Keras ResBlock: ``{canonical name: variable}`` and its channels-last call ``(x, temb) -> y``."""
    import keras
    import tensorflow as tf

    layers = {"norm1": keras.layers.GroupNormalization(groups, epsilon=1e-6, dtype=dtype),
              "conv1": keras.layers.Conv2D(out_channels, 3, padding="same", dtype=dtype),
              "time_emb_proj": keras.layers.Dense(out_channels, dtype=dtype),
              "norm2": keras.layers.GroupNormalization(groups, epsilon=1e-6, dtype=dtype),
              "conv2": keras.layers.Conv2D(out_channels, 3, padding="same", dtype=dtype)}
    inputs = {"norm1": in_channels, "conv1": in_channels, "time_emb_proj": temb_channels, "norm2": out_channels,
              "conv2": out_channels}
    if in_channels != out_channels:
        layers["conv_shortcut"] = keras.layers.Conv2D(out_channels, 1, dtype=dtype)
        inputs["conv_shortcut"] = in_channels
    variables = {}
    for name, layer in layers.items():
        layer.build((None, inputs[name]) if name == "time_emb_proj" else (None, 4, 4, inputs[name]))
        pair = (layer.gamma, layer.beta) if name.startswith("norm") else (layer.kernel, layer.bias)
        variables.update({f"{prefix}{name}.weight": pair[0], f"{prefix}{name}.bias": pair[1]})

    def call(x, temb):
        h = layers["conv1"](tf.nn.silu(layers["norm1"](x)))
        h = h + layers["time_emb_proj"](tf.nn.silu(temb))[:, None, None, :]
        h = layers["conv2"](tf.nn.silu(layers["norm2"](h)))
        return (layers["conv_shortcut"](x) if "conv_shortcut" in layers else x) + h

    return variables, call


def keras_reference(build, names):
    """A reference runner for a Keras model ``build(dtype) -> (variables, call)`` taking ``names`` (``x`` NHWC)."""
    build = built_once(build)

    def run(state, inputs, cotangents, dtype):
        variables, call = build(dtype)
        for name, value in keras_unet_weights(state).items():
            variables[name].assign(value)
        return run_tf(tf_layout_call(call, names, {"x": NCHW_TO_NHWC}, {0: NCHW_TO_NHWC}), inputs,
                      tuple(name for name in names if name in ("x", "temb")), cotangents, variables,
                      keras_grads_to_canonical)

    return run


def resblock_case(in_channels=4, out_channels=6, temb_channels=5, groups=2, size=4, batch=BATCH, keras=True) -> Case:
    def inputs(dtype, rng):
        return {"x": rng.standard_normal((batch, in_channels, size, size)).astype(dtype),
                "temb": rng.standard_normal((batch, temb_channels)).astype(dtype)}

    def diffusers_block(dtype):
        return ResnetBlock2D(in_channels=in_channels, out_channels=out_channels, temb_channels=temb_channels, groups=groups,
                             eps=1e-6)

    references = {"diffusers.ResnetBlock2D": torch_module_reference(built_once(diffusers_block),
                                                                                differentiable=("x", "temb"))}
    if keras:
        references[KERAS] = keras_reference(
            lambda dtype: keras_resblock(in_channels, out_channels, temb_channels, groups, dtype), ("x", "temb"))
    return Case(module=MODULE, build=lambda m, dtype, rng: m.ResBlock(in_channels, out_channels, temb_channels, groups,
                                                                      dtype=dtype, rng=rng),
                inputs=inputs, differentiable=("x", "temb"), references=references, tf_layouts={"x": NCHW_TO_NHWC},
                tf_output_layouts={0: NCHW_TO_NHWC},
                special_finite_inputs={"temb": "a conditioning vector of 1e100 is added, per channel, to the O(1) "
                                               "convolution of the normalized x: everything after the sum is the "
                                               "rounding noise of 1e100 in every implementation (ill-conditioned by "
                                               "construction, not a framework difference); x carries the special values"})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_resblock_parity_against_diffusers_resnet_block_and_keras(dtype):
    """Widths 4 -> 6: the 1x1 shortcut convolution. The identity skip is compared inside the UNet
    (its ``down1`` and ``mid`` are diffusers' ``ResnetBlock2D`` with equal widths in the reference)."""
    check_parity(resblock_case(4, 6), dtype)


def test_resblock_gradcheck():
    gradcheck_numpy(resblock_case(2, 4, 3, 2, size=3, batch=2, keras=False))


# ---- UNet --------------------------------------------------------------------------------------


def torch_sinusoid(timesteps, dim):
    """The UNet's sinusoid (flip_sin_to_cos=True, shift 0) in torch ops of the timesteps' model dtype."""
    frequencies = torch.exp(-math.log(10000) * torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = timesteps.double()[:, None] * frequencies[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles), torch.zeros(len(timesteps), dim % 2, dtype=torch.float64)], 1)


class TorchUNet(torch.nn.Module):
    """The reference: diffusers' ``ResnetBlock2D`` and ``TimestepEmbedding`` with torch.nn's layers,
    named as the trees name theirs (the canonical state)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        c1, c2 = config.channels
        emb, groups = config.time_embed_dim, config.groups
        self.config = config

        def block(cin, cout):
            return ResnetBlock2D(in_channels=cin, out_channels=cout, temb_channels=emb, groups=groups, eps=1e-6)

        self.time_embedding = DiffusersTimestepEmbedding(c1, emb)
        if config.num_classes is not None:
            self.class_embedding = torch.nn.Embedding(config.num_classes + 1, emb)
        self.conv_in = torch.nn.Conv2d(config.in_channels, c1, 3, padding=1)
        self.down1 = block(c1, c1)
        self.down = torch.nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.down2 = block(c1, c2)
        self.mid = block(c2, c2)
        self.up = torch.nn.ConvTranspose2d(c2, c2, 4, stride=2, padding=1)
        self.up1 = block(c2 + c1, c1)
        self.conv_norm_out = torch.nn.GroupNorm(groups, c1, eps=1e-6)
        self.conv_out = torch.nn.Conv2d(c1, config.in_channels, 3, padding=1)

    def forward(self, x, timesteps, labels=None):
        emb = self.time_embedding(torch_sinusoid(timesteps, self.config.channels[0]).to(x.dtype))
        if self.config.num_classes is not None:
            emb = emb + self.class_embedding(labels)
        skip = self.down1(self.conv_in(x), emb)
        h = self.mid(self.down2(self.down(skip), emb), emb)
        h = self.up1(torch.cat([self.up(h), skip], 1), emb)
        return self.conv_out(torch.nn.functional.silu(self.conv_norm_out(h)))


def keras_unet(config: UNetConfig, dtype):
    """The Keras UNet, from Keras layers named by canonical name: ``Conv2D`` (``"same"`` at stride 1;
    ``ZeroPadding2D(1)`` + ``"valid"`` for the stride-2 ``down``, torch's symmetric padding),
    ``Conv2DTranspose`` ``"valid"`` + ``Cropping2D(1)`` (torch's ``padding=1``), ``Dense``,
    ``Embedding``, ``GroupNormalization`` and :func:`keras_resblock`; the sinusoid is
    :func:`math_sinusoid` (the timesteps are constants)."""
    import keras
    import tensorflow as tf

    c1, c2 = config.channels
    emb, groups = config.time_embed_dim, config.groups
    layers = {"time_embedding.linear_1": keras.layers.Dense(emb, dtype=dtype),
              "time_embedding.linear_2": keras.layers.Dense(emb, dtype=dtype),
              "conv_in": keras.layers.Conv2D(c1, 3, padding="same", dtype=dtype),
              "down": keras.layers.Conv2D(c1, 3, strides=2, dtype=dtype),
              "up": keras.layers.Conv2DTranspose(c2, 4, strides=2, dtype=dtype),
              "conv_norm_out": keras.layers.GroupNormalization(groups, epsilon=1e-6, dtype=dtype),
              "conv_out": keras.layers.Conv2D(config.in_channels, 3, padding="same", dtype=dtype)}
    inputs = {"time_embedding.linear_1": (None, c1), "time_embedding.linear_2": (None, emb),
              "conv_in": (None, 4, 4, config.in_channels), "down": (None, 4, 4, c1), "up": (None, 2, 2, c2),
              "conv_norm_out": (None, 4, 4, c1), "conv_out": (None, 4, 4, c1)}
    variables = {}
    for name, layer in layers.items():
        layer.build(inputs[name])
        pair = (layer.gamma, layer.beta) if name == "conv_norm_out" else (layer.kernel, layer.bias)
        variables.update({f"{name}.weight": pair[0], f"{name}.bias": pair[1]})
    if config.num_classes is not None:
        layers["class_embedding"] = keras.layers.Embedding(config.num_classes + 1, emb, dtype=dtype)
        layers["class_embedding"].build((None,))
        variables["class_embedding.weight"] = layers["class_embedding"].embeddings
    blocks = {}
    for name, widths in (("down1", (c1, c1)), ("down2", (c1, c2)), ("mid", (c2, c2)), ("up1", (c2 + c1, c1))):
        block_variables, blocks[name] = keras_resblock(*widths, emb, groups, dtype, prefix=f"{name}.")
        variables.update(block_variables)
    pad, crop = keras.layers.ZeroPadding2D(1, dtype=dtype), keras.layers.Cropping2D(1, dtype=dtype)

    def call(x, timesteps, labels=None):
        sinusoid = tf.constant(math_sinusoid(timesteps.numpy(), c1, True, 0.0, 1.0, 10000), dtype=dtype)
        c = layers["time_embedding.linear_2"](tf.nn.silu(layers["time_embedding.linear_1"](sinusoid)))
        if labels is not None:
            c = c + layers["class_embedding"](labels)
        skip = blocks["down1"](layers["conv_in"](x), c)
        h = blocks["mid"](blocks["down2"](layers["down"](pad(skip)), c), c)
        h = blocks["up1"](tf.concat([crop(layers["up"](h)), skip], axis=-1), c)
        return layers["conv_out"](tf.nn.silu(layers["conv_norm_out"](h)))

    return variables, call


def unet_case(config=CONFIG, batch=BATCH) -> Case:
    def inputs(dtype, rng):
        x = {"x": rng.standard_normal((batch, config.in_channels, config.image_size, config.image_size)).astype(dtype),
             "timesteps": rng.integers(0, 1000, batch).astype(np.int64)}
        if config.num_classes is not None:
            # Every class and the null class (num_classes) appear.
            x["labels"] = (np.arange(batch) % (config.num_classes + 1)).astype(np.int64)
        return x

    names = ("x", "timesteps") if config.num_classes is None else ("x", "timesteps", "labels")
    references = {"torch.nn + diffusers blocks": torch_module_reference(built_once(lambda dtype: TorchUNet(config))),
                  KERAS_UNET: keras_reference(lambda dtype: keras_unet(config, dtype), names)}
    return Case(module=MODULE, build=lambda m, dtype, rng: m.UNet(config, dtype=dtype, rng=rng), inputs=inputs,
                references=references,
                tf_layouts={"x": NCHW_TO_NHWC}, tf_output_layouts={0: NCHW_TO_NHWC}, output_names=("eps",))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_unet_parity_against_torch_and_keras(dtype):
    # One sample per class and one for the null class.
    check_parity(unet_case(batch=CONFIG.num_classes + 1), dtype)


def test_unconditional_unet_parity_against_torch_and_keras():
    """No class embedding, no labels input. float32 keeps the file fast: everything but the missing
    class row is the conditional model's, checked in float64 with special values above."""
    check_parity(unet_case(UNetConfig(image_size=4, channels=(4, 4), time_embed_dim=3, num_classes=None, groups=2)),
                 "float32")


def test_unet_gradcheck():
    gradcheck_numpy(unet_case(TINY, batch=2))


def test_canonical_names_are_the_reference_names():
    names = list(TorchUNet(CONFIG).state_dict())
    for tree in TREES:
        model = get_module(tree, MODULE).UNet(CONFIG, rng=np.random.default_rng(0))
        assert list(model.canonical_state_dict()) == names, tree


def numpy_and_torch(seed: int):
    model = get_module("numpy", MODULE).UNet(CONFIG, dtype="float64")
    state = random_weights(model.canonical_state_dict(), np.random.default_rng(seed))
    model.load_canonical_state_dict(state)
    reference = TorchUNet(CONFIG).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    return model, reference


def test_numpy_unet_used_twice_matches_autograd():
    """Two batches through one model, backpropagated in reverse order: every layer's cache stacks
    and the NumPy model ends with the sum of both uses' gradients, as autograd does."""
    model, reference = numpy_and_torch(6)
    rng = np.random.default_rng(7)
    batches = [(rng.standard_normal((2, 1, 8, 8)), np.array([3, 900]), np.array([0, 3])) for _ in range(2)]
    cotangents = [rng.standard_normal((2, 1, 8, 8)) for _ in range(2)]
    for x, t, y in batches:
        model(x, t, y)
    grad_xs = [model.backward(g) for g in reversed(cotangents)][::-1]
    total, inputs = 0, []
    for (x, t, y), g in zip(batches, cotangents):
        tx = torch.from_numpy(x).requires_grad_()
        inputs.append(tx)
        total = total + (reference(tx, torch.from_numpy(t), torch.from_numpy(y)) * torch.from_numpy(g)).sum()
    total.backward()
    ours = model.canonical_grads()
    for name, param in reference.named_parameters():
        np.testing.assert_allclose(ours[name], param.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12, err_msg=name)
    for grad_x, tx in zip(grad_xs, inputs):
        np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12)


@settings(max_examples=4, deadline=None)
@given(image_size=st.sampled_from([2, 6]), in_channels=st.integers(1, 2), batch=st.integers(0, 3),
       conditional=st.booleans())
def test_unet_fuzz_against_torch_reference(image_size, in_channels, batch, conditional):
    """Other image sizes (6: an odd half resolution, 3x3), channels and batches (empty too): the NumPy
    UNet's output, input gradient and parameter gradients equal the torch reference's in float64."""
    config = UNetConfig(in_channels=in_channels, image_size=image_size, channels=(2, 4), time_embed_dim=3,
                        num_classes=2 if conditional else None, groups=1)
    model = get_module("numpy", MODULE).UNet(config, dtype="float64")
    state = random_weights(model.canonical_state_dict(), np.random.default_rng(batch))
    model.load_canonical_state_dict(state)
    reference = TorchUNet(config).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    rng = np.random.default_rng(image_size)
    x, g = (rng.standard_normal((batch, in_channels, image_size, image_size)) for _ in range(2))
    t = rng.integers(0, 1000, batch)
    labels = rng.integers(0, 3, batch) if conditional else None
    out = model(x, t, labels)
    grad_x = model.backward(g)
    tx = torch.from_numpy(x).requires_grad_()
    expected = reference(tx, torch.from_numpy(t), None if labels is None else torch.from_numpy(labels))
    (expected * torch.from_numpy(g)).sum().backward()
    failures = []
    compare_tensors("eps", "numpy vs torch reference", out, expected.detach().numpy(), "float64", failures)
    compare_tensors("grad x", "numpy vs torch reference", grad_x, tx.grad.numpy(), "float64", failures)
    ours = model.canonical_grads()
    for name, param in reference.named_parameters():
        compare_tensors(f"grad {name}", "numpy vs torch reference", ours[name], param.grad.numpy(), "float64", failures)
    assert not failures, failures


@pytest.mark.parametrize("tree", TREES)
def test_missing_labels_mean_the_null_class(tree):
    """``labels=None`` is the null class (id ``num_classes``) for every sample: classifier-free guidance's
    unconditional prediction."""
    model = get_module(tree, MODULE).UNet(CONFIG, dtype="float64", rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 8, 1) if tree == "tf" else (2, 1, 8, 8))
    t = np.array([10, 500])
    with get_module(tree, "module").no_grad():
        unconditional = model(to_tree(tree, x), to_tree(tree, t))
        null = model(to_tree(tree, x), to_tree(tree, t), to_tree(tree, np.full(2, CONFIG.num_classes)))
        conditional = model(to_tree(tree, x), to_tree(tree, t), to_tree(tree, np.array([0, 1])))
    np.testing.assert_array_equal(np.asarray(unconditional), np.asarray(null))
    assert not np.allclose(np.asarray(unconditional), np.asarray(conditional))


@pytest.mark.parametrize("tree", TREES)
def test_unet_refuses_bad_inputs(tree):
    topic = get_module(tree, MODULE)
    model = topic.UNet(CONFIG, dtype="float64", rng=np.random.default_rng(0))
    x = to_tree(tree, np.zeros((2, 8, 8, 1) if tree == "tf" else (2, 1, 8, 8)))
    t = to_tree(tree, np.array([1, 2]))
    labels = to_tree(tree, np.array([0, 1]))
    assert_raises_exactly(TypeError, "UNet: timesteps must have dtype int64, got float64 (cast it explicitly)",
                          lambda: model(x, to_tree(tree, np.array([1.0, 2.0])), labels))
    assert_raises_exactly(ValueError, "UNet: timesteps must have shape (2,), got (3,)",
                          lambda: model(x, to_tree(tree, np.array([1, 2, 3])), labels))
    assert_raises_exactly(ValueError, "UNet: labels must lie in [0, 4), got out-of-range values [4]",
                          lambda: model(x, t, to_tree(tree, np.array([0, 4]))))
    assert_raises_exactly(TypeError, "UNet: labels must have dtype int64, got int32 (cast it explicitly)",
                          lambda: model(x, t, to_tree(tree, np.array([0, 1], dtype=np.int32))))
    layout = "(N, 8, 8, 1) (channels last)" if tree == "tf" else "(N, 1, 8, 8)"
    wrong = (2, 4, 4, 1) if tree == "tf" else (2, 1, 4, 4)
    assert_raises_exactly(ValueError, f"UNet: x must have shape {layout}, got {wrong}",
                          lambda: model(to_tree(tree, np.zeros(wrong)), t, labels))
    unconditional = topic.UNet(UNetConfig(channels=(4, 4), groups=2, num_classes=None), dtype="float64")
    assert_raises_exactly(ValueError, "UNet: labels must be None for an unconditional model (config.num_classes is None)",
                          lambda: unconditional(x, t, labels))
    with pytest.raises(TypeError, match="UNet: config must be an ml100.configs.UNetConfig"):
        topic.UNet({"channels": (4, 4)})
    block = topic.ResBlock(4, 4, 3, 2, dtype="float64")
    bad_temb = to_tree(tree, np.zeros((3, 3)))
    assert_raises_exactly(ValueError, "ResBlock: temb must have one row per sample of x (2), got shape (3, 3)",
                          lambda: block(to_tree(tree, np.zeros((2, 4, 4, 4))), bad_temb))


def test_config_refuses_groups_that_do_not_divide_the_widths():
    with pytest.raises(ConfigError, match="groups must divide both widths"):
        UNetConfig(channels=(16, 30), groups=4)
    with pytest.raises(ConfigError, match="leave at least 2 channels per group"):
        UNetConfig(channels=(8, 16), groups=8)
    with pytest.raises(ConfigError, match="image_size must be even"):
        UNetConfig(image_size=7)
