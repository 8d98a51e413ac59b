r"""Day 26: stacked and bidirectional RNNs over padded batches of variable-length sequences.

A batch of sequences of lengths :math:`L_1, \dots, L_N \le T` is padded to ``(T, N, F)``. The
recurrent layers of days 22–25 take ``lengths`` ``(N,)`` (int64, each in ``[1, T]``) and then
behave like torch's layers run on ``pack_padded_sequence(x, lengths, enforce_sorted=False)``
followed by ``pad_packed_sequence(..., total_length=T)``. With the step mask
:math:`m_{t,n} = [t < L_n]` (:func:`lengths_to_mask`):

.. math::  s_t = m_t \odot \mathrm{cell}(m_t \odot x_t,\ m_t \odot s_{t-1}) + (1 - m_t) \odot s_{t-1}, \qquad
           y_t = m_t \odot h_t

so a finished sequence keeps its state (``h_n``, ``c_n`` are taken at its last real step) and its
padded outputs are exactly 0. The discarded cell at a padded step sees zeros, never the padding or
the frozen state, so its local derivatives stay finite whatever those hold. The reverse direction of a bidirectional layer must start at each
sequence's *own* last step, not at :math:`T`: it reads :func:`reverse_padded` of its input,

.. math::  \tilde x_{t,n} = x_{\pi_n(t), n}, \qquad
           \pi_n(t) = \begin{cases} L_n - 1 - t & t < L_n \\ t & t \ge L_n \end{cases}

runs the same masked recurrence (the real steps are again the first :math:`L_n`), and its output
is put back in time order by the same permutation. Flipping the whole padded axis instead would
start the reverse pass on padding, the classic bug this day is about.

**Backward.** :math:`\pi_n` is a permutation that is its own inverse, so the gradient of
:func:`reverse_padded` is :func:`reverse_padded` of the cotangent (a gather's transpose is a
scatter; for an involution they coincide). Through the mask, with :math:`\bar s_t` the cotangent
of the state after step :math:`t`:

.. math::  \bar s_{t-1} = m_t \odot \big(\text{the cell's backward of } \bar s_t + \bar y_t\big)
           + (1 - m_t) \odot \bar s_t

the padded steps' cotangents skip the cell, their output cotangents are dropped, and the padded
input steps get a gradient of exactly 0. The driver (:class:`~.rnn.RecurrentBase`) uses these two
functions; they take the time-major layout ``(T, N, ...)`` it works in.
"""
from __future__ import annotations

import numpy as np


def lengths_to_mask(lengths: np.ndarray, steps: int) -> np.ndarray:
    """``(T, N)`` booleans, ``True`` at the real steps: :math:`m_{t,n} = [t < L_n]`."""
    return np.arange(steps)[:, None] < lengths[None, :]  # (T, N)


def reverse_padded(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each sequence of a time-major ``(T, N, ...)`` batch reversed within its own length; the
    padded steps stay where they are. Its own inverse, hence also its own backward."""
    steps, batch = x.shape[:2]
    time = np.arange(steps)[:, None]  # (T, 1)
    # Real step t of sequence n reads step L_n - 1 - t; a padded step reads itself.
    source = np.where(time < lengths[None, :], lengths[None, :] - 1 - time, time)  # (T, N)
    return x[source, np.arange(batch)[None, :]]  # (T, N, ...)
