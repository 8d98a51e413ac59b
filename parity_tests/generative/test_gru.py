"""Day 25: the GRU in three trees, against ``torch.nn.GRU`` (the same state dict) and
``keras.layers.GRU(reset_after=True)`` fed converted weights.

Keras stacks the gates [z, r, h] in the columns of a ``kernel`` ``(in, 3H)`` and a
``recurrent_kernel`` ``(H, 3H)`` and keeps both biases in one ``bias`` ``(2, 3H)`` (input row,
recurrent row); torch stacks [r, z, n] in the rows of ``weight_ih`` ``(3H, in)`` and
``weight_hh`` ``(3H, H)`` with two bias vectors. ``torch_gru_to_keras`` converts one layer and
direction, ``keras_gru_to_torch`` converts back (weights and gradients); they and the stacked Keras
reference live in ``parity_tests/harness/references/generative.py``. ``reset_after=False``, the
original GRU of Cho et al., is a different function: ``test_keras_reset_before_is_another_function``.
"""
import keras
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TOLERANCES, TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy,
                                  keras_gru_to_torch, keras_recurrent_reference, random_weights,
                                  recurrent_parameter_names, to_tree, torch_gru_to_keras, torch_module_reference)

MODULE = "generative.gru"
IN, H, T, N = 3, 4, 3, 2

def gru_case(num_layers=1, bias=True, batch_first=False, bidirectional=False, with_hx=False, unbatched=False,
             steps=T, batch=N, keras_reference=True):
    directions = 2 if bidirectional else 1
    kwargs = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    differentiable = ("input", "hx") if with_hx else ("input",)
    x_shape = (steps, IN) if unbatched else (batch, steps, IN) if batch_first else (steps, batch, IN)
    hx_shape = (num_layers * directions, H) if unbatched else (num_layers * directions, batch, H)

    def inputs(dtype, rng):
        drawn = {"input": rng.standard_normal(x_shape).astype(dtype)}
        if with_hx:
            drawn["hx"] = rng.standard_normal(hx_shape).astype(dtype)
        return drawn

    references = {"torch.nn.GRU": torch_module_reference(lambda dtype: torch.nn.GRU(IN, H, **kwargs), differentiable)}
    if keras_reference:
        references["keras.layers.GRU"] = keras_recurrent_reference("gru", IN, H, **kwargs, differentiable=differentiable)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.GRU(IN, H, **kwargs, dtype=dtype, rng=rng),
        inputs=inputs,
        differentiable=differentiable,
        references=references,
        output_names=("output", "h_n"),
        # The batch is axis 1 of a time-major input and of hx; an unbatched sequence has none.
        batch_axes={"input": None if unbatched else 0 if batch_first else 1, "hx": None if unbatched else 1},
    )


CASES = {
    "one layer": dict(),
    "hx given": dict(with_hx=True),
    "two layers": dict(num_layers=2, with_hx=True),
    "bidirectional": dict(bidirectional=True),
    "two layers bidirectional hx": dict(num_layers=2, bidirectional=True, with_hx=True),
    "batch_first": dict(batch_first=True, with_hx=True),
    "no bias": dict(bias=False, with_hx=True),
    "unbatched": dict(unbatched=True, with_hx=True),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CASES)
def test_gru_parity(name, dtype):
    check_parity(gru_case(**CASES[name]), dtype)


#: Every path of the cell and the driver (hx or zeros, biases or none, layers, directions); the
#: layouts (batch_first, unbatched) only move axes and are covered by the parity cases.
GRADCHECK_CASES = ("one layer", "no bias", "two layers bidirectional hx")


@pytest.mark.parametrize("name", GRADCHECK_CASES)
def test_gru_gradcheck(name):
    gradcheck_numpy(gru_case(**CASES[name]))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.integers(1, 3), batch=st.integers(1, 3), num_layers=st.integers(1, 2), bias=st.booleans(),
       batch_first=st.booleans(), bidirectional=st.booleans(), with_hx=st.booleans())
def test_gru_fuzz(steps, batch, num_layers, bias, batch_first, bidirectional, with_hx):
    """Random lengths, batches and configurations: every tree and ``torch.nn.GRU`` agree in float64."""
    check_parity(gru_case(num_layers, bias, batch_first, bidirectional, with_hx, steps=steps, batch=batch,
                          keras_reference=False), "float64")


