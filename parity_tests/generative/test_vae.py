"""Day 32: the convolutional VAE and its negative-ELBO loss in three trees, against a torch.nn model
built from ``nn.Conv2d``, ``nn.Linear`` and ``nn.ConvTranspose2d`` (same state dict) with the
reparameterization and the loss written with torch ops."""
import dataclasses

import numpy as np
import pytest
import torch

from ml100.backends import get_module
from ml100.configs import ConfigError, VAEConfig
from ml100.data import load_digits_split
from ml100.runs import to_numpy
from parity_tests.harness import (NCHW_TO_NHWC, TOLERANCES, TREES, Case, Trajectory, assert_raises_exactly, check_parity,
                                  check_trajectory, gradcheck_numpy, random_weights, to_tree, torch_module_reference)

CONFIG = VAEConfig(in_channels=1, channels=(3, 4), latent_dim=2, image_size=8)
TINY = VAEConfig(in_channels=1, channels=(2, 2), latent_dim=2, image_size=4)
BATCH = 2
BETA = 0.7
KERAS = "keras.layers (Conv2D, Dense, Conv2DTranspose)"


class TorchVAE(torch.nn.Module):
    """The reference: torch.nn's layers, named as the trees name theirs (the canonical state)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        c1, c2 = config.channels
        self.side = config.image_size // 4
        features = c2 * self.side * self.side
        self.conv1 = torch.nn.Conv2d(config.in_channels, c1, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.fc_mu = torch.nn.Linear(features, config.latent_dim)
        self.fc_logvar = torch.nn.Linear(features, config.latent_dim)
        self.fc_decode = torch.nn.Linear(config.latent_dim, features)
        self.deconv1 = torch.nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1)
        self.deconv2 = torch.nn.ConvTranspose2d(c1, config.in_channels, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x, eps):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * eps
        h = torch.relu(self.fc_decode(z)).unflatten(1, (-1, self.side, self.side))
        return self.deconv2(torch.relu(self.deconv1(h))), mu, logvar


def torch_negative_elbo(logits, target, mu, logvar, beta=BETA):
    """The loss with torch ops: summed BCE-with-logits plus beta times the analytic KL, over the batch size."""
    reconstruction = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu**2 - torch.exp(logvar))
    return (reconstruction + beta * kl) / logits.shape[0]


class TorchNegativeELBO(torch.nn.Module):
    def forward(self, logits, target, mu, logvar):
        return torch_negative_elbo(logits, target, mu, logvar)


#: Canonical -> Keras, per parameter kind: OIHW -> HWIO (Conv2D), torch's transposed-conv (in, out, kh, kw)
#: -> Keras' (kh, kw, out, in) (the same permutation, day 30), (out, in) -> Dense's (in, out).
TO_KERAS = {"conv": (2, 3, 1, 0), "deconv": (2, 3, 1, 0), "fc": (1, 0)}


def weight_kind(name: str) -> str:
    """The :data:`TO_KERAS` key of a canonical weight name (``deconv1.weight`` -> ``deconv``)."""
    return next(kind for kind in ("deconv", "conv", "fc") if name.startswith(kind))


def keras_vae_weights(state: dict) -> dict[str, np.ndarray]:
    """Canonical -> Keras, keyed by the canonical name whose variable receives it; biases as they are."""
    return {name: value if name.endswith("bias") else value.transpose(TO_KERAS[weight_kind(name)])
            for name, value in state.items()}


def keras_conv_stacks(config, heads: dict[str, int], state: dict, dtype: str):
    """The Keras twin of the trees' ``ConvStacks`` plus ``Dense`` code ``heads`` (name -> width),
    fed :func:`keras_vae_weights` of ``state``. ``ZeroPadding2D(1)`` + ``Conv2D`` is torch's symmetric
    padding 1 (Keras' ``"same"`` pads only the bottom/right at stride 2); ``Conv2DTranspose``
    ``"valid"`` then ``Cropping2D`` of the first row/column is torch's ``padding=1, output_padding=1``;
    flatten/unflatten go through a channels-first permute (Keras' order is row, column, channel).
    Returns ``(layers, params, encode, decode)``: ``encode(x)`` gives the flattened features in
    canonical order, ``decode(code)`` the NHWC logits."""
    import keras
    import tensorflow as tf

    c1, c2 = config.channels
    side = config.image_size // 4
    features = c2 * side * side
    layers = {"conv1": keras.layers.Conv2D(c1, 3, strides=2, dtype=dtype),
              "conv2": keras.layers.Conv2D(c2, 3, strides=2, dtype=dtype),
              **{name: keras.layers.Dense(width, dtype=dtype) for name, width in heads.items()},
              "fc_decode": keras.layers.Dense(features, dtype=dtype),
              "deconv1": keras.layers.Conv2DTranspose(c1, 3, strides=2, dtype=dtype),
              "deconv2": keras.layers.Conv2DTranspose(config.in_channels, 3, strides=2, dtype=dtype)}
    shapes = {"conv1": (None, config.image_size + 2, config.image_size + 2, config.in_channels),
              "conv2": (None, 2 * side + 2, 2 * side + 2, c1), **{name: (None, features) for name in heads},
              "fc_decode": (None, config.latent_dim), "deconv1": (None, side, side, c2), "deconv2": (None, 2 * side, 2 * side, c1)}
    params = {}
    for name, layer in layers.items():
        layer.build(shapes[name])
        params.update({f"{name}.weight": layer.kernel, f"{name}.bias": layer.bias})
    for name, value in keras_vae_weights(state).items():
        params[name].assign(value)
    pad, crop = keras.layers.ZeroPadding2D(1, dtype=dtype), keras.layers.Cropping2D(((1, 0), (1, 0)), dtype=dtype)

    def encode(x):
        h = tf.nn.relu(layers["conv2"](pad(tf.nn.relu(layers["conv1"](pad(x))))))  # (N, side, side, C2)
        return tf.reshape(tf.transpose(h, (0, 3, 1, 2)), (-1, features))  # canonical (C, H, W) order

    def decode(code):
        h = tf.transpose(tf.reshape(tf.nn.relu(layers["fc_decode"](code)), (-1, c2, side, side)), (0, 2, 3, 1))
        return crop(layers["deconv2"](tf.nn.relu(crop(layers["deconv1"](h)))))

    return layers, params, encode, decode


def keras_to_canonical(grads: dict) -> dict[str, np.ndarray]:
    """Keras -> canonical gradients: the inverse permutations of :data:`TO_KERAS`."""
    return {name: g.numpy() if name.endswith("bias") else g.numpy().transpose(np.argsort(TO_KERAS[weight_kind(name)]))
            for name, g in grads.items()}


def keras_vae_reference(config: VAEConfig):
    """:func:`keras_conv_stacks` with the ``fc_mu``/``fc_logvar`` heads and the reparameterization."""
    import tensorflow as tf

    from parity_tests.harness import run_tf
    from parity_tests.harness.runners import tf_layout_call

    def run(state, inputs, cotangents, dtype):
        heads = {"fc_mu": config.latent_dim, "fc_logvar": config.latent_dim}
        layers, params, encode, decode = keras_conv_stacks(config, heads, state, dtype)

        def call(x, eps):
            h = encode(x)
            mu, logvar = layers["fc_mu"](h), layers["fc_logvar"](h)
            return decode(mu + tf.exp(0.5 * logvar) * eps), mu, logvar

        return run_tf(tf_layout_call(call, ("x", "eps"), {"x": NCHW_TO_NHWC}, {0: NCHW_TO_NHWC}),
                      inputs, ("x", "eps"), cotangents, params, keras_to_canonical)

    return run


def vae_case(config=CONFIG, batch=BATCH, keras=True):
    def inputs(dtype, rng):
        return {"x": rng.random((batch, config.in_channels, config.image_size, config.image_size)).astype(dtype),
                "eps": rng.standard_normal((batch, config.latent_dim)).astype(dtype)}

    references = {"torch.nn (Conv2d, Linear, ConvTranspose2d)": torch_module_reference(
        lambda dtype: TorchVAE(config), differentiable=("x", "eps"))}
    excluded = {}
    if keras:
        references[KERAS] = keras_vae_reference(config)
        excluded[KERAS] = ("tf.nn.relu's gradient at a NaN input is 0, where torch's (and every tree's) passes the "
                           "gradient on, so NaN samples reach different parameters")
    return Case(module="generative.vae", build=lambda m, dtype, rng: m.VAE(config, dtype=dtype, rng=rng),
                inputs=inputs, differentiable=("x", "eps"), output_names=("logits", "mu", "logvar"), references=references,
                tf_layouts={"x": NCHW_TO_NHWC}, tf_output_layouts={"logits": NCHW_TO_NHWC}, special_excluded_references=excluded)


def loss_case():
    def inputs(dtype, rng):
        return {"logits": rng.standard_normal((BATCH, 1, 4, 4)).astype(dtype), "target": rng.random((BATCH, 1, 4, 4)).astype(dtype),
                "mu": rng.standard_normal((BATCH, 3)).astype(dtype), "logvar": rng.standard_normal((BATCH, 3)).astype(dtype)}

    return Case(module="generative.vae", build=lambda m, dtype, rng: m.VAELoss(beta=BETA, dtype=dtype),
                inputs=inputs, differentiable=("logits", "mu", "logvar"), output_names=("loss",),
                references={"torch ops": torch_module_reference(lambda dtype: TorchNegativeELBO(),
                                                                 differentiable=("logits", "mu", "logvar"))},
                tf_layouts={"logits": NCHW_TO_NHWC, "target": NCHW_TO_NHWC},
                special_finite_inputs={"target": "a pixel intensity in [0, 1], finite by contract"})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_vae_parity_against_torch_nn(dtype):
    check_parity(vae_case(), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_negative_elbo_parity_against_torch_ops(dtype):
    check_parity(loss_case(), dtype)


def test_vae_gradcheck():
    gradcheck_numpy(vae_case(TINY, batch=2, keras=False))


def test_negative_elbo_gradcheck():
    gradcheck_numpy(loss_case())


def test_canonical_names_are_torch_nn_names():
    names = list(TorchVAE(CONFIG).state_dict())
    for tree in TREES:
        model = get_module(tree, "generative.vae").VAE(CONFIG, rng=np.random.default_rng(0))
        assert list(model.canonical_state_dict()) == names, tree


def numpy_and_torch(seed: int):
    model = get_module("numpy", "generative.vae").VAE(CONFIG, dtype="float64")
    state = random_weights(model.canonical_state_dict(), np.random.default_rng(seed))
    model.load_canonical_state_dict(state)
    reference = TorchVAE(CONFIG).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    return model, reference


def assert_grads_match(model, reference, what: str) -> None:
    ours = model.canonical_grads()
    for name, param in reference.named_parameters():
        np.testing.assert_allclose(ours[name], param.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12,
                                   err_msg=f"{what}: {name}")


def test_numpy_negative_elbo_end_to_end_matches_autograd():
    """The ELBO, both input gradients and every parameter gradient of model + loss: mu and logvar
    receive gradient both through z and through the KL, and the two paths add."""
    model, reference = numpy_and_torch(3)
    rng = np.random.default_rng(4)
    x, eps = rng.random((BATCH, 1, 8, 8)), rng.standard_normal((BATCH, CONFIG.latent_dim))
    loss = get_module("numpy", "generative.vae").VAELoss(beta=BETA, dtype="float64")
    logits, mu, logvar = model(x, eps)
    value = loss(logits, x, mu, logvar)
    grad_x, grad_eps = model.backward(*loss.backward())
    tx, teps = torch.from_numpy(x).requires_grad_(), torch.from_numpy(eps).requires_grad_()
    t_logits, t_mu, t_logvar = reference(tx, teps)
    expected = torch_negative_elbo(t_logits, torch.from_numpy(x), t_mu, t_logvar)
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=TOLERANCES["float64"])
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12)
    np.testing.assert_allclose(grad_eps, teps.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12)
    assert_grads_match(model, reference, "negative ELBO")


def test_numpy_vae_used_twice_matches_autograd():
    """Two batches through one model, backpropagated in reverse order: the NumPy model sums both
    uses' gradients (every layer's cache stacks), as autograd does."""
    model, reference = numpy_and_torch(6)
    rng = np.random.default_rng(7)
    batches = [(rng.random((BATCH, 1, 8, 8)), rng.standard_normal((BATCH, CONFIG.latent_dim))) for _ in range(2)]
    cotangents = [[rng.standard_normal(shape) for shape in ((BATCH, 1, 8, 8), (BATCH, 2), (BATCH, 2))] for _ in range(2)]
    for x, eps in batches:
        model(x, eps)
    for grads in reversed(cotangents):
        model.backward(*grads)
    total = 0
    for (x, eps), grads in zip(batches, cotangents):
        outputs = reference(torch.from_numpy(x), torch.from_numpy(eps))
        total = total + sum((out * torch.from_numpy(g)).sum() for out, g in zip(outputs, grads))
    total.backward()
    assert_grads_match(model, reference, "used twice")


def test_numpy_vae_backward_without_a_logits_cotangent():
    """``backward(None, grad_mu, grad_logvar)``: the logits' cotangent is zero (an image-shaped zero
    through the decoder), so only the heads' cotangents reach the encoder, as autograd gives for
    a loss of mu and logvar alone."""
    model, reference = numpy_and_torch(8)
    rng = np.random.default_rng(9)
    x, eps = rng.random((BATCH, 1, 8, 8)), rng.standard_normal((BATCH, CONFIG.latent_dim))
    grad_mu, grad_logvar = rng.standard_normal((BATCH, 2)), rng.standard_normal((BATCH, 2))
    model(x, eps)
    grad_x, grad_eps = model.backward(None, grad_mu, grad_logvar)
    tx, teps = torch.from_numpy(x).requires_grad_(), torch.from_numpy(eps).requires_grad_()
    _, t_mu, t_logvar = reference(tx, teps)
    ((t_mu * torch.from_numpy(grad_mu)).sum() + (t_logvar * torch.from_numpy(grad_logvar)).sum()).backward()
    # The decoder is off autograd's graph (grad None): its gradient is zero, as the NumPy model's.
    for param in reference.parameters():
        if param.grad is None:
            param.grad = torch.zeros_like(param)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12)
    np.testing.assert_array_equal(grad_eps, np.zeros_like(eps))
    assert_grads_match(model, reference, "no logits cotangent")


@pytest.mark.parametrize("tree", TREES)
def test_vae_refuses_bad_config_and_inputs(tree):
    topic = get_module(tree, "generative.vae")
    with pytest.raises(TypeError, match="VAE"):
        topic.VAE({"latent_dim": 2})
    model = topic.VAE(CONFIG, dtype="float64", rng=np.random.default_rng(0))
    x = to_tree(tree, np.zeros((BATCH, 8, 8, 1) if tree == "tf" else (BATCH, 1, 8, 8)))
    assert_raises_exactly(ValueError, "VAE: eps must have shape (N, latent_dim) = (2, 2), got (2, 3)",
                          lambda: model(x, to_tree(tree, np.zeros((BATCH, 3)))))
    with pytest.raises(ValueError, match="VAELoss: beta"):
        topic.VAELoss(beta=-1.0)


def test_config_refuses_an_image_size_two_strides_cannot_halve():
    with pytest.raises(ConfigError, match="image_size"):
        dataclasses.replace(CONFIG, image_size=6)


TRAIN_STEPS, TRAIN_BATCH, LR = 5, 32, 1e-2


def training_start(tree: str, dtype: str):
    """A VAE with shared initial weights, its tree's own ``Adam``, 32 digits in the tree's layout."""
    topic = get_module(tree, "generative.vae")
    model = topic.VAE(CONFIG, dtype=dtype, rng=np.random.default_rng(0))
    model.load_canonical_state_dict(random_weights(model.canonical_state_dict(), np.random.default_rng(1)))
    x = load_digits_split("NHWC" if tree == "tf" else "NCHW", dtype=dtype).x_train[:TRAIN_BATCH]
    optimizer = get_module(tree, "foundations.optim").Adam(dict(model.named_parameters()), lr=LR)
    return tree, dtype, model, topic.VAELoss(beta=BETA, dtype=dtype), optimizer, to_tree(tree, x)


def training_eps(t: int, dtype: str) -> np.ndarray:
    """Step t's noise, the same in every tree: randomness is an input."""
    return np.random.default_rng(100 + t).standard_normal((TRAIN_BATCH, CONFIG.latent_dim)).astype(dtype)


