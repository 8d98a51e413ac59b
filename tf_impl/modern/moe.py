r"""Day 66: a sparse mixture of experts, Hugging Face's ``MixtralSparseMoeBlock``.

Each token :math:`x` picks ``top_k`` of ``num_experts`` SwiGLU experts through a linear router:
:math:`z = W_g x`, :math:`p = \mathrm{softmax}(z)`, :math:`S = \mathrm{topk}(p, k)`,
:math:`w_e = p_e / \sum_{j \in S} p_j` (``norm_topk_prob``), :math:`y = \sum_{e\in S} w_e E_e(x)`,
:math:`E_e(x) = D_e(\mathrm{SiLU}(G_e x) \odot U_e x)` with the fused ``gate_up_proj[e]`` =
:math:`[G_e; U_e]` ``(2F, C)`` and ``down_proj[e]`` = :math:`D_e` ``(C, F)``. The load-balancing loss is
:math:`X \sum_e f_e P_e` (:math:`f_e` the top-k count share, :math:`P_e` the mean probability).

``tf.GradientTape`` derives what the NumPy tree writes by hand (see its docstring): the top-k
choice is a constant (integer indices), the gradient flows through the chosen experts, the
weights :math:`w` and the softmax. The choice is a stable descending sort (``tf.argsort(stable=True)``):
largest first, NaN as the largest, ties to the lowest index — the same rule in every tree.
Sequences need no layout change here: the TF tree keeps ``(B, T, C)`` and every weight is stored
in its canonical (Hugging Face) layout. The experts loop over experts (each takes its own subset
of tokens: gather, compute, ``tensor_scatter_nd_add`` back), never over tokens.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_bool, check_input, check_int, check_rng, check_router_logits, check_top_k

from ..foundations import init
from ..foundations.activations import SiLU
from ..foundations.softmax_regression import softmax
from ..module import Module


def top_k_indices(probs: tf.Tensor, top_k: int) -> tf.Tensor:
    """Indices of the ``top_k`` largest entries of each row, largest first; NaN counts as the largest
    and equal values come lowest index first."""
    # Descending order as an ascending sort of the negation; NaN becomes -inf so it sorts first.
    keys = tf.where(tf.math.is_nan(probs), tf.fill(tf.shape(probs), tf.constant(-np.inf, probs.dtype)), -probs)  # (N, X)
    return tf.argsort(keys, axis=-1, stable=True)[:, :top_k]  # (N, k)


class MixtralTopKRouter(Module):
    """The router: ``router_logits = x W^T`` (``weight`` ``(num_experts, hidden_size)``), softmax, top-k,
    renormalised. ``forward(hidden_states (N, C))`` returns ``router_logits (N, X)``,
    ``router_scores (N, k)`` and ``router_indices (N, k)`` (int32, TF's index type)."""

    def __init__(self, hidden_size: int, num_experts: int, top_k: int, norm_topk_prob: bool = True,
                 dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("MixtralTopKRouter", rng)
        self.hidden_size = check_int("MixtralTopKRouter", "hidden_size", hidden_size, 1)
        self.num_experts, self.top_k = check_top_k("MixtralTopKRouter", num_experts, top_k)
        self.norm_topk_prob = check_bool("MixtralTopKRouter", "norm_topk_prob", norm_topk_prob)
        # nn.Linear's default bound 1/sqrt(fan_in).
        self.weight = self.add_param("weight", init.uniform((num_experts, hidden_size), rng, hidden_size ** -0.5, dtype))  # (X, C)

    def forward(self, hidden_states: tf.Tensor):
        check_input("MixtralTopKRouter", "hidden_states", hidden_states.shape, hidden_states.dtype,
                    expected_dtype=self.dtype, ndim=2, last_dim=self.hidden_size)
        router_logits = tf.matmul(hidden_states, self.weight, transpose_b=True)  # (N, X)
        probs = softmax(router_logits)  # (N, X)
        router_indices = top_k_indices(tf.stop_gradient(probs), self.top_k)  # (N, k)
        top = tf.gather(probs, router_indices, batch_dims=1)  # (N, k)
        # Mixtral's weights sum to 1 over the chosen experts; without it they are the raw probabilities.
        total = tf.reduce_sum(top, axis=-1, keepdims=True) if self.norm_topk_prob else tf.ones_like(top[:, :1])  # (N, 1)
        router_scores = top / total  # (N, k)
        return router_logits, router_scores, router_indices


class MixtralExperts(Module):
    """``num_experts`` SwiGLU MLPs stored fused, as Hugging Face's ``MixtralExperts``: ``gate_up_proj``
    ``(X, 2F, C)`` (gate rows first, then up rows) and ``down_proj`` ``(X, C, F)``.
    ``forward(hidden_states (N, C), top_k_index (N, k), top_k_weights (N, k))`` returns ``(N, C)``."""

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("MixtralExperts", rng)
        self.num_experts = check_int("MixtralExperts", "num_experts", num_experts, 1)
        self.hidden_size = check_int("MixtralExperts", "hidden_size", hidden_size, 1)
        self.intermediate_size = check_int("MixtralExperts", "intermediate_size", intermediate_size, 1)
        shape = (num_experts, 2 * intermediate_size, hidden_size)
        # Each expert's projections drawn as nn.Linear's, bound 1/sqrt(fan_in).
        self.gate_up_proj = self.add_param("gate_up_proj", init.uniform(shape, rng, hidden_size ** -0.5, dtype))  # (X, 2F, C)
        shape = (num_experts, hidden_size, intermediate_size)
        self.down_proj = self.add_param("down_proj", init.uniform(shape, rng, intermediate_size ** -0.5, dtype))  # (X, C, F)
        self.act_fn = SiLU(dtype)

    def forward(self, hidden_states: tf.Tensor, top_k_index: tf.Tensor, top_k_weights: tf.Tensor) -> tf.Tensor:
        final = tf.zeros_like(hidden_states)  # (N, C)
        # A loop over experts, not tokens: each expert sees its own subset of the tokens.
        for expert in range(self.num_experts):
            pairs = tf.where(tf.equal(top_k_index, expert))  # (n, 2): (token, slot)
            token = pairs[:, :1]  # (n, 1)
            state = tf.gather_nd(hidden_states, token)  # (n, C)
            gate, up = tf.split(tf.matmul(state, self.gate_up_proj[expert], transpose_b=True), 2, axis=-1)  # (n, F) each
            product = self.act_fn.function(gate) * up  # (n, F)
            out = tf.matmul(product, self.down_proj[expert], transpose_b=True)  # (n, C)
            final = tf.tensor_scatter_nd_add(final, token, out * tf.gather_nd(top_k_weights, pairs)[:, None])  # (N, C)
        return final


class MixtralSparseMoeBlock(Module):
    """Hugging Face's ``MixtralSparseMoeBlock``: ``gate`` (the router) and ``experts`` (fused), with its
    config's names. ``forward(hidden_states (B, T, C))`` returns ``(output (B, T, C), router_logits (B*T, X))``."""

    def __init__(self, hidden_size: int, intermediate_size: int, num_local_experts: int, num_experts_per_tok: int,
                 norm_topk_prob: bool = True, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("MixtralSparseMoeBlock", rng)
        check_top_k("MixtralSparseMoeBlock", num_local_experts, num_experts_per_tok)
        self.hidden_size = check_int("MixtralSparseMoeBlock", "hidden_size", hidden_size, 1)
        self.gate = MixtralTopKRouter(hidden_size, num_local_experts, num_experts_per_tok, norm_topk_prob, dtype, rng)
        self.experts = MixtralExperts(num_local_experts, hidden_size, intermediate_size, dtype, rng)

    def forward(self, hidden_states: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        check_input("MixtralSparseMoeBlock", "hidden_states", hidden_states.shape, hidden_states.dtype,
                    expected_dtype=self.dtype, ndim=3, last_dim=self.hidden_size)
        shape = tf.shape(hidden_states)
        flat = tf.reshape(hidden_states, (-1, self.hidden_size))  # (N, C)
        router_logits, top_k_weights, top_k_index = self.gate(flat)  # (N, X), (N, k), (N, k)
        output = self.experts(flat, top_k_index, top_k_weights)  # (N, C)
        return tf.reshape(output, shape), router_logits  # (B, T, C), (N, X)


class LoadBalancingLoss(Module):
    """Hugging Face's ``load_balancing_loss_func`` for one layer's ``router_logits (N, X)`` (several
    layers: concatenate their rows, which is what its tuple means), without an attention mask:
    ``num_experts * sum_e f_e P_e``, a 0-d tensor."""

    def __init__(self, num_experts: int, top_k: int, dtype="float32"):
        super().__init__(dtype)
        self.num_experts, self.top_k = check_top_k("LoadBalancingLoss", num_experts, top_k)

    def forward(self, router_logits: tf.Tensor) -> tf.Tensor:
        check_router_logits("LoadBalancingLoss", self.dtype, self.num_experts, router_logits)
        probs = softmax(router_logits)  # (N, X)
        chosen = top_k_indices(tf.stop_gradient(probs), self.top_k)  # (N, k)
        # Counts per expert, every one of the k choices counted: f sums to k.
        counts = tf.math.bincount(tf.reshape(chosen, (-1,)), minlength=self.num_experts, dtype=probs.dtype)  # (X,)
        rows = tf.cast(tf.shape(probs)[0], probs.dtype)
        tokens_per_expert = counts / rows  # (X,)
        router_prob_per_expert = tf.reduce_sum(probs, axis=0) / rows  # (X,)
        return self.num_experts * tf.reduce_sum(tokens_per_expert * router_prob_per_expert)  # ()
