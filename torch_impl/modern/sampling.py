r"""Day 50: decoding — choosing the next token from scores ``(B, V)``: greedy, temperature, top-k, top-p.

The warpers are Hugging Face's logits warpers (``TemperatureLogitsWarper``, ``TopKLogitsWarper``,
``TopPLogitsWarper``), rule for rule, each a parameter-free module mapping scores to scores:

- **Temperature** :math:`\tau > 0`: :math:`z \mapsto z / \tau` (:math:`\tau < 1` sharpens, :math:`> 1` flattens).
- **Top-k**: keep the scores :math:`\ge z_{(k)}`, the k-th largest of the row, so every token tied with
  it stays (more than k may survive); :math:`k` is raised to ``min_tokens_to_keep`` and capped at V.
  NaN counts as the largest value (torch's ``topk``): when the k-th largest is NaN nothing is removed.
- **Top-p** (nucleus): sort the row ascending (stably: among ties the lower index comes first),
  :math:`c_j = \sum_{i \le j} \operatorname{softmax}(z_{\text{sorted}})_i`; remove the tokens with
  :math:`c_j \le 1 - p`, except the ``min_tokens_to_keep`` largest. The smallest set of top tokens
  whose mass reaches :math:`p` survives; at ``top_p = 1`` the tokens of probability exactly 0 go
  (HF's rule), at ``top_p = 0`` only the ``min_tokens_to_keep`` largest stay. As torch on CPU, the
  cumulative sum is accumulated in float64 and rounded to the scores' dtype, and :math:`1 - p` is
  rounded to that dtype before the comparison.

Removed tokens get ``filter_value`` (``-inf``: probability 0). :func:`warp` chains them as Hugging
Face's ``generate`` does: temperature if :math:`\tau \ne 1`, top-k if :math:`k \ne 0`, top-p if :math:`p < 1`.

Choosing, with the randomness an input so the trees emit the same tokens:

- :func:`greedy`: the first index of the row maximum (``torch.argmax``: a NaN counts as the maximum);
- :func:`sample`: one uniform :math:`u \in [0, 1)` per row through the inverse CDF (day 27's rule,
  batched): :math:`w = e^{z - \max z}`, :math:`C_j = \sum_{i \le j} w_i / \sum_i w_i` in float64, the token
  :math:`\#\{j : C_j \le u\}` — the first :math:`j` with :math:`C_j > u`, never a token of probability 0.
  A row holding NaN or :math:`+\infty`, or only :math:`-\infty`, is no distribution and is refused.

Forward only: decoding is not differentiated, so there is no ``backward``.
"""
from __future__ import annotations

import math

import torch

from ml100.checks import (check_array_type, check_distributions, check_fraction, check_int, check_positive, check_range,
                          check_scores, check_uniforms, dtype_name)

from ..module import Module


def softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis, torch's own: a row holding NaN or +inf, or only -inf, is all NaN."""
    return torch.softmax(scores, dim=-1)  # (B, V)


class Temperature(Module):
    """``TemperatureLogitsWarper``: ``scores / temperature``."""

    def __init__(self, temperature: float, dtype="float32"):
        super().__init__(dtype)
        self.temperature = check_positive("Temperature", "temperature", temperature)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        check_scores("Temperature", self.dtype, scores)
        return scores / self.temperature  # (B, V)


class TopK(Module):
    """``TopKLogitsWarper``: scores below the row's k-th largest become ``filter_value``."""

    def __init__(self, top_k: int, filter_value: float = -math.inf, min_tokens_to_keep: int = 1, dtype="float32"):
        super().__init__(dtype)
        check_int("TopK", "top_k", top_k, 1)
        self.min_tokens_to_keep = check_int("TopK", "min_tokens_to_keep", min_tokens_to_keep, 1)
        check_range("TopK", "filter_value", filter_value, -math.inf)
        self.top_k = max(int(top_k), self.min_tokens_to_keep)
        self.filter_value = float(filter_value)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        check_scores("TopK", self.dtype, scores)
        vocab = scores.shape[-1]
        top_k = min(self.top_k, vocab)
        # torch.topk counts NaN as the largest value.
        kth_largest = torch.topk(scores, top_k, dim=-1).values[:, -1:]  # (B, 1)
        # A tie with the k-th largest stays; a NaN threshold removes nothing (every comparison is False).
        remove = scores < kth_largest  # (B, V)
        return scores.masked_fill(remove, self.filter_value)  # (B, V)


