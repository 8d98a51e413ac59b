"""References for the generative phase's recurrent layers (days 22-28): ``torch.nn.RNN``/``LSTM``/
``GRU``, plain or on packed sequences, and their Keras counterparts fed converted weights.

The conversions, one layer and one direction each (rows of ``docs/conventions.md``'s conversion
table):

- :func:`keras_simple_rnn_weights` (also named ``keras_lstm_weights``) — canonical -> Keras
  ``SimpleRNN``/``LSTM``: ``kernel = W_ih.T``, ``recurrent_kernel = W_hh.T``, one bias
  ``b_ih + b_hh`` (the LSTM's gate blocks i, f, g, o are Keras' i, f, c, o unchanged);
- :func:`torch_gru_to_keras` / :func:`keras_gru_to_torch` — torch's GRU gates [r, z, n] in rows,
  two biases, <-> Keras' ``GRU(reset_after=True)`` [z, r, h] in columns, one ``(2, 3H)`` bias.

:func:`keras_recurrent_reference` stacks one Keras layer per layer and direction as torch stacks
them, optionally masked by ``lengths``; :func:`torch_packed_reference` runs a ``torch.nn`` layer on
``pack_padded_sequence`` / ``pad_packed_sequence``; :func:`lstm_with_state` adapts a tree's
``LSTM`` to flat ``(x, h_0, c_0[, lengths])`` inputs.
"""
from __future__ import annotations

import numpy as np
import torch

from ..runners import run_tf, run_torch

#: Keras' position of each of torch's GRU gate blocks [r, z, n]: Keras stacks [z, r, h]. A swap of
#: the first two blocks, so the same permutation converts both ways.
KERAS_GATE_ORDER = (1, 0, 2)


def swap_gate_blocks(stacked: np.ndarray) -> np.ndarray:
    """The three GRU gate blocks along axis 0 reordered by ``KERAS_GATE_ORDER`` (torch <-> Keras)."""
    blocks = np.split(stacked, 3, axis=0)
    return np.concatenate([blocks[i] for i in KERAS_GATE_ORDER], axis=0)