def training_step(state, t: int) -> dict[str, np.ndarray]:
    tree, dtype, model, loss_fn, optimizer, x = state
    eps = to_tree(tree, training_eps(t, dtype))
    if tree == "numpy":
        model.zero_grad()
        logits, mu, logvar = model(x, eps)
        loss = loss_fn(logits, x, mu, logvar)
        model.backward(*loss_fn.backward())
        grads = dict(model.named_grads())
    elif tree == "torch":
        model.zero_grad()
        logits, mu, logvar = model(x, eps)
        loss = loss_fn(logits, x, mu, logvar)
        loss.backward()
        grads = {name: param.grad for name, param in model.named_parameters()}
        loss = loss.detach()
    else:
        import tensorflow as tf

        params = dict(model.named_parameters())
        with tf.GradientTape() as tape:
            logits, mu, logvar = model(x, eps)
            loss = loss_fn(logits, x, mu, logvar)
        grads = dict(zip(params, tape.gradient(loss, list(params.values()))))
    optimizer.step(grads)
    return {"negative ELBO": np.asarray(float(loss)), **model.canonical_state_dict()}


def test_training_on_digits_traces_the_same_elbo_curve_in_three_trees():
    """Five Adam steps on 32 digits in float64: the loss and every weight agree after every step."""
    histories = check_trajectory(Trajectory(TRAIN_STEPS, training_start, training_step), "float64", "VAE training")
    curve = [float(h["negative ELBO"]) for h in histories["numpy"]]
    assert curve[-1] < curve[0], curve


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_decode_is_the_decoder_that_forward_runs(dtype):
    """``decode(z)`` (what sampling calls) gives the logits ``forward`` returns for
    ``z = mu + exp(logvar / 2) * eps``, and the same logits in the three trees."""
    rng = np.random.default_rng(3)
    x = rng.random((BATCH, 1, 8, 8)).astype(dtype)
    eps = rng.standard_normal((BATCH, CONFIG.latent_dim)).astype(dtype)
    z = rng.standard_normal((BATCH, CONFIG.latent_dim)).astype(dtype)
    state = random_weights(get_module("numpy", "generative.vae").VAE(CONFIG, dtype=dtype).canonical_state_dict(),
                           np.random.default_rng(1))
    sampled = {}
    for tree in TREES:
        model = get_module(tree, "generative.vae").VAE(CONFIG, dtype=dtype)
        model.load_canonical_state_dict(state)
        logits, mu, logvar = (to_numpy(t) for t in model(to_tree(tree, x.transpose(NCHW_TO_NHWC) if tree == "tf" else x),
                                                            to_tree(tree, eps)))
        again = to_numpy(model.decode(to_tree(tree, mu + np.exp(0.5 * logvar) * eps)))
        np.testing.assert_allclose(again, logits, rtol=TOLERANCES[dtype], atol=TOLERANCES[dtype] * np.abs(logits).max(), err_msg=tree)
        decoded = to_numpy(model.decode(to_tree(tree, z)))
        sampled[tree] = decoded.transpose(0, 3, 1, 2) if tree == "tf" else decoded
    for tree in TREES[1:]:
        np.testing.assert_allclose(sampled[tree], sampled["numpy"], rtol=0, atol=TOLERANCES[dtype] * np.abs(sampled["numpy"]).max(),
                                   err_msg=f"decode(z): {tree} vs numpy")