class TopP(Module):
    """``TopPLogitsWarper``: outside the smallest set of top tokens holding mass ``top_p``, scores become ``filter_value``."""

    def __init__(self, top_p: float, filter_value: float = -math.inf, min_tokens_to_keep: int = 1, dtype="float32"):
        super().__init__(dtype)
        self.top_p = check_fraction("TopP", "top_p", top_p)
        self.min_tokens_to_keep = check_int("TopP", "min_tokens_to_keep", min_tokens_to_keep, 1)
        check_range("TopP", "filter_value", filter_value, -math.inf)
        self.filter_value = float(filter_value)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        check_scores("TopP", self.dtype, scores)
        # Ascending and stable: among tied scores the lower index is removed first.
        sorted_scores, order = torch.sort(scores, dim=-1, stable=True)  # (B, V), (B, V)
        # Accumulated in float64 and rounded back, as torch's CPU cumsum does for float32.
        cumulative = softmax(sorted_scores).double().cumsum(dim=-1).to(scores.dtype)  # (B, V)
        # 1 - p rounded to the scores' dtype first, as torch compares a tensor with a Python float.
        remove_sorted = cumulative <= torch.tensor(1.0 - self.top_p, dtype=scores.dtype)  # (B, V)
        remove_sorted[:, -self.min_tokens_to_keep:] = False
        remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)  # (B, V)
        return scores.masked_fill(remove, self.filter_value)  # (B, V)


def warp(scores: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
         min_tokens_to_keep: int = 1) -> torch.Tensor:
    """The warpers Hugging Face's ``generate`` chains for sampling, in its order: :class:`Temperature`
    if ``temperature != 1``, :class:`TopK` if ``top_k != 0``, :class:`TopP` if ``top_p < 1``."""
    check_array_type("warp", "torch", scores, torch.Tensor)
    check_scores("warp", None, scores)
    # Checked here too: a top_p above 1 would otherwise just switch top-p off.
    check_fraction("warp", "top_p", top_p)
    dtype = dtype_name(scores.dtype)
    warpers = []
    if temperature != 1.0:
        warpers.append(Temperature(temperature, dtype=dtype))
    if top_k != 0:
        warpers.append(TopK(top_k, min_tokens_to_keep=min_tokens_to_keep, dtype=dtype))
    if top_p < 1.0:
        warpers.append(TopP(top_p, min_tokens_to_keep=min_tokens_to_keep, dtype=dtype))
    for warper in warpers:
        scores = warper(scores)  # (B, V)
    return scores


def greedy(scores: torch.Tensor) -> torch.Tensor:
    """The first index of each row's maximum, int64 ``(B,)`` (a NaN counts as the maximum, as in torch)."""
    check_array_type("greedy", "torch", scores, torch.Tensor)
    check_scores("greedy", None, scores)
    return torch.argmax(scores, dim=-1)  # (B,)


def sample(scores: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row, int64 ``(B,)``: the inverse CDF of ``softmax(scores)`` at ``uniforms (B,)``."""
    check_array_type("sample", "torch", scores, torch.Tensor)
    check_array_type("sample", "torch", uniforms, torch.Tensor)
    check_scores("sample", None, scores)
    check_uniforms("sample", uniforms.numpy(), scores.shape[0])
    scores = scores.double()  # (B, V) the CDF in float64, whatever the scores' dtype
    weights = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)  # (B, V) NaN in a row that is no distribution
    cumulative = torch.cumsum(weights, dim=-1)  # (B, V)
    # Normalized, the last entry is exactly 1 > u: the count below never runs past the last token.
    cdf = cumulative / cumulative[:, -1:]  # (B, V)
    check_distributions("sample", torch.isfinite(cdf[:, -1]).numpy())
    return torch.sum(cdf <= uniforms[:, None], dim=-1)  # (B,)
