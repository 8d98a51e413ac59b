"""Day 36: the conditional VAE and the conditional GAN (projection discriminator) in three trees,
against torch.nn models (``nn.Conv2d``, ``nn.Linear``, ``nn.ConvTranspose2d``, ``nn.Embedding``,
``F.one_hot``) fed the same state dict and Keras models (``Conv2D``, ``Dense``, ``Conv2DTranspose``,
``Embedding``) fed converted weights, and a 20-step float64 conditional-GAN trajectory against
``torch.optim.Adam`` with the losses written in torch ops."""
import dataclasses
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from ml100.configs import CGANConfig, ConfigError, CVAEConfig, GANConfig, VAEConfig
from ml100.data import load_digits_split
from parity_tests.generative.test_vae import TO_KERAS, keras_vae_weights, weight_kind
from parity_tests.harness import (NCHW_TO_NHWC, TOLERANCES, TREES, Case, Trajectory, assert_raises_exactly, check_parity,
                                  check_trajectory, gradcheck_numpy, random_weights, run_tf, tf_layout_call, to_tree,
                                  torch_module_reference)

MODULE = "generative.conditional"
CVAE = CVAEConfig(in_channels=1, channels=(3, 4), latent_dim=2, image_size=8, num_classes=3)
TINY_CVAE = CVAEConfig(in_channels=1, channels=(2, 2), latent_dim=2, image_size=4, num_classes=3)
CGAN = CGANConfig(latent_dim=3, hidden_sizes=(5, 6), image_size=4, in_channels=1, num_classes=3)
BATCH = 3
#: Every class once, and one repeated: the embedding's scatter-add sums the repeat.
LABELS = np.array([2, 0, 2], dtype=np.int64)
SLOPE = 0.2
KERAS_CVAE = "keras.layers (Conv2D, Dense, Conv2DTranspose, one-hot)"
KERAS_PLAYER = "keras.layers (Embedding, Dense)"
#: Why the Keras references sit out the special-values pass (a written reason, as the harness asks).
KERAS_RELU_AT_NAN = ("tf.nn.relu's gradient at a NaN input is 0, where torch's (and every tree's) passes the "
                     "gradient on, so NaN samples reach different parameters (day 32)")


def torch_one_hot(labels, num_classes, like):
    return torch.nn.functional.one_hot(labels, num_classes).to(like.dtype)


class TorchCVAE(torch.nn.Module):
    """The reference: torch.nn's layers, named as the trees name theirs (the canonical state)."""

    def __init__(self, config: CVAEConfig):
        super().__init__()
        c1, c2 = config.channels
        self.side, self.k = config.image_size // 4, config.num_classes
        features = c2 * self.side * self.side
        self.conv1 = torch.nn.Conv2d(config.in_channels, c1, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.fc_mu = torch.nn.Linear(features + self.k, config.latent_dim)
        self.fc_logvar = torch.nn.Linear(features + self.k, config.latent_dim)
        self.fc_decode = torch.nn.Linear(config.latent_dim + self.k, features)
        self.deconv1 = torch.nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1)
        self.deconv2 = torch.nn.ConvTranspose2d(c1, config.in_channels, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x, labels, eps):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1)
        hy = torch.cat([h, torch_one_hot(labels, self.k, h)], dim=1)
        mu, logvar = self.fc_mu(hy), self.fc_logvar(hy)
        z = mu + torch.exp(0.5 * logvar) * eps
        h = torch.relu(self.fc_decode(torch.cat([z, torch_one_hot(labels, self.k, z)], dim=1)))
        h = h.unflatten(1, (-1, self.side, self.side))
        return self.deconv2(torch.relu(self.deconv1(h))), mu, logvar


def torch_mlp(sizes, last_activation):
    """``Linear → LeakyReLU(0.2)`` between consecutive sizes; the last Linear followed by ``last_activation``."""
    layers = []
    for size_in, size_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(size_in, size_out), torch.nn.LeakyReLU(SLOPE)]
    return layers[:-1] + ([last_activation] if last_activation is not None else [])


