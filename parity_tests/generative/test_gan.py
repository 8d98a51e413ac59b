"""Day 33: the MLP GAN — Generator, Discriminator, the non-saturating GANLoss and the alternating
GANStep — in three trees, against torch.nn players fed the same state dict, Keras ``Dense`` players
fed converted weights, and, for the training step, a pure-torch alternation (torch.nn modules,
``torch.optim.Adam``, ``F.binary_cross_entropy_with_logits``) compared after every step.

:func:`gan_trajectory` is written once here and reused by the DCGAN test (day 34).
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import torch.nn.functional as F

from ml100.backends import get_module
from ml100.configs import ConfigError, GANConfig
from parity_tests.harness import (NCHW_TO_NHWC, TOLERANCES, TREES, Case, Trajectory, assert_raises_exactly, check_parity,
                                  check_trajectory, gradcheck_numpy, random_weights, run_tf, scalar_and_input_grad, to_native, to_tree,
                                  torch_module_reference)

MODULE = "generative.gan"
CONFIG = GANConfig(latent_dim=3, hidden_sizes=(5, 6), image_size=4, in_channels=1)
BATCH = 3
SLOPE = 0.2
KERAS = "keras.layers.Dense"
#: Adam as DCGAN trains (Radford et al. 2016: lr 2e-4, beta1 0.5); a larger lr so 20 steps move far.
LR, BETAS = 0.02, (0.5, 0.999)
STEPS = 20


def torch_mlp(sizes: list[int]) -> list[torch.nn.Module]:
    """``Linear → LeakyReLU(0.2)`` between consecutive sizes, the last Linear bare (the trees' ``mlp_layers``)."""
    layers = []
    for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(size_in, size_out))
        if index < len(sizes) - 2:
            layers.append(torch.nn.LeakyReLU(SLOPE))
    return layers


def torch_generator(config: GANConfig) -> torch.nn.Module:
    """The reference generator: ``net`` is an ``nn.Sequential``, so its names are the canonical ones."""
    pixels = config.in_channels * config.image_size**2
    model = torch.nn.Module()
    model.net = torch.nn.Sequential(*torch_mlp([config.latent_dim, *config.hidden_sizes, pixels]), torch.nn.Tanh(),
                                    torch.nn.Unflatten(1, (config.in_channels, config.image_size, config.image_size)))
    model.forward = model.net.forward
    return model


def torch_discriminator(config: GANConfig) -> torch.nn.Module:
    pixels = config.in_channels * config.image_size**2
    model = torch.nn.Module()
    model.net = torch.nn.Sequential(torch.nn.Flatten(), *torch_mlp([pixels, *reversed(config.hidden_sizes), 1]))
    model.forward = model.net.forward
    return model


def keras_mlp_weights(state: dict) -> dict[str, np.ndarray]:
    """Canonical -> Keras ``Dense``: each ``net.i.weight`` ``(out, in)`` becomes the kernel ``(in, out)``;
    biases as they are. Keyed by the canonical name whose variable receives it."""
    return {name: value.T if name.endswith("weight") else value for name, value in state.items()}


