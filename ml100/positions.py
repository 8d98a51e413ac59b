r"""Position encodings' framework-neutral math (day 44): RoPE's frequencies and ALiBi's slopes.

Both are pure index/frequency arithmetic on small vectors, computed once here in float64; each
tree turns them into tensors of its own dtype.

**RoPE** (Su et al., RoFormer) rotates each pair of channels of a query or key at position
:math:`p` by the angle :math:`p\,\theta_i`, with :math:`\theta_i = \text{base}^{-2i/d}`,
:math:`i = 0 \dots d/2 - 1`. Which channels form a pair is the layout:

- ``interleaved=False`` (Hugging Face Llama, GPT-NeoX): channel :math:`i` pairs with
  :math:`i + d/2`; the per-channel frequency vector is :math:`[\theta, \theta]` (two halves);
- ``interleaved=True`` (GPT-J, the RoFormer paper): channel :math:`2i` pairs with :math:`2i+1`;
  the per-channel frequency vector repeats each :math:`\theta_i` twice in a row.

**ALiBi** (Press et al.) adds :math:`m_h (j - i)` to head :math:`h`'s attention logit of query
:math:`i` and key :math:`j`. For :math:`H` heads, a power of two, the slopes are the geometric sequence
:math:`m_h = 2^{-8(h+1)/H}`; for other head counts, the :math:`c = 2^{\lfloor \log_2 H \rfloor}`
slopes of the closest power of two come first, then the odd-indexed ones
:math:`2^{-4(2k+1)/c}`, :math:`k = 0 \dots H - c - 1`, of the sequence for :math:`2c` (the
paper's rule, as BLOOM's ``build_alibi_tensor`` computes it).
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import check_int


def rotary_frequencies(head_dim: int, base: float, interleaved: bool) -> np.ndarray:
    """The ``(head_dim,)`` float64 angle per unit of position of every channel, in the layout's
    order: :math:`[\\theta_0..\\theta_{d/2-1}, \\theta_0..\\theta_{d/2-1}]` (halves) or
    :math:`[\\theta_0, \\theta_0, \\theta_1, \\theta_1, ...]` (interleaved). ``head_dim`` is even
    (checked by the caller)."""
    # theta_i = base ** (-2i / d), written as Hugging Face writes it: 1 / base ** (arange(0, d, 2) / d).
    inv_freq = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)  # (d/2,)
    if interleaved:
        return np.repeat(inv_freq, 2)  # (d,)
    return np.concatenate([inv_freq, inv_freq])  # (d,)


def rotary_cos_sin(positions, head_dim: int, base: float = 10000.0, interleaved: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``cos`` and ``sin`` of the angles ``positions[..., None] * frequencies``: ``positions.shape +
    (head_dim,)``, float64 (the trees compute the same in their own tensors; this one is the
    plain-NumPy statement, used by figures and tests)."""
    angles = np.asarray(positions, dtype=np.float64)[..., None] * rotary_frequencies(head_dim, base, interleaved)
    return np.cos(angles), np.sin(angles)


def alibi_slopes(num_heads: int) -> np.ndarray:
    """The ``(num_heads,)`` float64 ALiBi slopes for any head count (see the module docstring)."""
    num_heads = check_int("alibi_slopes", "num_heads", num_heads, 1)
    closest = 2 ** math.floor(math.log2(num_heads))
    # Powers 1..c of 2^(-8/c): the geometric sequence for the closest power of two.
    slopes = 2.0 ** (-8.0 / closest * np.arange(1, closest + 1))  # (c,)
    # Powers 1, 3, 5, ... of 2^(-8/(2c)): every other slope of the 2c sequence, the ones between.
    extra = 2.0 ** (-8.0 / (2 * closest) * np.arange(1, 2 * (num_heads - closest), 2))  # (H - c,)
    return np.concatenate([slopes, extra])  # (H,)


def alibi_distances(query_len: int, key_len: int, offset: int = 0) -> np.ndarray:
    """``(query_len, key_len)`` float64 signed distances ``j - (i + offset)`` from query ``i`` (at
    absolute position ``i + offset``, e.g. after ``offset`` cached keys) to key ``j``."""
    query = np.arange(query_len, dtype=np.float64) + offset  # (L,)
    key = np.arange(key_len, dtype=np.float64)  # (S,)
    return key[None, :] - query[:, None]  # (L, S)
