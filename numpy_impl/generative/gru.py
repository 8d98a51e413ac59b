r"""Day 25: the gated recurrent unit (GRU) of Cho et al. (2014), in torch's form.

One step, with the three gates stacked [r, z, n] in rows of ``weight_ih`` ``(3H, in)`` and
``weight_hh`` ``(3H, H)`` (torch's order and names, so an ``nn.GRU`` state dict loads unchanged):

.. math::  r &= \sigma(x W_{ir}^\top + b_{ir} + h W_{hr}^\top + b_{hr}) \\
           z &= \sigma(x W_{iz}^\top + b_{iz} + h W_{hz}^\top + b_{hz}) \\
           n &= \tanh\big(x W_{in}^\top + b_{in} + r \odot (h W_{hn}^\top + b_{hn})\big) \\
           h' &= (1 - z) \odot n + z \odot h = n + z \odot (h - n)

The reset gate :math:`r` multiplies the recurrent projection *after* the matrix product (Keras'
``reset_after=True``); the original GRU resets :math:`h` before it, :math:`(r \odot h) W_{hn}^\top`,
a different function. The update gate :math:`z` interpolates between the candidate :math:`n` and
the old state: where :math:`z \approx 1` the state is copied unchanged, which is what lets the
gradient cross many steps.

**Backward of one step.** Write :math:`a_x = x W_{ih}^\top + b_{ih}` and
:math:`a_h = h W_{hh}^\top + b_{hh}` (the two projections the driver hands the cell, split into
the gate blocks :math:`a_{\cdot r}, a_{\cdot z}, a_{\cdot n}`) and :math:`\bar h' = \partial L/\partial h'`:

.. math::  \bar n = \bar h' \odot (1 - z), \quad \bar z = \bar h' \odot (h - n), \quad
           \bar a_n = \bar n \odot (1 - n^2), \quad \bar r = \bar a_n \odot a_{hn}

.. math::  \bar a_r = \bar r \odot r(1 - r), \qquad \bar a_z = \bar z \odot z(1 - z)

.. math::  \bar a_x = [\bar a_r, \bar a_z, \bar a_n], \qquad \bar a_h = [\bar a_r, \bar a_z, \bar a_n \odot r],
           \qquad \bar h \mathrel{+}= \bar h' \odot z + \bar a_h W_{hh}

(the last term is added by the driver, which also turns :math:`\bar a_x, \bar a_h` of every step
into the weight gradients). The two projections' gradients differ only in the candidate block:
the recurrent one passes through :math:`r`.

The layers × directions driver and BPTT are day 22's :class:`~.rnn.RecurrentBase`; this file is
only the cell.
"""
from __future__ import annotations

import numpy as np

from ..foundations.activations import sigmoid
from .rnn import RecurrentBase


class GRU(RecurrentBase):
    r"""``torch.nn.GRU``: gates [r, z, n], :math:`h' = n + z \odot (h - n)` (see the module docstring).

    ``forward(input, hx=None, lengths=None) -> (output, h_n)`` (from :class:`~.rnn.RecurrentBase`):
    ``input`` ``(T, N, in)`` (``(N, T, in)`` with ``batch_first``, or unbatched ``(T, in)``), ``hx``
    and ``h_n`` ``(L*D, N, H)``, ``output`` ``(T, N, D*H)``, ``lengths`` ``(N,)`` int64 for a padded
    batch (day 26). ``backward(grad_output, grad_h_n=None)`` returns the input's gradient, and
    ``(grad_input, grad_hx)`` when ``hx`` was given. ``dropout`` must be 0 (see
    ``ml100.checks.RNN_DROPOUT_REASON``).
    """

    gate_count = 3

    def cell_forward(self, x_proj: np.ndarray, h_proj: np.ndarray, state: tuple) -> tuple[tuple, tuple]:
        h = state[0]  # (N, H)
        a_xr, a_xz, a_xn = np.split(x_proj, 3, axis=-1)  # (N, H) each
        a_hr, a_hz, a_hn = np.split(h_proj, 3, axis=-1)  # (N, H) each
        r = sigmoid(a_xr + a_hr)  # (N, H)
        z = sigmoid(a_xz + a_hz)  # (N, H)
        # Reset after the product: r scales W_hn h + b_hn, not h.
        n = np.tanh(a_xn + r * a_hn)  # (N, H)
        h_new = n + z * (h - n)  # (N, H)
        return (h_new,), (h, r, z, n, a_hn)

    def _cell_backward(self, grad_state: tuple, cache: tuple) -> tuple[np.ndarray, np.ndarray, tuple]:
        h, r, z, n, a_hn = cache  # (N, H) each
        grad_h_new = grad_state[0]  # (N, H)
        grad_n = grad_h_new * (1.0 - z) * (1.0 - n * n)  # (N, H): through the candidate's tanh
        grad_z = grad_h_new * (h - n) * z * (1.0 - z)  # (N, H): through the update gate's sigmoid
        grad_r = grad_n * a_hn * r * (1.0 - r)  # (N, H): the reset gate scaled W_hn h + b_hn
        grad_x_proj = np.concatenate([grad_r, grad_z, grad_n], axis=-1)  # (N, 3H)
        # The recurrent candidate block reached n through r; the input one did not.
        grad_h_proj = np.concatenate([grad_r, grad_z, grad_n * r], axis=-1)  # (N, 3H)
        # The direct path: h' = n + z * (h - n) holds h with weight z.
        return grad_x_proj, grad_h_proj, (grad_h_new * z,)
