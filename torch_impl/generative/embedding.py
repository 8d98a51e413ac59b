r"""Day 21: the embedding layer — a lookup table of learned vectors, one row per token id.

.. math::  y_{p} = W_{i_p,:}, \qquad W \in \mathbb{R}^{V\times D}, \quad i_p \in \{0,\dots,V-1\}

for every position :math:`p` of an integer tensor of ids of any shape ``(*)``; the output is
``(*, D)``. Autograd turns the indexing into the scatter-add the NumPy tree writes by hand
(:math:`\partial L/\partial W_{k,:} = \sum_{p:\,i_p=k} s_k G_{p,:}`); the padding row's positions
are detached (:math:`s_k = 0`) and ``scale_grad_by_freq`` scales each position's cotangent by
:math:`s_k = 1/n_k`, the count of its id in this call.

As ``torch.nn.Embedding`` (the reference; this file does not call it): initialization
:math:`N(0, 1)` with the ``padding_idx`` row zeroed; ``padding_idx`` may be negative;
``max_norm`` renormalizes, **in place in the weight**, every looked-up row whose
``norm_type``-norm exceeds it, to ``row * max_norm / (norm + 1e-7)``, under ``torch.no_grad()``;
``sparse=True`` is refused.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

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
        self.weight = nn.Parameter(weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        check_input("Embedding", "ids", ids.shape, ids.dtype, expected_dtype="int64")
        check_ids("Embedding", "ids", ids, self.num_embeddings)
        if self.max_norm is not None:
            self.renorm(ids)
        y = self.weight[ids]  # (*, D)
        # The padding row gets no gradient: its positions are cut from the graph (values unchanged).
        if self.padding_idx is not None:
            y = torch.where((ids == self.padding_idx)[..., None], y.detach(), y)  # (*, D)
        if self.scale_grad_by_freq and y.requires_grad:
            y = _scale_gradient(y, _inverse_counts(ids))  # (*, D)
        return y

    @torch.no_grad()
    def renorm(self, ids: torch.Tensor) -> None:
        """``max_norm``: scale each looked-up row whose norm exceeds it down to ``max_norm``, in place."""
        rows = torch.unique(ids)  # (U,) each row once, however often it is looked up
        norms = torch.linalg.vector_norm(self.weight[rows], ord=self.norm_type, dim=1)  # (U,)
        # Rows already inside the ball are left bit-for-bit untouched (a NaN norm is not > max_norm).
        over = norms > self.max_norm
        self.weight[rows[over]] *= (self.max_norm / (norms[over] + RENORM_EPS))[:, None]


def _inverse_counts(ids: torch.Tensor) -> torch.Tensor:
    """``1 / n`` at each position, ``n`` the number of positions holding the same id in ``ids``."""
    _, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)  # inverse (*), counts (U,)
    return 1.0 / counts[inverse].to(torch.float64)  # (*)


def _scale_gradient(y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``y`` unchanged forward; backward multiplies each position's cotangent by ``scale`` ``(*)``."""
    y = y.view_as(y)
    y.register_hook(lambda grad: grad * scale[..., None].to(grad.dtype))
    return y