class TorchConditionalGenerator(torch.nn.Module):
    def __init__(self, config: CGANConfig):
        super().__init__()
        k, pixels = config.num_classes, config.in_channels * config.image_size**2
        self.label_embedding = torch.nn.Embedding(k, k)
        self.net = torch.nn.Sequential(*torch_mlp([config.latent_dim + k, *config.hidden_sizes, pixels], torch.nn.Tanh()),
                                       torch.nn.Unflatten(1, (config.in_channels, config.image_size, config.image_size)))

    def forward(self, z, labels):
        return self.net(torch.cat([z, self.label_embedding(labels)], dim=1))


class TorchConditionalDiscriminator(torch.nn.Module):
    def __init__(self, config: CGANConfig):
        super().__init__()
        pixels, width = config.in_channels * config.image_size**2, config.hidden_sizes[0]
        self.features = torch.nn.Sequential(torch.nn.Flatten(),
                                            *torch_mlp([pixels, *reversed(config.hidden_sizes)], torch.nn.LeakyReLU(SLOPE)))
        self.head = torch.nn.Linear(width, 1)
        self.label_embedding = torch.nn.Embedding(config.num_classes, width)

    def forward(self, x, labels):
        phi = self.features(x)
        return self.head(phi) + (self.label_embedding(labels) * phi).sum(dim=1, keepdim=True)


def keras_cvae_reference(config: CVAEConfig):
    """Day 32's Keras VAE (``ZeroPadding2D(1)`` + ``Conv2D``, ``Dense`` heads, ``Conv2DTranspose``
    ``"valid"`` + ``Cropping2D``) with the one-hot concatenated before the heads and ``fc_decode``,
    fed day 32's :func:`keras_vae_weights` (the conditional names are the VAE's)."""
    import keras
    import tensorflow as tf

    def run(state, inputs, cotangents, dtype):
        c1, c2 = config.channels
        side, k = config.image_size // 4, config.num_classes
        features = c2 * side * side
        layers = {"conv1": (keras.layers.Conv2D(c1, 3, strides=2, dtype=dtype),
                            (None, config.image_size + 2, config.image_size + 2, config.in_channels)),
                  "conv2": (keras.layers.Conv2D(c2, 3, strides=2, dtype=dtype), (None, 2 * side + 2, 2 * side + 2, c1)),
                  "fc_mu": (keras.layers.Dense(config.latent_dim, dtype=dtype), (None, features + k)),
                  "fc_logvar": (keras.layers.Dense(config.latent_dim, dtype=dtype), (None, features + k)),
                  "fc_decode": (keras.layers.Dense(features, dtype=dtype), (None, config.latent_dim + k)),
                  "deconv1": (keras.layers.Conv2DTranspose(c1, 3, strides=2, dtype=dtype), (None, side, side, c2)),
                  "deconv2": (keras.layers.Conv2DTranspose(config.in_channels, 3, strides=2, dtype=dtype),
                              (None, 2 * side, 2 * side, c1))}
        params = {}
        for name, (layer, shape) in layers.items():
            layer.build(shape)
            params.update({f"{name}.weight": layer.kernel, f"{name}.bias": layer.bias})
        for name, value in keras_vae_weights(state).items():
            params[name].assign(value)
        layer = {name: pair[0] for name, pair in layers.items()}
        pad, crop = keras.layers.ZeroPadding2D(1, dtype=dtype), keras.layers.Cropping2D(((1, 0), (1, 0)), dtype=dtype)

        def call(x, labels, eps):
            e_y = tf.one_hot(labels, k, dtype=x.dtype)  # (N, K)
            h = tf.nn.relu(layer["conv2"](pad(tf.nn.relu(layer["conv1"](pad(x))))))  # (N, side, side, C2)
            h = tf.reshape(tf.transpose(h, (0, 3, 1, 2)), (-1, features))  # canonical (C, H, W) order
            hy = tf.concat([h, e_y], axis=1)
            mu, logvar = layer["fc_mu"](hy), layer["fc_logvar"](hy)
            z = mu + tf.exp(0.5 * logvar) * eps
            h = tf.nn.relu(layer["fc_decode"](tf.concat([z, e_y], axis=1)))
            h = tf.transpose(tf.reshape(h, (-1, c2, side, side)), (0, 2, 3, 1))
            return crop(layer["deconv2"](tf.nn.relu(crop(layer["deconv1"](h))))), mu, logvar

        def to_canonical(grads):
            # Keras -> canonical: the inverse permutations.
            return {name: g.numpy() if name.endswith("bias") else g.numpy().transpose(np.argsort(TO_KERAS[weight_kind(name)]))
                    for name, g in grads.items()}

        return run_tf(tf_layout_call(call, ("x", "labels", "eps"), {"x": NCHW_TO_NHWC}, {0: NCHW_TO_NHWC}),
                      inputs, ("x", "eps"), cotangents, params, to_canonical)

    return run


