"""Day 31: the convolutional autoencoder in three trees, against a torch.nn model built from
``nn.Conv2d``, ``nn.Linear`` and ``nn.ConvTranspose2d`` (same state dict) and a Keras model of
``Conv2D``/``Dense``/``Conv2DTranspose`` fed converted weights (the day-32 conversion,
:func:`keras_vae_weights`, through the shared :func:`keras_conv_stacks`); and the reference check
of CURRICULUM: the reconstruction error falls, identically in the three trees."""
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from ml100.configs import AutoencoderConfig, ConfigError
from ml100.data import load_digits_split
from parity_tests.generative.test_vae import keras_conv_stacks, keras_to_canonical
from parity_tests.harness import (NCHW_TO_NHWC, TOLERANCES, TREES, Case, Trajectory, assert_raises_exactly, check_parity,
                                  check_trajectory, gradcheck_numpy, random_weights, to_tree, torch_module_reference)

MODULE = "generative.autoencoder"
CONFIG = AutoencoderConfig(in_channels=1, channels=(3, 4), latent_dim=3, image_size=8)
TINY = AutoencoderConfig(in_channels=1, channels=(2, 2), latent_dim=2, image_size=4)
BATCH = 2
KERAS = "keras.layers (Conv2D, Dense, Conv2DTranspose)"


class TorchAutoencoder(torch.nn.Module):
    """The reference: torch.nn's layers, named as the trees name theirs (the canonical state)."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        c1, c2 = config.channels
        self.side = config.image_size // 4
        features = c2 * self.side * self.side
        self.conv1 = torch.nn.Conv2d(config.in_channels, c1, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.fc_encode = torch.nn.Linear(features, config.latent_dim)
        self.fc_decode = torch.nn.Linear(config.latent_dim, features)
        self.deconv1 = torch.nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1)
        self.deconv2 = torch.nn.ConvTranspose2d(c1, config.in_channels, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        code = self.fc_encode(torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1))
        h = torch.relu(self.fc_decode(code)).unflatten(1, (-1, self.side, self.side))
        return self.deconv2(torch.relu(self.deconv1(h))), code


def keras_autoencoder_reference(config: AutoencoderConfig):
    """:func:`keras_conv_stacks` with one ``fc_encode`` head."""
    from parity_tests.harness import run_tf
    from parity_tests.harness.runners import tf_layout_call

    def run(state, inputs, cotangents, dtype):
        layers, params, encode, decode = keras_conv_stacks(config, {"fc_encode": config.latent_dim}, state, dtype)

        def call(x):
            code = layers["fc_encode"](encode(x))
            return decode(code), code

        return run_tf(tf_layout_call(call, ("x",), {"x": NCHW_TO_NHWC}, {0: NCHW_TO_NHWC}),
                      inputs, ("x",), cotangents, params, keras_to_canonical)

    return run


def autoencoder_case(config=CONFIG, batch=BATCH, keras=True):
    def inputs(dtype, rng):
        return {"x": rng.random((batch, config.in_channels, config.image_size, config.image_size)).astype(dtype)}

    references = {"torch.nn (Conv2d, Linear, ConvTranspose2d)": torch_module_reference(lambda dtype: TorchAutoencoder(config))}
    excluded = {}
    if keras:
        references[KERAS] = keras_autoencoder_reference(config)
        excluded[KERAS] = ("tf.nn.relu's gradient at a NaN input is 0, where torch's (and every tree's) passes the "
                           "gradient on, so NaN samples reach different parameters")
    return Case(module=MODULE, build=lambda m, dtype, rng: m.Autoencoder(config, dtype=dtype, rng=rng),
                inputs=inputs, output_names=("logits", "code"), references=references,
                tf_layouts={"x": NCHW_TO_NHWC}, tf_output_layouts={"logits": NCHW_TO_NHWC}, special_excluded_references=excluded)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_autoencoder_parity_against_torch_nn_and_keras(dtype):
    check_parity(autoencoder_case(), dtype)


def test_autoencoder_gradcheck():
    gradcheck_numpy(autoencoder_case(TINY, keras=False))


def test_canonical_names_are_torch_nn_names():
    names = list(TorchAutoencoder(CONFIG).state_dict())
    for tree in TREES:
        model = get_module(tree, MODULE).Autoencoder(CONFIG, rng=np.random.default_rng(0))
        assert list(model.canonical_state_dict()) == names, tree


def test_same_rng_same_initial_weights_in_every_tree():
    states = {tree: get_module(tree, MODULE).Autoencoder(CONFIG, dtype="float64", rng=np.random.default_rng(5)).canonical_state_dict()
              for tree in TREES}
    for tree in ("torch", "tf"):
        for name, value in states["numpy"].items():
            np.testing.assert_allclose(states[tree][name], value, rtol=TOLERANCES["float64"], atol=0, err_msg=f"{tree} {name}")


def numpy_and_torch(seed: int):
    model = get_module("numpy", MODULE).Autoencoder(CONFIG, dtype="float64")
    state = random_weights(model.canonical_state_dict(), np.random.default_rng(seed))
    model.load_canonical_state_dict(state)
    reference = TorchAutoencoder(CONFIG).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    return model, reference


def assert_grads_match(model, reference, what: str) -> None:
    ours = model.canonical_grads()
    for name, param in reference.named_parameters():
        np.testing.assert_allclose(ours[name], param.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12,
                                   err_msg=f"{what}: {name}")


def test_numpy_reconstruction_loss_end_to_end_matches_autograd():
    """BCE-with-logits of x given its reconstruction (day 8's loss, mean reduction), backpropagated
    through the whole model with no code cotangent (``grad_code=None``): the loss, the input gradient
    (x is both input and target; only the input path is differentiated here, as x.detach() is the
    target) and every parameter gradient match autograd."""
    model, reference = numpy_and_torch(3)
    x = np.random.default_rng(4).random((BATCH, 1, 8, 8))
    loss = get_module("numpy", "foundations.logistic_regression").BCEWithLogitsLoss(dtype="float64")
    logits, _ = model(x)
    value = loss(logits, x)
    grad_x = model.backward(loss.backward())
    tx = torch.from_numpy(x).requires_grad_()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(reference(tx)[0], torch.from_numpy(x))
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=TOLERANCES["float64"])
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12)
    assert_grads_match(model, reference, "reconstruction loss")


def test_numpy_autoencoder_used_twice_matches_autograd():
    """Two batches through one model, backpropagated in reverse order (the second with a zero logits
    cotangent, ``None``): the NumPy model sums both uses' gradients, as autograd does."""
    model, reference = numpy_and_torch(6)
    rng = np.random.default_rng(7)
    batches = [rng.random((BATCH, 1, 8, 8)) for _ in range(2)]
    cotangents = [[rng.standard_normal((BATCH, 1, 8, 8)), rng.standard_normal((BATCH, CONFIG.latent_dim))],
                  [None, rng.standard_normal((BATCH, CONFIG.latent_dim))]]
    for x in batches:
        model(x)
    for grads in reversed(cotangents):
        model.backward(*grads)
    total = 0
    for x, grads in zip(batches, cotangents):
        outputs = reference(torch.from_numpy(x))
        total = total + sum((out * torch.from_numpy(g)).sum() for out, g in zip(outputs, grads) if g is not None)
    total.backward()
    assert_grads_match(model, reference, "used twice")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 3), c1=st.integers(1, 3), c2=st.integers(1, 3), latent_dim=st.integers(1, 3),
       image_size=st.sampled_from([4, 8]), in_channels=st.integers(1, 2))
