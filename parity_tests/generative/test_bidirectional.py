"""Day 26: stacked, bidirectional RNN/LSTM/GRU over padded batches with per-sequence ``lengths``.

References: ``torch.nn.RNN``/``LSTM``/``GRU`` (the same state dict) on
``pack_padded_sequence(..., enforce_sorted=False)`` / ``pad_packed_sequence(..., total_length=T)``,
and Keras' layers fed converted weights with ``mask = t < lengths`` (one layer per layer and
direction, ``go_backwards`` for the reverse one, ``zero_output_for_mask=True``; or
``keras.layers.Bidirectional``). The lengths are unsorted and include ``T`` and 1.
"""
import keras
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy,
                                  keras_recurrent_reference, lstm_with_state, random_weights, to_tree,
                                  torch_packed_reference)

IN, H, T = 3, 2, 4
#: Unsorted, one full-length sequence (T) and one of a single step.
LENGTHS = (2, T, 1)
#: Keras runs the cell at masked steps too and selects the old state after it (``tf.where``), so a
#: NaN/inf in the padding reaches the input and weight gradients through ``0 * nan``; torch's
#: packed layer never reads the padding (and the trees zero it before the cell): a real difference.
KERAS_COMPUTES_MASKED_STEPS = ("Keras runs the cell on masked steps and selects afterwards: NaN/inf in the padding "
                               "becomes NaN gradients (0 * nan), which torch's packed sequence never reads")
KINDS = {"rnn": ("generative.rnn", "RNN", torch.nn.RNN), "lstm": ("generative.lstm", "LSTM", torch.nn.LSTM),
         "gru": ("generative.gru", "GRU", torch.nn.GRU)}


def packed_case(kind, num_layers=2, bidirectional=True, batch_first=False, lengths=LENGTHS, keras_reference=True,
                wrapper=False, **fields):
    """One kind of recurrent layer on a padded batch: inputs ``(input, states..., lengths)``, the
    states always given (the harness passes inputs positionally; zero states are a special case)."""
    module, name, torch_class = KINDS[kind]
    directions = 2 if bidirectional else 1
    batch = len(lengths)
    options = dict(num_layers=num_layers, batch_first=batch_first, bidirectional=bidirectional)
    state_names = ("h_0", "c_0") if kind == "lstm" else ("hx",)
    differentiable = ("input", *state_names)

    def inputs(dtype, rng):
        shape = (batch, T, IN) if batch_first else (T, batch, IN)
        drawn = {"input": rng.standard_normal(shape).astype(dtype)}
        for state in state_names:
            drawn[state] = rng.standard_normal((num_layers * directions, batch, H)).astype(dtype)
        drawn["lengths"] = np.array(lengths, dtype=np.int64)
        return drawn

    def build(m, dtype, rng):
        if kind == "lstm":
            return lstm_with_state(m, IN, H, **options, dtype=dtype, rng=rng)
        return getattr(m, name)(IN, H, **options, dtype=dtype, rng=rng)

    references = {f"torch.nn.{name} (packed)": torch_packed_reference(lambda dtype: torch_class(IN, H, **options),
                                                                      differentiable, batch_first)}
    if keras_reference:
        label = f"keras.layers.Bidirectional({name})" if wrapper else f"keras.layers ({name}, masked)"
        references[label] = keras_recurrent_reference(kind, IN, H, **options, differentiable=differentiable,
                                                       wrapper=wrapper)
        fields.setdefault("special_excluded_references", {label: KERAS_COMPUTES_MASKED_STEPS})
    state_axes = {state: 1 for state in state_names}
    return Case(
        module=module,
        build=build,
        inputs=inputs,
        differentiable=differentiable,
        references=references,
        output_names=("output", "h_n", "c_n") if kind == "lstm" else ("output", "h_n"),
        batch_axes={"input": 0 if batch_first else 1, **state_axes, "lengths": 0},
        **fields,
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", KINDS)
def test_two_layers_bidirectional_with_lengths(kind, dtype):
    check_parity(packed_case(kind), dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_one_layer_against_keras_bidirectional_wrapper(kind):
    check_parity(packed_case(kind, num_layers=1, batch_first=True, wrapper=True), "float64")


def test_unidirectional_batch_first_with_lengths():
    check_parity(packed_case("lstm", bidirectional=False, batch_first=True), "float64")


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_with_lengths(kind):
    gradcheck_numpy(packed_case(kind, keras_reference=False))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(KINDS)), lengths=st.lists(st.integers(1, T), min_size=1, max_size=3),
       batch_first=st.booleans(), bidirectional=st.booleans())