def keras_player_weights(state: dict) -> dict[str, np.ndarray]:
    """Canonical -> Keras for the GAN players: each ``Linear`` weight ``(out, in)`` -> ``Dense.kernel``
    ``(in, out)``; ``label_embedding.weight`` ``(K, E)`` is ``Embedding.embeddings`` as it is; biases as
    they are. The inverse is the same map (a transpose is its own inverse)."""
    return {name: value.T if name.endswith("weight") and not name.startswith("label_embedding") else value
            for name, value in state.items()}


def keras_player_reference(config: CGANConfig, generator: bool):
    """Keras ``Embedding`` and ``Dense`` layers in the players' order, fed :func:`keras_player_weights`:
    the generator ``tanh(MLP([z, E[y]]))`` reshaped to the canonical ``(N, C, H, W)``, the discriminator
    ``head(phi) + <E[y], phi>`` on the canonically flattened image."""
    import keras
    import tensorflow as tf

    def run(state, inputs, cotangents, dtype):
        width = config.num_classes if generator else config.hidden_sizes[0]
        embedding = keras.layers.Embedding(config.num_classes, width, dtype=dtype)
        embedding.build((None,))
        params = {"label_embedding.weight": embedding.embeddings}
        dense = {}
        for name, value in state.items():
            if name.endswith(".weight") and not name.startswith("label_embedding"):
                layer = keras.layers.Dense(value.shape[0], dtype=dtype)
                layer.build((None, value.shape[1]))
                dense[name[:-len(".weight")]] = layer
                params.update({name: layer.kernel, name[:-len("weight")] + "bias": layer.bias})
        for name, value in keras_player_weights(state).items():
            params[name].assign(value)
        pixels = config.in_channels * config.image_size**2

        def leaky_relu(h):
            # Not tf.nn.leaky_relu / keras' LeakyReLU: their op keeps the slope as a float32 attribute,
            # 0.2 -> 0.20000000298 in float64 (day 5, test_keras_leaky_relu_rounds_its_slope_to_float32).
            return tf.where(h > 0, h, SLOPE * h)

        def generate(z, labels):
            h = tf.concat([z, embedding(labels)], axis=1)
            layers = list(dense.values())
            for layer in layers[:-1]:
                h = leaky_relu(layer(h))
            return tf.reshape(tf.tanh(layers[-1](h)), (-1, config.in_channels, config.image_size, config.image_size))

        def discriminate(x, labels):
            phi = tf.reshape(x, (tf.shape(x)[0], pixels))
            for name, layer in dense.items():
                if name != "head":
                    phi = leaky_relu(layer(phi))
            return dense["head"](phi) + tf.reduce_sum(embedding(labels) * phi, axis=1, keepdims=True)

        def to_canonical(grads):
            # The embedding's gradient is tf.gather's IndexedSlices: dense, as torch's .grad.
            return keras_player_weights({name: tf.convert_to_tensor(g).numpy() for name, g in grads.items()})

        return run_tf(generate if generator else discriminate, inputs, ("z",) if generator else ("x",), cotangents, params,
                      to_canonical)

    return run


