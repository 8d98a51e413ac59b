"""Day 34: the DCGAN players in three trees, in train mode (batch statistics) and in eval mode
(running statistics), against ``torch.nn`` players (``Linear``, ``ConvTranspose2d``, ``Conv2d``,
``BatchNorm2d``) fed the same state dict and Keras players fed converted weights; and day 33's
``GANStep`` driving them for 20 float64 rounds against a pure-torch alternation, the batch-norm
buffers (running mean, variance, batches tracked) compared after every round with the weights."""
import numpy as np
import pytest
import torch

from ml100.backends import get_module
from ml100.configs import ConfigError, DCGANConfig, GANConfig
from parity_tests.generative.test_gan import SLOPE, gan_trajectory
from parity_tests.harness import (NCHW_TO_NHWC, TOLERANCES, TREES, Case, assert_raises_exactly, check_parity, check_trajectory,
                                  gradcheck_numpy, random_weights, run_tf, to_native, to_tree, torch_module_reference)

MODULE = "generative.dcgan"
CONFIG = DCGANConfig(latent_dim=3, channels=(4, 3), image_size=8, in_channels=1)
TINY = DCGANConfig(latent_dim=2, channels=(2, 2), image_size=4, in_channels=1)
BATCH = 3
KERAS = "keras.layers (Dense, Conv2DTranspose, Conv2D, BatchNormalization)"
#: torch.nn.BatchNorm2d's defaults, which every tree's BatchNorm2d shares.
BN_EPS = 1e-5