def test_fuzz_lengths(kind, lengths, batch_first, bidirectional):
    """Random lengths: every tree and the packed torch layer agree in float64."""
    check_parity(packed_case(kind, num_layers=1, bidirectional=bidirectional, batch_first=batch_first,
                             lengths=tuple(lengths), keras_reference=False), "float64")


def as_array(tensor) -> np.ndarray:
    """A tree's output as NumPy (sequences keep their layout in every tree: no transpose)."""
    return tensor.detach().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)


def run_tree_model(tree, kind, state, x, lengths=None):
    """One tree's two-layer bidirectional layer loaded with ``state``, on NumPy inputs, as NumPy."""
    module, name, _ = KINDS[kind]
    model = getattr(get_module(tree, module), name)(IN, H, num_layers=2, bidirectional=True, dtype="float64")
    model.load_canonical_state_dict(state)
    output, finals = model(to_tree(tree, x), None, None if lengths is None else to_tree(tree, lengths))
    finals = finals if isinstance(finals, tuple) else (finals,)
    return as_array(output), [as_array(f) for f in finals]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("kind", KINDS)
def test_each_sequence_as_if_alone(tree, kind):
    """The definition, without any reference: sequence ``n`` of the padded batch gives the same
    output steps and final states as itself alone, unpadded (so the reverse direction started at
    its own last step, not at ``T``), and 0 at its padded steps."""
    rng = np.random.default_rng(4)
    module, name, _ = KINDS[kind]
    template = getattr(get_module("numpy", module), name)(IN, H, num_layers=2, bidirectional=True, dtype="float64")
    state = random_weights(template.canonical_state_dict(), rng)
    x = rng.standard_normal((T, len(LENGTHS), IN))
    lengths = np.array(LENGTHS, dtype=np.int64)
    output, finals = run_tree_model(tree, kind, state, x, lengths)
    for n, length in enumerate(LENGTHS):
        alone, alone_finals = run_tree_model(tree, kind, state, x[:length, n:n + 1])
        np.testing.assert_allclose(output[:length, n], alone[:, 0], rtol=0, atol=1e-12)
        assert np.all(output[length:, n] == 0.0)
        for final, alone_final in zip(finals, alone_finals):
            np.testing.assert_allclose(final[:, n], alone_final[:, 0], rtol=0, atol=1e-12)


def test_padded_steps_get_exactly_zero_gradient_in_numpy():
    """Whatever the padding holds (NaN here), the outputs there are 0, nothing else changes, and
    the input gradient at padded steps is exactly 0."""
    rng = np.random.default_rng(6)
    gru = get_module("numpy", "generative.gru").GRU(IN, H, num_layers=2, bidirectional=True, dtype="float64")
    lengths = np.array(LENGTHS, dtype=np.int64)
    x = rng.standard_normal((T, len(LENGTHS), IN))
    clean, clean_h = gru(x, None, lengths)
    gru.backward(rng.standard_normal(clean.shape), None)
    padded = np.arange(T)[:, None] >= lengths[None, :]  # (T, N)
    x[padded] = np.nan
    output, h_n = gru(x, None, lengths)
    grad_x = gru.backward(rng.standard_normal(output.shape), rng.standard_normal(h_n.shape))
    np.testing.assert_array_equal(output, clean)
    np.testing.assert_array_equal(h_n, clean_h)
    assert np.all(output[padded] == 0.0) and np.all(grad_x[padded] == 0.0) and np.all(np.isfinite(grad_x))


