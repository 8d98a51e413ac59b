r"""Day 47: the encoder-decoder Transformer, as ``torch.nn.Transformer``, and a small model around it.

The encoder is a stack of day 45's ``TransformerEncoderLayer`` :math:`E_1 \dots E_N` with a final
LayerNorm, the decoder a stack of day 46's ``TransformerDecoderLayer`` :math:`D_1 \dots D_M` with
another; every decoder layer cross-attends to the encoder's output, the **memory** :math:`m`:

.. math::  m = \mathrm{LN}_{enc}(E_N \circ \dots \circ E_1(x)), \qquad
           y = \mathrm{LN}_{dec}(D_M(\dots D_1(t, m) \dots, m))

(:math:`x` = ``src``, :math:`t` = ``tgt``). Both final norms exist for post-LN and pre-LN alike, as in
``nn.Transformer`` (for post-LN the encoder's is a second normalization in a row). Canonical names
are torch's: ``encoder.layers.{i}.*``, ``encoder.norm.*``, ``decoder.layers.{j}.*``,
``decoder.norm.*``, so an ``nn.Transformer`` state dict loads unchanged. As torch's
``_reset_parameters``, every parameter with more than one axis is redrawn from Xavier's uniform
after the layers are built.

Masks are the layers' (``nn.MultiheadAttention``'s meaning: bool True = ignore, or float added to
the scores); :meth:`Transformer.generate_square_subsequent_mask` is torch's float causal mask.
Dropout is an input: ``dropout_masks`` is ``None`` or a dict keyed by every layer's canonical name
(``"encoder.layers.0"``, ..., ``"decoder.layers.0"``, ...), each value that layer's own dict of
bool keep-masks (day 45's four keys, day 46's six).

Backward (tf.GradientTape here; the NumPy tree writes it out): the decoder layers in reverse give
:math:`\bar t` and one memory gradient each; memory feeds every layer's cross-attention, so

.. math::  \bar m = \textstyle\sum_{j=1}^{M} \bar m^{(j)}, \qquad
           \bar x = J_{E_1}^\top \cdots J_{E_N}^\top\, \mathrm{LN}_{enc}^\top\, \bar m .

**Seq2SeqTransformer** (the toy model): :math:`h = \sqrt{d}\, W_{emb}[ids] + PE` for source and
target (separate tables, day 43's sinusoidal PE), the Transformer with the causal target mask, then
``generator`` (a Linear) to logits; :meth:`Seq2SeqTransformer.greedy_decode` feeds back its own argmax.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ml100.checks import (check_bool, check_choice, check_int, check_layer_stack, check_positive, check_range, check_rng,
                          check_seq2seq_inputs, check_transformer_inputs, split_transformer_dropout_masks,
                          stack_dropout_masks)
from ml100.configs import TransformerConfig, check_config

from ..foundations import init
from ..foundations.linear import Linear
from ..foundations.normalization import LayerNorm
from ..generative.embedding import Embedding
from ..module import Module, ModuleList, no_grad, tf_dtype
from .decoder import DECODER_ACTIVATIONS, TransformerDecoderLayer
from .encoder import TransformerEncoderLayer
from .positional import SinusoidalPositionalEncoding


class TransformerEncoder(Module):
    """``nn.TransformerEncoder``: ``layers.{i}.*`` applied in order, then the optional final ``norm.*``."""

    def __init__(self, layers: list, norm: LayerNorm | None = None):
        layers = check_layer_stack("TransformerEncoder", layers, TransformerEncoderLayer, norm, LayerNorm)
        super().__init__(layers[0].dtype)
        self.layers = ModuleList(layers)
        self.norm = norm

    def forward(self, src: tf.Tensor, mask: tf.Tensor | None = None, src_key_padding_mask: tf.Tensor | None = None,
                is_causal: bool = False, dropout_masks: dict | None = None) -> tf.Tensor:
        masks = stack_dropout_masks("TransformerEncoder", dropout_masks, len(self.layers))
        output = src  # like src
        for layer, layer_masks in zip(self.layers, masks):
            output = layer(output, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal,
                           dropout_masks=layer_masks)  # like src
        return output if self.norm is None else self.norm(output)  # like src



class TransformerDecoder(Module):
    """``nn.TransformerDecoder``: ``layers.{j}.*`` applied in order, each reading ``memory``, then the
    optional final ``norm.*``; ``backward`` returns the gradients of ``tgt`` and ``memory``."""

    def __init__(self, layers: list, norm: LayerNorm | None = None):
        layers = check_layer_stack("TransformerDecoder", layers, TransformerDecoderLayer, norm, LayerNorm)
        super().__init__(layers[0].dtype)
        self.layers = ModuleList(layers)
        self.norm = norm

    def forward(self, tgt: tf.Tensor, memory: tf.Tensor, tgt_mask: tf.Tensor | None = None,
                memory_mask: tf.Tensor | None = None, tgt_key_padding_mask: tf.Tensor | None = None,
                memory_key_padding_mask: tf.Tensor | None = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False, dropout_masks: dict | None = None) -> tf.Tensor:
        masks = stack_dropout_masks("TransformerDecoder", dropout_masks, len(self.layers))
        output = tgt  # like tgt
        for layer, layer_masks in zip(self.layers, masks):
            output = layer(output, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                           tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                           tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal,
                           dropout_masks=layer_masks)  # like tgt
        return output if self.norm is None else self.norm(output)  # like tgt



class Transformer(Module):
    """``nn.Transformer``: ``forward(src, tgt, ...)`` returns the decoder's output, shaped like ``tgt``;
    ``backward`` returns the gradients of ``src`` and ``tgt``."""

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.0, activation: str = "relu",
                 layer_norm_eps: float = 1e-5, batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        owner = "Transformer"
        rng = check_rng(owner, rng)
        self.d_model = check_int(owner, "d_model", d_model, 1)
        check_int(owner, "nhead", nhead, 1)
        num_encoder_layers = check_int(owner, "num_encoder_layers", num_encoder_layers, 1)
        num_decoder_layers = check_int(owner, "num_decoder_layers", num_decoder_layers, 1)
        # Checked here once, so the encoder's and decoder's layers never disagree about what they accept.
        check_range(owner, "dropout", dropout, 0.0, 1.0)
        check_choice(owner, "activation", activation, DECODER_ACTIVATIONS)
        check_positive(owner, "layer_norm_eps", layer_norm_eps)
        self.batch_first = check_bool(owner, "batch_first", batch_first)
        check_bool(owner, "norm_first", norm_first)
        check_bool(owner, "bias", bias)
        layer_arguments = dict(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward, dropout=dropout,
                               activation=activation, layer_norm_eps=layer_norm_eps, batch_first=batch_first,
                               norm_first=norm_first, bias=bias, dtype=dtype, rng=rng)
        # Built in torch's order (encoder layers, encoder norm, decoder layers, decoder norm).
        self.encoder = TransformerEncoder(
            [TransformerEncoderLayer(**layer_arguments) for _ in range(num_encoder_layers)],
            LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype))
        self.decoder = TransformerDecoder(
            [TransformerDecoderLayer(**layer_arguments) for _ in range(num_decoder_layers)],
            LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype))
        reset_parameters(self, rng)

    def forward(self, src: tf.Tensor, tgt: tf.Tensor, src_mask: tf.Tensor | None = None,
                tgt_mask: tf.Tensor | None = None, memory_mask: tf.Tensor | None = None,
                src_key_padding_mask: tf.Tensor | None = None, tgt_key_padding_mask: tf.Tensor | None = None,
                memory_key_padding_mask: tf.Tensor | None = None, src_is_causal: bool = False,
                tgt_is_causal: bool = False, memory_is_causal: bool = False,
                dropout_masks: dict | None = None) -> tf.Tensor:
        check_transformer_inputs("Transformer", self.dtype, self.d_model, self.batch_first, src, tgt)
        encoder_masks, decoder_masks = split_transformer_dropout_masks(
            "Transformer", dropout_masks, len(self.encoder.layers), len(self.decoder.layers))
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal,
                              dropout_masks=encoder_masks)  # like src
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal,
                            dropout_masks=decoder_masks)  # like tgt

    @staticmethod
    def generate_square_subsequent_mask(sz: int, dtype="float32") -> tf.Tensor:
        """torch's causal mask ``(sz, sz)``, float: ``-inf`` above the diagonal (position ``i`` may not
        read any later ``j``), ``0`` elsewhere; it is added to the attention scores."""
        sz = check_int("Transformer", "sz", sz, 0)
        positions = tf.range(sz)  # (sz,)
        # Column j is later than row i where j > i: -inf there, 0 elsewhere.
        later = positions[None, :] > positions[:, None]  # (sz, sz)
        return tf.where(later, tf.constant(-np.inf, tf_dtype(dtype)), tf.constant(0.0, tf_dtype(dtype)))  # (sz, sz)


def reset_parameters(model: Module, rng: np.random.Generator) -> None:
    """torch's ``Transformer._reset_parameters``: every parameter with more than one axis redrawn
    from Xavier's uniform, in canonical order (biases and LayerNorms keep their values)."""
    state = model.canonical_state_dict()
    for name, value in state.items():
        if value.ndim > 1:
            state[name] = np.asarray(init.xavier_uniform(value.shape, rng, dtype=model.dtype))
    model.load_canonical_state_dict(state)