def test_autoencoder_fuzz_numpy_against_torch_nn(batch, c1, c2, latent_dim, image_size, in_channels):
    """Small random configs and batches (an empty one included), float64: the NumPy model's logits,
    code, input gradient and every parameter gradient against ``TorchAutoencoder`` (the other trees
    meet the NumPy one in the parity test; this explores the shapes cheaply)."""
    config = AutoencoderConfig(in_channels=in_channels, channels=(c1, c2), latent_dim=latent_dim, image_size=image_size)
    model = get_module("numpy", MODULE).Autoencoder(config, dtype="float64")
    state = random_weights(model.canonical_state_dict(), np.random.default_rng(batch))
    model.load_canonical_state_dict(state)
    reference = TorchAutoencoder(config).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    rng = np.random.default_rng(1)
    x = rng.random((batch, in_channels, image_size, image_size))
    grads = [rng.standard_normal(x.shape), rng.standard_normal((batch, latent_dim))]
    outputs = model(x)
    grad_x = model.backward(*grads)
    tx = torch.from_numpy(x).requires_grad_()
    t_outputs = reference(tx)
    sum((out * torch.from_numpy(g)).sum() for out, g in zip(t_outputs, grads)).backward()
    tol = TOLERANCES["float64"]
    for name, ours, theirs in zip(("logits", "code"), outputs, t_outputs):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=tol, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=tol, atol=1e-12, err_msg="grad x")
    assert_grads_match(model, reference, f"fuzz {config}, batch {batch}")


@pytest.mark.parametrize("tree", TREES)
def test_autoencoder_refuses_a_dict_config(tree):
    with pytest.raises(TypeError, match=r"Autoencoder: config must be an ml100.configs.AutoencoderConfig.*AutoencoderConfig.from_dict"):
        get_module(tree, MODULE).Autoencoder({"latent_dim": 2})


