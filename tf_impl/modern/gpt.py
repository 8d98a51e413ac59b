r"""Day 49: GPT — a decoder-only transformer language model, Hugging Face's ``GPT2LMHeadModel``.

Token ids :math:`x_{1..T}` become vectors through two learned tables, token ``wte`` and position
``wpe`` (:math:`p` = the number of tokens already cached, 0 without a cache); ``n_layer`` pre-LN blocks
refine them; a final LayerNorm and the **tied** head (``wte`` again, transposed) give the logits:

.. math::  h^0_t = W_\text{te}[x_t] + W_\text{pe}[p + t], \qquad
           a^l = h^{l-1} + \mathrm{Attn}(\mathrm{LN}_1(h^{l-1})), \qquad
           h^l = a^l + \mathrm{MLP}(\mathrm{LN}_2(a^l)),

.. math::  z_t = \mathrm{LN}_f(h^L_t)\, W_\text{te}^\top \in \mathbb{R}^V, \qquad
           \mathcal{L} = -\frac{1}{|K|}\sum_{t \in K} \log \operatorname{softmax}(z_t)_{y_{t+1}}

with :math:`K` the positions ``t < T`` whose next label is not -100 (the loss shifts inside, as
Hugging Face: position :math:`t` predicts token :math:`t+1`). Attention is causal multi-head
attention (day 41's ``ScaledDotProductAttention`` on heads ``(B, H, T, d)``, query :math:`i` sees keys
:math:`j \le p + i`);
:math:`\mathrm{MLP}(u) = \mathrm{GELU}_\tanh(u W_\text{fc} + b_\text{fc}) W_\text{proj} + b_\text{proj}`.

Every dense map is Hugging Face's ``Conv1D``: :math:`y = x W + b` with :math:`W` stored ``(in, out)``,
the transpose of ``nn.Linear``'s ``(out, in)``, so GPT-2 checkpoints load unchanged. The tied head
is one parameter used twice: the lookup and the logits. Its gradient is the sum of both uses,

.. math::  \frac{\partial L}{\partial W_\text{te}} = \underbrace{G_z^\top\, \mathrm{LN}_f(h^L)}_{\text{head}}
           + \underbrace{\textstyle\sum_{t:\,x_t = k} \bar h^0_t}_{\text{lookup, row } k},

which the tape gives for free: one ``tf.Variable`` read twice (a gather and a matmul) gets both
uses summed, made dense. The canonical state therefore has **no** ``lm_head.weight`` (Hugging Face's ``state_dict``
lists the same tensor twice; its safetensors checkpoints keep one), and neither has this module's
registry: the head is a product with the ``wte`` variable, not a second layer. Every ``Conv1D`` kernel
is stored ``(in, out)``, Keras' own dense layout, so no transpose at the edge. ``tf.GradientTape``
derives the backward the NumPy tree writes block by block.

Dropout (inverted, keep-masks passed in, True = keep) sits where Hugging Face puts it, keyed by its
module: ``transformer.drop`` on :math:`h^0`, each block's ``attn.attn_dropout`` on the attention
weights ``(B, H, T, T)``, ``attn.resid_dropout`` and ``mlp.dropout`` on the two branch outputs
(``GPTConfig.dropout_shapes`` lists them). With a ``cache`` (day 51's ``KVCache``) the forward is
inference only: dropout must be off and nothing is backpropagated through the cache.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ml100.checks import LM_IGNORE_INDEX, check_gpt_dropout_masks, check_gpt_inputs, check_input, check_int, check_rng
from ml100.configs import GPTConfig, check_config

from ..foundations import init
from ..foundations.activations import GELU
from ..foundations.normalization import LayerNorm
from ..foundations.softmax_regression import CrossEntropyLoss
from ..generative.embedding import Embedding
from ..module import Module, ModuleList, tf_dtype
from .attention import ScaledDotProductAttention, drop
from .multihead import dropout_scale


class Conv1D(Module):
    """Hugging Face's ``Conv1D(nf, nx)``: ``y = x @ W + b`` with ``weight (nx, nf)`` = (in, out) and ``bias (nf,)``."""

    def __init__(self, nf: int, nx: int, std: float = 0.02, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("Conv1D", rng)
        self.nf = check_int("Conv1D", "nf", nf, 1)
        self.nx = check_int("Conv1D", "nx", nx, 1)
        # Hugging Face's initialization: N(0, std^2) weights, zero biases; (in, out) is also Keras' kernel layout.
        self.kernel = self.add_param("weight", init.normal((nx, nf), rng, std, dtype))  # (in, out)
        self.bias = self.add_param("bias", np.zeros(nf))  # (out,)

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("Conv1D", "x", x.shape, x.dtype, expected_dtype=self.dtype, last_dim=self.nx)
        return tf.tensordot(x, self.kernel, axes=1) + self.bias  # (..., out)


def split_heads(x: tf.Tensor, num_heads: int) -> tf.Tensor:
    """``(B, T, E)`` -> ``(B, H, T, E/H)``: head ``h`` reads features ``h*d .. (h+1)*d - 1``."""
    # The batch and step counts from the runtime shape: a traced call may not know them, and -1 is ambiguous when empty.
    batch, steps, width = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
    return tf.transpose(tf.reshape(x, (batch, steps, num_heads, width // num_heads)), (0, 2, 1, 3))  # (B, H, T, d)


def merge_heads(x: tf.Tensor) -> tf.Tensor:
    """``(B, H, T, d)`` -> ``(B, T, H*d)``, the inverse of :func:`split_heads`."""
    batch, steps, heads, head_dim = tf.shape(x)[0], tf.shape(x)[2], x.shape[1], x.shape[3]
    return tf.reshape(tf.transpose(x, (0, 2, 1, 3)), (batch, steps, heads * head_dim))  # (B, T, E)


def causal_mask(steps: int, total: int) -> tf.Tensor:
    """``(T, S)`` bool, True = take part: the ``T`` new queries sit at positions ``S - T .. S - 1``
    and see every key up to their own (bottom-right aligned; top-left, torch's ``is_causal``, when ``S = T``)."""
    rows = tf.range(steps)[:, None] + (total - steps)  # (T, 1) each query's absolute position
    return tf.range(total)[None, :] <= rows  # (T, S)


def _maybe_drop(x: tf.Tensor, keep: tf.Tensor | None) -> tf.Tensor:
    """Inverted dropout with ``keep`` (0 or 1/(1-p)); ``None`` (off) is the identity."""
    return x if keep is None else drop(x, keep)


class GPTAttention(Module):
    """Causal multi-head self-attention, Hugging Face's ``GPT2Attention``: ``c_attn`` (packed q, k, v)
    and ``c_proj``, both ``Conv1D``."""

    def __init__(self, config: GPTConfig, layer_idx: int = 0, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("GPTAttention", rng)
        self.num_heads = config.n_head
        self.layer_idx = layer_idx
        self.c_attn = Conv1D(3 * config.n_embd, config.n_embd, config.initializer_range, dtype, rng)
        # GPT-2's scaled init of the projections into the residual stream: std / sqrt(2 n_layer).
        self.c_proj = Conv1D(config.n_embd, config.n_embd, config.initializer_range / math.sqrt(2 * config.n_layer),
                             dtype, rng)
        self.attention = ScaledDotProductAttention(dtype)

    def forward(self, hidden_states: tf.Tensor, keep: dict, cache=None) -> tf.Tensor:
        qkv = self.c_attn(hidden_states)  # (B, T, 3E)
        # (B, H, T, d) each
        query, key, value = (split_heads(part, self.num_heads) for part in tf.split(qkv, 3, axis=-1))
        if cache is not None:
            # The keys and values of every earlier step join this step's (inference only: nothing flows back).
            key, value = cache.update(self.layer_idx, key, value)  # (B, H, S, d) each
        mask = causal_mask(query.shape[-2], key.shape[-2])  # (T, S)
        attended, _ = self.attention(query, key, value, attn_mask=mask,
                                     dropout_mask=keep.get("attn_dropout"))  # (B, H, T, d)
        return _maybe_drop(self.c_proj(merge_heads(attended)), keep.get("resid_dropout"))  # (B, T, E)


class GPTMLP(Module):
    """Hugging Face's ``GPT2MLP``: ``c_fc`` (E -> inner), GELU (tanh), ``c_proj`` (inner -> E)."""

    def __init__(self, config: GPTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("GPTMLP", rng)
        self.c_fc = Conv1D(config.inner_dim, config.n_embd, config.initializer_range, dtype, rng)
        self.c_proj = Conv1D(config.n_embd, config.inner_dim, config.initializer_range / math.sqrt(2 * config.n_layer),
                             dtype, rng)
        # gelu_new is the tanh approximation of GELU.
        self.act = GELU("tanh", dtype)

    def forward(self, hidden_states: tf.Tensor, keep: dict) -> tf.Tensor:
        inner = self.act(self.c_fc(hidden_states))  # (B, T, F)
        return _maybe_drop(self.c_proj(inner), keep.get("dropout"))  # (B, T, E)


def _sub_masks(keep: dict, prefix: str) -> dict:
    """The entries of ``keep`` under ``prefix.``, with the prefix taken off their names."""
    return {name[len(prefix) + 1:]: mask for name, mask in keep.items() if name.startswith(prefix + ".")}


class GPTBlock(Module):
    """Hugging Face's ``GPT2Block``, pre-LN: ``h + attn(ln_1(h))``, then ``a + mlp(ln_2(a))``."""

    def __init__(self, config: GPTConfig, layer_idx: int = 0, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("GPTBlock", rng)
        self.ln_1 = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, dtype=dtype)
        self.attn = GPTAttention(config, layer_idx, dtype, rng)
        self.ln_2 = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, dtype=dtype)
        self.mlp = GPTMLP(config, dtype, rng)

    def forward(self, hidden_states: tf.Tensor, keep: dict, cache=None) -> tf.Tensor:
        attended = hidden_states + self.attn(self.ln_1(hidden_states), _sub_masks(keep, "attn"), cache)  # (B, T, E)
        return attended + self.mlp(self.ln_2(attended), _sub_masks(keep, "mlp"))  # (B, T, E)


class GPTModel(Module):
    """Hugging Face's ``GPT2Model`` (the ``transformer`` of the LM): ``wte``, ``wpe``, blocks ``h``, ``ln_f``."""

    def __init__(self, config: GPTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("GPTModel", rng)
        self.wte = Embedding(config.vocab_size, config.n_embd, dtype=dtype, rng=rng)
        self.wpe = Embedding(config.n_positions, config.n_embd, dtype=dtype, rng=rng)
        # Hugging Face draws the tables from N(0, initializer_range^2), not nn.Embedding's N(0, 1).
        for table in (self.wte, self.wpe):
            table.embeddings.assign(init.normal(table.embeddings.shape, rng, config.initializer_range, dtype))
        self.h = ModuleList([GPTBlock(config, index, dtype, rng) for index in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, dtype=dtype)

    def forward(self, input_ids: tf.Tensor, keep: dict, past_length: int = 0, cache=None) -> tf.Tensor:
        positions = tf.range(past_length, past_length + input_ids.shape[1], dtype=tf.int64)[None, :]  # (1, T)
        hidden = _maybe_drop(self.wte(input_ids) + self.wpe(positions), keep.get("drop"))  # (B, T, E)
        for index, block in enumerate(self.h):
            hidden = block(hidden, _sub_masks(keep, f"h.{index}"), cache)  # (B, T, E)
        return self.ln_f(hidden)  # (B, T, E)


class GPT(Module):
    """Hugging Face's ``GPT2LMHeadModel``: ``forward(input_ids, labels=None, dropout_masks=None, cache=None)``
    returns ``(logits (B, T, V), loss)`` (``loss`` is ``None`` without labels); canonical names are
    Hugging Face's (``transformer.wte.weight``, ``transformer.h.0.attn.c_attn.weight`` ...) without
    ``lm_head.weight``, which is ``transformer.wte.weight`` itself."""

    def __init__(self, config: GPTConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        check_config("GPT", config, GPTConfig)
        rng = check_rng("GPT", rng)
        self.config = config
        self.transformer = GPTModel(config, dtype, rng)
        self.loss_fct = CrossEntropyLoss(ignore_index=LM_IGNORE_INDEX, dtype=dtype)

    def forward(self, input_ids: tf.Tensor, labels: tf.Tensor | None = None, dropout_masks: dict | None = None,
                cache=None):
        past_length = 0 if cache is None else cache.length
        check_gpt_inputs("GPT", self.config, input_ids, labels, past_length, values_known=tf.executing_eagerly())
        batch, steps = tf.shape(input_ids)[0], input_ids.shape[1]
        dropout_on = self.training and bool(self.config.dropout_shapes(1, 1))
        masks = check_gpt_dropout_masks("GPT", self.config, dropout_masks, input_ids.shape[0], steps, dropout_on,
                                        cache is not None)
        # Kept entries scaled by 1/(1-p) of their site; keys lose "transformer." to match the submodules.
        keep = {name.removeprefix("transformer."):
                tf.cast(mask, tf_dtype(self.dtype)) * dropout_scale(self.config.dropout_p(name))
                for name, mask in masks.items()}
        hidden = self.transformer(input_ids, keep, past_length, cache)  # (B, T, E)
        # The tied head: the token table, transposed, scores every token of the vocabulary.
        logits = tf.tensordot(hidden, tf.transpose(self.transformer.wte.embeddings), axes=1)  # (B, T, V)
        loss = None
        if labels is not None:
            # Position t predicts token t + 1: the last position has no next label, the first label no predictor.
            shifted = tf.reshape(logits[:, :-1], (batch * (steps - 1), self.config.vocab_size))  # (B(T-1), V)
            loss = self.loss_fct(shifted, tf.reshape(labels[:, 1:], (batch * (steps - 1),)))  # ()
        return logits, loss
