"""Day 6: initializers. The same seed gives the same weights in all three trees; fans and gains
equal ``torch.nn.init``'s; the sampled variance matches theory, as do torch's and Keras' own."""
import math

import keras
import numpy as np
import pytest
import torch

from ml100.backends import get_module
from parity_tests.harness import TOLERANCES, TREES, max_errors

SHAPE = (256, 384)  # canonical (out, in): 98,304 draws
FAN_IN, FAN_OUT = 384, 256
# The sample variance of n i.i.d. draws has relative standard error sqrt(2/n) (normal) or
# sqrt(0.8/n) (uniform): 0.45% here. Six standard errors make a false alarm ~1e-9 likely.
STAT_TOLERANCE = 6 * math.sqrt(2 / (SHAPE[0] * SHAPE[1]))

# name -> (kwargs, theoretical variance, torch.nn.init in-place function, Keras initializer or None)
INITIALIZERS = {
    "xavier_uniform": ({}, 2 / (FAN_IN + FAN_OUT), torch.nn.init.xavier_uniform_, keras.initializers.GlorotUniform),
    "xavier_normal": ({}, 2 / (FAN_IN + FAN_OUT), torch.nn.init.xavier_normal_, keras.initializers.GlorotNormal),
    "kaiming_uniform": ({"nonlinearity": "relu"}, 2 / FAN_IN, lambda t: torch.nn.init.kaiming_uniform_(t, nonlinearity="relu"), keras.initializers.HeUniform),
    "kaiming_normal": ({"nonlinearity": "relu"}, 2 / FAN_IN, lambda t: torch.nn.init.kaiming_normal_(t, nonlinearity="relu"), keras.initializers.HeNormal),
    "lecun_uniform": ({}, 1 / FAN_IN, None, keras.initializers.LecunUniform),
    "lecun_normal": ({}, 1 / FAN_IN, None, keras.initializers.LecunNormal),
}


def draw(tree, name, shape=SHAPE, seed=0, dtype="float64"):
    kwargs = INITIALIZERS[name][0]
    fn = getattr(get_module(tree, "foundations.init"), name)
    return np.asarray(fn(shape, np.random.default_rng(seed), **kwargs, dtype=dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", INITIALIZERS)
def test_same_seed_same_weights_in_every_tree(name, dtype):
    reference = draw("numpy", name, (7, 5, 3), dtype=dtype)
    assert reference.dtype == np.dtype(dtype)
    for tree in ("torch", "tf"):
        got = draw(tree, name, (7, 5, 3), dtype=dtype)
        abs_err, rel_err = max_errors(got, reference)
        assert got.dtype == np.dtype(dtype) and rel_err <= TOLERANCES[dtype], f"{name} [{tree} vs numpy]: max abs err {abs_err:.3e}"


@pytest.mark.parametrize("name", INITIALIZERS)
def test_variance_matches_theory_and_the_frameworks(name):
    _, variance, torch_init, keras_init = INITIALIZERS[name]
    samples = {"ours": draw("numpy", name)}
    if torch_init is not None:
        samples["torch.nn.init"] = torch_init(torch.empty(SHAPE, dtype=torch.float64)).numpy()
    # Keras lays a dense kernel out (in, out): the transpose of the canonical shape, same fans.
    samples["keras"] = keras_init(seed=0)(SHAPE[::-1], dtype="float64").numpy()
    for source, w in samples.items():
        ratio = w.var() / variance
        assert abs(ratio - 1) < STAT_TOLERANCE, f"{name} [{source}]: sample variance / theory = {ratio:.4f}"


@pytest.mark.parametrize("name", ["xavier_uniform", "kaiming_uniform", "lecun_uniform"])
def test_uniform_bound_is_sqrt_three_variances(name):
    bound = math.sqrt(3 * INITIALIZERS[name][1])
    w = draw("numpy", name)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.999 * bound


def test_keras_normal_initializers_are_truncated():
    """Keras' Glorot/He/LeCun normals are truncated at 2 std (rescaled so the variance is kept);
    torch's and ours are plain normals. Same variance, different tails."""
    std = math.sqrt(INITIALIZERS["kaiming_normal"][1])
    keras_w = keras.initializers.HeNormal(seed=0)(SHAPE[::-1], dtype="float64").numpy()
    ours = draw("numpy", "kaiming_normal")
    assert np.abs(keras_w).max() <= 2 * std / 0.87962566103423978 + 1e-12
    assert np.abs(ours).max() > 3 * std


@pytest.mark.parametrize("shape", [(6, 4), (8, 3, 5, 5), (2, 7, 3)])
def test_fans_and_gains_match_torch(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    for tree in TREES:
        init = get_module(tree, "foundations.init")
        assert init.compute_fans(shape) == expected, tree
        for nonlinearity, param in [("relu", None), ("tanh", None), ("leaky_relu", 0.2), ("linear", None), ("sigmoid", None)]:
            assert init.calculate_gain(nonlinearity, param) == pytest.approx(torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)


def test_bad_arguments_are_clear_errors():
    for tree in TREES:
        init = get_module(tree, "foundations.init")
        with pytest.raises(ValueError, match="at least 2 dimensions"):
            init.xavier_uniform((5,), np.random.default_rng(0))
        with pytest.raises(ValueError, match="unknown nonlinearity 'swish'"):
            init.calculate_gain("swish")
        with pytest.raises(ValueError, match="mode must be"):
            init.kaiming_normal((3, 4), np.random.default_rng(0), mode="fan_avg")
        with pytest.raises(TypeError, match="dtype must be one of"):
            init.lecun_normal((3, 4), np.random.default_rng(0), dtype="int32")
