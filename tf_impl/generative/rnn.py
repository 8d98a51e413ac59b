r"""Day 22: the vanilla (Elman) RNN and backpropagation through time.

One layer, one direction, for :math:`t = 1 \dots T` (torch's layout and names):

.. math::  z_t = x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh}, \qquad h_t = \phi(z_t)

with :math:`\phi = \tanh` (or ReLU), :math:`h_0` given (zeros by default). Layers stack; a
bidirectional layer also runs the recurrence with its own ``_reverse`` weights on the
time-reversed sequence and concatenates the two outputs on the feature axis.

The tape unrolls the loop over time and derives BPTT, which the NumPy tree writes out:
:math:`\bar h_t = G_t + \bar z_{t+1} W_{hh}`, :math:`\bar z_t = \bar h_t \odot \phi'(z_t)`,
:math:`\partial L/\partial W_{ih} = \sum_t \bar z_t^\top x_t`,
:math:`\partial L/\partial W_{hh} = \sum_t \bar z_t^\top h_{t-1}`.

Sequences keep torch's ``(T, N, F)`` layout here too (channels-last is about images). The weights
are stored canonically, ``(G*H, in)``, and multiplied with ``transpose_b``; Keras's
``SimpleRNN`` stores their transposes and one summed bias (see the day page). The loop over time
is a Python loop: eager, or unrolled when traced by ``tf.function`` (the length is static).
``keras.layers.SimpleRNN`` is the reference, never called here. Padded batches of variable-length
sequences (``lengths``, with the reverse direction reversed within each sequence's length) are day
26's (:mod:`.bidirectional`).
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ml100.checks import (RNN_DROPOUT_REASON, check_bool, check_choice, check_fraction, check_input, check_int,
                          check_lengths, check_rng, check_sequence_length, check_unsupported)

from ..foundations import init
from ..module import Module, tf_dtype
from .bidirectional import lengths_to_mask, reverse_padded

class RecurrentBase(Module):
    r"""Stacked, optionally bidirectional recurrent layers; a subclass supplies the cell.

    Parameters, per layer ``k`` and direction suffix ``""`` / ``"_reverse"``, under torch's names
    and layouts: ``weight_ih_l{k}`` ``(G*H, in_k)``, ``weight_hh_l{k}`` ``(G*H, H)``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(G*H,)``, drawn from :math:`U(-1/\sqrt H, 1/\sqrt H)` in
    torch's order.

    For one layer and direction the input projection of all steps is one matmul,
    ``x_proj = x @ W_ih.T + b_ih`` ``(T, N, G*H)``; each step computes
    ``h_proj = h_{t-1} @ W_hh.T + b_hh`` and calls the subclass's
    ``cell_forward(x_proj, h_proj, state) -> new_state`` (``state`` a tuple whose first entry is
    ``h``: ``(h,)`` or ``(h, c)``). The tape does the backward.
    """

    gate_count = 1
    state_names = ("hx",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        owner = type(self).__name__
        rng = check_rng(owner, rng)
        self.input_size = check_int(owner, "input_size", input_size, 0)
        self.hidden_size = check_int(owner, "hidden_size", hidden_size, 1)
        self.num_layers = check_int(owner, "num_layers", num_layers, 1)
        self.bias = check_bool(owner, "bias", bias)
        self.batch_first = check_bool(owner, "batch_first", batch_first)
        self.dropout = check_fraction(owner, "dropout", dropout)
        check_unsupported(owner, "dropout", self.dropout, 0.0, RNN_DROPOUT_REASON)
        self.bidirectional = check_bool(owner, "bidirectional", bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        bound = 1.0 / math.sqrt(hidden_size)
        rows = self.gate_count * hidden_size
        for layer in range(self.num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                w_ih, w_hh, b_ih, b_hh = self.parameter_names(layer, direction)
                self.add_param(w_ih, init.uniform((rows, layer_input), rng, bound, dtype))
                self.add_param(w_hh, init.uniform((rows, hidden_size), rng, bound, dtype))
                if self.bias:
                    self.add_param(b_ih, init.uniform((rows,), rng, bound, dtype))
                    self.add_param(b_hh, init.uniform((rows,), rng, bound, dtype))

    def parameter_names(self, layer: int, direction: int) -> tuple[str, str, str, str]:
        """torch's names of one layer and direction: ``weight_ih_l0``, …, ``bias_hh_l1_reverse``."""
        suffix = f"l{layer}" + ("_reverse" if direction else "")
        return f"weight_ih_{suffix}", f"weight_hh_{suffix}", f"bias_ih_{suffix}", f"bias_hh_{suffix}"

    def forward(self, input: tf.Tensor, hx: tf.Tensor | None = None,
                lengths: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        output, (h_n,) = self.run_layers(input, None if hx is None else (hx,), lengths)
        return output, h_n

    def run_layers(self, input: tf.Tensor, hx: tuple | None,
                   lengths: tf.Tensor | None = None) -> tuple[tf.Tensor, tuple]:
        """Check and lay out the inputs, run every layer and direction; ``(output, final states)``
        in the caller's layout (``hx`` is a tuple of the state parts, or ``None`` for zeros;
        ``lengths`` ``(N,)`` int64 or ``None`` when every sequence fills the ``T`` steps)."""
        owner = type(self).__name__
        check_input(owner, "input", input.shape, input.dtype, expected_dtype=self.dtype, ndim=(2, 3),
                    last_dim=self.input_size)
        check_sequence_length(owner, "input", input.shape, 1 if self.batch_first and input.shape.rank == 3 else 0)
        unbatched = input.shape.rank == 2
        # Time-major (T, N, in) inside; an unbatched (T, in) sequence is a batch of one.
        x = input[:, None] if unbatched else tf.transpose(input, (1, 0, 2)) if self.batch_first else input  # (T, N, in)
        if lengths is not None:
            # The values are known in eager calls only; traced, the shape and dtype are still checked.
            values = np.asarray(lengths) if tf.executing_eagerly() else lengths
            check_lengths(owner, values, None if unbatched else x.shape[1], x.shape[0])
        states = self.initial_states(hx, x.shape[1], unbatched)
        output, finals = self.forward_layers(x, states, lengths)
        output = output[:, 0] if unbatched else tf.transpose(output, (1, 0, 2)) if self.batch_first else output
        finals = tuple(final[:, 0] if unbatched else final for final in finals)
        return output, finals

    def initial_states(self, hx: tuple | None, batch: int, unbatched: bool) -> tuple:
        """The state parts as ``(L*D, N, H)`` tensors: zeros, or ``hx`` checked (unbatched: ``(L*D, H)``)."""
        shape = (self.num_layers * self.num_directions, self.hidden_size)
        shape = shape if unbatched else (shape[0], batch, shape[1])
        if hx is None:
            return tuple(tf.zeros((shape[0], batch, shape[-1]), dtype=tf_dtype(self.dtype)) for _ in self.state_names)
        for name, part in zip(self.state_names, hx):
            check_input(type(self).__name__, name, part.shape, part.dtype, expected_dtype=self.dtype, shape_like=shape)
        return tuple(part[:, None] if unbatched else part for part in hx)

    def forward_layers(self, x: tf.Tensor, states: tuple,
                       lengths: tf.Tensor | None = None) -> tuple[tf.Tensor, tuple]:
        """Layers bottom-up, each direction on its own weights: ``(T, N, D*H)`` output and the final
        states stacked ``(L*D, N, H)``."""
        mask = None if lengths is None else lengths_to_mask(lengths, x.shape[0])[..., None]  # (T, N, 1)
        finals = [[] for _ in states]
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                # The reverse direction is the same recurrence on the time-reversed sequence.
                sequence = self.reverse_time(x, lengths) if direction else x  # (T, N, in_k)
                out, final = self.forward_direction(sequence, tuple(s[index] for s in states),
                                                    self.parameter_names(layer, direction), mask)
                outputs.append(self.reverse_time(out, lengths) if direction else out)
                for part, value in zip(finals, final):
                    part.append(value)
            x = tf.concat(outputs, axis=-1)  # (T, N, D*H)
        return x, tuple(tf.stack(part) for part in finals)

    def reverse_time(self, x: tf.Tensor, lengths: tf.Tensor | None) -> tf.Tensor:
        """``(T, N, ...)`` in reversed time: the whole axis, or each sequence within its length."""
        return tf.reverse(x, [0]) if lengths is None else reverse_padded(x, lengths)

    def forward_direction(self, x: tf.Tensor, state: tuple, names: tuple,
                          mask: tf.Tensor | None = None) -> tuple[tf.Tensor, tuple]:
        """One layer, one direction over time: ``(T, N, H)`` outputs and the final state.
        ``mask`` ``(T, N, 1)`` marks the real steps; a padded one keeps the state and outputs 0."""
        w_ih, w_hh, b_ih, b_hh = (self.params.get(name) for name in names)
        if mask is not None:
            # Padding never reaches the cell: whatever it holds (even NaN), the state stays finite.
            x = tf.where(mask, x, tf.zeros_like(x))  # (T, N, in)
        steps, batch, features = x.shape
        # Every step's input projection in one matmul: only the recurrent part must wait for h_{t-1}
        # (sizes spelled out: -1 is ambiguous in an empty batch).
        x_proj = tf.reshape(tf.matmul(tf.reshape(x, (steps * batch, features)), w_ih, transpose_b=True),
                            (steps, batch, w_ih.shape[0]))  # (T, N, G*H)
        if b_ih is not None:
            x_proj = x_proj + b_ih
        output = []
        for t in range(steps):
            # At a padded step the (discarded) cell sees a zero state: its local derivatives stay
            # finite, so the zero cotangent it gets stays 0 even when the frozen state is inf/NaN.
            cell_state = state if mask is None else tuple(tf.where(mask[t], part, tf.zeros_like(part)) for part in state)
            h_proj = tf.matmul(cell_state[0], w_hh, transpose_b=True)  # (N, G*H)
            if b_hh is not None:
                h_proj = h_proj + b_hh
            new_state = self.cell_forward(x_proj[t], h_proj, cell_state)
            if mask is not None:
                # A finished sequence keeps its last real state (h_n, c_n) and outputs 0 (the padding).
                new_state = tuple(tf.where(mask[t], new, old) for new, old in zip(new_state, state))
            state = new_state
            output.append(state[0] if mask is None else tf.where(mask[t], state[0], tf.zeros_like(state[0])))
        return tf.stack(output), state  # (T, N, H)

    def cell_forward(self, x_proj: tf.Tensor, h_proj: tf.Tensor, state: tuple) -> tuple:
        raise NotImplementedError


class RNN(RecurrentBase):
    r"""``torch.nn.RNN``: :math:`h_t = \phi(x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh})`.

    ``forward(input, hx=None, lengths=None) -> (output, h_n)`` (from :class:`RecurrentBase`):
    ``input`` ``(T, N, in)`` (``(N, T, in)`` with ``batch_first``, or unbatched ``(T, in)``), ``hx``
    and ``h_n`` ``(L*D, N, H)``, ``output`` ``(T, N, D*H)``, ``lengths`` ``(N,)``. ``dropout`` must be 0
    (see ``ml100.checks.RNN_DROPOUT_REASON``).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype="float32", rng: np.random.Generator | None = None):
        check_choice("RNN", "nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, rng)
        self.nonlinearity = nonlinearity

    def cell_forward(self, x_proj: tf.Tensor, h_proj: tf.Tensor, state: tuple) -> tuple:
        z = x_proj + h_proj  # (N, H)
        # ReLU zeroes only where z <= 0: NaN fails that test and stays NaN, as in torch (tf.nn.relu
        # does not promise that, and its gradient at NaN is 0 where torch's is 1).
        return (tf.tanh(z) if self.nonlinearity == "tanh" else tf.where(z <= 0, tf.zeros_like(z), z),)