def keras_player_reference(config: GANConfig, player: str):
    """``keras.layers.Dense`` + leaky ReLU (+ ``tanh`` and a canonical-order reshape for the generator),
    fed :func:`keras_mlp_weights`. Works in the canonical NCHW layout: the image is only reshaped,
    never convolved, so no channels-last permutation is needed. The leaky ReLU is written with
    ``tf.where``: ``keras.layers.LeakyReLU``, ``keras.ops.leaky_relu`` and ``tf.nn.leaky_relu`` all keep
    the slope as a float32 attribute, 0.2 -> 0.20000000298, a 1.5e-8 relative error in float64
    (:func:`test_keras_leaky_relu_slope_is_float32`)."""
    import keras
    import tensorflow as tf

    pixels = config.in_channels * config.image_size**2
    sizes = [config.latent_dim, *config.hidden_sizes, pixels] if player == "generator" else [pixels, *reversed(config.hidden_sizes), 1]
    # The canonical index of each Linear in `net` (the discriminator's Flatten is index 0).
    first = 0 if player == "generator" else 1
    indices = [first + 2 * k for k in range(len(sizes) - 1)]

    def run(state, inputs, cotangents, dtype):
        dense = {}
        for index, size_in, size_out in zip(indices, sizes[:-1], sizes[1:]):
            dense[index] = keras.layers.Dense(size_out, dtype=dtype)
            dense[index].build((None, size_in))
        params = {**{f"net.{i}.weight": layer.kernel for i, layer in dense.items()},
                  **{f"net.{i}.bias": layer.bias for i, layer in dense.items()}}
        for name, value in keras_mlp_weights(state).items():
            params[name].assign(value)

        def call(x):
            h = tf.reshape(x, (tf.shape(x)[0], sizes[0]))  # (N, in): canonical (C, H, W) order
            for k, index in enumerate(indices):
                h = dense[index](h)
                h = tf.where(h > 0, h, SLOPE * h) if k < len(indices) - 1 else h
            if player == "discriminator":
                return h  # (N, 1)
            return tf.reshape(tf.tanh(h), (-1, config.in_channels, config.image_size, config.image_size))  # (N, C, H, W)

        def to_canonical(grads):
            return {name: g.numpy().T if name.endswith("weight") else g.numpy() for name, g in grads.items()}

        return run_tf(call, inputs, tuple(inputs), cotangents, params, to_canonical)

    return run


def generator_case(config=CONFIG, batch=BATCH, keras=True):
    references = {"torch.nn": torch_module_reference(lambda dtype: torch_generator(config), differentiable=("z",))}
    if keras:
        references[KERAS] = keras_player_reference(config, "generator")
    return Case(module=MODULE, build=lambda m, dtype, rng: m.Generator(config, dtype=dtype, rng=rng),
                inputs=lambda dtype, rng: {"z": rng.standard_normal((batch, config.latent_dim)).astype(dtype)},
                differentiable=("z",), references=references, tf_output_layouts={0: NCHW_TO_NHWC})


def discriminator_case(config=CONFIG, batch=BATCH, keras=True):
    size = config.image_size
    references = {"torch.nn": torch_module_reference(lambda dtype: torch_discriminator(config))}
    if keras:
        references[KERAS] = keras_player_reference(config, "discriminator")
    return Case(module=MODULE, build=lambda m, dtype, rng: m.Discriminator(config, dtype=dtype, rng=rng),
                inputs=lambda dtype, rng: {"x": rng.uniform(-1, 1, (batch, config.in_channels, size, size)).astype(dtype)},
                references=references, tf_layouts={"x": NCHW_TO_NHWC})


def test_keras_leaky_relu_slope_is_float32():
    """Why the Keras reference writes its leaky ReLU with tf.where: Keras' layer rounds the slope to float32."""
    import keras
    import tensorflow as tf

    out = keras.layers.LeakyReLU(negative_slope=SLOPE, dtype="float64")(tf.constant([-1.0], tf.float64)).numpy()[0]
    assert out == -float(np.float32(SLOPE)) and out != -SLOPE


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_generator_parity(dtype):
    check_parity(generator_case(), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_discriminator_parity(dtype):
    check_parity(discriminator_case(), dtype)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 3), latent_dim=st.integers(1, 3), hidden_sizes=st.lists(st.integers(1, 4), min_size=1, max_size=2),
       image_size=st.integers(1, 3), in_channels=st.integers(1, 2))
def test_players_fuzz(batch, latent_dim, hidden_sizes, image_size, in_channels):
    """Small random widths, depths, image sizes and batches (width-1 layers and 1x1 images included),
    float64, both players against torch.nn, with the special-values pass and the empty batch."""
    config = GANConfig(latent_dim=latent_dim, hidden_sizes=tuple(hidden_sizes), image_size=image_size, in_channels=in_channels)
    check_parity(generator_case(config, batch, keras=False), "float64")
    check_parity(discriminator_case(config, batch, keras=False), "float64")


