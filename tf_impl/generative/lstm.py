r"""Day 24: the LSTM (Hochreiter & Schmidhuber, 1997; with the forget gate of Gers et al., 2000).

One step, torch's gate order i, f, g, o stacked in the rows of one ``(4H, in)`` matrix:

.. math::  a_t = x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh} = [a^i, a^f, a^g, a^o]

.. math::  i = \sigma(a^i),\ f = \sigma(a^f),\ g = \tanh(a^g),\ o = \sigma(a^o), \qquad
           c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t)

The tape derives the backward the NumPy tree writes out; its key line is
:math:`\bar c_{t-1} = (\bar c_t + \bar h_t \odot o \odot (1-\tanh^2 c_t)) \odot f`: the additive
cell path along which the gradient is only scaled by the forget gates. Keras's ``LSTM`` uses the
same gate order (it calls g "c"), with ``(in, 4H)`` kernels and one bias; it is the reference,
never called here.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import LSTM_PROJ_SIZE_REASON, check_int, check_unsupported

from .rnn import RecurrentBase

class LSTM(RecurrentBase):
    r"""``torch.nn.LSTM`` (no projection): gates i, f, g, o stacked in ``(4H, in)`` and ``(4H, H)``
    matrices, two biases, under torch's names (``weight_ih_l0``, …, ``_reverse``).

    ``forward(input, hx=None, lengths=None) -> (output, (h_n, c_n))``: ``input`` ``(T, N, in)``
    (``(N, T, in)`` with ``batch_first``, or unbatched ``(T, in)``), ``hx = (h_0, c_0)`` each
    ``(L*D, N, H)``, ``output`` ``(T, N, D*H)``, ``lengths`` ``(N,)`` int64 for a padded batch
    (day 26).
    """

    gate_count = 4
    state_names = ("h_0", "c_0")

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 dtype="float32", rng: np.random.Generator | None = None):
        check_unsupported("LSTM", "proj_size", check_int("LSTM", "proj_size", proj_size, 0), 0, LSTM_PROJ_SIZE_REASON)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, rng)
        self.proj_size = proj_size

    def forward(self, input: tf.Tensor, hx: tuple | None = None,
                lengths: tf.Tensor | None = None) -> tuple[tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTM: hx must be None or a pair (h_0, c_0), got {type(hx).__name__}")
        output, (h_n, c_n) = self.run_layers(input, None if hx is None else tuple(hx), lengths)
        return output, (h_n, c_n)

    def cell_forward(self, x_proj: tf.Tensor, h_proj: tf.Tensor, state: tuple) -> tuple:
        _, c_prev = state
        gates = x_proj + h_proj  # (N, 4H)
        a_i, a_f, a_g, a_o = tf.split(gates, 4, axis=1)  # (N, H) each
        i, f, g, o = tf.sigmoid(a_i), tf.sigmoid(a_f), tf.tanh(a_g), tf.sigmoid(a_o)
        c = f * c_prev + i * g  # (N, H)
        h = o * tf.tanh(c)  # (N, H)
        return h, c