def test_the_conversion_swaps_the_first_two_gates_and_transposes():
    """Pinned on one layer: Keras' first column block is torch's z rows, its second the r rows, the
    candidate stays last; the biases are the rows of ``(2, 3H)``; converting back is the identity."""
    rng = np.random.default_rng(0)
    weight_ih, weight_hh = rng.standard_normal((3 * H, IN)), rng.standard_normal((3 * H, H))
    bias_ih, bias_hh = rng.standard_normal(3 * H), rng.standard_normal(3 * H)
    kernel, recurrent_kernel, bias = torch_gru_to_keras(weight_ih, weight_hh, bias_ih, bias_hh)
    assert kernel.shape == (IN, 3 * H) and recurrent_kernel.shape == (H, 3 * H) and bias.shape == (2, 3 * H)
    r, z, n = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)
    np.testing.assert_array_equal(kernel[:, :H], weight_ih[z].T)
    np.testing.assert_array_equal(kernel[:, H:2 * H], weight_ih[r].T)
    np.testing.assert_array_equal(recurrent_kernel[:, 2 * H:], weight_hh[n].T)
    np.testing.assert_array_equal(bias[0, :H], bias_ih[z])
    np.testing.assert_array_equal(bias[1, H:2 * H], bias_hh[r])
    for back, original in zip(keras_gru_to_torch(kernel, recurrent_kernel, bias), (weight_ih, weight_hh, bias_ih, bias_hh)):
        np.testing.assert_array_equal(back, original)
    assert keras_gru_to_torch(kernel, recurrent_kernel)[2:] == (None, None)


def keras_gru_output(state, x, reset_after):
    """One Keras GRU layer on batch-first ``x`` with torch's ``state`` converted as well as it can be:
    with ``reset_after=False`` there is one bias per gate, so the two torch biases are summed."""
    gru = keras.layers.GRU(H, return_sequences=True, reset_after=reset_after, dtype="float64")
    gru.build(x.shape)
    kernel, recurrent_kernel, bias = torch_gru_to_keras(*(state[name] for name in recurrent_parameter_names(0, 0)))
    gru.cell.kernel.assign(kernel)
    gru.cell.recurrent_kernel.assign(recurrent_kernel)
    gru.cell.bias.assign(bias if reset_after else bias.sum(axis=0))
    return gru(x).numpy()


def test_keras_reset_before_is_another_function():
    """Keras' ``reset_after=False`` (Cho et al.'s original GRU, Keras 2's default) computes
    :math:`n = \\tanh(x W_{in}^\\top + b_n + (r \\odot h) W_{hn}^\\top)`: the reset gate scales
    :math:`h` *before* the product and the candidate's recurrent bias is not reset. No conversion
    of torch's weights reproduces torch's GRU with it; it agrees exactly when :math:`W_{hn}` is
    diagonal and :math:`b_{hn} = 0` (then :math:`(r \\odot h) W_{hn}^\\top = r \\odot (h W_{hn}^\\top)`),
    which proves the placement of :math:`r` is the whole difference."""
    rng = np.random.default_rng(3)
    reference = torch.nn.GRU(IN, H, batch_first=True, dtype=torch.float64)
    state = random_weights({k: v.detach().numpy() for k, v in reference.state_dict().items()}, rng)
    x = rng.standard_normal((N, 5, IN))  # (N, T, in)

    def torch_output(state):
        reference.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        return reference(torch.from_numpy(x))[0].detach().numpy()

    tolerance = TOLERANCES["float64"]
    expected = torch_output(state)
    assert np.max(np.abs(keras_gru_output(state, x, reset_after=True) - expected)) < tolerance
    assert np.max(np.abs(keras_gru_output(state, x, reset_after=False) - expected)) > 1e-2
    # Diagonal W_hn, zero b_hn: the two placements of r coincide.
    diagonal = dict(state)
    diagonal["weight_hh_l0"] = state["weight_hh_l0"].copy()
    diagonal["weight_hh_l0"][2 * H:] = np.diag(rng.uniform(-1.0, 1.0, H))
    diagonal["bias_hh_l0"] = state["bias_hh_l0"].copy()
    diagonal["bias_hh_l0"][2 * H:] = 0.0
    assert np.max(np.abs(keras_gru_output(diagonal, x, reset_after=False) - torch_output(diagonal))) < tolerance


@pytest.mark.parametrize("tree", TREES)
def test_state_dict_and_init_are_torchs(tree):
    """The canonical state is ``nn.GRU``'s (names, shapes, order), drawn from ``U(-1/sqrt(H), 1/sqrt(H))``
    in torch's order from the rng passed in: one seed, the same weights in every tree."""
    kwargs = dict(num_layers=2, bidirectional=True)
    state = get_module(tree, MODULE).GRU(IN, H, **kwargs, rng=np.random.default_rng(7)).canonical_state_dict()
    expected = torch.nn.GRU(IN, H, **kwargs).state_dict()
    assert [(k, v.shape) for k, v in state.items()] == [(k, tuple(v.shape)) for k, v in expected.items()]
    assert all(v.dtype == np.float32 and np.max(np.abs(v)) <= 1 / np.sqrt(H) for v in state.values())
    numpy_state = get_module("numpy", MODULE).GRU(IN, H, **kwargs, rng=np.random.default_rng(7)).canonical_state_dict()
    for name, value in state.items():
        np.testing.assert_array_equal(value, numpy_state[name])


