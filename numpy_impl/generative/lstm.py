r"""Day 24: the LSTM (Hochreiter & Schmidhuber, 1997; with the forget gate of Gers et al., 2000).

One step, torch's gate order i, f, g, o stacked in the rows of one ``(4H, in)`` matrix:

.. math::  a_t = x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh} = [a^i, a^f, a^g, a^o]

.. math::  i = \sigma(a^i),\ f = \sigma(a^f),\ g = \tanh(a^g),\ o = \sigma(a^o), \qquad
           c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t)

**Backward of one step** (the NumPy tree's ``_cell_backward``). Given :math:`\bar h_t` and
:math:`\bar c_t` (from step :math:`t+1`, or the cotangent of ``c_n``), with :math:`\tau = \tanh(c_t)`:

.. math::  \bar o = \bar h_t \odot \tau, \qquad
           \hat c = \bar c_t + \bar h_t \odot o \odot (1 - \tau^2)

.. math::  \bar i = \hat c \odot g,\quad \bar g = \hat c \odot i,\quad \bar f = \hat c \odot c_{t-1},
           \quad \bar c_{t-1} = \hat c \odot f

.. math::  \bar a = [\bar i\, i(1-i),\ \bar f\, f(1-f),\ \bar g\,(1-g^2),\ \bar o\, o(1-o)]

:math:`\bar a` is the gradient of both projections; :math:`h_{t-1}` gets :math:`\bar a W_{hh}` (added by
:class:`~.rnn.RecurrentBase`, which also accumulates the weight gradients over all steps as GEMMs),
and :math:`c_{t-1}` gets :math:`\hat c \odot f` directly: the additive cell path along which the
gradient is only scaled by the forget gates, the LSTM's answer to vanishing gradients.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import LSTM_PROJ_SIZE_REASON, check_int, check_unsupported

from .rnn import RecurrentBase

class LSTM(RecurrentBase):
    r"""``torch.nn.LSTM`` (no projection): gates i, f, g, o stacked in ``(4H, in)`` and ``(4H, H)``
    matrices, two biases, under torch's names (``weight_ih_l0``, …, ``_reverse``).

    ``forward(input, hx=None, lengths=None) -> (output, (h_n, c_n))``: ``input`` ``(T, N, in)``
    (``(N, T, in)`` with ``batch_first``, or unbatched ``(T, in)``), ``hx = (h_0, c_0)`` each
    ``(L*D, N, H)``, ``output`` ``(T, N, D*H)``, ``lengths`` ``(N,)`` int64 for a padded batch
    (day 26). ``backward(grad_output, grad_h_n=None, grad_c_n=None)`` returns the
    input's gradient, and ``(grad_input, (grad_h_0, grad_c_0))`` when ``hx`` was given.
    """

    gate_count = 4
    state_names = ("h_0", "c_0")

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 dtype="float32", rng: np.random.Generator | None = None):
        check_unsupported("LSTM", "proj_size", check_int("LSTM", "proj_size", proj_size, 0), 0, LSTM_PROJ_SIZE_REASON)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, rng)
        self.proj_size = proj_size

    def forward(self, input: np.ndarray, hx: tuple | None = None,
                lengths: np.ndarray | None = None) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTM: hx must be None or a pair (h_0, c_0), got {type(hx).__name__}")
        output, (h_n, c_n) = self.run_layers(input, None if hx is None else tuple(hx), lengths)
        return output, (h_n, c_n)

    def backward(self, grad_output: np.ndarray | None, grad_h_n: np.ndarray | None = None,
                 grad_c_n: np.ndarray | None = None):
        return self._backward_layers(grad_output, (grad_h_n, grad_c_n))

    def cell_forward(self, x_proj: np.ndarray, h_proj: np.ndarray, state: tuple) -> tuple[tuple, tuple]:
        hidden = self.hidden_size
        _, c_prev = state
        gates = x_proj + h_proj  # (N, 4H)
        # One sigmoid over all four blocks (g's is discarded): fewer, larger element-wise calls. Written
        # 1 / (1 + e^-a) in place (7x faster than the overflow-free form in activations): where e^-a
        # overflows to inf the result is exactly 0, sigmoid's limit, so the warning is silenced.
        with np.errstate(over="ignore"):
            activated = np.exp(-gates)  # (N, 4H)
        activated += 1.0
        np.reciprocal(activated, out=activated)
        i, f, o = activated[:, :hidden], activated[:, hidden:2 * hidden], activated[:, 3 * hidden:]  # (N, H) each
        g = np.tanh(gates[:, 2 * hidden:3 * hidden])  # (N, H)
        c = f * c_prev + i * g  # (N, H)
        tanh_c = np.tanh(c)  # (N, H)
        h = o * tanh_c  # (N, H)
        return (h, c), (i, f, g, o, c_prev, tanh_c)

    def _cell_backward(self, grad_state: tuple, cache: tuple) -> tuple[np.ndarray, np.ndarray, tuple]:
        i, f, g, o, c_prev, tanh_c = cache
        grad_h, grad_c = grad_state
        hidden = self.hidden_size
        # c_t reaches the loss directly (next step, c_n) and through h_t = o * tanh(c_t).
        grad_c = grad_c + grad_h * o * (1.0 - tanh_c * tanh_c)  # (N, H)
        grad_gates = np.empty((i.shape[0], 4 * hidden), i.dtype)  # (N, 4H)
        grad_gates[:, :hidden] = grad_c * g * i * (1.0 - i)
        grad_gates[:, hidden:2 * hidden] = grad_c * c_prev * f * (1.0 - f)
        grad_gates[:, 2 * hidden:3 * hidden] = grad_c * i * (1.0 - g * g)
        grad_gates[:, 3 * hidden:] = grad_h * tanh_c * o * (1.0 - o)
        # Both projections feed the same pre-activation; h_{t-1} only through W_hh, c_{t-1} directly.
        return grad_gates, grad_gates, (None, grad_c * f)