class Seq2SeqTransformer(Module):
    """Token ids to logits, batch first: ``forward(src (N, S), tgt_in (N, T))`` int64 -> ``(N, T, V)``.
    Canonical names ``src_embedding.weight``, ``tgt_embedding.weight``, ``transformer.*``
    (``nn.Transformer``'s), ``generator.weight``, ``generator.bias``."""

    def __init__(self, config: TransformerConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        check_config(type(self).__name__, config, TransformerConfig)
        rng = check_rng(type(self).__name__, rng)
        self.config = config
        self.src_embedding = Embedding(config.vocab_size, config.d_model, dtype=dtype, rng=rng)
        self.tgt_embedding = Embedding(config.vocab_size, config.d_model, dtype=dtype, rng=rng)
        self.positional = SinusoidalPositionalEncoding(config.d_model, config.max_len, dtype=dtype)
        self.transformer = Transformer(config.d_model, config.nhead, config.num_encoder_layers,
                                       config.num_decoder_layers, config.dim_feedforward, activation=config.activation,
                                       layer_norm_eps=config.layer_norm_eps, batch_first=True,
                                       norm_first=config.norm_first, dtype=dtype, rng=rng)
        self.generator = Linear(config.d_model, config.vocab_size, dtype=dtype, rng=rng)

    def forward(self, src: tf.Tensor, tgt_in: tf.Tensor) -> tf.Tensor:
        return self.teacher_forced(src, tgt_in)[0]  # (N, T, V)

    def teacher_forced(self, src: tf.Tensor, tgt_in: tf.Tensor) -> tuple[tf.Tensor, None]:
        """Logits ``(N, T, V)`` with the true previous tokens as the decoder's inputs, and ``None`` (no
        attention weights: the pair is what day 28's ``TeacherForcing`` reads)."""
        check_seq2seq_inputs(type(self).__name__, src, tgt_in)
        causal = self.transformer.generate_square_subsequent_mask(tgt_in.shape[1], self.dtype)  # (T, T)
        decoded = self.transformer(self.embed(self.src_embedding, src), self.embed(self.tgt_embedding, tgt_in),
                                   tgt_mask=causal, tgt_is_causal=True)  # (N, T, E)
        return self.generator(decoded), None  # (N, T, V)

    def embed(self, embedding: Embedding, ids: tf.Tensor) -> tf.Tensor:
        """:math:`\\sqrt{d}\\, W[ids] + PE`: the scale keeps N(0, 1) rows large next to the table's [-1, 1]."""
        return self.positional(embedding(ids) * math.sqrt(self.config.d_model))  # (N, L, E)

    def greedy_decode(self, src: tf.Tensor, max_len: int, bos_id: int) -> tf.Tensor:
        """Encode once, then feed the decoder ``bos_id`` and its own argmax (the first maximum on ties)
        ``max_len`` times, rereading the whole prefix each step: ids ``(N, max_len)`` int64. Forward-only."""
        max_len = check_int(type(self).__name__, "max_len", max_len, 1)
        bos_id = check_int(type(self).__name__, "bos_id", bos_id, 0)
        check_seq2seq_inputs(type(self).__name__, src)
        with no_grad():
            memory = self.transformer.encoder(self.embed(self.src_embedding, src))  # (N, S, E)
            tokens = tf.fill((tf.shape(src)[0], 1), tf.constant(bos_id, tf.int64))  # (N, 1)
            for _ in range(max_len):
                causal = self.transformer.generate_square_subsequent_mask(tokens.shape[1], self.dtype)  # (t, t)
                decoded = self.transformer.decoder(self.embed(self.tgt_embedding, tokens), memory, tgt_mask=causal,
                                                   tgt_is_causal=True)  # (N, t, E)
                token = tf.argmax(self.generator(decoded[:, -1:]), axis=-1, output_type=tf.int64)  # (N, 1)
                tokens = tf.concat([tokens, token], axis=1)  # (N, t + 1)
        return tokens[:, 1:]  # (N, max_len)
