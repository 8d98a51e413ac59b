r"""Day 52: BERT — a bidirectional transformer encoder, Hugging Face's ``BertModel``, and the
sentence embedding of sentence-transformers (mean pooling, then L2 normalization).

Token ids :math:`x_t`, segment ids :math:`s_t` and positions :math:`t` each index a learned table;
their sum is normalized (post-LN everywhere, as the original BERT):

.. math::  h^0_t = \mathrm{LN}_e(W_\text{word}[x_t] + W_\text{type}[s_t] + W_\text{pos}[t]),

.. math::  a^l = \mathrm{LN}_1\big(h^{l-1} + \mathrm{Attn}(h^{l-1})\,W_o^\top + b_o\big), \qquad
           h^l = \mathrm{LN}_2\big(a^l + \mathrm{GELU}(a^l W_i^\top + b_i)\,W_2^\top + b_2\big)

with :math:`\mathrm{GELU}(u) = u\,\Phi(u)` exact (erf), and multi-head attention (day 41's
``ScaledDotProductAttention`` on heads ``(B, H, T, d)``) over every key that is not padding:
``attention_mask`` ``(B, T)`` holds 1 (attend) and 0 (padding) and becomes a boolean mask
``(B, 1, 1, T)``, True = take part. Hugging Face adds ``torch.finfo(dtype).min`` to the scores of
padded keys instead; its softmax weight is then exactly 0 in float32 and float64, so the two agree
(a sequence of padding only would differ, and is refused). The pooler reads the first token:
:math:`p = \tanh(h^L_0 W_p^\top + b_p)`.

Backward, layer by layer in reverse: a post-LN sublayer :math:`y = \mathrm{LN}(u + f(u))` gives
:math:`\bar v = \mathrm{LN}^\top(\bar y)` and :math:`\bar u = \bar v + f^\top(\bar v)`; the three query,
key and value projections add their input gradients; the tables take :math:`\bar e =
\mathrm{LN}_e^\top(\bar h^0)`: ``word_embeddings`` and ``token_type_embeddings`` scatter-add it by id
(the padding row excepted), ``position_embeddings`` sums it over the batch. The pooler's gradient
enters at position 0 only: :math:`\bar h^L_0 \mathrel{+}= ((1 - p^2) \odot \bar p)\,W_p`. Here the GradientTape derives
these; the NumPy tree writes them module by module.

Sentence embedding (sentence-transformers' ``Pooling(mean)`` then ``Normalize``), with
:math:`m_t \in \{0, 1\}` the attention mask and :math:`n = \max(\sum_t m_t, 10^{-9})`:

.. math::  u = \frac{1}{n}\sum_t m_t h_t, \qquad e = \frac{u}{\max(\lVert u \rVert_2, 10^{-12})}, \qquad
           \bar h_t = \frac{m_t}{n}\,\bar u, \qquad
           \bar u = \frac{\bar e - e\,\langle \bar e, e\rangle\,[\lVert u \rVert > 10^{-12}]}
                         {\max(\lVert u \rVert, 10^{-12})}.

Dropout (inverted, keep-masks passed in, True = keep) sits where Hugging Face puts it, keyed by its
module: ``embeddings.dropout``, each layer's ``attention.self.dropout`` on the attention weights
``(B, H, T, T)``, ``attention.output.dropout`` and ``output.dropout`` on the sublayer outputs before
the residual add (``BertConfig.dropout_shapes`` lists them). Canonical names are ``BertModel``'s
``state_dict`` names, so its checkpoints (all-MiniLM-L6-v2 among them) load unchanged.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_bert_inputs, check_gpt_dropout_masks, check_input, check_rng
from ml100.configs import BertConfig, check_config

from ..foundations.activations import GELU, Tanh
from ..foundations.linear import Linear
from ..foundations.normalization import LayerNorm
from ..generative.embedding import Embedding
from ..module import Module, ModuleList, tf_dtype
from .attention import ScaledDotProductAttention
from .gpt import _maybe_drop, _sub_masks, merge_heads, split_heads
from .multihead import dropout_scale

#: sentence-transformers' floor on the token count of mean pooling (``torch.clamp(min=1e-9)``).
MIN_TOKEN_COUNT = 1e-9
#: ``F.normalize``'s floor on the norm it divides by.
NORMALIZE_EPS = 1e-12


class BertEmbeddings(Module):
    """Hugging Face's ``BertEmbeddings``: word, position and token-type tables summed, then ``LayerNorm``."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("BertEmbeddings", rng)
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id,
                                         dtype=dtype, rng=rng)
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size, dtype=dtype, rng=rng)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size, dtype=dtype, rng=rng)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype)

    def forward(self, input_ids: tf.Tensor, token_type_ids: tf.Tensor, keep: dict) -> tf.Tensor:
        positions = tf.range(input_ids.shape[1], dtype=tf.int64)[None, :]  # (1, T)
        summed = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
                  + self.position_embeddings(positions))  # (B, T, E)
        return _maybe_drop(self.LayerNorm(summed), keep.get("dropout"))  # (B, T, E)



