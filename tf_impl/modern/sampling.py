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

import tensorflow as tf

from ml100.checks import (check_array_type, check_distributions, check_fraction, check_int, check_positive, check_range,
                          check_scores, check_uniforms, dtype_name)

from ..module import Module


def softmax(scores: tf.Tensor) -> tf.Tensor:
    """Softmax over the last axis, TF's own: a row holding NaN or +inf, or only -inf, is all NaN (as torch's)."""
    return tf.nn.softmax(scores, axis=-1)  # (B, V)


class Temperature(Module):
    """``TemperatureLogitsWarper``: ``scores / temperature``."""

    def __init__(self, temperature: float, dtype="float32"):
        super().__init__(dtype)
        self.temperature = check_positive("Temperature", "temperature", temperature)

    def forward(self, scores: tf.Tensor) -> tf.Tensor:
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

    def forward(self, scores: tf.Tensor) -> tf.Tensor:
        check_scores("TopK", self.dtype, scores)
        vocab = scores.shape[-1]
        top_k = min(self.top_k, vocab)
        # tf.math.top_k orders NaN arbitrarily: rank NaN as +inf, then make the threshold NaN where the
        # k-th largest is one of the row's NaNs, so NaN counts as the largest value, as in torch.topk.
        is_nan = tf.math.is_nan(scores)  # (B, V)
        nan_count = tf.reduce_sum(tf.cast(is_nan, tf.int32), axis=-1, keepdims=True)  # (B, 1)
        ranked = tf.where(is_nan, tf.constant(math.inf, scores.dtype), scores)  # (B, V)
        kth_ranked = tf.math.top_k(ranked, top_k).values[:, -1:]  # (B, 1)
        kth_largest = tf.where(nan_count >= top_k, tf.constant(math.nan, scores.dtype), kth_ranked)  # (B, 1)
        # A tie with the k-th largest stays; a NaN threshold removes nothing (every comparison is False).
        remove = scores < kth_largest  # (B, V)
        return tf.where(remove, tf.constant(self.filter_value, scores.dtype), scores)  # (B, V)


class TopP(Module):
    """``TopPLogitsWarper``: outside the smallest set of top tokens holding mass ``top_p``, scores become ``filter_value``."""

    def __init__(self, top_p: float, filter_value: float = -math.inf, min_tokens_to_keep: int = 1, dtype="float32"):
        super().__init__(dtype)
        self.top_p = check_fraction("TopP", "top_p", top_p)
        self.min_tokens_to_keep = check_int("TopP", "min_tokens_to_keep", min_tokens_to_keep, 1)
        check_range("TopP", "filter_value", filter_value, -math.inf)
        self.filter_value = float(filter_value)

    def forward(self, scores: tf.Tensor) -> tf.Tensor:
        check_scores("TopP", self.dtype, scores)
        # Ascending and stable: among tied scores the lower index is removed first. (A row with NaN
        # sorts arbitrarily, but its probabilities are all NaN and it loses nothing.)
        order = tf.argsort(scores, axis=-1, stable=True)  # (B, V)
        sorted_scores = tf.gather(scores, order, batch_dims=1)  # (B, V)
        # Accumulated in float64 and rounded back, as torch's CPU cumsum does for float32.
        cumulative = tf.cast(tf.cumsum(tf.cast(softmax(sorted_scores), tf.float64), axis=-1), scores.dtype)  # (B, V)
        # 1 - p rounded to the scores' dtype first, as torch compares a tensor with a Python float.
        remove_sorted = cumulative <= tf.constant(1.0 - self.top_p, scores.dtype)  # (B, V)
        # The min_tokens_to_keep largest, the last sorted positions, always stay.
        vocab = tf.shape(scores)[-1]
        remove_sorted = remove_sorted & (tf.range(vocab) < vocab - self.min_tokens_to_keep)  # (B, V)
        # argsort of a permutation is its inverse: it takes the sorted positions back to the tokens.
        remove = tf.gather(remove_sorted, tf.argsort(order, axis=-1), batch_dims=1)  # (B, V)
        return tf.where(remove, tf.constant(self.filter_value, scores.dtype), scores)  # (B, V)


def warp(scores: tf.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
         min_tokens_to_keep: int = 1) -> tf.Tensor:
    """The warpers Hugging Face's ``generate`` chains for sampling, in its order: :class:`Temperature`
    if ``temperature != 1``, :class:`TopK` if ``top_k != 0``, :class:`TopP` if ``top_p < 1``."""
    check_array_type("warp", "tf", scores, (tf.Tensor, tf.Variable))
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


def greedy(scores: tf.Tensor) -> tf.Tensor:
    """The first index of each row's maximum, int64 ``(B,)`` (a NaN counts as the maximum, as in torch)."""
    check_array_type("greedy", "tf", scores, (tf.Tensor, tf.Variable))
    check_scores("greedy", None, scores)
    # tf.argmax skips NaN; torch's counts it as the maximum, so a row with a NaN picks its first NaN.
    is_nan = tf.math.is_nan(scores)  # (B, V)
    first_nan = tf.argmax(tf.cast(is_nan, tf.int32), axis=-1, output_type=tf.int64)  # (B,)
    return tf.where(tf.reduce_any(is_nan, axis=-1), first_nan, tf.argmax(scores, axis=-1, output_type=tf.int64))  # (B,)


def sample(scores: tf.Tensor, uniforms: tf.Tensor) -> tf.Tensor:
    """One token per row, int64 ``(B,)``: the inverse CDF of ``softmax(scores)`` at ``uniforms (B,)``."""
    check_array_type("sample", "tf", scores, (tf.Tensor, tf.Variable))
    check_array_type("sample", "tf", uniforms, (tf.Tensor, tf.Variable))
    check_scores("sample", None, scores)
    check_uniforms("sample", uniforms.numpy(), scores.shape[0])
    scores = tf.cast(scores, tf.float64)  # (B, V) the CDF in float64, whatever the scores' dtype
    weights = tf.exp(scores - tf.reduce_max(scores, axis=-1, keepdims=True))  # (B, V) NaN in a row that is no distribution
    cumulative = tf.cumsum(weights, axis=-1)  # (B, V)
    # Normalized, the last entry is exactly 1 > u: the count below never runs past the last token.
    cdf = cumulative / cumulative[:, -1:]  # (B, V)
    check_distributions("sample", tf.math.is_finite(cdf[:, -1]).numpy())
    return tf.reduce_sum(tf.cast(cdf <= uniforms[:, None], tf.int64), axis=-1)  # (B,)