def torch_generator(config: DCGANConfig) -> torch.nn.Module:
    """The reference generator; ``net`` is an ``nn.Sequential``, so its names are the canonical ones."""
    c0, c1 = config.channels
    side = config.image_size // 4
    model = torch.nn.Module()
    model.net = torch.nn.Sequential(
        torch.nn.Linear(config.latent_dim, c0 * side * side, bias=False), torch.nn.Unflatten(1, (c0, side, side)),
        torch.nn.BatchNorm2d(c0), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(c0, c1, 4, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(c1), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(c1, config.in_channels, 4, stride=2, padding=1), torch.nn.Tanh())
    model.forward = model.net.forward
    return model


def torch_discriminator(config: DCGANConfig) -> torch.nn.Module:
    c0, c1 = config.channels
    side = config.image_size // 4
    model = torch.nn.Module()
    model.net = torch.nn.Sequential(
        torch.nn.Conv2d(config.in_channels, c1, 4, stride=2, padding=1), torch.nn.LeakyReLU(SLOPE),
        torch.nn.Conv2d(c1, c0, 4, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(c0), torch.nn.LeakyReLU(SLOPE),
        torch.nn.Flatten(), torch.nn.Linear(c0 * side * side, 1))
    model.forward = model.net.forward
    return model


#: Canonical -> Keras weight permutations: Dense (out, in) -> (in, out); Conv2D OIHW -> HWIO; torch's
#: transposed-conv (in, out, kh, kw) -> Conv2DTranspose's (kh, kw, out, in) — the same permutation (day 30).
KERAS_PERMUTATIONS = {2: (1, 0), 4: (2, 3, 1, 0)}
#: Canonical batch-norm names -> Keras' ``BatchNormalization`` variables.
KERAS_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def keras_dcgan_weights(state: dict) -> dict[str, np.ndarray]:
    """Canonical -> Keras, keyed by the canonical name whose variable receives it: kernels permuted by
    rank (:data:`KERAS_PERMUTATIONS`), biases and batch-norm vectors as they are; ``num_batches_tracked``
    has no Keras counterpart (Keras' momentum is fixed, never a cumulative average) and is dropped."""
    return {name: value.transpose(KERAS_PERMUTATIONS[value.ndim]) if value.ndim > 1 else value
            for name, value in state.items() if not name.endswith("num_batches_tracked")}


def keras_dcgan_reference(config: DCGANConfig, player: str, training: bool):
    """Keras' layers, channels-last, fed :func:`keras_dcgan_weights`: torch's ``padding=1`` is
    ``ZeroPadding2D(1)`` before a ``"valid"`` ``Conv2D`` (Keras' ``"same"`` pads bottom/right only at
    stride 2), and after a ``"valid"`` ``Conv2DTranspose`` a ``Cropping2D(1)`` (4×4 stride 2 gives
    ``2h + 2``, torch's padding 1 crops one row/column each side). ``BatchNormalization(epsilon=1e-5)``
    (Keras' default is 1e-3) called with ``training``; flatten/unflatten in the canonical (C, H, W)
    order; leaky ReLU with ``tf.where`` (Keras' rounds the slope to float32, see test_gan)."""
    import keras
    import tensorflow as tf

    c0, c1 = config.channels
    side = config.image_size // 4

    def run(state, inputs, cotangents, dtype):
        if player == "generator":
            layers = {0: keras.layers.Dense(c0 * side * side, use_bias=False, dtype=dtype),
                      2: keras.layers.BatchNormalization(epsilon=BN_EPS, dtype=dtype),
                      4: keras.layers.Conv2DTranspose(c1, 4, strides=2, use_bias=False, dtype=dtype),
                      5: keras.layers.BatchNormalization(epsilon=BN_EPS, dtype=dtype),
                      7: keras.layers.Conv2DTranspose(config.in_channels, 4, strides=2, dtype=dtype)}
            shapes = {0: (None, config.latent_dim), 2: (None, side, side, c0), 4: (None, side, side, c0),
                      5: (None, 2 * side, 2 * side, c1), 7: (None, 2 * side, 2 * side, c1)}
        else:
            layers = {0: keras.layers.Conv2D(c1, 4, strides=2, dtype=dtype),
                      2: keras.layers.Conv2D(c0, 4, strides=2, use_bias=False, dtype=dtype),
                      3: keras.layers.BatchNormalization(epsilon=BN_EPS, dtype=dtype),
                      6: keras.layers.Dense(1, dtype=dtype)}
            size = config.image_size
            shapes = {0: (None, size + 2, size + 2, config.in_channels), 2: (None, 2 * side + 2, 2 * side + 2, c1),
                      3: (None, side, side, c0), 6: (None, c0 * side * side)}
        variables = {}
        for index, layer in layers.items():
            layer.build(shapes[index])
            if isinstance(layer, keras.layers.BatchNormalization):
                variables.update({f"net.{index}.{name}": getattr(layer, keras_name) for name, keras_name in KERAS_BN_NAMES.items()})
            else:
                variables[f"net.{index}.weight"] = layer.kernel
                if layer.use_bias:
                    variables[f"net.{index}.bias"] = layer.bias
        for name, value in keras_dcgan_weights(state).items():
            variables[name].assign(value)
        params = {name: var for name, var in variables.items() if var.trainable}
        pad, crop = keras.layers.ZeroPadding2D(1, dtype=dtype), keras.layers.Cropping2D(1, dtype=dtype)

        def leaky(h):
            return tf.where(h > 0, h, SLOPE * h)

        def generator(z):
            h = tf.transpose(tf.reshape(layers[0](z), (-1, c0, side, side)), (0, 2, 3, 1))  # (N, s, s, C0)
            h = tf.nn.relu(layers[2](h, training=training))
            h = tf.nn.relu(layers[5](crop(layers[4](h)), training=training))  # (N, 2s, 2s, C1)
            return tf.tanh(crop(layers[7](h)))  # (N, 4s, 4s, C)

        def discriminator(x):
            h = leaky(layers[0](pad(x)))  # (N, 2s, 2s, C1)
            h = leaky(layers[3](layers[2](pad(h)), training=training))  # (N, s, s, C0)
            return layers[6](tf.reshape(tf.transpose(h, (0, 3, 1, 2)), (-1, c0 * side * side)))  # (N, 1)

        def to_canonical(grads):
            return {name: g.numpy().transpose(np.argsort(KERAS_PERMUTATIONS[g.ndim])) if g.ndim > 1 else g.numpy()
                    for name, g in grads.items()}

        if player == "generator":
            call = lambda z: tf.transpose(generator(z), (0, 3, 1, 2))  # canonical (N, C, H, W)
            return run_tf(call, inputs, ("z",), cotangents, params, to_canonical)
        call = lambda x: discriminator(tf.transpose(x, NCHW_TO_NHWC))
        return run_tf(call, inputs, ("x",), cotangents, params, to_canonical)

    return run


def player_case(player: str, training: bool, config=CONFIG, batch=BATCH, keras=True):
    """One player's case; ``training`` picks batch statistics (train) or the running ones (eval)."""
    is_generator = player == "generator"
    make = torch_generator if is_generator else torch_discriminator
    differentiable = ("z",) if is_generator else ("x",)
    references = {"torch.nn": torch_module_reference(lambda dtype: make(config).train(training), differentiable=differentiable)}
    excluded = {}
    if keras:
        references[KERAS] = keras_dcgan_reference(config, player, training)
        excluded[KERAS] = ("tf.nn.relu's gradient at a NaN input is 0 where torch's (and every tree's) passes the gradient "
                           "on (day 32), and Keras' batch norm reads its statistics differently at NaN/inf")
    size = config.image_size

    def inputs(dtype, rng):
        if is_generator:
            return {"z": rng.standard_normal((batch, config.latent_dim)).astype(dtype)}
        return {"x": rng.uniform(-1, 1, (batch, config.in_channels, size, size)).astype(dtype)}

    cls = "DCGANGenerator" if is_generator else "DCGANDiscriminator"
    return Case(module=MODULE, build=lambda m, dtype, rng: getattr(m, cls)(config, dtype=dtype, rng=rng).train(training),
                inputs=inputs, differentiable=differentiable, references=references, special_excluded_references=excluded,
                tf_layouts={} if is_generator else {"x": NCHW_TO_NHWC}, tf_output_layouts={0: NCHW_TO_NHWC} if is_generator else {})


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("player", ["generator", "discriminator"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_player_parity(dtype, player, training):
    check_parity(player_case(player, training), dtype)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("player", ["generator", "discriminator"])
def test_player_gradcheck(player, training):
    gradcheck_numpy(player_case(player, training, TINY, keras=False))


def test_canonical_names_are_torch_nn_names():
    for tree in TREES:
        topic = get_module(tree, MODULE)
        for build, reference in ((topic.DCGANGenerator, torch_generator), (topic.DCGANDiscriminator, torch_discriminator)):
            state = build(CONFIG, rng=np.random.default_rng(0)).canonical_state_dict()
            expected = {k: tuple(v.shape) for k, v in reference(CONFIG).state_dict().items()}
            assert {k: v.shape for k, v in state.items()} == expected, (tree, build.__name__)


def test_numpy_discriminator_used_twice_matches_autograd():
    """D(real) and D(fake) in train mode, backpropagated in reverse order: each backward uses its own
    batch's statistics, parameter gradients sum and the running statistics move twice, as in torch."""
    numpy_m = get_module("numpy", MODULE).DCGANDiscriminator(CONFIG, dtype="float64")
    state = random_weights(numpy_m.canonical_state_dict(), np.random.default_rng(4))
    numpy_m.load_canonical_state_dict(state)
    reference = torch_discriminator(CONFIG).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    rng = np.random.default_rng(5)
    xs = [rng.uniform(-1, 1, (BATCH, 1, 8, 8)) for _ in range(2)]
    gs = [rng.standard_normal((BATCH, 1)) for _ in range(2)]
    for x in xs:
        numpy_m(x)
    grads_x = [numpy_m.backward(g) for g in reversed(gs)][::-1]
    inputs = [torch.from_numpy(x).requires_grad_() for x in xs]
    sum((reference(x) * torch.from_numpy(g)).sum() for x, g in zip(inputs, gs)).backward()
    tol = TOLERANCES["float64"]
    for ours, theirs in zip(grads_x, inputs):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=tol, atol=1e-12)
    grads, after = numpy_m.canonical_grads(), numpy_m.canonical_state_dict()
    for name, param in reference.named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=tol, atol=1e-12, err_msg=name)
    for name, buffer in reference.named_buffers():
        np.testing.assert_allclose(after[name], buffer.numpy(), rtol=tol, atol=1e-12, err_msg=name)


def test_alternating_training_trajectory_float64():
    """20 rounds of day 33's GANStep on the DCGAN players in float64: both losses, every parameter
    and every batch-norm buffer equal after every round in the three trees and in pure torch."""
    trajectory = gan_trajectory(MODULE, ("DCGANGenerator", "DCGANDiscriminator"), (torch_generator, torch_discriminator),
                                CONFIG, "float64")
    histories = check_trajectory(trajectory, "float64", "DCGAN alternation")
    last = histories["numpy"][-1]
    # Two forwards of G per round (z_d, z_g), two of D in its step and one in G's: the counters say so.
    assert last["G net.2.num_batches_tracked"] == 40 and last["D net.3.num_batches_tracked"] == 60


@pytest.mark.parametrize("tree", TREES)
def test_bad_config_and_inputs(tree):
    topic = get_module(tree, MODULE)
    assert_raises_exactly(TypeError, "DCGANGenerator: config must be an ml100.configs.DCGANConfig, got GANConfig GANConfig("
                          "latent_dim=16, hidden_sizes=(64, 128), image_size=8, in_channels=1); build one with DCGANConfig(...)",
                          lambda: topic.DCGANGenerator(GANConfig()))
    generator = topic.DCGANGenerator(CONFIG, "float64", np.random.default_rng(0))
    assert_raises_exactly(ValueError, "DCGANGenerator: z must have shape (..., 3), got (2, 4)",
                          lambda: generator(to_tree(tree, np.zeros((2, 4)))))
    discriminator = topic.DCGANDiscriminator(CONFIG, "float64", np.random.default_rng(0))
    with pytest.raises(ValueError, match="Conv2d"):
        discriminator(to_native(tree, np.zeros((2, 2, 8, 8))))


def test_config_refuses_an_image_size_two_strides_cannot_halve():
    with pytest.raises(ConfigError, match="DCGANConfig: image_size must be divisible by 4"):
        DCGANConfig(image_size=6)
    with pytest.raises(ConfigError, match="DCGANConfig: channels must have 2 entries"):
        DCGANConfig(channels=(4,))