@pytest.mark.parametrize("x", [np.zeros((BATCH, 2, 8, 8)), np.zeros((BATCH, 1, 8, 8), np.float32), np.zeros((BATCH, 64))],
                         ids=["wrong channels", "wrong dtype", "flat"])
def test_input_errors_are_the_same_in_every_tree(x):
    """A bad image raises one error, the NumPy tree's text, in every tree; TF gets the image
    channels-last and its text names that layout and shape."""
    with pytest.raises(Exception) as raised:
        get_module("numpy", MODULE).Autoencoder(CONFIG, dtype="float64")(x)
    for tree in ("torch", "tf"):
        model = get_module(tree, MODULE).Autoencoder(CONFIG, dtype="float64", rng=np.random.default_rng(0))
        native = np.moveaxis(x, 1, -1) if tree == "tf" and x.ndim == 4 else x
        message = str(raised.value)
        if tree == "tf":
            message = message.replace("(N, C, H, W)", "(N, H, W, C)").replace(str(x.shape), str(native.shape))
        assert_raises_exactly(raised.type, message, lambda: model(to_tree(tree, native)))


def test_config_refuses_an_image_size_two_strides_cannot_halve():
    with pytest.raises(ConfigError, match="AutoencoderConfig: image_size must be divisible by 4"):
        dataclasses.replace(CONFIG, image_size=6)


#: The reference check: TRAIN_STEPS Adam steps on TRAIN_BATCH digits from the default initialization
#: cut the reconstruction error (the BCE in excess of its floor, the pixels' own entropy) by at least
#: FALL (measured: 0.497 -> 0.253, a factor 1.97).
TRAIN_CONFIG = AutoencoderConfig()
TRAIN_STEPS, TRAIN_BATCH, LR, FALL = 12, 16, 2e-2, 1.5


def training_start(tree: str, dtype: str):
    """An autoencoder with the default initialization from one seed (the same weights in every tree,
    :func:`test_same_rng_same_initial_weights_in_every_tree`), its tree's own ``Adam`` and BCE, the
    digits in the tree's layout."""
    model = get_module(tree, MODULE).Autoencoder(TRAIN_CONFIG, dtype=dtype, rng=np.random.default_rng(0))
    x = load_digits_split("NHWC" if tree == "tf" else "NCHW", dtype=dtype).x_train[:TRAIN_BATCH]
    optimizer = get_module(tree, "foundations.optim").Adam(dict(model.named_parameters()), lr=LR)
    loss_fn = get_module(tree, "foundations.logistic_regression").BCEWithLogitsLoss(dtype=dtype)
    return tree, model, loss_fn, optimizer, to_tree(tree, x)


def training_step(state, t: int) -> dict[str, np.ndarray]:
    tree, model, loss_fn, optimizer, x = state
    if tree == "numpy":
        model.zero_grad()
        loss = loss_fn(model(x)[0], x)
        model.backward(loss_fn.backward())
        grads = dict(model.named_grads())
    elif tree == "torch":
        model.zero_grad()
        loss = loss_fn(model(x)[0], x)
        loss.backward()
        grads = {name: param.grad for name, param in model.named_parameters()}
        loss = loss.detach()
    else:
        import tensorflow as tf

        params = dict(model.named_parameters())
        with tf.GradientTape() as tape:
            loss = loss_fn(model(x)[0], x)
        grads = dict(zip(params, tape.gradient(loss, list(params.values()))))
    optimizer.step(grads)
    return {"BCE": np.asarray(float(loss)), **model.canonical_state_dict()}


def pixel_entropy(x: np.ndarray) -> float:
    """The floor of the BCE of ``x`` given any logits: the mean binary entropy of its intensities
    (reached when sigmoid(logits) = x; 0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -(np.where(x > 0, x * np.log(x), 0.0) + np.where(x < 1, (1 - x) * np.log1p(-x), 0.0))
    return float(terms.mean())


def test_reconstruction_error_falls_identically_in_three_trees():
    """Twelve Adam steps on 16 digits in float64: the loss and every weight agree after every step
    in the three trees, and the reconstruction error (BCE minus its floor) falls by at least FALL."""
    histories = check_trajectory(Trajectory(TRAIN_STEPS, training_start, training_step), "float64", "Autoencoder training")
    floor = pixel_entropy(load_digits_split("NCHW", dtype="float64").x_train[:TRAIN_BATCH])
    excess = [float(h["BCE"]) - floor for h in histories["numpy"]]
    assert excess[-1] * FALL < excess[0], excess