def torch_gru_to_keras(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One layer and direction of a torch GRU as ``keras.layers.GRU(reset_after=True)`` weights:
    ``kernel`` ``(in, 3H)``, ``recurrent_kernel`` ``(H, 3H)``, ``bias`` ``(2, 3H)`` (input row,
    then recurrent row; ``None`` without biases), gates [z, r, h]."""
    kernel = swap_gate_blocks(weight_ih).T  # (in, 3H)
    recurrent_kernel = swap_gate_blocks(weight_hh).T  # (H, 3H)
    bias = None if bias_ih is None else np.stack([swap_gate_blocks(bias_ih), swap_gate_blocks(bias_hh)])  # (2, 3H)
    return kernel, recurrent_kernel, bias


def keras_gru_to_torch(kernel, recurrent_kernel, bias=None):
    """The inverse of :func:`torch_gru_to_keras`, for weights or their gradients:
    ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (the biases ``None`` without)."""
    weight_ih, weight_hh = swap_gate_blocks(kernel.T), swap_gate_blocks(recurrent_kernel.T)  # (3H, in), (3H, H)
    if bias is None:
        return weight_ih, weight_hh, None, None
    return weight_ih, weight_hh, swap_gate_blocks(bias[0]), swap_gate_blocks(bias[1])


def keras_simple_rnn_weights(state: dict, suffix: str = "l0") -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Canonical -> Keras ``SimpleRNN``: ``kernel = W_ih.T`` ``(in, G*H)``, ``recurrent_kernel = W_hh.T``
    ``(H, G*H)``, and one bias, ``b_ih + b_hh`` (Keras adds a single bias per step; ``None`` without
    biases). Back, the split of the bias is not unique: its gradient is each canonical bias's."""
    bias_ih, bias_hh = state.get(f"bias_ih_{suffix}"), state.get(f"bias_hh_{suffix}")
    return (state[f"weight_ih_{suffix}"].T, state[f"weight_hh_{suffix}"].T,
            None if bias_ih is None else bias_ih + bias_hh)


#: Canonical -> Keras ``LSTM``: the same conversion (kernels ``(in, 4H)``/``(H, 4H)``, one summed
#: bias). The gate blocks need no reordering: Keras's i, f, c, o is torch's i, f, g, o (proved by
#: the LSTM parity, which a swapped block would break). One function under the name each day cites.
keras_lstm_weights = keras_simple_rnn_weights


def recurrent_parameter_names(layer: int, direction: int) -> tuple[str, str, str, str]:
    """``torch.nn``'s names of one recurrent layer and direction, spelled out here, apart from the trees."""
    suffix = f"l{layer}" + ("_reverse" if direction else "")
    return f"weight_ih_{suffix}", f"weight_hh_{suffix}", f"bias_ih_{suffix}", f"bias_hh_{suffix}"


def _to_keras(kind: str, state: dict, names: tuple) -> tuple:
    """One layer and direction's ``(kernel, recurrent_kernel, bias or None)`` for Keras."""
    if kind == "gru":
        return torch_gru_to_keras(*(state.get(name) for name in names))
    return keras_simple_rnn_weights(state, names[0].removeprefix("weight_ih_"))


def _to_torch(kind: str, kernel, recurrent_kernel, bias) -> tuple:
    """Keras gradients of one layer and direction as torch's four (one Keras bias feeds both of
    torch's for SimpleRNN and LSTM, so each gets its gradient)."""
    if kind == "gru":
        return keras_gru_to_torch(kernel, recurrent_kernel, bias)
    return kernel.T, recurrent_kernel.T, bias, bias


def keras_recurrent_reference(kind: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                              batch_first: bool = False, bidirectional: bool = False, differentiable=("input",),
                              nonlinearity: str = "tanh", wrapper: bool = False):
    """A reference runner: ``keras.layers.SimpleRNN``/``LSTM``/``GRU(reset_after=True)`` (``kind``
    ``"rnn"``, ``"lstm"``, ``"gru"``), one per layer and direction, stacked as torch stacks them.

    The reverse direction runs with ``go_backwards`` (its output comes back in reversed time and is
    flipped); the two directions' outputs are concatenated; state ``k*D + d`` is the initial state
    of layer ``k``'s direction ``d`` and the final states stack into ``(L*D, N, H)``. With
    ``wrapper`` (one layer, bidirectional) the pair is ``keras.layers.Bidirectional`` instead.

    Inputs, in order: the sequence, the states (``hx``, or ``h_0, c_0`` for the LSTM) if given,
    and ``lengths`` if given, which becomes Keras' ``mask`` ``(N, T)``: ``t < lengths``. Keras'
    layers are built with ``zero_output_for_mask=True``: by default a masked step *repeats the
    previous output* (``Bidirectional`` sets zeros itself), where ``pad_packed_sequence`` pads with
    zeros. A masked ``go_backwards`` layer meets the padding first and carries its initial state
    through it, so it reverses each sequence within its own length, as torch's packed reverse
    direction does. Keras takes ``(N, T, F)``: time-major and unbatched inputs are laid out at the edge.
    """
    import keras
    import tensorflow as tf

    directions = 2 if bidirectional else 1
    parts = 2 if kind == "lstm" else 1
    # Built once per dtype and reloaded on every run: building Keras layers dominates the cost.
    built = {}

    def make(dtype, **options):
        common = dict(return_sequences=True, return_state=True, use_bias=bias, dtype=dtype, **options)
        if kind == "rnn":
            return keras.layers.SimpleRNN(hidden_size, activation=nonlinearity, **common)
        if kind == "lstm":
            return keras.layers.LSTM(hidden_size, **common)
        return keras.layers.GRU(hidden_size, reset_after=True, **common)

    def build(dtype):
        if wrapper:
            pair = keras.layers.Bidirectional(make(dtype), backward_layer=make(dtype, go_backwards=True), dtype=dtype)
            pair.build((None, None, input_size))
            return {"pair": pair, (0, 0): pair.forward_layer, (0, 1): pair.backward_layer}
        layers = {}
        for layer in range(num_layers):
            width = input_size if layer == 0 else directions * hidden_size
            for direction in range(directions):
                keras_layer = make(dtype, go_backwards=bool(direction), zero_output_for_mask=True)
                keras_layer.build((None, None, width))
                layers[layer, direction] = keras_layer
        return layers

    def run(state, inputs, cotangents, dtype):
        layers = built[dtype] = built.get(dtype) or build(dtype)
        params = {}
        for layer in range(num_layers):
            for direction in range(directions):
                names = recurrent_parameter_names(layer, direction)
                cell = layers[layer, direction].cell
                for variable, value, part in zip((cell.kernel, cell.recurrent_kernel, cell.bias if bias else None),
                                                 _to_keras(kind, state, names), ("kernel", "recurrent_kernel", "bias")):
                    if variable is not None:
                        variable.assign(value)
                        params[f"{names[0]}|{part}"] = variable
        input_names = tuple(inputs)

        def call(*tensors):
            given = dict(zip(input_names, tensors))
            input, lengths = given[input_names[0]], given.get("lengths")
            states = [given[name] for name in input_names[1:] if name != "lengths"]
            unbatched = input.shape.rank == 2
            # Keras' layout: (N, T, F), a batch of one for an unbatched sequence.
            x = input[None] if unbatched else input if batch_first else tf.transpose(input, (1, 0, 2))  # (N, T, F)
            states = [s[:, None] if unbatched else s for s in states]  # (L*D, N, H) each
            mask = None if lengths is None else tf.range(x.shape[1], dtype=lengths.dtype)[None, :] < lengths[:, None]
            if wrapper:
                # Keras' initial state: every part of the forward layer, then of the backward one.
                initial = [s[d] for d in range(2) for s in states] or None
                x, *finals = layers["pair"](x, mask=mask, initial_state=initial)  # (N, T, 2H), 2 * parts (N, H)
                finals = [finals[d * parts:(d + 1) * parts] for d in range(2)]
            else:
                finals = []
                for layer in range(num_layers):
                    outputs = []
                    for direction in range(directions):
                        index = layer * directions + direction
                        initial = [s[index] for s in states] or None
                        out, *final = layers[layer, direction](x, mask=mask, initial_state=initial)  # (N, T, H)
                        outputs.append(tf.reverse(out, [1]) if direction else out)
                        finals.append(final)
                    x = tf.concat(outputs, axis=-1)  # (N, T, D*H)
            stacked = [tf.stack([final[p] for final in finals]) for p in range(parts)]  # (L*D, N, H) each
            if unbatched:
                x, stacked = x[0], [s[:, 0] for s in stacked]
            elif not batch_first:
                x = tf.transpose(x, (1, 0, 2))
            return (x, tuple(stacked)) if kind == "lstm" else (x, stacked[0])

        def to_canonical(grads):
            out = {}
            for layer in range(num_layers):
                for direction in range(directions):
                    names = recurrent_parameter_names(layer, direction)
                    native = [grads.get(f"{names[0]}|{part}") for part in ("kernel", "recurrent_kernel", "bias")]
                    native = [None if g is None else np.asarray(g) for g in native]
                    for name, value in zip(names, _to_torch(kind, *native)):
                        if value is not None:
                            out[name] = value
            return out

        return run_tf(call, inputs, differentiable, cotangents, params, to_canonical)

    return run


def torch_packed_reference(make, differentiable=("input",), batch_first: bool = False):
    """A reference runner: the ``torch.nn`` recurrent layer ``make(dtype)`` builds, strictly loaded
    with the canonical state, run on ``pack_padded_sequence(input, lengths, enforce_sorted=False)``
    and padded back with ``pad_packed_sequence(..., total_length=T)``. Inputs, in order: the
    sequence, the states (``hx``, or ``h_0, c_0``) if given, ``lengths`` last."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    def run(state, inputs, cotangents, dtype):
        module = make(dtype).to(getattr(torch, dtype))
        module.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})

        def call(input, *rest):
            *states, lengths = rest
            steps = input.shape[1 if batch_first else 0]
            packed = pack_padded_sequence(input, lengths, batch_first=batch_first, enforce_sorted=False)
            hx = None if not states else states[0] if len(states) == 1 else tuple(states)
            output, finals = module(packed, hx)
            output, _ = pad_packed_sequence(output, batch_first=batch_first, total_length=steps)
            return output, finals

        return run_torch(call, inputs, differentiable, cotangents, params=dict(module.named_parameters()))

    return run


def lstm_with_state(m, *args, **kwargs):
    """The tree's ``LSTM`` taking ``(x, h_0, c_0[, lengths])`` as flat inputs (the harness passes
    arrays, not the pair ``hx``) and, in NumPy, returning the three input gradients flat."""
    class LSTM(m.LSTM):
        def forward(self, x, h_0, c_0, lengths=None):
            return super().forward(x, (h_0, c_0), lengths)

        if hasattr(m.LSTM, "backward"):
            def backward(self, grad_output, grad_h_n=None, grad_c_n=None):
                grad_x, (grad_h_0, grad_c_0) = super().backward(grad_output, grad_h_n, grad_c_n)
                return grad_x, grad_h_0, grad_c_0

    return LSTM(*args, **kwargs)
