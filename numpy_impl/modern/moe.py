r"""Day 66: a sparse mixture of experts, Hugging Face's ``MixtralSparseMoeBlock``.

Each token :math:`x \in \mathbb{R}^C` (rows of the flattened ``(B*T, C)`` hidden states) is sent to
``top_k`` of ``num_experts`` SwiGLU MLPs chosen by a linear router (``gate``, no bias):

.. math::  z = W_g x, \qquad p = \mathrm{softmax}(z), \qquad S = \mathrm{topk}(p, k), \qquad
           w_e = \frac{p_e}{\sum_{j \in S} p_j}\ (e \in S), \qquad y = \sum_{e \in S} w_e\, E_e(x),

.. math::  E_e(x) = D_e\big(\mathrm{SiLU}(G_e x) \odot U_e x\big), \qquad
           [G_e; U_e] = \texttt{gate\_up\_proj}[e] \in \mathbb{R}^{2F \times C}, \quad
           D_e = \texttt{down\_proj}[e] \in \mathbb{R}^{C \times F}.

``norm_topk_prob=False`` keeps :math:`w_e = p_e` (Qwen-MoE's flag; Mixtral renormalises). The
forward returns ``(y, router_logits)``: the logits :math:`z` feed the load-balancing loss.

Backward. The choice :math:`S` is piecewise constant in :math:`x` (no gradient); the gradient flows
through the chosen experts and through the weights :math:`w`. With :math:`\bar y` the output
gradient, :math:`\bar w_e = \bar y \cdot E_e(x)`; renormalisation gives
:math:`\bar p_e = (\bar w_e - \sum_{j\in S} \bar w_j w_j) / \sum_{j \in S} p_j` on :math:`S` and 0
elsewhere; the softmax :math:`\bar z = p \odot (\bar p - \bar p \cdot p) + \bar z_\text{out}`; then
:math:`\bar x \mathrel{+}= W_g^\top \bar z`, :math:`\bar W_g = \bar z\, x^\top`. Inside expert
:math:`e`, with :math:`g = G_e x`, :math:`u = U_e x`, :math:`m = \mathrm{SiLU}(g) \odot u` and
:math:`\bar m = D_e^\top (w_e \bar y)`: :math:`\bar D_e = (w_e\bar y)\, m^\top`,
:math:`\bar g = \bar m \odot u \odot \mathrm{SiLU}'(g)`, :math:`\bar u = \bar m \odot \mathrm{SiLU}(g)`,
:math:`\bar x \mathrel{+}= [G_e; U_e]^\top [\bar g; \bar u]`.

The load-balancing loss (Switch Transformer, Hugging Face's ``load_balancing_loss_func``) over
:math:`N` tokens: :math:`f_e = \#\{(n, j): S_{n,j} = e\} / N` (top-k counted, so
:math:`\sum_e f_e = k`), :math:`P_e = \frac1N \sum_n p_{n,e}`,
:math:`L_\text{aux} = X \sum_e f_e P_e`; :math:`f` is a count (no gradient), so
:math:`\bar z_n = p_n \odot (\bar P - \bar P \cdot p_n)` with :math:`\bar P = X f / N`.

Top-k ties: the largest probabilities first, NaN counted as the largest (torch's order), and among
equal values the lowest expert index (a stable sort). ``torch.topk`` makes no promise there (on CPU
it picks other indices, see the page). The experts are a loop over experts, not tokens: each expert
takes a different subset of tokens (gather, compute, scatter back); no capacity limit, no token is
dropped, and the router's training-time jitter noise is not modelled.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_bool, check_input, check_int, check_rng, check_router_logits, check_top_k

from ..foundations import init
from ..foundations.activations import SiLU
from ..foundations.softmax_regression import softmax
from ..module import Module


def top_k_indices(probs: np.ndarray, top_k: int) -> np.ndarray:
    """Indices of the ``top_k`` largest entries of each row, largest first; NaN counts as the largest
    and equal values come lowest index first."""
    # Descending order as an ascending sort of the negation; NaN becomes -inf so it sorts first.
    keys = np.where(np.isnan(probs), -np.inf, -probs)  # (N, X)
    return np.argsort(keys, axis=-1, kind="stable")[:, :top_k]  # (N, k)


def _softmax_backward(probs: np.ndarray, grad_probs: np.ndarray) -> np.ndarray:
    """The softmax's vector-Jacobian product over the last axis: :math:`p \\odot (\\bar p - \\bar p \\cdot p)`."""
    return probs * (grad_probs - np.sum(grad_probs * probs, axis=-1, keepdims=True))  # (N, X)


