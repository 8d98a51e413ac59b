"""Day 24: the LSTM in three trees, against ``torch.nn.LSTM`` (same state dict, every option) and
``keras.layers.LSTM`` fed converted weights (one layer, one direction)."""
import numpy as np
import pytest
import torch

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy,
                                  keras_recurrent_reference, lstm_with_state, random_weights, run_torch, to_tree)

IN, HIDDEN, STEPS, BATCH = 3, 4, 5, 2


def torch_lstm_reference(with_hx: bool, **options):
    """``torch.nn.LSTM`` strictly loaded with the canonical state (its own names by definition)."""
    def run(state, inputs, cotangents, dtype):
        module = torch.nn.LSTM(IN, HIDDEN, dtype=getattr(torch, dtype), **options)
        module.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
        call = (lambda x, h_0, c_0: module(x, (h_0, c_0))) if with_hx else module
        return run_torch(call, inputs, tuple(inputs), cotangents, params=dict(module.named_parameters()))

    return run


def lstm_case(num_layers=1, bidirectional=False, batch_first=False, bias=True, with_hx=True, unbatched=False,
              keras=False, steps=STEPS, **fields):
    directions = 2 if bidirectional else 1
    options = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)

    def inputs(dtype, rng):
        shape = (steps, IN) if unbatched else (BATCH, steps, IN) if batch_first else (steps, BATCH, IN)
        values = {"x": rng.standard_normal(shape).astype(dtype)}
        if with_hx:
            state_shape = (num_layers * directions, HIDDEN) if unbatched else (num_layers * directions, BATCH, HIDDEN)
            values["h_0"] = rng.standard_normal(state_shape).astype(dtype)
            values["c_0"] = rng.standard_normal(state_shape).astype(dtype)
        return values

    def build(m, dtype, rng):
        make = lstm_with_state if with_hx else lambda m, *args, **kwargs: m.LSTM(*args, **kwargs)
        return make(m, IN, HIDDEN, dtype=dtype, rng=rng, **options)

    references = {"torch.nn.LSTM": torch_lstm_reference(with_hx, **options)}
    if keras:
        name = "keras.layers.Bidirectional(LSTM)" if bidirectional else "keras.layers.LSTM"
        # keras.layers.LSTM, in keras.layers.Bidirectional when bidirectional (one layer).
        references[name] = keras_recurrent_reference("lstm", IN, HIDDEN, batch_first=batch_first,
                                                     bidirectional=bidirectional,
                                                     differentiable=("x", "h_0", "c_0") if with_hx else ("x",),
                                                     wrapper=bidirectional)
    state_axis = None if unbatched else 1
    return Case(
        module="generative.lstm",
        build=build,
        inputs=inputs,
        differentiable=("x", "h_0", "c_0") if with_hx else ("x",),
        references=references,
        output_names=("output", "h_n", "c_n"),
        # The batch is axis 1 of a time-major input and of the states; an unbatched sequence has none.
        batch_axes={"x": None if unbatched else 0 if batch_first else 1, "h_0": state_axis, "c_0": state_axis},
        **fields,
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lstm_parity_with_state_against_torch_and_keras(dtype):
    check_parity(lstm_case(keras=True), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lstm_parity_two_layers_bidirectional(dtype):
    check_parity(lstm_case(num_layers=2, bidirectional=True), dtype)


def test_lstm_parity_batch_first_without_state_against_keras():
    check_parity(lstm_case(batch_first=True, with_hx=False, keras=True), "float64")


def test_lstm_parity_without_bias():
    check_parity(lstm_case(bias=False, num_layers=2), "float64")


def test_lstm_parity_bidirectional_against_keras_bidirectional():
    check_parity(lstm_case(bidirectional=True, keras=True), "float64")


def test_lstm_parity_unbatched_sequence():
    check_parity(lstm_case(bidirectional=True, unbatched=True), "float64")


def test_tf_tree_traces_under_tf_function():
    """The TF tree's Python loop over a static T traces (unrolled) into a tf.function, with the
    eager outputs and gradients: what benchmarks/bench_lstm.py times."""
    import tensorflow as tf
    model = get_module("tf", "generative.lstm").LSTM(IN, HIDDEN, num_layers=2, bidirectional=True, dtype="float64",
                                                     rng=np.random.default_rng(0))
    x = tf.constant(np.random.default_rng(1).standard_normal((STEPS, BATCH, IN)))

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            output, (h_n, c_n) = model(x)
            loss = tf.reduce_sum(output ** 2) + tf.reduce_sum(h_n * c_n)
        return [output, h_n, c_n, *tape.gradient(loss, [x, *model.params.values()])]

    for eager, traced in zip(step(x), tf.function(step)(x)):
        np.testing.assert_allclose(traced.numpy(), eager.numpy(), rtol=1e-12, atol=1e-12)


def test_lstm_gradcheck():
    gradcheck_numpy(lstm_case(num_layers=2, bidirectional=True, steps=3))


@pytest.mark.parametrize("tree", TREES)
def test_torch_state_dict_loads_unchanged(tree):
    """``nn.LSTM(...).state_dict()`` (2 layers, bidirectional) is the canonical state: it loads as is."""
    reference = torch.nn.LSTM(IN, HIDDEN, num_layers=2, bidirectional=True)
    state = {name: value.numpy() for name, value in reference.state_dict().items()}
    model = get_module(tree, "generative.lstm").LSTM(IN, HIDDEN, num_layers=2, bidirectional=True,
                                                     rng=np.random.default_rng(0))
    model.load_canonical_state_dict(state)
    assert list(model.canonical_state_dict()) == list(state)
    assert state["weight_ih_l0"].shape == (4 * HIDDEN, IN)


def test_same_rng_same_weights_in_every_tree():
    states = [get_module(tree, "generative.lstm").LSTM(IN, HIDDEN, bidirectional=True,
                                                       rng=np.random.default_rng(7)).canonical_state_dict()
              for tree in TREES]
    for state in states[1:]:
        assert list(state) == list(states[0])
        assert all(np.array_equal(state[name], states[0][name]) for name in state)
    assert all(np.abs(value).max() <= 1 / np.sqrt(HIDDEN) for value in states[0].values())


def test_numpy_lstm_used_twice_matches_autograd():
    """Two chained calls (the second starts from the first's ``(h_n, c_n)``), then two backwards in
    reverse order: the NumPy module sums both uses' gradients, as autograd does in the torch tree."""
    models = {tree: get_module(tree, "generative.lstm").LSTM(IN, HIDDEN, bidirectional=True, dtype="float64")
              for tree in ("numpy", "torch")}
    state = random_weights(models["numpy"].canonical_state_dict(), np.random.default_rng(1))
    for model in models.values():
        model.load_canonical_state_dict(state)
    rng = np.random.default_rng(2)
    x1, x2 = rng.standard_normal((2, STEPS, BATCH, IN))
    h0, c0, g_h, g_c = rng.standard_normal((4, 2, BATCH, HIDDEN))
    g1, g2 = rng.standard_normal((2, STEPS, BATCH, 2 * HIDDEN))

    numpy_model = models["numpy"]
    _, state1 = numpy_model(x1, (h0, c0))
    out2, (h2, c2) = numpy_model(x2, state1)
    grad_x2, (grad_h1, grad_c1) = numpy_model.backward(g2, g_h, g_c)
    grad_x1, (grad_h0, grad_c0) = numpy_model.backward(g1, grad_h1, grad_c1)

    tensors = [torch.tensor(a, requires_grad=True) for a in (x1, x2, h0, c0)]
    t_out1, t_state1 = models["torch"](tensors[0], (tensors[2], tensors[3]))
    t_out2, (t_h2, t_c2) = models["torch"](tensors[1], t_state1)
    loss = sum((t * torch.tensor(g)).sum() for t, g in ((t_out1, g1), (t_out2, g2), (t_h2, g_h), (t_c2, g_c)))
    loss.backward()
    pairs = {"out2": (out2, t_out2), "c_n": (c2, t_c2), "grad x1": (grad_x1, tensors[0].grad),
             "grad x2": (grad_x2, tensors[1].grad), "grad h0": (grad_h0, tensors[2].grad),
             "grad c0": (grad_c0, tensors[3].grad)}
    pairs.update({name: (numpy_model.canonical_grads()[name], grad)
                  for name, grad in models["torch"].canonical_grads().items()})
    for name, (ours, theirs) in pairs.items():
        np.testing.assert_allclose(ours, theirs.detach().numpy() if torch.is_tensor(theirs) else theirs,
                                   rtol=1e-9, atol=1e-9, err_msg=name)


#: (arguments, keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "zero hidden_size": ((IN, 0), {}, ValueError, "LSTM: hidden_size must be an int >= 1, got 0"),
    "projection": ((IN, HIDDEN), {"proj_size": 2}, ValueError,
                   "LSTM: proj_size=2 is not supported (only 0): projected LSTMs (h_t = W_hr h_t, Sak et al. 2014) "
                   "are not implemented; use proj_size=0"),
    "negative proj_size": ((IN, HIDDEN), {"proj_size": -1}, ValueError, "LSTM: proj_size must be an int >= 0, got -1"),
    "dropout between layers": ((IN, HIDDEN), {"num_layers": 2, "dropout": 0.2}, ValueError,
                               "LSTM: dropout=0.2 is not supported (only 0.0): dropout between layers needs random "
                               "masks, and in this project randomness is an input; apply a Dropout module with its "
                               "own rng to each layer's output instead"),
    "string batch_first": ((IN, HIDDEN), {"batch_first": 1}, TypeError,
                           "LSTM: batch_first must be a bool (True or False), got 1"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: get_module(tree, "generative.lstm").LSTM(*args, **kwargs))


@pytest.mark.parametrize("tree", TREES)
def test_bad_states_raise_one_clear_error(tree):
    model = get_module(tree, "generative.lstm").LSTM(IN, HIDDEN, rng=np.random.default_rng(0))
    x = to_tree(tree, np.zeros((STEPS, BATCH, IN), "float32"))
    h_0 = to_tree(tree, np.zeros((1, BATCH, HIDDEN), "float32"))
    assert_raises_exactly(TypeError, "LSTM: hx must be None or a pair (h_0, c_0), got " + type(h_0).__name__,
                          lambda: model(x, h_0))
    c_0 = to_tree(tree, np.zeros((1, BATCH + 1, HIDDEN), "float32"))
    assert_raises_exactly(ValueError, "LSTM: c_0 must have shape (1, 2, 4), got (1, 3, 4)", lambda: model(x, (h_0, c_0)))
