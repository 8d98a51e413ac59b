r"""Day 25: the gated recurrent unit (GRU) of Cho et al. (2014), in torch's form.

One step, with the three gates stacked [r, z, n] in rows of ``weight_ih`` ``(3H, in)`` and
``weight_hh`` ``(3H, H)`` (torch's order and names):

.. math::  r &= \sigma(x W_{ir}^\top + b_{ir} + h W_{hr}^\top + b_{hr}) \\
           z &= \sigma(x W_{iz}^\top + b_{iz} + h W_{hz}^\top + b_{hz}) \\
           n &= \tanh\big(x W_{in}^\top + b_{in} + r \odot (h W_{hn}^\top + b_{hn})\big) \\
           h' &= (1 - z) \odot n + z \odot h = n + z \odot (h - n)

The reset gate :math:`r` multiplies the recurrent projection *after* the matrix product (Keras'
``reset_after=True``); the original GRU resets :math:`h` before it, a different function.

The tape derives the backward the NumPy tree writes by hand. The weights are stored canonically
(gates [r, z, n] in rows, as the day-22 driver stores every recurrent layer); Keras' ``GRU``
stacks [z, r, h] in the columns of ``(in, 3H)`` kernels and keeps both biases in one ``(2, 3H)``
array: the conversion is ``torch_gru_to_keras`` in ``parity_tests/generative/test_gru.py``.

The layers × directions driver is day 22's :class:`~.rnn.RecurrentBase`; this file is only the
cell. ``keras.layers.GRU`` is the reference, never called here.
"""
from __future__ import annotations

import tensorflow as tf

from .rnn import RecurrentBase


class GRU(RecurrentBase):
    r"""``torch.nn.GRU``: gates [r, z, n], :math:`h' = n + z \odot (h - n)` (see the module docstring).

    ``forward(input, hx=None, lengths=None) -> (output, h_n)`` (from :class:`~.rnn.RecurrentBase`):
    ``input`` ``(T, N, in)`` (``(N, T, in)`` with ``batch_first``, or unbatched ``(T, in)``), ``hx``
    and ``h_n`` ``(L*D, N, H)``, ``output`` ``(T, N, D*H)``, ``lengths`` ``(N,)`` int64 for a padded
    batch (day 26). ``dropout`` must be 0 (see ``ml100.checks.RNN_DROPOUT_REASON``).
    """

    gate_count = 3

    def cell_forward(self, x_proj: tf.Tensor, h_proj: tf.Tensor, state: tuple) -> tuple:
        h = state[0]  # (N, H)
        a_xr, a_xz, a_xn = tf.split(x_proj, 3, axis=-1)  # (N, H) each
        a_hr, a_hz, a_hn = tf.split(h_proj, 3, axis=-1)  # (N, H) each
        r = tf.sigmoid(a_xr + a_hr)  # (N, H)
        z = tf.sigmoid(a_xz + a_hz)  # (N, H)
        # Reset after the product: r scales W_hn h + b_hn, not h.
        n = tf.tanh(a_xn + r * a_hn)  # (N, H)
        return (n + z * (h - n),)
