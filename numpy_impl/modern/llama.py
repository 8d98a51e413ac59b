r"""Day 69: Llama — a decoder-only model of RMSNorm, SwiGLU, RoPE and grouped-query attention,
Hugging Face's ``LlamaForCausalLM``.

Token ids :math:`x_{1..T}` become vectors through one table ``embed_tokens`` (no position table:
positions enter as rotations of the queries and keys). Each of ``num_hidden_layers`` pre-norm
layers refines them; a last RMSNorm and ``lm_head`` give the logits:

.. math::  h^0_t = E[x_t], \qquad a^l = h^{l-1} + \mathrm{Attn}(\mathrm{RMS}_1(h^{l-1})), \qquad
           h^l = a^l + \mathrm{MLP}(\mathrm{RMS}_2(a^l)), \qquad z_t = W_\text{head}\,\mathrm{RMS}_f(h^L_t),

.. math::  \mathrm{RMS}(u) = \frac{u}{\sqrt{\tfrac1C \sum_c u_c^2 + \epsilon}} \odot w, \qquad
           \mathrm{MLP}(u) = W_\text{down}\big(\mathrm{SiLU}(W_\text{gate} u) \odot W_\text{up} u\big),

(SwiGLU, :math:`\mathrm{SiLU}(v) = v\,\sigma(v)`). The attention is day 67's grouped-query attention
(``num_key_value_heads`` key/value heads, each shared by ``num_attention_heads / num_key_value_heads``
query heads), causal (query :math:`i` sees keys :math:`j \le i`), with day 44's RoPE in Hugging Face's
``rotate_half`` layout applied to the queries and keys after their projections:
:math:`\tilde q = q \odot \cos\phi + R(q) \odot \sin\phi` at angles :math:`\phi = t\,\theta_i`,
:math:`\theta_i = \text{rope\_theta}^{-2i/d}`. There is no padding mask: every sequence of the batch
is full length (pad on the right and label the padding -100 to train on ragged text).

Backward, each step one earlier day's: the loss gives :math:`G_z`; :math:`\bar h^L =
\mathrm{RMS}_f^\top(W_\text{head}^\top G_z)`; per layer (reverse order) :math:`\bar a = \bar h +
\mathrm{RMS}_2^\top(\mathrm{MLP}^\top \bar h)`,
:math:`\bar h^{l-1} = \bar a + \mathrm{RMS}_1^\top(\mathrm{Attn}^\top \bar a)`,
where inside the MLP, with :math:`g = W_\text{gate} u`, :math:`v = W_\text{up} u` and :math:`\bar m` the
gradient at the product,

.. math::  \bar g = (\bar m \odot v) \odot \sigma(g)\big(1 + g(1 - \sigma(g))\big), \qquad
           \bar v = \bar m \odot \mathrm{SiLU}(g), \qquad \bar u = W_\text{gate}^\top \bar g + W_\text{up}^\top \bar v,

and inside the attention the rotation goes back by its transpose, :math:`\bar q = \bar{\tilde q} \odot
\cos\phi - R(\bar{\tilde q} \odot \sin\phi)`. ``embed_tokens`` scatter-adds :math:`\bar h^0` by token.

With ``tie_word_embeddings`` the head is the table itself, :math:`W_\text{head} = E`: one parameter
used twice, whose gradient is the sum of both uses, and the canonical state has no
``lm_head.weight`` (as day 49's GPT). Canonical names are Hugging Face's
(``model.embed_tokens.weight``, ``model.layers.0.self_attn.q_proj.weight``, ``model.norm.weight``,
``lm_head.weight``), so its state dict loads unchanged. The loss, given labels, is GPT's: shifted
inside (position :math:`t` predicts token :math:`t + 1`), the mean over labels that are not -100.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import LM_IGNORE_INDEX, check_llama_inputs, check_rng
from ml100.configs import LlamaConfig, check_config

from ..foundations.activations import SiLU
from ..foundations.linear import Linear
from ..foundations.normalization import RMSNorm
from ..foundations.softmax_regression import CrossEntropyLoss
from ..generative.embedding import Embedding
from ..module import Module, ModuleList
from .gqa import GroupedQueryAttention
from .multihead import merge_heads, split_heads
from .rope import ApplyRotary, RotaryEmbedding


class LlamaMLP(Module):
    """Hugging Face's ``LlamaMLP`` (SwiGLU): ``down_proj(SiLU(gate_proj(x)) * up_proj(x))``."""

    def __init__(self, config: LlamaConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("LlamaMLP", rng)
        width, inner, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = Linear(width, inner, bias=bias, dtype=dtype, rng=rng)
        self.up_proj = Linear(width, inner, bias=bias, dtype=dtype, rng=rng)
        self.down_proj = Linear(inner, width, bias=bias, dtype=dtype, rng=rng)
        self.act_fn = SiLU(dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        gate = self.act_fn(self.gate_proj(x))  # (B, T, F)
        up = self.up_proj(x)  # (B, T, F)
        self.save_for_backward(gate, up)
        return self.down_proj(gate * up)  # (B, T, E)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        gate, up = self.saved_for_backward()  # (B, T, F) each
        grad_product = self.down_proj.backward(grad_output)  # (B, T, F)
        grad_x = self.gate_proj.backward(self.act_fn.backward(grad_product * up))  # (B, T, E)
        # Both branches read the same x: their input gradients add.
        return grad_x + self.up_proj.backward(grad_product * gate)  # (B, T, E)


class LlamaAttention(GroupedQueryAttention):
    """Hugging Face's ``LlamaAttention``: day 67's grouped-query projections (``q_proj``, ``k_proj``,
    ``v_proj``, ``o_proj``, biases as ``attention_bias``), RoPE on the queries and keys, causal.
    ``forward(hidden_states (B, T, E), position_embeddings=(cos, sin) (B, T, d))`` returns
    ``attn_output (B, T, E), attn_weights (B, Hq, T, T)``."""

    def __init__(self, config: LlamaConfig, layer_idx: int = 0, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(config.hidden_size, config.num_attention_heads, config.key_value_heads,
                         bias=config.attention_bias, dtype=dtype, rng=check_rng("LlamaAttention", rng))
        self.layer_idx = layer_idx
        self.rotary = ApplyRotary(interleaved=False, dtype=dtype)

    def forward(self, hidden_states: np.ndarray, position_embeddings: tuple) -> tuple[np.ndarray, np.ndarray]:
        cos, sin = position_embeddings  # (B, T, d) each
        q = split_heads(self.q_proj(hidden_states), self.num_heads)  # (B, Hq, T, d)
        k = split_heads(self.k_proj(hidden_states), self.num_key_value_heads)  # (B, Hkv, T, d)
        v = split_heads(self.v_proj(hidden_states), self.num_key_value_heads)  # (B, Hkv, T, d)
        q, k = self.rotary(q, k, cos, sin)  # (B, Hq, T, d), (B, Hkv, T, d)
        context, weights = self.attention(q, k, v, is_causal=True)  # (B, Hq, T, d), (B, Hq, T, T)
        return self.o_proj(merge_heads(context)), weights  # (B, T, E), (B, Hq, T, T)

    def backward(self, grad_output: np.ndarray, grad_weights: np.ndarray | None = None) -> np.ndarray:
        grad_context = split_heads(self.o_proj.backward(grad_output), self.num_heads)  # (B, Hq, T, d)
        grad_q, grad_k, grad_v, _ = self.attention.backward(grad_context, grad_weights)  # (B, H., T, d) each
        # The rotation is orthogonal: its transpose turns the gradients back.
        grad_q, grad_k = self.rotary.backward(grad_q, grad_k)  # (B, Hq, T, d), (B, Hkv, T, d)
        # Each projection read the same hidden states: their input gradients add up.
        grad_hidden = self.q_proj.backward(merge_heads(grad_q))  # (B, T, E)
        grad_hidden = grad_hidden + self.k_proj.backward(merge_heads(grad_k))  # (B, T, E)
        return grad_hidden + self.v_proj.backward(merge_heads(grad_v))  # (B, T, E)


class LlamaDecoderLayer(Module):
    """Hugging Face's ``LlamaDecoderLayer``, pre-norm: ``h + self_attn(input_layernorm(h))``, then
    ``a + mlp(post_attention_layernorm(a))``."""

    def __init__(self, config: LlamaConfig, layer_idx: int = 0, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("LlamaDecoderLayer", rng)
        self.self_attn = LlamaAttention(config, layer_idx, dtype, rng)
        self.mlp = LlamaMLP(config, dtype, rng)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps, dtype=dtype)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps, dtype=dtype)

    def forward(self, hidden_states: np.ndarray, position_embeddings: tuple) -> np.ndarray:
        attended, _ = self.self_attn(self.input_layernorm(hidden_states), position_embeddings)  # (B, T, E)
        attended = hidden_states + attended  # (B, T, E)
        return attended + self.mlp(self.post_attention_layernorm(attended))  # (B, T, E)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        # Each residual sum passes its gradient straight through and into its branch: the two add.
        grad_branch = self.mlp.backward(grad_output)  # (B, T, E)
        grad_attended = grad_output + self.post_attention_layernorm.backward(grad_branch)  # (B, T, E)
        grad_branch = self.self_attn.backward(grad_attended)  # (B, T, E)
        return grad_attended + self.input_layernorm.backward(grad_branch)  # (B, T, E)


class LlamaModel(Module):
    """Hugging Face's ``LlamaModel``: ``embed_tokens``, ``layers.{i}``, ``norm`` and the parameter-free
    ``rotary_emb``; ``forward(input_ids (B, T))`` returns the last hidden states ``(B, T, E)``."""

    def __init__(self, config: LlamaConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("LlamaModel", rng)
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, dtype=dtype, rng=rng)
        self.layers = ModuleList([LlamaDecoderLayer(config, index, dtype, rng)
                                  for index in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps, dtype=dtype)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.max_position_embeddings, config.rope_theta,
                                          interleaved=False, dtype=dtype)
        self.zero_grad()

    def forward(self, input_ids: np.ndarray) -> np.ndarray:
        batch, steps = input_ids.shape
        # Every sequence starts at position 0: one row of positions per sequence.
        positions = np.broadcast_to(np.arange(steps), (batch, steps))  # (B, T)
        position_embeddings = self.rotary_emb(positions)  # (B, T, d) twice
        hidden = self.embed_tokens(input_ids)  # (B, T, E)
        for layer in self.layers:
            hidden = layer(hidden, position_embeddings)  # (B, T, E)
        return self.norm(hidden)  # (B, T, E)

    def backward(self, grad_output: np.ndarray) -> None:
        grad = self.norm.backward(grad_output)  # (B, T, E)
        for index in reversed(range(len(self.layers))):
            grad = self.layers[index].backward(grad)  # (B, T, E)
        self.embed_tokens.backward(grad)


class LlamaForCausalLM(Module):
    """Hugging Face's ``LlamaForCausalLM``: ``forward(input_ids, labels=None)`` returns ``(logits
    (B, T, V), loss)`` (``loss`` is ``None`` without labels); canonical names ``model.*`` and
    ``lm_head.weight`` (absent with ``tie_word_embeddings``: the head is ``model.embed_tokens.weight``)."""

    def __init__(self, config: LlamaConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        check_config("LlamaForCausalLM", config, LlamaConfig)
        rng = check_rng("LlamaForCausalLM", rng)
        self.config = config
        self.model = LlamaModel(config, dtype, rng)
        self.lm_head = None if config.tie_word_embeddings else Linear(config.hidden_size, config.vocab_size, bias=False,
                                                                     dtype=dtype, rng=rng)
        self.loss_fct = CrossEntropyLoss(ignore_index=LM_IGNORE_INDEX, dtype=dtype)
        self.zero_grad()

    def head_weight(self) -> np.ndarray:
        """The ``(V, E)`` matrix that scores the vocabulary: ``lm_head``'s, or the token table when tied."""
        return self.model.embed_tokens.params["weight"] if self.lm_head is None else self.lm_head.params["weight"]

    def forward(self, input_ids: np.ndarray, labels: np.ndarray | None = None):
        check_llama_inputs("LlamaForCausalLM", self.config, input_ids, labels)
        batch, steps = input_ids.shape
        hidden = self.model(input_ids)  # (B, T, E)
        logits = hidden @ self.head_weight().T  # (B, T, V)
        loss = None
        if labels is not None:
            # Position t predicts token t + 1: the last position has no next label, the first label no predictor.
            shifted = logits[:, :-1].reshape(batch * (steps - 1), self.config.vocab_size)  # (B(T-1), V)
            loss = self.loss_fct(shifted, labels[:, 1:].reshape(-1))  # ()
        self.save_for_backward(hidden, loss is not None)
        return logits, loss

    def backward(self, grad_logits: np.ndarray, grad_loss: np.ndarray | None = None) -> None:
        hidden, has_loss = self.saved_for_backward()  # (B, T, E)
        batch, steps, vocab = grad_logits.shape
        grad_logits = grad_logits.copy()  # (B, T, V)
        if has_loss:
            # The loss read the first T - 1 positions; its gradient adds there (the cotangent is 1 if none is given).
            grad_shifted = self.loss_fct.backward(1.0 if grad_loss is None else grad_loss)  # (B(T-1), V)
            grad_logits[:, :-1] += grad_shifted.reshape(batch, steps - 1, vocab)  # (B, T, V)
        rows = batch * steps
        # The head's weight gradient; with tied embeddings it adds into the table's, whose lookup adds too.
        owner = self.model.embed_tokens if self.lm_head is None else self.lm_head
        hidden_rows = hidden.reshape(rows, self.config.hidden_size)  # (R, E)
        owner.grads["weight"] += grad_logits.reshape(rows, vocab).T @ hidden_rows  # (V, E)
        self.model.backward(grad_logits @ self.head_weight())
        # The ids and labels are integers: no input gradient.
        return None