def cvae_case(config=CVAE, batch=BATCH, keras=True):
    def inputs(dtype, rng):
        return {"x": rng.random((batch, config.in_channels, config.image_size, config.image_size)).astype(dtype),
                "labels": LABELS[:batch].copy(),
                "eps": rng.standard_normal((batch, config.latent_dim)).astype(dtype)}

    return Case(module=MODULE, build=lambda m, dtype, rng: m.ConditionalVAE(config, dtype=dtype, rng=rng),
                inputs=inputs, differentiable=("x", "eps"), output_names=("logits", "mu", "logvar"),
                references={"torch.nn (Conv2d, Linear, ConvTranspose2d, one_hot)": torch_module_reference(
                    lambda dtype: TorchCVAE(config), differentiable=("x", "eps")),
                    **({KERAS_CVAE: keras_cvae_reference(config)} if keras else {})},
                tf_layouts={"x": NCHW_TO_NHWC}, tf_output_layouts={"logits": NCHW_TO_NHWC},
                special_excluded_references={KERAS_CVAE: KERAS_RELU_AT_NAN} if keras else {})


def generator_case(config=CGAN):
    def inputs(dtype, rng):
        return {"z": rng.standard_normal((BATCH, config.latent_dim)).astype(dtype), "labels": LABELS.copy()}

    return Case(module=MODULE, build=lambda m, dtype, rng: m.ConditionalGenerator(config, dtype=dtype, rng=rng),
                inputs=inputs, differentiable=("z",), output_names=("images",),
                references={"torch.nn (Embedding, Linear, LeakyReLU, Tanh)": torch_module_reference(
                    lambda dtype: TorchConditionalGenerator(config), differentiable=("z",)),
                    KERAS_PLAYER: keras_player_reference(config, generator=True)},
                tf_output_layouts={"images": NCHW_TO_NHWC})


def discriminator_case(config=CGAN):
    def inputs(dtype, rng):
        side = config.image_size
        return {"x": rng.uniform(-1, 1, (BATCH, config.in_channels, side, side)).astype(dtype), "labels": LABELS.copy()}

    return Case(module=MODULE, build=lambda m, dtype, rng: m.ConditionalDiscriminator(config, dtype=dtype, rng=rng),
                inputs=inputs, differentiable=("x",), output_names=("logits",),
                references={"torch.nn (Linear, LeakyReLU, Embedding projection)": torch_module_reference(
                    lambda dtype: TorchConditionalDiscriminator(config), differentiable=("x",)),
                    KERAS_PLAYER: keras_player_reference(config, generator=False)},
                tf_layouts={"x": NCHW_TO_NHWC})


CASES = {"ConditionalVAE": cvae_case, "ConditionalGenerator": generator_case, "ConditionalDiscriminator": discriminator_case}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity_against_torch_nn(name, dtype):
    """Every output, the float inputs' gradients and every parameter's (the label embeddings'
    included) in three trees and the torch.nn model; float64 adds the special values and the empty batch."""
    check_parity(CASES[name](), dtype)


def test_cvae_gradcheck():
    gradcheck_numpy(cvae_case(TINY_CVAE, batch=2, keras=False))


@pytest.mark.parametrize("name", ["ConditionalGenerator", "ConditionalDiscriminator"])
def test_gan_players_gradcheck(name):
    gradcheck_numpy(CASES[name]())


REFERENCES = {"ConditionalVAE": (CVAE, TorchCVAE), "ConditionalGenerator": (CGAN, TorchConditionalGenerator),
              "ConditionalDiscriminator": (CGAN, TorchConditionalDiscriminator)}


@pytest.mark.parametrize("name", list(REFERENCES))
def test_canonical_names_are_torch_nn_names(name):
    config, reference = REFERENCES[name]
    names = list(reference(config).state_dict())
    for tree in TREES:
        model = getattr(get_module(tree, MODULE), name)(config, rng=np.random.default_rng(0))
        assert list(model.canonical_state_dict()) == names, tree


def numpy_and_torch(name: str, seed: int):
    config, reference_class = REFERENCES[name]
    model = getattr(get_module("numpy", MODULE), name)(config, dtype="float64")
    state = random_weights(model.canonical_state_dict(), np.random.default_rng(seed))
    model.load_canonical_state_dict(state)
    reference = reference_class(config).double()
    reference.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()})
    return model, reference