def test_generator_gradcheck():
    gradcheck_numpy(generator_case(keras=False))


def test_discriminator_gradcheck():
    gradcheck_numpy(discriminator_case(keras=False))


def test_canonical_names_are_torch_nn_names():
    for tree in TREES:
        topic = get_module(tree, MODULE)
        for build, reference in ((topic.Generator, torch_generator), (topic.Discriminator, torch_discriminator)):
            model = build(CONFIG, rng=np.random.default_rng(0))
            expected = {k: tuple(v.shape) for k, v in reference(CONFIG).state_dict().items()}
            assert {k: v.shape for k, v in model.canonical_state_dict().items()} == expected, (tree, build.__name__)


def test_initialization_same_in_every_tree():
    """One rng gives one state in every tree (torch's default Linear draws, from the rng passed in)."""
    states = {tree: get_module(tree, MODULE).Generator(CONFIG, "float64", np.random.default_rng(3)).canonical_state_dict()
              for tree in TREES}
    for tree in ("torch", "tf"):
        for name, value in states["numpy"].items():
            np.testing.assert_array_equal(states[tree][name], value, err_msg=f"{tree} {name}")


@pytest.mark.parametrize("target_is_real", [True, False])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gan_loss_matches_bce_with_constant_targets(dtype, target_is_real):
    """GANLoss(logits, real) = F.binary_cross_entropy_with_logits(logits, ones or zeros), mean; and its
    gradient (sigmoid(l) - y) / N, from the NumPy backward and from each tree's autograd. Logits up to
    ±40 so that both softplus branches and the saturated sigmoid are exercised."""
    logits = np.random.default_rng(5).uniform(-40, 40, (BATCH, 1)).astype(dtype)
    reference = torch.from_numpy(logits).requires_grad_()
    target = torch.full_like(reference, 1.0 if target_is_real else 0.0)
    expected = F.binary_cross_entropy_with_logits(reference, target)
    expected.backward()
    results = {tree: scalar_and_input_grad(tree, get_module(tree, MODULE).GANLoss(dtype=dtype), logits, target_is_real)
               for tree in TREES}
    tol = TOLERANCES[dtype]
    for tree, (value, grad) in results.items():
        np.testing.assert_allclose(value, expected.item(), rtol=tol, err_msg=tree)
        np.testing.assert_allclose(grad, reference.grad.numpy(), rtol=tol, atol=tol * 1e-3, err_msg=tree)


def numpy_and_torch(player: str, seed: int):
    numpy_m = getattr(get_module("numpy", MODULE), player)(CONFIG, dtype="float64")
    state = random_weights(numpy_m.canonical_state_dict(), np.random.default_rng(seed))
    numpy_m.load_canonical_state_dict(state)
    reference = {"Generator": torch_generator, "Discriminator": torch_discriminator}[player](CONFIG).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    return numpy_m, reference


def test_numpy_discriminator_used_twice_matches_autograd():
    """The discriminator step's pattern: D(real) and D(fake) forwarded, then backpropagated in reverse
    order; the NumPy D sums both uses' gradients (its caches stack), as autograd does."""
    model, reference = numpy_and_torch("Discriminator", 7)
    rng = np.random.default_rng(8)
    xs = [rng.uniform(-1, 1, (BATCH, 1, 4, 4)) for _ in range(2)]
    gs = [rng.standard_normal((BATCH, 1)) for _ in range(2)]
    model.zero_grad()
    for x in xs:
        model(x)
    grads_x = [model.backward(g) for g in reversed(gs)][::-1]
    inputs = [torch.from_numpy(x).requires_grad_() for x in xs]
    sum((reference(x) * torch.from_numpy(g)).sum() for x, g in zip(inputs, gs)).backward()
    tol = TOLERANCES["float64"]
    for ours, theirs in zip(grads_x, inputs):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=tol, atol=1e-12)
    for name, param in reference.named_parameters():
        np.testing.assert_allclose(model.canonical_grads()[name], param.grad.numpy(), rtol=tol, atol=1e-12, err_msg=name)


