r"""Day 21: the embedding layer — a lookup table of learned vectors, one row per token id.

.. math::  y_{p} = W_{i_p,:}, \qquad W \in \mathbb{R}^{V\times D}, \quad i_p \in \{0,\dots,V-1\}

for every position :math:`p` of an integer tensor of ids of any shape ``(*)``; the output is
``(*, D)``. It equals a one-hot row times :math:`W` without building the one-hot matrix.

Backward, with :math:`G = \partial L/\partial y`: every position adds its cotangent into the row it
read, so a repeated id accumulates (a scatter-add); the ids, integers, get no gradient:

.. math::  \frac{\partial L}{\partial W_{k,:}} = \sum_{p:\, i_p = k} s_k\, G_{p,:}, \qquad
           s_k = \begin{cases}0 & k = \text{padding\_idx}\\ 1/n_k & \text{scale\_grad\_by\_freq}\\ 1 & \text{otherwise}\end{cases}

where :math:`n_k` counts the positions of id :math:`k` in this call's ids.

As ``torch.nn.Embedding``: initialization :math:`N(0, 1)` with the ``padding_idx`` row zeroed;
``padding_idx`` may be negative (it means ``num_embeddings + padding_idx``); the padding row is
looked up as it is but never gets a gradient. ``max_norm`` renormalizes, **in place in the
weight**, every looked-up row whose ``norm_type``-norm exceeds it, to
``row * max_norm / (norm + 1e-7)``, before the lookup and outside the gradient (torch's
``embedding_renorm_``): a forward then changes the parameters. ``sparse=True`` (torch's sparse
gradient) is refused: every tree returns the dense ``(V, D)`` gradient.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_bool, check_ids, check_input, check_int, check_padding_idx, check_positive, check_rng

from ..foundations import init
from ..module import Module

#: Added to the norm before dividing, as torch's ``embedding_renorm_`` does.
RENORM_EPS = 1e-7


class Embedding(Module):
    """``weight[ids]``: ids ``(*)`` int64 -> ``(*, embedding_dim)``; canonical name ``weight`` ``(V, D)``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("Embedding", rng)
        self.num_embeddings = check_int("Embedding", "num_embeddings", num_embeddings, 0)
        self.embedding_dim = check_int("Embedding", "embedding_dim", embedding_dim, 0)
        self.padding_idx = check_padding_idx("Embedding", padding_idx, num_embeddings)
        self.max_norm = None if max_norm is None else check_positive("Embedding", "max_norm", max_norm)
        self.norm_type = check_positive("Embedding", "norm_type", norm_type)
        self.scale_grad_by_freq = check_bool("Embedding", "scale_grad_by_freq", scale_grad_by_freq)
        if check_bool("Embedding", "sparse", sparse):
            raise ValueError("Embedding: sparse=True (a sparse gradient) is not supported; every tree returns the dense "
                             "(num_embeddings, embedding_dim) gradient, as torch does with sparse=False")
        weight = init.normal((num_embeddings, embedding_dim), rng, 1.0, dtype)  # (V, D)
        # torch zeroes the padding row at initialization (a load may overwrite it).
        if self.padding_idx is not None:
            weight[self.padding_idx] = 0.0
        self.params["weight"] = weight
        self.zero_grad()

    def forward(self, ids: np.ndarray) -> np.ndarray:
        check_input("Embedding", "ids", ids.shape, ids.dtype, expected_dtype="int64")
        check_ids("Embedding", "ids", ids, self.num_embeddings)
        if self.max_norm is not None:
            self.renorm(ids)
        self.save_for_backward(ids)
        return self.params["weight"][ids]  # (*, D)

    def renorm(self, ids: np.ndarray) -> None:
        """``max_norm``: scale each looked-up row whose norm exceeds it down to ``max_norm``, in place."""
        weight = self.params["weight"]  # (V, D)
        rows = np.unique(ids)  # (U,) each row once, however often it is looked up
        norms = np.linalg.norm(weight[rows], ord=self.norm_type, axis=1)  # (U,)
        # Rows already inside the ball are left bit-for-bit untouched (a NaN norm is not > max_norm).
        over = norms > self.max_norm
        weight[rows[over]] *= (self.max_norm / (norms[over] + RENORM_EPS))[:, None].astype(self.dtype)

    def backward(self, grad_out: np.ndarray) -> None:
        ids = self.saved_for_backward()  # (*)
        flat_ids = ids.reshape(-1)  # (P,)
        g_rows = grad_out.reshape(flat_ids.size, self.embedding_dim)  # (P, D)
        # The padding row gets no gradient: its positions are dropped (even a NaN cotangent adds nothing).
        if self.padding_idx is not None:
            keep = flat_ids != self.padding_idx  # (P,)
            flat_ids, g_rows = flat_ids[keep], g_rows[keep]
        if flat_ids.size == 0:
            return None
        # Scatter-add by sorting: equal ids become neighbours, one reduceat sums each run (the same
        # sums as np.add.at(grad, ids, g), 1.2-5x faster when ids repeat; see the day page).
        order = np.argsort(flat_ids, kind="stable")  # (P,)
        sorted_ids = flat_ids[order]  # (P,)
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])  # (U,) first position of each id
        sums = np.add.reduceat(g_rows[order], starts, axis=0)  # (U, D)
        if self.scale_grad_by_freq:
            counts = np.diff(np.r_[starts, sorted_ids.size])  # (U,) positions per id in this call
            sums = sums * (1.0 / counts)[:, None].astype(self.dtype)  # (U, D)
        # += : a table used twice (tied, or over two id tensors) sums both uses, as .grad does.
        self.grads["weight"][sorted_ids[starts]] += sums  # (U, D)
        # The ids are integers: no input gradient.
        return None
