r"""Day 25: the gated recurrent unit (GRU) of Cho et al. (2014), in torch's form.

One step, with the three gates stacked [r, z, n] in rows of ``weight_ih`` ``(3H, in)`` and
``weight_hh`` ``(3H, H)`` (torch's order and names):

.. math::  r &= \sigma(x W_{ir}^\top + b_{ir} + h W_{hr}^\top + b_{hr}) \\
           z &= \sigma(x W_{iz}^\top + b_{iz} + h W_{hz}^\top + b_{hz}) \\
           n &= \tanh\big(x W_{in}^\top + b_{in} + r \odot (h W_{hn}^\top + b_{hn})\big) \\
           h' &= (1 - z) \odot n + z \odot h = n + z \odot (h - n)

The reset gate :math:`r` multiplies the recurrent projection *after* the matrix product (Keras'
``reset_after=True``); the original GRU resets :math:`h` before it, a different function.

Autograd derives the backward the NumPy tree writes by hand; in particular the two projections'
gradients differ only in the candidate block, :math:`\bar a_{hn} = \bar a_{xn} \odot r`.

The layers × directions driver is day 22's :class:`~.rnn.RecurrentBase`; this file is only the
cell. ``torch.nn.GRU`` is the reference, never called here.
"""
from __future__ import annotations

import torch

from .rnn import RecurrentBase


class GRU(RecurrentBase):
    r"""``torch.nn.GRU``: gates [r, z, n], :math:`h' = n + z \odot (h - n)` (see the module docstring).

    ``forward(input, hx=None, lengths=None) -> (output, h_n)`` (from :class:`~.rnn.RecurrentBase`):
    ``input`` ``(T, N, in)`` (``(N, T, in)`` with ``batch_first``, or unbatched ``(T, in)``), ``hx``
    and ``h_n`` ``(L*D, N, H)``, ``output`` ``(T, N, D*H)``, ``lengths`` ``(N,)`` int64 for a padded
    batch (day 26). ``dropout`` must be 0 (see ``ml100.checks.RNN_DROPOUT_REASON``).
    """

    gate_count = 3

    def cell_forward(self, x_proj: torch.Tensor, h_proj: torch.Tensor, state: tuple) -> tuple:
        h = state[0]  # (N, H)
        a_xr, a_xz, a_xn = x_proj.chunk(3, dim=-1)  # (N, H) each
        a_hr, a_hz, a_hn = h_proj.chunk(3, dim=-1)  # (N, H) each
        r = torch.sigmoid(a_xr + a_hr)  # (N, H)
        z = torch.sigmoid(a_xz + a_hz)  # (N, H)
        # Reset after the product: r scales W_hn h + b_hn, not h.
        n = torch.tanh(a_xn + r * a_hn)  # (N, H)
        return (n + z * (h - n),)