def assert_grads_match(model, reference, what: str) -> None:
    ours = model.canonical_grads()
    for key, param in reference.named_parameters():
        np.testing.assert_allclose(ours[key], param.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12,
                                   err_msg=f"{what}: {key}")


def test_cvae_negative_elbo_and_all_its_gradients_match_autograd():
    """Day 32's VAELoss on the conditional model: the ELBO, the gradients of x and eps and of every
    parameter (the one-hot columns of fc_mu, fc_logvar and fc_decode included)."""
    model, reference = numpy_and_torch("ConditionalVAE", 3)
    rng = np.random.default_rng(4)
    x, eps = rng.random((BATCH, 1, 8, 8)), rng.standard_normal((BATCH, CVAE.latent_dim))
    loss = get_module("numpy", "generative.vae").VAELoss(beta=0.7, dtype="float64")
    logits, mu, logvar = model(x, LABELS, eps)
    value = loss(logits, x, mu, logvar)
    grad_x, grad_eps = model.backward(*loss.backward())
    tx, teps = torch.from_numpy(x).requires_grad_(), torch.from_numpy(eps).requires_grad_()
    t_logits, t_mu, t_logvar = reference(tx, torch.from_numpy(LABELS), teps)
    reconstruction = torch.nn.functional.binary_cross_entropy_with_logits(t_logits, torch.from_numpy(x), reduction="sum")
    kl = -0.5 * torch.sum(1 + t_logvar - t_mu**2 - torch.exp(t_logvar))
    expected = (reconstruction + 0.7 * kl) / BATCH
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=TOLERANCES["float64"])
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12)
    np.testing.assert_allclose(grad_eps, teps.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12)
    assert_grads_match(model, reference, "conditional negative ELBO")
    # A class the batch does not hold leaves its one-hot column of fc_mu without gradient.
    assert np.all(model.canonical_grads()["fc_mu.weight"][:, -2] == 0.0)


def player_inputs(name: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    if name == "ConditionalVAE":
        return rng.random((BATCH, 1, 8, 8)), LABELS, rng.standard_normal((BATCH, CVAE.latent_dim))
    if name == "ConditionalGenerator":
        return rng.standard_normal((BATCH, CGAN.latent_dim)), LABELS
    return rng.uniform(-1, 1, (BATCH, 1, CGAN.image_size, CGAN.image_size)), LABELS


@pytest.mark.parametrize("name", list(REFERENCES))
def test_numpy_model_used_twice_matches_autograd(name):
    """Two batches (different labels) through one model, backpropagated in reverse order: every
    cache stacks and the label embeddings' rows sum both uses, as autograd does."""
    model, reference = numpy_and_torch(name, 6)
    rng = np.random.default_rng(7)
    # The second batch asks for other classes (1 twice, 0 once): other rows of the embeddings.
    other_labels = np.array([1, 1, 0], dtype=np.int64)
    batches = [player_inputs(name, rng), tuple(other_labels if a is LABELS else a for a in player_inputs(name, rng))]
    outputs = [model(*batch) for batch in batches]
    cotangents = [[rng.standard_normal(out.shape) for out in (o if isinstance(o, tuple) else (o,))] for o in outputs]
    for grads in reversed(cotangents):
        model.backward(*grads)
    total = 0
    for batch, grads in zip(batches, cotangents):
        out = reference(*(torch.from_numpy(a) for a in batch))
        total = total + sum((o * torch.from_numpy(g)).sum() for o, g in zip(out if isinstance(out, tuple) else (out,), grads))
    total.backward()
    assert_grads_match(model, reference, "used twice")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batch=st.integers(0, 4), latent_dim=st.integers(1, 3), hidden_sizes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       image_size=st.integers(1, 3), num_classes=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_gan_players_fuzz_against_torch_nn(batch, latent_dim, hidden_sizes, image_size, num_classes, seed):
    """Random small players (any depth, a batch of 0 to 4, any labels): the NumPy generator's and
    discriminator's outputs and every gradient equal torch.nn's in float64."""
    config = CGANConfig(latent_dim=latent_dim, hidden_sizes=tuple(hidden_sizes), image_size=image_size, in_channels=1,
                        num_classes=num_classes)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, batch)
    topic = get_module("numpy", MODULE)
    for player, reference_class, x in ((topic.ConditionalGenerator, TorchConditionalGenerator, rng.standard_normal((batch, latent_dim))),
                                       (topic.ConditionalDiscriminator, TorchConditionalDiscriminator,
                                        rng.uniform(-1, 1, (batch, 1, image_size, image_size)))):
        model = player(config, dtype="float64", rng=rng)
        state = random_weights(model.canonical_state_dict(), rng)
        model.load_canonical_state_dict(state)
        reference = reference_class(config).double()
        reference.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()})
        out = model(x, labels)
        grad_out = rng.standard_normal(out.shape)
        grad_x = model.backward(grad_out)
        tx = torch.from_numpy(x).requires_grad_()
        t_out = reference(tx, torch.from_numpy(labels))
        (t_out * torch.from_numpy(grad_out)).sum().backward()
        np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=TOLERANCES["float64"], atol=1e-12)
        np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=TOLERANCES["float64"], atol=1e-12)
        assert_grads_match(model, reference, f"fuzz {player.__name__}")