def gan_trajectory(module: str, players: tuple[str, str], torch_players: tuple, config, dtype: str, batch: int = BATCH,
                   steps: int = STEPS) -> Trajectory:
    """``steps`` rounds of :class:`GANStep` (D step on real and G(z_d), then G step on z_g through the
    updated D) with Adam for both players, from one shared state, in every tree and in a pure-torch
    alternation. After every step: both losses and every parameter and buffer of both players."""
    g_name, d_name = players
    topic = get_module("numpy", module)
    seeds = np.random.default_rng(0)
    states = {role: random_weights(getattr(topic, name)(config, dtype=dtype).canonical_state_dict(), seeds)
              for role, name in zip(("G", "D"), players)}
    size = config.image_size

    def data(t: int):
        rng = np.random.default_rng(100 + t)
        return (rng.uniform(-1, 1, (batch, config.in_channels, size, size)).astype(dtype),
                rng.standard_normal((batch, config.latent_dim)).astype(dtype),
                rng.standard_normal((batch, config.latent_dim)).astype(dtype))

    def observe(d_loss, g_loss, g_state, d_state):
        return {"d_loss": np.asarray(d_loss), "g_loss": np.asarray(g_loss),
                **{f"G {k}": v for k, v in g_state.items()}, **{f"D {k}": v for k, v in d_state.items()}}

    def start(tree, dtype):
        tree_topic, optim = get_module(tree, module), get_module(tree, "foundations.optim")
        generator, discriminator = getattr(tree_topic, g_name)(config, dtype=dtype), getattr(tree_topic, d_name)(config, dtype=dtype)
        generator.load_canonical_state_dict(states["G"])
        discriminator.load_canonical_state_dict(states["D"])
        gan = get_module(tree, MODULE)
        step = gan.GANStep(generator, discriminator, optim.Adam(dict(generator.named_parameters()), lr=LR, betas=BETAS),
                           optim.Adam(dict(discriminator.named_parameters()), lr=LR, betas=BETAS))
        return tree, generator, discriminator, step

    def step(process, t):
        tree, generator, discriminator, gan_step = process
        real, z_d, z_g = data(t)
        d_loss, g_loss = gan_step(to_native(tree, real), to_tree(tree, z_d), to_tree(tree, z_g))
        return observe(d_loss, g_loss, generator.canonical_state_dict(), discriminator.canonical_state_dict())

    def start_reference(dtype):
        players_ = []
        for role, make in zip(("G", "D"), torch_players):
            player = make(config).to(getattr(torch, dtype))
            player.load_state_dict({name: torch.from_numpy(value) for name, value in states[role].items()})
            players_.append(player)
        optimizers = [torch.optim.Adam(player.parameters(), lr=LR, betas=BETAS) for player in players_]
        return (*players_, *optimizers)

    def step_reference(process, t):
        generator, discriminator, g_optimizer, d_optimizer = process
        generator.train()
        discriminator.train()
        real, z_d, z_g = (torch.from_numpy(a) for a in data(t))
        d_optimizer.zero_grad()
        fake = generator(z_d).detach()
        real_logits, fake_logits = discriminator(real), discriminator(fake)
        d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        d_loss.backward()
        d_optimizer.step()
        g_optimizer.zero_grad()
        fake_logits = discriminator(generator(z_g))
        g_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        g_loss.backward()
        g_optimizer.step()
        as_numpy = lambda m: {k: v.detach().numpy() for k, v in m.state_dict().items()}
        return observe(d_loss.item(), g_loss.item(), as_numpy(generator), as_numpy(discriminator))

    return Trajectory(steps, start, step, {"torch.nn + torch.optim.Adam": (start_reference, step_reference)})


def test_alternating_training_trajectory_float64():
    """The issue's item: 20 alternating rounds in float64, both players' parameters and both losses
    equal after every round in the three trees and in the pure-torch alternation; and the game moved."""
    histories = check_trajectory(gan_trajectory(MODULE, ("Generator", "Discriminator"), (torch_generator, torch_discriminator),
                                                CONFIG, "float64"), "float64", "GAN alternation")
    first, last = histories["numpy"][0], histories["numpy"][-1]
    assert abs(first["d_loss"] - last["d_loss"]) > 1e-3 and abs(first["g_loss"] - last["g_loss"]) > 1e-3
    assert not np.allclose(first["G net.0.weight"], last["G net.0.weight"], rtol=0, atol=1e-3)