class BertSelfAttention(Module):
    """Hugging Face's ``BertSelfAttention``: ``query``, ``key``, ``value`` projections, bidirectional
    multi-head attention over the keys the mask keeps; the output is the heads merged (no projection)."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("BertSelfAttention", rng)
        self.num_attention_heads = config.num_attention_heads
        self.query = Linear(config.hidden_size, config.hidden_size, dtype=dtype, rng=rng)
        self.key = Linear(config.hidden_size, config.hidden_size, dtype=dtype, rng=rng)
        self.value = Linear(config.hidden_size, config.hidden_size, dtype=dtype, rng=rng)
        self.attention = ScaledDotProductAttention(dtype)

    def forward(self, hidden_states: tf.Tensor, attention_mask: tf.Tensor | None, keep: dict) -> tf.Tensor:
        # (B, H, T, d) each
        query, key, value = (split_heads(projection(hidden_states), self.num_attention_heads)
                             for projection in (self.query, self.key, self.value))
        attended, _ = self.attention(query, key, value, attn_mask=attention_mask,
                                     dropout_mask=keep.get("dropout"))  # (B, H, T, d)
        return merge_heads(attended)  # (B, T, E)



class BertSelfOutput(Module):
    """Hugging Face's ``BertSelfOutput``: ``LayerNorm(dropout(dense(h)) + input)``, the attention's post-LN
    residual; ``dense`` reads ``config.<input_width>`` features."""

    #: The config field that sizes ``dense``'s input (``BertOutput`` reads the intermediate width).
    input_width = "hidden_size"

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng(type(self).__name__, rng)
        self.dense = Linear(getattr(config, self.input_width), config.hidden_size, dtype=dtype, rng=rng)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype)

    def forward(self, hidden_states: tf.Tensor, input_tensor: tf.Tensor, keep: dict) -> tf.Tensor:
        branch = _maybe_drop(self.dense(hidden_states), keep.get("dropout"))  # (B, T, E)
        return self.LayerNorm(branch + input_tensor)  # (B, T, E)



class BertAttention(Module):
    """Hugging Face's ``BertAttention``: ``self`` (the attention) then ``output`` (projection, residual, LayerNorm)."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("BertAttention", rng)
        self.self = BertSelfAttention(config, dtype, rng)
        self.output = BertSelfOutput(config, dtype, rng)

    def forward(self, hidden_states: tf.Tensor, attention_mask: tf.Tensor | None, keep: dict) -> tf.Tensor:
        attended = self.self(hidden_states, attention_mask, _sub_masks(keep, "self"))  # (B, T, E)
        return self.output(attended, hidden_states, _sub_masks(keep, "output"))  # (B, T, E)



class BertIntermediate(Module):
    """Hugging Face's ``BertIntermediate``: ``dense`` (E -> F) and the exact (erf) GELU."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("BertIntermediate", rng)
        self.dense = Linear(config.hidden_size, config.intermediate_size, dtype=dtype, rng=rng)
        # hidden_act "gelu" is the exact GELU, u * Phi(u) (not the tanh approximation of GPT-2).
        self.intermediate_act_fn = GELU("none", dtype)

    def forward(self, hidden_states: tf.Tensor) -> tf.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))  # (B, T, F)



class BertOutput(BertSelfOutput):
    """Hugging Face's ``BertOutput``: ``LayerNorm(dropout(dense(i)) + input)`` with ``dense`` F -> E, the
    feed-forward's post-LN residual (``BertSelfOutput``'s computation on the intermediate width)."""

    input_width = "intermediate_size"


class BertLayer(Module):
    """Hugging Face's ``BertLayer``: ``attention``, then ``intermediate`` and ``output`` (the feed-forward)."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("BertLayer", rng)
        self.attention = BertAttention(config, dtype, rng)
        self.intermediate = BertIntermediate(config, dtype, rng)
        self.output = BertOutput(config, dtype, rng)

    def forward(self, hidden_states: tf.Tensor, attention_mask: tf.Tensor | None, keep: dict) -> tf.Tensor:
        attended = self.attention(hidden_states, attention_mask, _sub_masks(keep, "attention"))  # (B, T, E)
        return self.output(self.intermediate(attended), attended, _sub_masks(keep, "output"))  # (B, T, E)