@pytest.mark.parametrize("tree", TREES)
def test_reverse_padded_and_mask(tree):
    """``reverse_padded`` reverses each sequence within its length, leaves padding in place and is
    its own inverse; ``lengths_to_mask`` is ``t < L``."""
    functions = get_module(tree, "generative.bidirectional")
    x = np.arange(T * 3, dtype="float64").reshape(T, 3)[..., None]  # (T, N, 1): x[t, n] = 3t + n
    lengths = np.array([2, 4, 1], dtype=np.int64)
    reversed_x = np.asarray(functions.reverse_padded(to_tree(tree, x), to_tree(tree, lengths)))[..., 0]
    expected = np.array([[3, 10, 2], [0, 7, 5], [6, 4, 8], [9, 1, 11]], dtype="float64")
    np.testing.assert_array_equal(reversed_x, expected)
    twice = functions.reverse_padded(functions.reverse_padded(to_tree(tree, x), to_tree(tree, lengths)),
                                     to_tree(tree, lengths))
    np.testing.assert_array_equal(np.asarray(twice), x)
    mask = np.asarray(functions.lengths_to_mask(to_tree(tree, lengths), T))
    np.testing.assert_array_equal(mask, np.arange(T)[:, None] < lengths[None, :])


def test_keras_repeats_the_previous_output_at_masked_steps_by_default():
    """Keras' default (``zero_output_for_mask=False``) carries the last real output through the
    masked steps; torch's ``pad_packed_sequence`` (and the trees) put zeros; ``Bidirectional`` sets
    zeros itself. The final state is the last real step's either way."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, T, IN))
    mask = np.arange(T)[None, :] < 2
    default = keras.layers.LSTM(H, return_sequences=True, return_state=True, dtype="float64")
    output, h_n, _ = (np.asarray(t) for t in default(x, mask=mask))
    np.testing.assert_array_equal(output[0, 2], output[0, 1])
    np.testing.assert_array_equal(output[0, 3], output[0, 1])
    np.testing.assert_array_equal(h_n[0], output[0, 1])
    zeroed = keras.layers.LSTM(H, return_sequences=True, zero_output_for_mask=True, dtype="float64")
    zeroed.build(x.shape)
    zeroed.set_weights(default.get_weights())
    zero_output = np.asarray(zeroed(x, mask=mask))
    np.testing.assert_array_equal(zero_output[0, :2], output[0, :2])
    assert np.all(zero_output[0, 2:] == 0.0)


def test_numpy_lstm_used_twice_with_lengths_sums_both_uses_as_autograd():
    """One NumPy LSTM run twice on padded batches (the second run on the first one's output and
    final states, other lengths), backpropagated in reverse order: every gradient equals autograd's
    on the torch tree's twin (caches stack, lengths included)."""
    rng = np.random.default_rng(9)
    options = dict(num_layers=2, bidirectional=True, dtype="float64")
    numpy_lstm = get_module("numpy", "generative.lstm").LSTM(2 * H, H, **options)
    torch_lstm = get_module("torch", "generative.lstm").LSTM(2 * H, H, **options)
    state = random_weights(numpy_lstm.canonical_state_dict(), rng)
    numpy_lstm.load_canonical_state_dict(state)
    torch_lstm.load_canonical_state_dict(state)
    first, second = np.array(LENGTHS, np.int64), np.array([T, 1, 3], np.int64)
    x = rng.standard_normal((T, len(LENGTHS), 2 * H))
    h0, c0 = rng.standard_normal((2, 4, len(LENGTHS), H))
    g_y1, g_y2 = rng.standard_normal((2, T, len(LENGTHS), 2 * H))
    g_h2, g_c2 = rng.standard_normal((2, 4, len(LENGTHS), H))

    numpy_lstm.zero_grad()
    y1, (h1, c1) = numpy_lstm(x, (h0, c0), first)
    numpy_lstm(y1, (h1, c1), second)
    g_from_second, (g_h1, g_c1) = numpy_lstm.backward(g_y2, g_h2, g_c2)
    g_x, (g_h0, g_c0) = numpy_lstm.backward(g_y1 + g_from_second, g_h1, g_c1)

    x_t, h0_t, c0_t = (torch.tensor(v, requires_grad=True) for v in (x, h0, c0))
    y1_t, (h1_t, c1_t) = torch_lstm(x_t, (h0_t, c0_t), torch.from_numpy(first))
    y2_t, (h2_t, c2_t) = torch_lstm(y1_t, (h1_t, c1_t), torch.from_numpy(second))
    sum((t * torch.from_numpy(g)).sum() for t, g in ((y1_t, g_y1), (y2_t, g_y2), (h2_t, g_h2), (c2_t, g_c2))).backward()
    pairs = {"input": (g_x, x_t.grad), "h_0": (g_h0, h0_t.grad), "c_0": (g_c0, c0_t.grad)}
    pairs.update({name: (numpy_lstm.grads[name], param.grad) for name, param in torch_lstm.named_parameters()})
    for name, (ours, theirs) in pairs.items():
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)


