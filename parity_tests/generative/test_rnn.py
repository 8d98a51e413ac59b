"""Day 22: the vanilla RNN in three trees, against ``torch.nn.RNN`` (same state dict, every option)
and ``keras.layers.SimpleRNN`` fed converted weights (one layer, one direction)."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy,
                                  keras_recurrent_reference, random_weights, to_tree, torch_module_reference)

IN, HIDDEN, STEPS, BATCH = 3, 4, 5, 2


def rnn_case(num_layers=1, bidirectional=False, batch_first=False, nonlinearity="tanh", bias=True, with_hx=True,
             unbatched=False, keras=False, steps=STEPS, **fields):
    directions = 2 if bidirectional else 1
    options = dict(num_layers=num_layers, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first,
                   bidirectional=bidirectional)

    def inputs(dtype, rng):
        shape = (steps, IN) if unbatched else (BATCH, steps, IN) if batch_first else (steps, BATCH, IN)
        values = {"x": rng.standard_normal(shape).astype(dtype)}
        if with_hx:
            hx_shape = (num_layers * directions, HIDDEN) if unbatched else (num_layers * directions, BATCH, HIDDEN)
            values["hx"] = rng.standard_normal(hx_shape).astype(dtype)
        return values

    differentiable = ("x", "hx") if with_hx else ("x",)
    references = {"torch.nn.RNN": torch_module_reference(lambda dtype: torch.nn.RNN(IN, HIDDEN, **options),
                                                         differentiable)}
    if keras:
        name = "keras.layers.Bidirectional(SimpleRNN)" if bidirectional else "keras.layers.SimpleRNN"
        # keras.layers.SimpleRNN, in keras.layers.Bidirectional when bidirectional (one layer).
        references[name] = keras_recurrent_reference("rnn", IN, HIDDEN, batch_first=batch_first,
                                                     bidirectional=bidirectional, differentiable=differentiable,
                                                     nonlinearity=nonlinearity, wrapper=bidirectional)
    return Case(
        module="generative.rnn",
        build=lambda m, dtype, rng: m.RNN(IN, HIDDEN, dtype=dtype, rng=rng, **options),
        inputs=inputs,
        differentiable=differentiable,
        references=references,
        output_names=("output", "h_n"),
        # The batch is axis 1 of a time-major input and of hx; an unbatched sequence has none.
        batch_axes={"x": None if unbatched else 0 if batch_first else 1, "hx": None if unbatched else 1},
        **fields,
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rnn_parity_with_hx_against_torch_and_keras(dtype):
    check_parity(rnn_case(keras=True), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rnn_parity_two_layers_bidirectional(dtype):
    check_parity(rnn_case(num_layers=2, bidirectional=True), dtype)


def test_rnn_parity_batch_first_relu_without_bias_or_hx():
    check_parity(rnn_case(batch_first=True, nonlinearity="relu", bias=False, with_hx=False), "float64")


#: Keras's relu (tf.nn.relu) gives slope 0 at NaN where torch's gives 1, so a NaN input changes
#: Keras's gradients elsewhere; the trees follow torch (its values at special inputs are the oracle).
KERAS_RELU_AT_NAN = "keras relu's gradient at NaN is 0 (torch's: 1), which reaches every gradient"


def test_rnn_parity_relu_batch_first_against_keras():
    check_parity(rnn_case(batch_first=True, nonlinearity="relu", keras=True,
                          special_excluded_references={"keras.layers.SimpleRNN": KERAS_RELU_AT_NAN}), "float64")


def test_rnn_parity_two_layers_without_hx():
    check_parity(rnn_case(num_layers=2, with_hx=False), "float64")


@pytest.mark.parametrize("with_hx", [True, False])
def test_rnn_parity_bidirectional_against_keras_bidirectional(with_hx):
    check_parity(rnn_case(bidirectional=True, with_hx=with_hx, keras=True), "float64")


def test_rnn_parity_unbatched_sequence():
    check_parity(rnn_case(bidirectional=True, unbatched=True), "float64")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(num_layers=st.integers(1, 2), bidirectional=st.booleans(), batch_first=st.booleans(),
       nonlinearity=st.sampled_from(["tanh", "relu"]), bias=st.booleans(), with_hx=st.booleans(), steps=st.integers(1, 4))
def test_rnn_fuzz(num_layers, bidirectional, batch_first, nonlinearity, bias, with_hx, steps):
    """Random options and lengths: every tree and torch.nn.RNN agree (special values included)."""
    check_parity(rnn_case(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                          nonlinearity=nonlinearity, bias=bias, with_hx=with_hx, steps=steps), "float64")


def test_rnn_gradcheck():
    gradcheck_numpy(rnn_case(num_layers=2, bidirectional=True, steps=3))


def test_rnn_gradcheck_relu():
    gradcheck_numpy(rnn_case(nonlinearity="relu", batch_first=True, steps=3))


@pytest.mark.parametrize("tree", TREES)
def test_torch_state_dict_loads_unchanged(tree):
    """``nn.RNN(...).state_dict()`` (2 layers, bidirectional) is the canonical state: it loads as is."""
    reference = torch.nn.RNN(IN, HIDDEN, num_layers=2, bidirectional=True)
    state = {name: value.numpy() for name, value in reference.state_dict().items()}
    model = get_module(tree, "generative.rnn").RNN(IN, HIDDEN, num_layers=2, bidirectional=True,
                                                   rng=np.random.default_rng(0))
    model.load_canonical_state_dict(state)
    assert list(model.canonical_state_dict()) == list(state)


def test_same_rng_same_weights_in_every_tree():
    """torch's init, U(-1/sqrt(H), 1/sqrt(H)), drawn in torch's parameter order from one generator."""
    states = [get_module(tree, "generative.rnn").RNN(IN, HIDDEN, num_layers=2, bidirectional=True,
                                                     rng=np.random.default_rng(7)).canonical_state_dict()
              for tree in TREES]
    for state in states[1:]:
        assert list(state) == list(states[0])
        assert all(np.array_equal(state[name], states[0][name]) for name in state)
    bound = 1 / np.sqrt(HIDDEN)
    assert all(np.abs(value).max() <= bound for value in states[0].values())


def test_numpy_rnn_used_twice_matches_autograd():
    """Two chained calls (the second starts from the first's h_n), then two backwards in reverse
    order: the NumPy module sums both uses' gradients, as autograd does in the torch tree."""
    dtype = "float64"
    models = {tree: get_module(tree, "generative.rnn").RNN(IN, HIDDEN, num_layers=2, bidirectional=True, dtype=dtype)
              for tree in ("numpy", "torch")}
    state = random_weights(models["numpy"].canonical_state_dict(), np.random.default_rng(1))
    for model in models.values():
        model.load_canonical_state_dict(state)
    rng = np.random.default_rng(2)
    x1, x2 = rng.standard_normal((2, STEPS, BATCH, IN))
    h0 = rng.standard_normal((4, BATCH, HIDDEN))
    g1, g2 = rng.standard_normal((2, STEPS, BATCH, 2 * HIDDEN))
    g_h = rng.standard_normal((4, BATCH, HIDDEN))

    numpy_model = models["numpy"]
    out1, h1 = numpy_model(x1, h0)
    out2, h2 = numpy_model(x2, h1)
    grad_x2, grad_h1 = numpy_model.backward(g2, g_h)
    grad_x1, grad_h0 = numpy_model.backward(g1, grad_h1)

    tensors = [torch.tensor(a, requires_grad=True) for a in (x1, x2, h0)]
    t_out1, t_h1 = models["torch"](tensors[0], tensors[2])
    t_out2, t_h2 = models["torch"](tensors[1], t_h1)
    ((t_out1 * torch.tensor(g1)).sum() + (t_out2 * torch.tensor(g2)).sum() + (t_h2 * torch.tensor(g_h)).sum()).backward()
    pairs = {"out2": (out2, t_out2), "h_n": (h2, t_h2), "grad x1": (grad_x1, tensors[0].grad),
             "grad x2": (grad_x2, tensors[1].grad), "grad h0": (grad_h0, tensors[2].grad)}
    pairs.update({name: (numpy_model.canonical_grads()[name], grad)
                  for name, grad in models["torch"].canonical_grads().items()})
    for name, (ours, theirs) in pairs.items():
        np.testing.assert_allclose(ours, theirs.detach().numpy() if torch.is_tensor(theirs) else theirs,
                                   rtol=1e-9, atol=1e-9, err_msg=name)


def test_numpy_backward_without_cotangents_is_zero_and_no_grad_keeps_nothing():
    model = get_module("numpy", "generative.rnn").RNN(IN, HIDDEN, dtype="float64", rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((STEPS, BATCH, IN))
    with get_module("numpy", "module").no_grad():
        model(x)
    model(x)
    assert not np.any(model.backward(None, None))
    with pytest.raises(RuntimeError, match="nothing cached"):
        model.backward(None, None)


#: (arguments, keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "zero hidden_size": ((IN, 0), {}, ValueError, "RNN: hidden_size must be an int >= 1, got 0"),
    "negative input_size": ((-1, HIDDEN), {}, ValueError, "RNN: input_size must be an int >= 0, got -1"),
    "zero num_layers": ((IN, HIDDEN), {"num_layers": 0}, ValueError, "RNN: num_layers must be an int >= 1, got 0"),
    "unknown nonlinearity": ((IN, HIDDEN), {"nonlinearity": "sigmoid"}, ValueError,
                             "RNN: nonlinearity must be one of ('tanh', 'relu'), got 'sigmoid'"),
    "string bidirectional": ((IN, HIDDEN), {"bidirectional": "yes"}, TypeError,
                             "RNN: bidirectional must be a bool (True or False), got 'yes'"),
    "dropout out of range": ((IN, HIDDEN), {"dropout": 1.5}, ValueError, "RNN: dropout must be in [0, 1], got 1.5"),
    "dropout between layers": ((IN, HIDDEN), {"num_layers": 2, "dropout": 0.5}, ValueError,
                               "RNN: dropout=0.5 is not supported (only 0.0): dropout between layers needs random "
                               "masks, and in this project randomness is an input; apply a Dropout module with its "
                               "own rng to each layer's output instead"),
    "seed as rng": ((IN, HIDDEN), {"rng": 0}, TypeError,
                    "RNN: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: get_module(tree, "generative.rnn").RNN(*args, **kwargs))


#: (input shape, hx shape or None, input dtype, exception, message) for RNN(3, 4, num_layers=2) in float32.
BAD_INPUTS = {
    "wrong feature size": ((STEPS, BATCH, 5), None, "float32", ValueError,
                           "RNN: input must have shape (..., 3), got (5, 2, 5)"),
    "rank 4 input": ((STEPS, BATCH, 1, IN), None, "float32", ValueError,
                     "RNN: input must have 2 or 3 dimensions, got shape (5, 2, 1, 3)"),
    "empty sequence": ((0, BATCH, IN), None, "float32", ValueError,
                       "RNN: input must hold at least one time step (axis 0), got shape (0, 2, 3)"),
    "float64 input": ((STEPS, BATCH, IN), None, "float64", TypeError,
                      "RNN: input must have dtype float32, got float64 (cast it explicitly)"),
    "hx of one layer": ((STEPS, BATCH, IN), (1, BATCH, HIDDEN), "float32", ValueError,
                        "RNN: hx must have shape (2, 2, 4), got (1, 2, 4)"),
    "batched hx for an unbatched input": ((STEPS, IN), (2, BATCH, HIDDEN), "float32", ValueError,
                                          "RNN: hx must have shape (2, 4), got (2, 2, 4)"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_INPUTS))
def test_bad_inputs_raise_one_clear_error(what, tree):
    x_shape, hx_shape, dtype, error, message = BAD_INPUTS[what]
    model = get_module(tree, "generative.rnn").RNN(IN, HIDDEN, num_layers=2, rng=np.random.default_rng(0))
    x = to_tree(tree, np.zeros(x_shape, dtype))
    hx = None if hx_shape is None else to_tree(tree, np.zeros(hx_shape, "float32"))
    assert_raises_exactly(error, message, lambda: model(x, hx))
