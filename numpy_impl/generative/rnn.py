r"""Day 22: the vanilla (Elman) RNN and backpropagation through time.

One layer, one direction, for :math:`t = 1 \dots T` (torch's layout and names):

.. math::  z_t = x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh}, \qquad h_t = \phi(z_t)

with :math:`\phi = \tanh` (or ReLU), :math:`h_0` given (zeros by default); the output is
:math:`(h_1, \dots, h_T)` and :math:`h_n = h_T`. Layers stack (layer :math:`k+1` reads layer
:math:`k`'s outputs); a bidirectional layer also runs the same recurrence with its own ``_reverse``
weights on the time-reversed sequence and concatenates the two outputs on the feature axis.

**BPTT.** With :math:`\bar h_t = \partial L/\partial h_t` collecting the output's cotangent
:math:`G_t` and what flows back from step :math:`t+1` (:math:`\bar h_T` starts at the cotangent of
:math:`h_n`):

.. math::  \bar h_t = G_t + \bar z_{t+1} W_{hh}, \qquad \bar z_t = \bar h_t \odot \phi'(z_t)
           \quad(\tanh: 1 - h_t^2;\ \text{ReLU}: [h_t > 0])

and, summed over all steps (each one GEMM over the stacked :math:`T \cdot N` rows):

.. math::  \frac{\partial L}{\partial W_{ih}} = \sum_t \bar z_t^\top x_t, \quad
           \frac{\partial L}{\partial W_{hh}} = \sum_t \bar z_t^\top h_{t-1}, \quad
           \frac{\partial L}{\partial b_{ih}} = \frac{\partial L}{\partial b_{hh}} = \sum_t \textstyle\sum_n \bar z_t,
           \quad \frac{\partial L}{\partial x_t} = \bar z_t W_{ih}, \quad
           \frac{\partial L}{\partial h_0} = \bar z_1 W_{hh}

The layers × directions machinery lives once in :class:`RecurrentBase`; the RNN, the LSTM (day 24)
and the GRU (day 25) only supply their cell. Padded batches of variable-length sequences
(``lengths``, with the reverse direction reversed within each sequence's length) are day 26's
(:mod:`.bidirectional`).
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import (RNN_DROPOUT_REASON, check_bool, check_choice, check_fraction, check_input, check_int,
                          check_lengths, check_rng, check_sequence_length, check_unsupported)

from ..foundations import init
from ..module import Module
from .bidirectional import lengths_to_mask, reverse_padded

class RecurrentBase(Module):
    r"""Stacked, optionally bidirectional recurrent layers; a subclass supplies the cell.

    Parameters, per layer ``k`` and direction suffix ``""`` / ``"_reverse"`` (torch's names and
    layouts, so an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` state dict loads unchanged):
    ``weight_ih_l{k}`` ``(G*H, in_k)``, ``weight_hh_l{k}`` ``(G*H, H)``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` ``(G*H,)``, with ``G = gate_count`` gates stacked in rows, ``in_0 = input_size``
    and ``in_k = D*H`` above. All drawn from :math:`U(-1/\sqrt H, 1/\sqrt H)`, torch's order.

    The base computes, for one layer and direction, the input projection of ALL steps as one GEMM,
    ``x_proj = x @ W_ih.T + b_ih`` ``(T, N, G*H)``, then loops over time with
    ``h_proj = h_{t-1} @ W_hh.T + b_hh`` ``(N, G*H)`` and hands both to the subclass's cell:

    - ``cell_forward(x_proj, h_proj, state) -> (new_state, cache)``: ``state`` is a tuple whose
      first entry is ``h`` (``(h,)`` for the RNN and GRU, ``(h, c)`` for the LSTM), each ``(N, H)``;
      ``cache`` is whatever the backward of this step needs.
    - ``_cell_backward(grad_state, cache) -> (grad_x_proj, grad_h_proj, grad_state_prev)``: given
      the gradient of the new state (a tuple like ``state``), the gradients of this step's
      ``x_proj`` and ``h_proj`` (``(N, G*H)`` each; they differ in the GRU's reset-after gate) and
      of the previous state through the cell's *direct* paths only (the LSTM's ``c``, the GRU's
      ``z * h``), ``None`` where there is none. The base adds the path through ``W_hh``
      (``grad_h_proj @ W_hh``) and accumulates the weight gradients as GEMMs over all steps.

    Class attributes: ``gate_count`` (G) and ``state_names`` (the names of the ``hx`` parts in
    error messages). ``forward(input, hx=None, lengths=None) -> (output, h_n)`` and
    ``backward(grad_output, grad_h_n=None)`` here serve the single-state cells (RNN, GRU); the LSTM
    overrides both for its ``(h, c)`` pair. ``lengths`` ``(N,)`` int64 runs a padded batch as torch
    runs a packed one (day 26, :mod:`.bidirectional`): a step mask freezes each finished sequence's
    state and zeroes its outputs, and the reverse direction reverses each sequence within its length.
    The backward-only methods carry a leading underscore because the other trees have
    no counterpart (autograd); the mirror test compares public names.
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
                self.params[w_ih] = init.uniform((rows, layer_input), rng, bound, dtype)
                self.params[w_hh] = init.uniform((rows, hidden_size), rng, bound, dtype)
                if self.bias:
                    self.params[b_ih] = init.uniform((rows,), rng, bound, dtype)
                    self.params[b_hh] = init.uniform((rows,), rng, bound, dtype)
        self.zero_grad()

    def parameter_names(self, layer: int, direction: int) -> tuple[str, str, str, str]:
        """torch's names of one layer and direction: ``weight_ih_l0``, …, ``bias_hh_l1_reverse``."""
        suffix = f"l{layer}" + ("_reverse" if direction else "")
        return f"weight_ih_{suffix}", f"weight_hh_{suffix}", f"bias_ih_{suffix}", f"bias_hh_{suffix}"

    def forward(self, input: np.ndarray, hx: np.ndarray | None = None,
                lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        output, (h_n,) = self.run_layers(input, None if hx is None else (hx,), lengths)
        return output, h_n

    def backward(self, grad_output: np.ndarray | None, grad_h_n: np.ndarray | None = None):
        grads = self._backward_layers(grad_output, (grad_h_n,))
        return grads if isinstance(grads, np.ndarray) else (grads[0], grads[1][0])

    def run_layers(self, input: np.ndarray, hx: tuple | None, lengths: np.ndarray | None = None) -> tuple[np.ndarray, tuple]:
        """Check and lay out the inputs, run every layer and direction; ``(output, final states)``
        in the caller's layout (``hx`` is a tuple of the state parts, or ``None`` for zeros;
        ``lengths`` ``(N,)`` int64 or ``None`` when every sequence fills the ``T`` steps)."""
        owner = type(self).__name__
        check_input(owner, "input", input.shape, input.dtype, expected_dtype=self.dtype, ndim=(2, 3),
                    last_dim=self.input_size)
        check_sequence_length(owner, "input", input.shape, 1 if self.batch_first and input.ndim == 3 else 0)
        unbatched = input.ndim == 2
        # Time-major (T, N, in) inside; an unbatched (T, in) sequence is a batch of one.
        x = input[:, None] if unbatched else input.swapaxes(0, 1) if self.batch_first else input  # (T, N, in)
        if lengths is not None:
            check_lengths(owner, np.asarray(lengths), None if unbatched else x.shape[1], x.shape[0])
        states = self.initial_states(hx, x.shape[1], unbatched)
        output, finals, caches = self.forward_layers(x, states, lengths)
        self.save_for_backward(caches, unbatched, hx is not None, lengths)
        output = output[:, 0] if unbatched else output.swapaxes(0, 1) if self.batch_first else output
        finals = tuple(final[:, 0] if unbatched else final for final in finals)
        return output, finals

    def initial_states(self, hx: tuple | None, batch: int, unbatched: bool) -> tuple:
        """The state parts as ``(L*D, N, H)`` arrays: zeros, or ``hx`` checked (unbatched: ``(L*D, H)``)."""
        shape = (self.num_layers * self.num_directions, self.hidden_size)
        shape = shape if unbatched else (shape[0], batch, shape[1])
        if hx is None:
            return tuple(np.zeros((shape[0], batch, shape[-1]), self.dtype) for _ in self.state_names)
        for name, part in zip(self.state_names, hx):
            check_input(type(self).__name__, name, part.shape, part.dtype, expected_dtype=self.dtype, shape_like=shape)
        return tuple(part[:, None] if unbatched else part for part in hx)

    def forward_layers(self, x: np.ndarray, states: tuple,
                       lengths: np.ndarray | None = None) -> tuple[np.ndarray, tuple, list]:
        """Layers bottom-up, each direction on its own weights: ``(T, N, D*H)`` output, the final
        states stacked ``(L*D, N, H)``, and one cache per layer and direction."""
        mask = None if lengths is None else lengths_to_mask(lengths, x.shape[0])[..., None]  # (T, N, 1)
        finals = [[] for _ in states]
        caches = []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                # The reverse direction is the same recurrence on the time-reversed sequence.
                sequence = self.reverse_time(x, lengths) if direction else x  # (T, N, in_k)
                out, final, cache = self.forward_direction(sequence, tuple(s[index] for s in states),
                                                           self.parameter_names(layer, direction), mask)
                outputs.append(self.reverse_time(out, lengths) if direction else out)
                caches.append(cache)
                for part, value in zip(finals, final):
                    part.append(value)
            x = np.concatenate(outputs, axis=-1)  # (T, N, D*H)
        return x, tuple(np.stack(part) for part in finals), caches

    def reverse_time(self, x: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        """``(T, N, ...)`` in reversed time: the whole axis, or each sequence within its length."""
        return x[::-1] if lengths is None else reverse_padded(x, lengths)

    def forward_direction(self, x: np.ndarray, state: tuple, names: tuple,
                          mask: np.ndarray | None = None) -> tuple[np.ndarray, tuple, tuple]:
        """One layer, one direction over time: ``(T, N, H)`` outputs, the final state, the cache.
        ``mask`` ``(T, N, 1)`` marks the real steps; a padded one keeps the state and outputs 0."""
        w_ih, w_hh, b_ih, b_hh = (self.params.get(name) for name in names)
        if mask is not None:
            # Padding never reaches the cell: whatever it holds (even NaN), the state stays finite.
            x = np.where(mask, x, 0.0).astype(self.dtype, copy=False)  # (T, N, in)
        steps, batch, features = x.shape
        # Every step's input projection in one GEMM: only the recurrent part must wait for h_{t-1}
        # (sizes spelled out: -1 is ambiguous in an empty batch).
        x_proj = (x.reshape(steps * batch, features) @ w_ih.T).reshape(steps, batch, w_ih.shape[0])  # (T, N, G*H)
        if b_ih is not None:
            x_proj += b_ih
        h_prev = np.empty((steps, batch, self.hidden_size), self.dtype)  # (T, N, H)
        output = np.empty_like(h_prev)  # (T, N, H)
        cell_caches = []
        for t in range(steps):
            # At a padded step the (discarded) cell sees a zero state: its local derivatives stay
            # finite, so the zero cotangent it gets stays 0 even when the frozen state is inf/NaN.
            cell_state = state if mask is None else tuple(np.where(mask[t], part, 0.0) for part in state)
            h_prev[t] = cell_state[0]
            h_proj = cell_state[0] @ w_hh.T  # (N, G*H)
            if b_hh is not None:
                h_proj += b_hh
            new_state, cell_cache = self.cell_forward(x_proj[t], h_proj, cell_state)
            if mask is not None:
                # A finished sequence keeps its last real state (h_n, c_n) and outputs 0 (the padding).
                new_state = tuple(np.where(mask[t], new, old) for new, old in zip(new_state, state))
            state = new_state
            output[t] = state[0] if mask is None else np.where(mask[t], state[0], 0.0)
            cell_caches.append(cell_cache)
        return output, state, (x, h_prev, cell_caches, names, mask)

    def cell_forward(self, x_proj: np.ndarray, h_proj: np.ndarray, state: tuple) -> tuple[tuple, object]:
        raise NotImplementedError

    def _cell_backward(self, grad_state: tuple, cache) -> tuple[np.ndarray, np.ndarray, tuple]:
        raise NotImplementedError

    def _backward_layers(self, grad_output: np.ndarray | None, grad_finals: tuple):
        """Backpropagate one ``run_layers`` call: the input gradient, and, if ``hx`` was given, the
        tuple of its parts' gradients as well (``None`` cotangents mean zeros)."""
        caches, unbatched, hx_given, lengths = self.saved_for_backward()
        steps, batch = caches[0][0].shape[:2]
        width = self.num_directions * self.hidden_size
        if grad_output is None:
            grad_output = np.zeros((steps, batch, width), self.dtype)
        else:
            grad_output = grad_output[:, None] if unbatched else grad_output.swapaxes(0, 1) if self.batch_first else grad_output
        stacked = (self.num_layers * self.num_directions, batch, self.hidden_size)
        grad_finals = tuple(np.zeros(stacked, self.dtype) if g is None else g[:, None] if unbatched else g
                            for g in grad_finals)
        grad_x, grad_initial = self._backward_layer_stack(grad_output, grad_finals, caches, lengths)
        grad_x = grad_x[:, 0] if unbatched else grad_x.swapaxes(0, 1) if self.batch_first else grad_x
        if not hx_given:
            return grad_x
        return grad_x, tuple(g[:, 0] if unbatched else g for g in grad_initial)

    def _backward_layer_stack(self, grad_output: np.ndarray, grad_finals: tuple, caches: list,
                              lengths: np.ndarray | None = None) -> tuple[np.ndarray, tuple]:
        """Layers top-down: each direction's BPTT gives its share of the layer input's gradient
        (the two directions' shares add) and the gradient of its initial state. The reversal is
        its own inverse (a permutation of the steps that undoes itself), so it is its own backward."""
        grad_initial = tuple(np.empty_like(g) for g in grad_finals)
        hidden = self.hidden_size
        for layer in reversed(range(self.num_layers)):
            grad_input = 0.0
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                grad_out = grad_output[..., direction * hidden:(direction + 1) * hidden]  # (T, N, H)
                grad_x, grad_state = self._backward_direction(
                    self.reverse_time(grad_out, lengths) if direction else grad_out,
                    tuple(g[index] for g in grad_finals), caches[index])
                grad_input = grad_input + (self.reverse_time(grad_x, lengths) if direction else grad_x)
                for part, value in zip(grad_initial, grad_state):
                    part[index] = value
            grad_output = grad_input
        return grad_output, grad_initial

    def _backward_direction(self, grad_out: np.ndarray, grad_state: tuple, cache: tuple) -> tuple[np.ndarray, tuple]:
        """BPTT of one layer and direction: loop backwards over time, then the weight gradients as
        GEMMs over all ``T * N`` rows at once. At a padded step (``mask`` False) the state's
        cotangent skips the cell, which gets none, and the output's cotangent is dropped."""
        x, h_prev, cell_caches, names, mask = cache
        w_ih, w_hh, b_ih, b_hh = names
        steps, batch, features = x.shape
        rows = self.gate_count * self.hidden_size
        grad_x_proj = np.empty((steps, batch, rows), self.dtype)  # (T, N, G*H)
        grad_h_proj = np.empty_like(grad_x_proj)  # (T, N, G*H)
        if mask is not None:
            grad_out = np.where(mask, grad_out, 0.0)  # (T, N, H): the padded outputs are constants
        for t in reversed(range(steps)):
            # h_t feeds the output at t and the next step: both cotangents add.
            grad_state = (grad_state[0] + grad_out[t], *grad_state[1:])
            grad_cell = grad_state if mask is None else tuple(np.where(mask[t], g, 0.0) for g in grad_state)
            grad_x_proj[t], grad_h_proj[t], direct = self._cell_backward(grad_cell, cell_caches[t])
            through_w_hh = grad_h_proj[t] @ self.params[w_hh]  # (N, H)
            grad_prev = (through_w_hh if direct[0] is None else direct[0] + through_w_hh, *direct[1:])
            # A padded step passed the state on unchanged: so does its cotangent.
            grad_state = grad_prev if mask is None else tuple(np.where(mask[t], new, old)
                                                              for new, old in zip(grad_prev, grad_state))
        flat_x_proj = grad_x_proj.reshape(steps * batch, rows)  # (T*N, G*H)
        flat_h_proj = grad_h_proj.reshape(steps * batch, rows)  # (T*N, G*H)
        self.grads[w_ih] += flat_x_proj.T @ x.reshape(steps * batch, features)  # (G*H, in)
        self.grads[w_hh] += flat_h_proj.T @ h_prev.reshape(steps * batch, self.hidden_size)  # (G*H, H)
        if self.bias:
            self.grads[b_ih] += flat_x_proj.sum(axis=0)  # (G*H,)
            self.grads[b_hh] += flat_h_proj.sum(axis=0)  # (G*H,)
        # Rows of padded steps are 0 in flat_x_proj, so their input gradient is exactly 0.
        grad_x = (flat_x_proj @ self.params[w_ih]).reshape(steps, batch, features)  # (T, N, in)
        return grad_x, grad_state


class RNN(RecurrentBase):
    r"""``torch.nn.RNN``: :math:`h_t = \phi(x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh})`.

    ``forward(input, hx=None, lengths=None) -> (output, h_n)`` (from :class:`RecurrentBase`):
    ``input`` ``(T, N, in)`` (``(N, T, in)`` with ``batch_first``, or unbatched ``(T, in)``), ``hx``
    and ``h_n`` ``(L*D, N, H)``, ``output`` ``(T, N, D*H)``, ``lengths`` ``(N,)``.
    ``backward(grad_output, grad_h_n=None)`` returns the input's gradient, and
    ``(grad_input, grad_hx)`` when ``hx`` was given. ``dropout`` must be 0
    (see ``ml100.checks.RNN_DROPOUT_REASON``).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype="float32", rng: np.random.Generator | None = None):
        check_choice("RNN", "nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, rng)
        self.nonlinearity = nonlinearity

    def cell_forward(self, x_proj: np.ndarray, h_proj: np.ndarray, state: tuple) -> tuple[tuple, np.ndarray]:
        z = x_proj + h_proj  # (N, H)
        # ReLU zeroes only where z <= 0: NaN fails that test and stays NaN, as in torch.
        h = np.tanh(z) if self.nonlinearity == "tanh" else np.where(z <= 0, 0.0, z)  # (N, H)
        return (h,), h

    def _cell_backward(self, grad_state: tuple, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
        h = cache  # (N, H)
        # phi'(z) from the output alone: 1 - h^2 for tanh; for ReLU a selection (0 where h <= 0, so an
        # inf from above stops there; NaN passes), as torch's threshold_backward.
        grad_z = grad_state[0] * (1.0 - h * h) if self.nonlinearity == "tanh" else np.where(h <= 0, 0.0, grad_state[0])
        # h_{t-1} reaches h_t only through W_hh: no direct path.
        return grad_z, grad_z, (None,)