def test_tf_tree_traces_with_lengths_under_tf_function():
    """The TF tree with ``lengths`` traces into a ``tf.function`` (values unchecked there, shape and
    dtype checked) with the eager outputs and gradients."""
    import tensorflow as tf
    model = get_module("tf", "generative.gru").GRU(IN, H, num_layers=2, bidirectional=True, dtype="float64",
                                                   rng=np.random.default_rng(0))
    x = tf.constant(np.random.default_rng(1).standard_normal((T, len(LENGTHS), IN)))
    lengths = tf.constant(LENGTHS, dtype=tf.int64)

    def step(x, lengths):
        with tf.GradientTape() as tape:
            tape.watch(x)
            output, h_n = model(x, None, lengths)
            loss = tf.reduce_sum(output ** 2) + tf.reduce_sum(h_n)
        return [output, h_n, *tape.gradient(loss, [x, *model.params.values()])]

    for eager, traced in zip(step(x, lengths), tf.function(step)(x, lengths)):
        np.testing.assert_allclose(traced.numpy(), eager.numpy(), rtol=1e-12, atol=1e-12)


#: (lengths, exception, message): every tree raises exactly this in forward.
BAD_LENGTHS = {
    "int32": (np.array([2, 4, 1], np.int32), TypeError,
              "GRU: lengths must have dtype int64, got int32 (cast it explicitly)"),
    "float": (np.array([2.0, 4.0, 1.0]), TypeError, "GRU: lengths must have dtype int64, got float64 (cast it explicitly)"),
    "wrong shape": (np.array([[2, 4, 1]], np.int64), ValueError, "GRU: lengths must have shape (3,), got (1, 3)"),
    "too few": (np.array([2, 4], np.int64), ValueError, "GRU: lengths must have shape (3,), got (2,)"),
    "zero": (np.array([2, 0, 1], np.int64), ValueError,
             "GRU: lengths must be in [1, 4] (the padded sequence length), got values from 0 to 2"),
    "past T": (np.array([2, 5, 1], np.int64), ValueError,
               "GRU: lengths must be in [1, 4] (the padded sequence length), got values from 1 to 5"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("name", BAD_LENGTHS)
def test_bad_lengths_raise_one_clear_error(tree, name):
    lengths, error, message = BAD_LENGTHS[name]
    gru = get_module(tree, "generative.gru").GRU(IN, H, rng=np.random.default_rng(0))
    x = to_tree(tree, np.zeros((T, 3, IN), "float32"))
    assert_raises_exactly(error, message, lambda: gru(x, None, to_tree(tree, lengths)))


@pytest.mark.parametrize("tree", TREES)
def test_lengths_with_an_unbatched_input_raise(tree):
    lstm = get_module(tree, "generative.lstm").LSTM(IN, H, rng=np.random.default_rng(0))
    message = ("LSTM: lengths describe a padded batch; give a batched input (T, N, in) or (N, T, in), "
               "not an unbatched one")
    assert_raises_exactly(ValueError, message, lambda: lstm(to_tree(tree, np.zeros((T, IN), "float32")), None,
                                                            to_tree(tree, np.array([2], np.int64))))