def tree_inputs(tree: str, name: str, labels) -> tuple:
    """Zero float inputs of the right shapes for ``name`` in ``tree``, with the given labels."""
    n = len(labels) if np.ndim(labels) else BATCH
    image = (lambda c, s: np.zeros((n, s, s, c) if tree == "tf" else (n, c, s, s)))
    if name == "ConditionalVAE":
        args = (image(1, 8), labels, np.zeros((n, CVAE.latent_dim)))
    elif name == "ConditionalGenerator":
        args = (np.zeros((BATCH, CGAN.latent_dim)), labels)
    else:
        args = (image(1, CGAN.image_size), labels)
    return tuple(to_tree(tree, a) if a is not labels else to_tree(tree, np.asarray(labels)) for a in args)


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("name", list(REFERENCES))
def test_labels_are_refused_with_the_same_error_in_every_tree(tree, name):
    """Out of range, not int64, the wrong length, the wrong rank: one error text in every tree."""
    config, _ = REFERENCES[name]
    model = getattr(get_module(tree, MODULE), name)(config, dtype="float64", rng=np.random.default_rng(0))

    def call(labels, n=BATCH):
        args = list(tree_inputs(tree, name, np.zeros(n, dtype=np.int64)))
        args[1] = to_tree(tree, labels)
        return lambda: model(*args)

    assert_raises_exactly(ValueError, f"{name}: labels must lie in [0, 3), got values in [-1, 3]",
                          call(np.array([0, 3, -1], dtype=np.int64)))
    assert_raises_exactly(TypeError, f"{name}: labels must have dtype int64, got int32 (cast it explicitly)",
                          call(np.array([0, 1, 2], dtype=np.int32)))
    assert_raises_exactly(TypeError, f"{name}: labels must have dtype int64, got float64 (cast it explicitly)",
                          call(np.array([0.0, 1.0, 2.0])))
    assert_raises_exactly(ValueError, f"{name}: labels must have shape (3,), got (2,)", call(np.array([0, 1], dtype=np.int64)))
    assert_raises_exactly(ValueError, f"{name}: labels must have 1 dimensions, got shape (3, 1)",
                          call(np.zeros((3, 1), dtype=np.int64)))


def test_tf_tree_traced_checks_labels_dtype_and_shape():
    """Under ``tf.function`` (the examples' TF steps) the label values are unknown at trace time:
    the outputs equal the eager ones, and a wrong dtype or length is still refused."""
    import tensorflow as tf

    generator = get_module("tf", MODULE).ConditionalGenerator(CGAN, dtype="float64", rng=np.random.default_rng(0))
    traced = tf.function(lambda z, labels: generator(z, labels))
    z = tf.constant(np.random.default_rng(1).standard_normal((BATCH, CGAN.latent_dim)))
    np.testing.assert_array_equal(traced(z, tf.constant(LABELS)).numpy(), generator(z, tf.constant(LABELS)).numpy())
    # Raised while tracing, the error comes wrapped in TF's "in user code:" report: same type, text inside.
    with pytest.raises(ValueError, match=re.escape("ConditionalGenerator: labels must have shape (3,), got (2,)")):
        traced(z, tf.constant(LABELS[:2]))
    with pytest.raises(TypeError, match=re.escape("ConditionalGenerator: labels must have dtype int64, got int32")):
        traced(z, tf.constant(LABELS, dtype=tf.int32))