class MixtralTopKRouter(Module):
    """The router: ``router_logits = x W^T`` (``weight`` ``(num_experts, hidden_size)``), softmax, top-k,
    renormalised. ``forward(hidden_states (N, C))`` returns ``router_logits (N, X)``,
    ``router_scores (N, k)`` and ``router_indices (N, k)`` (int64)."""

    def __init__(self, hidden_size: int, num_experts: int, top_k: int, norm_topk_prob: bool = True,
                 dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("MixtralTopKRouter", rng)
        self.hidden_size = check_int("MixtralTopKRouter", "hidden_size", hidden_size, 1)
        self.num_experts, self.top_k = check_top_k("MixtralTopKRouter", num_experts, top_k)
        self.norm_topk_prob = check_bool("MixtralTopKRouter", "norm_topk_prob", norm_topk_prob)
        # nn.Linear's default bound 1/sqrt(fan_in).
        self.params["weight"] = init.uniform((num_experts, hidden_size), rng, hidden_size ** -0.5, dtype)  # (X, C)
        self.zero_grad()

    def forward(self, hidden_states: np.ndarray):
        check_input("MixtralTopKRouter", "hidden_states", hidden_states.shape, hidden_states.dtype,
                    expected_dtype=self.dtype, ndim=2, last_dim=self.hidden_size)
        router_logits = hidden_states @ self.params["weight"].T  # (N, X)
        probs = softmax(router_logits)  # (N, X)
        router_indices = top_k_indices(probs, self.top_k)  # (N, k)
        top = np.take_along_axis(probs, router_indices, axis=-1)  # (N, k)
        # Mixtral's weights sum to 1 over the chosen experts; without it they are the raw probabilities.
        total = top.sum(axis=-1, keepdims=True) if self.norm_topk_prob else np.ones_like(top[:, :1])  # (N, 1)
        router_scores = top / total  # (N, k)
        self.save_for_backward(hidden_states, probs, router_indices, router_scores, total)
        return router_logits, router_scores, router_indices

    def backward(self, grad_logits: np.ndarray | None, grad_scores: np.ndarray) -> np.ndarray:
        """Gradients of ``router_logits`` (``None``: unused) and ``router_scores`` -> of ``hidden_states``."""
        hidden_states, probs, router_indices, router_scores, total = self.saved_for_backward()
        grad_top = grad_scores / total  # (N, k)
        if self.norm_topk_prob:
            # The shared denominator couples the k weights: subtract the gradient's projection on them.
            grad_top = grad_top - np.sum(grad_scores * router_scores, axis=-1, keepdims=True) / total  # (N, k)
        grad_probs = np.zeros_like(probs)  # (N, X)
        # The k indices of a row are distinct, so a put (no sum) places each gradient.
        np.put_along_axis(grad_probs, router_indices, grad_top, axis=-1)
        grad_z = _softmax_backward(probs, grad_probs)  # (N, X)
        if grad_logits is not None:
            grad_z = grad_z + grad_logits  # (N, X)
        self.grads["weight"] += grad_z.T @ hidden_states  # (X, C)
        return grad_z @ self.params["weight"]  # (N, C)


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
        self.params["gate_up_proj"] = init.uniform(shape, rng, hidden_size ** -0.5, dtype)  # (X, 2F, C)
        shape = (num_experts, hidden_size, intermediate_size)
        self.params["down_proj"] = init.uniform(shape, rng, intermediate_size ** -0.5, dtype)  # (X, C, F)
        self.act_fn = SiLU(dtype)
        self.zero_grad()

    def forward(self, hidden_states: np.ndarray, top_k_index: np.ndarray, top_k_weights: np.ndarray) -> np.ndarray:
        final = np.zeros_like(hidden_states)  # (N, C)
        caches = []
        # A loop over experts, not tokens: each expert sees its own subset of the tokens.
        for expert in range(self.num_experts):
            token, slot = np.nonzero(top_k_index == expert)  # (n,), (n,)
            state = hidden_states[token]  # (n, C)
            gate, up = np.split(state @ self.params["gate_up_proj"][expert].T, 2, axis=-1)  # (n, F) each
            product = self.act_fn.function(gate) * up  # (n, F)
            out = product @ self.params["down_proj"][expert].T  # (n, C)
            # A token picks an expert at most once, so the rows of `token` are distinct: += is a scatter-add.
            final[token] += out * top_k_weights[token, slot, None]  # (n, C)
            caches.append((token, slot, gate, up, product, out))
        self.save_for_backward(hidden_states, top_k_weights, caches)
        return final

    def backward(self, grad_output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of the output -> gradients of ``hidden_states`` ``(N, C)`` and ``top_k_weights`` ``(N, k)``."""
        hidden_states, top_k_weights, caches = self.saved_for_backward()
        grad_hidden = np.zeros_like(hidden_states)  # (N, C)
        grad_weights = np.zeros_like(top_k_weights)  # (N, k)
        for expert, (token, slot, gate, up, product, out) in enumerate(caches):
            grad_final = grad_output[token]  # (n, C)
            grad_weights[token, slot] = np.sum(grad_final * out, axis=-1)  # (n,)
            grad_out = grad_final * top_k_weights[token, slot, None]  # (n, C)
            self.grads["down_proj"][expert] += grad_out.T @ product  # (C, F)
            grad_product = grad_out @ self.params["down_proj"][expert]  # (n, F)
            grad_gate = grad_product * up * self.act_fn.derivative(gate)  # (n, F)
            grad_up = grad_product * self.act_fn.function(gate)  # (n, F)
            grad_gate_up = np.concatenate([grad_gate, grad_up], axis=-1)  # (n, 2F)
            self.grads["gate_up_proj"][expert] += grad_gate_up.T @ hidden_states[token]  # (2F, C)
            # Distinct rows again: += scatters each token's gradient back.
            grad_hidden[token] += grad_gate_up @ self.params["gate_up_proj"][expert]  # (n, C)
        return grad_hidden, grad_weights


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

    def forward(self, hidden_states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_input("MixtralSparseMoeBlock", "hidden_states", hidden_states.shape, hidden_states.dtype,
                    expected_dtype=self.dtype, ndim=3, last_dim=self.hidden_size)
        shape = hidden_states.shape
        flat = hidden_states.reshape(-1, self.hidden_size)  # (N, C)
        router_logits, top_k_weights, top_k_index = self.gate(flat)  # (N, X), (N, k), (N, k)
        output = self.experts(flat, top_k_index, top_k_weights)  # (N, C)
        self.save_for_backward(shape)
        return output.reshape(shape), router_logits  # (B, T, C), (N, X)

    def backward(self, grad_output: np.ndarray, grad_router_logits: np.ndarray | None = None) -> np.ndarray:
        shape = self.saved_for_backward()
        grad_flat, grad_weights = self.experts.backward(grad_output.reshape(-1, self.hidden_size))  # (N, C), (N, k)
        # The router read the same tokens: its input gradient adds to the experts'.
        grad_flat = grad_flat + self.gate.backward(grad_router_logits, grad_weights)  # (N, C)
        return grad_flat.reshape(shape)  # (B, T, C)


class LoadBalancingLoss(Module):
    """Hugging Face's ``load_balancing_loss_func`` for one layer's ``router_logits (N, X)`` (several
    layers: concatenate their rows, which is what its tuple means), without an attention mask:
    ``num_experts * sum_e f_e P_e``, a 0-d array."""

    def __init__(self, num_experts: int, top_k: int, dtype="float32"):
        super().__init__(dtype)
        self.num_experts, self.top_k = check_top_k("LoadBalancingLoss", num_experts, top_k)

    def forward(self, router_logits: np.ndarray) -> np.ndarray:
        check_router_logits("LoadBalancingLoss", self.dtype, self.num_experts, router_logits)
        probs = softmax(router_logits)  # (N, X)
        chosen = top_k_indices(probs, self.top_k)  # (N, k)
        # Counts per expert, every one of the k choices counted: f sums to k.
        counts = np.bincount(chosen.ravel(), minlength=self.num_experts).astype(self.dtype)  # (X,)
        rows = np.asarray(probs.shape[0], dtype=self.dtype)
        tokens_per_expert = counts / rows  # (X,)
        router_prob_per_expert = probs.sum(axis=0) / rows  # (X,)
        self.save_for_backward(probs, tokens_per_expert, rows)
        return self.num_experts * np.sum(tokens_per_expert * router_prob_per_expert)  # ()

    def backward(self, grad_loss) -> np.ndarray:
        probs, tokens_per_expert, rows = self.saved_for_backward()
        # The counts are constant: only P_e = mean_n p_ne carries a gradient, the same for every row.
        grad_probs = np.broadcast_to(grad_loss * self.num_experts * tokens_per_expert / rows, probs.shape)  # (N, X)
        return _softmax_backward(probs, grad_probs)  # (N, X)
