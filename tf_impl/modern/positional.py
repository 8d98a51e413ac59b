r"""Day 43: positional encodings — the order of the tokens, added to their embeddings.

Attention is permutation-equivariant: without a position signal ``x`` and its tokens shuffled
give the same outputs, shuffled. Two ways to add one, both to an input ``x`` ``(B, T, C)``
(batch first) at positions :math:`\text{offset}, \dots, \text{offset} + T - 1`:

**Sinusoidal** (Vaswani et al. 2017, §3.5), a fixed table, interleaved as in the paper and the
PyTorch tutorial — column :math:`2i` a sine, column :math:`2i + 1` the cosine of the same angle:

.. math::  PE_{p,2i} = \sin\!\big(p\,\omega_i\big), \qquad PE_{p,2i+1} = \cos\!\big(p\,\omega_i\big), \qquad
           \omega_i = 10000^{-2i/C}, \qquad y_{b,t,:} = x_{b,t,:} + PE_{\text{offset}+t,:}

An odd ``C`` ends on a sine column (:math:`\lceil C/2\rceil` sines, :math:`\lfloor C/2\rfloor`
cosines), as Hugging Face's Marian table does. The table is computed in float64 and rounded once
to ``dtype``, so a float32 table is the correctly rounded one however long (the PyTorch tutorial's
float32 angles lose ~3e-4 at position 5000). It has no parameters and is stored as the
non-persistent buffer ``pe`` ``(max_len, C)``: a function of ``(max_len, C)``, not part of the
canonical state (torch's ``persistent=False``): a constant tensor, not a variable. The tape gives
:math:`\partial L/\partial x = G`.

**Learned** (BERT, GPT-2): a table :math:`W \in \mathbb{R}^{\text{max\_len}\times C}` trained like
an embedding, read at the positions (not at token ids):

.. math::  y_{b,t,:} = x_{b,t,:} + W_{\text{offset}+t,:}, \qquad
           \frac{\partial L}{\partial x} = G, \qquad
           \frac{\partial L}{\partial W_{\text{offset}+t,:}} = \textstyle\sum_b G_{b,t,:}

(rows outside the window get 0), which the tape derives from the slice and the broadcast.
The variable is stored as Keras' ``Embedding`` stores ``embeddings``: the canonical layout already.
Initialization :math:`N(0, 1)`, ``torch.nn.Embedding``'s (GPT-2
uses :math:`N(0, 0.02^2)`); canonical name ``weight`` ``(max_len, C)``, ``nn.Embedding``'s.

``offset`` serves incremental decoding (the next token of a cached prefix of length ``offset``);
``offset + T > max_len`` is an error, never a silent truncation.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_input, check_int, check_position_window, check_rng

from ..foundations import init
from ..module import Module, tf_dtype

#: The base of the wavelengths' geometric progression (the paper's 10000).
BASE = 10000.0


def sinusoidal_table(max_len: int, embed_dim: int, dtype="float32") -> tf.Tensor:
    """The interleaved table ``(max_len, embed_dim)``: sine on even columns, cosine on odd ones."""
    positions = tf.range(max_len, dtype=tf.float64)[:, None]  # (L, 1)
    columns = tf.range(embed_dim)  # (C,)
    # Columns 2i and 2i + 1 share the frequency index i = j // 2.
    frequencies = BASE ** (-2.0 * tf.cast(columns // 2, tf.float64) / embed_dim)  # (C,)
    angles = positions * frequencies  # (L, C)
    table = tf.where(columns % 2 == 0, tf.sin(angles), tf.cos(angles))  # (L, C)
    return tf.cast(table, tf_dtype(dtype))


class SinusoidalPositionalEncoding(Module):
    """``x + pe[offset : offset + T]`` for ``x`` ``(B, T, embed_dim)``; the fixed buffer ``pe`` ``(max_len, embed_dim)``."""

    def __init__(self, embed_dim: int, max_len: int = 5000, dtype="float32"):
        super().__init__(dtype)
        self.embed_dim = check_int("SinusoidalPositionalEncoding", "embed_dim", embed_dim, 1)
        self.max_len = check_int("SinusoidalPositionalEncoding", "max_len", max_len, 1)
        # A constant, not a variable in self.buffers: recomputed, never saved or loaded (persistent=False).
        self.pe = sinusoidal_table(max_len, embed_dim, self.dtype)  # (L, C)

    def forward(self, x: tf.Tensor, offset: int = 0) -> tf.Tensor:
        check_input("SinusoidalPositionalEncoding", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=3,
                    last_dim=self.embed_dim)
        offset = check_position_window("SinusoidalPositionalEncoding", offset, x.shape[1], self.max_len)
        return x + self.pe[offset:offset + x.shape[1]]  # (B, T, C)


class LearnedPositionalEmbedding(Module):
    """``x + weight[offset : offset + T]`` for ``x`` ``(B, T, embed_dim)``; canonical ``weight`` ``(max_len, embed_dim)``."""

    def __init__(self, max_len: int, embed_dim: int, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("LearnedPositionalEmbedding", rng)
        self.max_len = check_int("LearnedPositionalEmbedding", "max_len", max_len, 1)
        self.embed_dim = check_int("LearnedPositionalEmbedding", "embed_dim", embed_dim, 1)
        # Keras' attribute name, the canonical registered name.
        self.embeddings = self.add_param("weight", init.normal((max_len, embed_dim), rng, 1.0, dtype))  # (L, C)

    def forward(self, x: tf.Tensor, offset: int = 0) -> tf.Tensor:
        check_input("LearnedPositionalEmbedding", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=3,
                    last_dim=self.embed_dim)
        offset = check_position_window("LearnedPositionalEmbedding", offset, x.shape[1], self.max_len)
        return x + self.embeddings[offset:offset + x.shape[1]]  # (B, T, C)