@pytest.mark.parametrize("tree", TREES)
def test_configs_and_other_inputs_are_refused(tree):
    topic = get_module(tree, MODULE)
    with pytest.raises(TypeError, match="ConditionalVAE: config must be an ml100.configs.CVAEConfig"):
        topic.ConditionalVAE(VAEConfig())
    with pytest.raises(TypeError, match="ConditionalGenerator: config must be an ml100.configs.CGANConfig"):
        topic.ConditionalGenerator(GANConfig())
    with pytest.raises(TypeError, match="ConditionalDiscriminator: config must be an ml100.configs.CGANConfig"):
        topic.ConditionalDiscriminator(GANConfig())
    model = topic.ConditionalVAE(CVAE, dtype="float64", rng=np.random.default_rng(0))
    x, labels, _ = tree_inputs(tree, "ConditionalVAE", LABELS)
    assert_raises_exactly(ValueError, "ConditionalVAE: eps must have shape (N, latent_dim) = (3, 2), got (3, 3)",
                          lambda: model(x, labels, to_tree(tree, np.zeros((BATCH, 3)))))
    assert_raises_exactly(ValueError, "ConditionalVAE: z must have shape (..., 2), got (3, 3)",
                          lambda: model.decode(to_tree(tree, np.zeros((BATCH, 3))), labels))
    generator = topic.ConditionalGenerator(CGAN, dtype="float64", rng=np.random.default_rng(0))
    assert_raises_exactly(TypeError, "ConditionalGenerator: z must have dtype float64, got float32 (cast it explicitly)",
                          lambda: generator(to_tree(tree, np.zeros((BATCH, 3), np.float32)), labels))


def test_config_fields_are_checked():
    with pytest.raises(ConfigError, match="num_classes"):
        CVAEConfig(num_classes=0)
    with pytest.raises(ConfigError, match="num_classes"):
        dataclasses.replace(CGAN, num_classes=0)
    with pytest.raises(ConfigError, match="image_size"):
        dataclasses.replace(CVAE, image_size=6)


# ---- a conditional-GAN trajectory: 20 alternating steps of GANStep in float64 ----

STEPS, TRAIN_BATCH, LR, BETAS = 20, 8, 2e-3, (0.5, 0.999)
TRAJECTORY_CONFIG = CGANConfig(latent_dim=3, hidden_sizes=(6, 8), image_size=8, in_channels=1, num_classes=10)


def trajectory_state() -> dict[str, np.ndarray]:
    """Shared initial weights of both players, prefixed ``generator.`` / ``discriminator.``."""
    topic = get_module("numpy", MODULE)
    state = {}
    for prefix, player in (("generator", topic.ConditionalGenerator), ("discriminator", topic.ConditionalDiscriminator)):
        model = player(TRAJECTORY_CONFIG, dtype="float64", rng=np.random.default_rng(0))
        state.update({f"{prefix}.{k}": v for k, v in random_weights(model.canonical_state_dict(), np.random.default_rng(1)).items()})
    return state


def trajectory_data():
    """Eight digits scaled to [-1, 1] (the generator's tanh range) and their labels."""
    split = load_digits_split("NCHW", dtype="float64")
    return 2.0 * split.x_train[:TRAIN_BATCH] - 1.0, split.y_train[:TRAIN_BATCH]


def trajectory_noise(t: int) -> tuple[np.ndarray, np.ndarray]:
    """Step t's ``z_d`` and ``z_g``, the same in every tree: randomness is an input."""
    rng = np.random.default_rng(1000 + t)
    return tuple(rng.standard_normal((TRAIN_BATCH, TRAJECTORY_CONFIG.latent_dim)) for _ in range(2))