class BertEncoder(Module):
    """Hugging Face's ``BertEncoder``: the stack ``layer`` of ``num_hidden_layers`` layers."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("BertEncoder", rng)
        self.layer = ModuleList([BertLayer(config, dtype, rng) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states: tf.Tensor, attention_mask: tf.Tensor | None, keep: dict) -> tf.Tensor:
        for index, layer in enumerate(self.layer):
            hidden_states = layer(hidden_states, attention_mask, _sub_masks(keep, f"layer.{index}"))  # (B, T, E)
        return hidden_states



class BertPooler(Module):
    """Hugging Face's ``BertPooler``: ``tanh(dense(h[:, 0]))``, the first ([CLS]) token's state."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("BertPooler", rng)
        self.dense = Linear(config.hidden_size, config.hidden_size, dtype=dtype, rng=rng)
        self.activation = Tanh(dtype)

    def forward(self, hidden_states: tf.Tensor) -> tf.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))  # (B, E)



class BertModel(Module):
    """Hugging Face's ``BertModel``: ``forward(input_ids, attention_mask=None, token_type_ids=None,
    dropout_masks=None)`` returns ``(last_hidden_state (B, T, E), pooler_output (B, E))``;
    ``attention_mask`` 1 = attend, 0 = padding (``None``: all 1), ``token_type_ids`` ``None``: all 0."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        check_config("BertModel", config, BertConfig)
        rng = check_rng("BertModel", rng)
        self.config = config
        self.embeddings = BertEmbeddings(config, dtype, rng)
        self.encoder = BertEncoder(config, dtype, rng)
        self.pooler = BertPooler(config, dtype, rng)

    def forward(self, input_ids: tf.Tensor, attention_mask: tf.Tensor | None = None,
                token_type_ids: tf.Tensor | None = None, dropout_masks: dict | None = None):
        check_bert_inputs("BertModel", self.config, input_ids, attention_mask, token_type_ids,
                          values_known=tf.executing_eagerly())
        batch, steps = input_ids.shape[0], input_ids.shape[1]
        dropout_on = self.training and bool(self.config.dropout_shapes(1, 1))
        masks = check_gpt_dropout_masks("BertModel", self.config, dropout_masks, batch, steps, dropout_on, False)
        # Kept entries scaled by 1/(1-p) of their site.
        keep = {name: tf.cast(mask, tf_dtype(self.dtype)) * dropout_scale(self.config.dropout_p(name))
                for name, mask in masks.items()}
        if token_type_ids is None:
            token_type_ids = tf.zeros_like(input_ids)  # (B, T)
        # 1 = attend -> True = take part, one row per sequence broadcast over heads and queries.
        key_mask = None if attention_mask is None else tf.equal(attention_mask, 1)[:, None, None, :]  # (B, 1, 1, T)
        hidden = self.embeddings(input_ids, token_type_ids, _sub_masks(keep, "embeddings"))  # (B, T, E)
        last_hidden_state = self.encoder(hidden, key_mask, _sub_masks(keep, "encoder"))  # (B, T, E)
        return last_hidden_state, self.pooler(last_hidden_state)



class MeanPooling(Module):
    """sentence-transformers' ``Pooling`` in mean mode: the mean of the hidden states of the tokens the
    mask keeps, ``(B, T, E), (B, T) -> (B, E)``."""

    def forward(self, last_hidden_state: tf.Tensor, attention_mask: tf.Tensor) -> tf.Tensor:
        check_input("MeanPooling", "last_hidden_state", last_hidden_state.shape, last_hidden_state.dtype,
                    expected_dtype=self.dtype, ndim=3)
        check_input("MeanPooling", "attention_mask", attention_mask.shape, attention_mask.dtype, expected_dtype="int64",
                    shape_like=last_hidden_state.shape[:2])
        weights = tf.cast(attention_mask[:, :, None], tf_dtype(self.dtype))  # (B, T, 1)
        # The floor keeps an all-padding row at 0 instead of 0 / 0.
        counts = tf.maximum(tf.reduce_sum(weights, axis=1), MIN_TOKEN_COUNT)  # (B, 1)
        return tf.reduce_sum(last_hidden_state * weights, axis=1) / counts  # (B, E)



class Normalize(Module):
    """sentence-transformers' ``Normalize`` (``F.normalize(p=2, dim=1)``): each row divided by
    ``max(||row||_2, 1e-12)``, ``(B, E) -> (B, E)``."""

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("Normalize", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=2)
        norm = tf.sqrt(tf.reduce_sum(x * x, axis=-1, keepdims=True))  # (B, 1)
        denominator = tf.maximum(norm, NORMALIZE_EPS)  # (B, 1)
        normalized = x / denominator  # (B, E)
        return normalized