def test_alternating_training_trajectory_float32():
    """A few rounds in float32 (tolerance 1e-4): the same losses and parameters in every tree."""
    check_trajectory(gan_trajectory(MODULE, ("Generator", "Discriminator"), (torch_generator, torch_discriminator),
                                    CONFIG, "float32", steps=4), "float32", "GAN alternation")


def test_discriminator_step_ignores_stale_gradients():
    """The generator step leaves gradients in the NumPy discriminator (it backpropagates through it);
    the next discriminator update must not see them: a round after junk is put in D's gradients
    equals a round without."""
    topic, optim = get_module("numpy", MODULE), get_module("numpy", "foundations.optim")
    rng = np.random.default_rng(9)
    real, z_d, z_g = rng.uniform(-1, 1, (BATCH, 1, 4, 4)), rng.standard_normal((BATCH, 3)), rng.standard_normal((BATCH, 3))
    results = []
    for junk in (False, True):
        generator = topic.Generator(CONFIG, "float64", np.random.default_rng(0))
        discriminator = topic.Discriminator(CONFIG, "float64", np.random.default_rng(1))
        gan_step = topic.GANStep(generator, discriminator, optim.SGD(dict(generator.named_parameters()), lr=0.1),
                                 optim.SGD(dict(discriminator.named_parameters()), lr=0.1))
        if junk:
            for _, module in discriminator.named_modules():
                for grad in module.grads.values():
                    grad += 1.0
        results.append((gan_step(real, z_d, z_g), discriminator.canonical_state_dict()))
    assert results[0][0] == results[1][0]
    for name, value in results[0][1].items():
        np.testing.assert_array_equal(results[1][1][name], value, err_msg=name)


@pytest.mark.parametrize("tree", TREES)
def test_bad_config_and_inputs(tree):
    topic = get_module(tree, MODULE)
    for player in ("Generator", "Discriminator"):
        assert_raises_exactly(TypeError, f"{player}: config must be an ml100.configs.GANConfig, got dict {{'latent_dim': 3}}; "
                              "build one with GANConfig.from_dict(...)", lambda: getattr(topic, player)({"latent_dim": 3}))
    generator = topic.Generator(CONFIG, "float64", np.random.default_rng(0))
    assert_raises_exactly(ValueError, "Generator: z must have shape (..., 3), got (2, 4)",
                          lambda: generator(to_tree(tree, np.zeros((2, 4)))))
    assert_raises_exactly(ValueError, "Generator: z must have 2 dimensions, got shape (2, 1, 3)",
                          lambda: generator(to_tree(tree, np.zeros((2, 1, 3)))))
    assert_raises_exactly(TypeError, "Generator: z must have dtype float64, got float32 (cast it explicitly)",
                          lambda: generator(to_tree(tree, np.zeros((2, 3), np.float32))))
    discriminator = topic.Discriminator(CONFIG, "float64", np.random.default_rng(0))
    assert_raises_exactly(ValueError, "Linear: x must have shape (..., 16), got (2, 25)",
                          lambda: discriminator(to_native(tree, np.zeros((2, 1, 5, 5)))))
    assert_raises_exactly(TypeError, "GANLoss: target_is_real must be a bool (True or False), got 1",
                          lambda: topic.GANLoss(dtype="float64")(to_tree(tree, np.zeros((2, 1))), 1))


def test_config_refuses_bad_sizes():
    with pytest.raises(ConfigError, match=r"GANConfig: hidden_sizes must not be empty, got \(\)"):
        GANConfig(hidden_sizes=())
    with pytest.raises(ConfigError, match="GANConfig: latent_dim must be an int >= 1, got 0"):
        GANConfig(latent_dim=0)