def player_state(players: dict) -> dict[str, np.ndarray]:
    return {f"{prefix}.{k}": v for prefix, model in players.items() for k, v in model.canonical_state_dict().items()}


def tree_start(tree: str, dtype: str):
    topic, optim = get_module(tree, MODULE), get_module(tree, "foundations.optim")
    state = trajectory_state()
    players = {"generator": topic.ConditionalGenerator(TRAJECTORY_CONFIG, dtype=dtype),
               "discriminator": topic.ConditionalDiscriminator(TRAJECTORY_CONFIG, dtype=dtype)}
    for prefix, model in players.items():
        model.load_canonical_state_dict({k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")})
    g_opt, d_opt = (optim.Adam(dict(players[p].named_parameters()), lr=LR, betas=BETAS) for p in ("generator", "discriminator"))
    step = get_module(tree, "generative.gan").GANStep(players["generator"], players["discriminator"], g_opt, d_opt)
    real, labels = trajectory_data()
    return tree, players, step, to_tree(tree, real.transpose(0, 2, 3, 1) if tree == "tf" else real), to_tree(tree, labels)


def tree_step(state, t: int) -> dict[str, np.ndarray]:
    tree, players, gan_step, real, labels = state
    z_d, z_g = trajectory_noise(t)
    d_loss, g_loss = gan_step(real, to_tree(tree, z_d), to_tree(tree, z_g), labels)
    return {"d_loss": np.asarray(d_loss), "g_loss": np.asarray(g_loss), **player_state(players)}


def torch_start(dtype: str):
    """The reference: torch.nn players, torch.optim.Adam, the losses in torch ops."""
    state = trajectory_state()
    players = {"generator": TorchConditionalGenerator(TRAJECTORY_CONFIG).double(),
               "discriminator": TorchConditionalDiscriminator(TRAJECTORY_CONFIG).double()}
    for prefix, model in players.items():
        model.load_state_dict({k[len(prefix) + 1:]: torch.from_numpy(v) for k, v in state.items() if k.startswith(prefix + ".")})
    optimizers = {p: torch.optim.Adam(m.parameters(), lr=LR, betas=BETAS) for p, m in players.items()}
    real, labels = trajectory_data()
    return players, optimizers, torch.from_numpy(real), torch.from_numpy(labels)


def torch_step(state, t: int) -> dict[str, np.ndarray]:
    players, optimizers, real, labels = state
    generator, discriminator = players["generator"], players["discriminator"]
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    z_d, z_g = (torch.from_numpy(z) for z in trajectory_noise(t))
    optimizers["discriminator"].zero_grad()
    fake = generator(z_d, labels).detach()
    real_logits, fake_logits = discriminator(real, labels), discriminator(fake, labels)
    d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
    d_loss.backward()
    optimizers["discriminator"].step()
    optimizers["generator"].zero_grad()
    logits = discriminator(generator(z_g, labels), labels)
    g_loss = bce(logits, torch.ones_like(logits))
    g_loss.backward()
    optimizers["generator"].step()
    with torch.no_grad():
        params = {f"{p}.{k}": v.numpy().copy() for p, m in players.items() for k, v in m.state_dict().items()}
    return {"d_loss": np.asarray(d_loss.item()), "g_loss": np.asarray(g_loss.item()), **params}


def test_conditional_gan_trajectory_matches_torch_every_step():
    """20 alternating rounds (discriminator, then generator through the updated discriminator) in
    float64: both losses and both players' every parameter agree after every step."""
    trajectory = Trajectory(STEPS, tree_start, tree_step, references={"torch.nn + torch.optim.Adam": (torch_start, torch_step)})
    histories = check_trajectory(trajectory, "float64", "conditional GAN")
    first, last = histories["numpy"][0], histories["numpy"][-1]
    # The label embeddings moved: the condition takes part in the game.
    assert not np.allclose(first["discriminator.label_embedding.weight"], last["discriminator.label_embedding.weight"])
    assert not np.allclose(first["generator.label_embedding.weight"], last["generator.label_embedding.weight"])