def test_numpy_gru_used_twice_sums_both_uses_as_autograd():
    """One NumPy GRU run twice, the second run on the first one's output and final state, then
    backpropagated in reverse order: the input, ``hx`` and weight gradients equal autograd's on the
    torch tree's twin (the second run's input gradient joins the first run's output cotangent)."""
    rng = np.random.default_rng(5)
    numpy_gru = get_module("numpy", MODULE).GRU(H, H, dtype="float64")
    torch_gru = get_module("torch", MODULE).GRU(H, H, dtype="float64")
    state = random_weights(numpy_gru.canonical_state_dict(), rng)
    numpy_gru.load_canonical_state_dict(state)
    torch_gru.load_canonical_state_dict(state)
    x, h0 = rng.standard_normal((T, N, H)), rng.standard_normal((1, N, H))
    g_y1, g_y2, g_h2 = rng.standard_normal((T, N, H)), rng.standard_normal((T, N, H)), rng.standard_normal((1, N, H))

    numpy_gru.zero_grad()
    y1, h1 = numpy_gru(x, h0)
    numpy_gru(y1, h1)
    g_from_second, g_h1 = numpy_gru.backward(g_y2, g_h2)
    g_x, g_h0 = numpy_gru.backward(g_y1 + g_from_second, g_h1)

    x_t, h0_t = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    y1_t, h1_t = torch_gru(x_t, h0_t)
    y2_t, h2_t = torch_gru(y1_t, h1_t)
    ((y1_t * torch.from_numpy(g_y1)).sum() + (y2_t * torch.from_numpy(g_y2)).sum()
     + (h2_t * torch.from_numpy(g_h2)).sum()).backward()
    pairs = {"input": (g_x, x_t.grad), "hx": (g_h0, h0_t.grad)}
    pairs.update({name: (numpy_gru.grads[name], param.grad) for name, param in torch_gru.named_parameters()})
    for name, (ours, theirs) in pairs.items():
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)


#: (arguments, keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "zero hidden_size": ((IN, 0), {}, ValueError, "GRU: hidden_size must be an int >= 1, got 0"),
    "zero num_layers": ((IN, H), {"num_layers": 0}, ValueError, "GRU: num_layers must be an int >= 1, got 0"),
    "string bidirectional": ((IN, H), {"bidirectional": "yes"}, TypeError,
                             "GRU: bidirectional must be a bool (True or False), got 'yes'"),
    "dropout": ((IN, H), {"num_layers": 2, "dropout": 0.5}, ValueError,
                "GRU: dropout=0.5 is not supported (only 0.0): dropout between layers needs random masks, and in this "
                "project randomness is an input; apply a Dropout module with its own rng to each layer's output instead"),
    "seed as rng": ((IN, H), {"rng": 0}, TypeError,
                    "GRU: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("name", BAD_ARGUMENTS)
def test_bad_constructor_arguments_raise_one_clear_error(tree, name):
    args, kwargs, error, message = BAD_ARGUMENTS[name]
    assert_raises_exactly(error, message, lambda: get_module(tree, MODULE).GRU(*args, **kwargs))


#: (input shape, input dtype, hx shape or None, exception, message): every tree raises exactly this in forward.
BAD_INPUTS = {
    "wrong width": ((T, N, IN + 1), "float32", None, ValueError, "GRU: input must have shape (..., 3), got (3, 2, 4)"),
    "wrong rank": ((T, N, 1, IN), "float32", None, ValueError,
                   "GRU: input must have 2 or 3 dimensions, got shape (3, 2, 1, 3)"),
    "wrong dtype": ((T, N, IN), "float64", None, TypeError,
                    "GRU: input must have dtype float32, got float64 (cast it explicitly)"),
    "wrong hx batch": ((T, N, IN), "float32", (1, N + 1, H), ValueError, "GRU: hx must have shape (1, 2, 4), got (1, 3, 4)"),
    "batched hx, unbatched input": ((T, IN), "float32", (1, N, H), ValueError,
                                    "GRU: hx must have shape (1, 4), got (1, 2, 4)"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_inputs_raise_one_clear_error(tree, name):
    x_shape, x_dtype, hx_shape, error, message = BAD_INPUTS[name]
    gru = get_module(tree, MODULE).GRU(IN, H, rng=np.random.default_rng(0))
    x = to_tree(tree, np.zeros(x_shape, x_dtype))
    hx = None if hx_shape is None else to_tree(tree, np.zeros(hx_shape, "float32"))
    assert_raises_exactly(error, message, lambda: gru(x, hx))
