r"""Day 53: BERT pre-training — Hugging Face's ``BertForPreTraining``: day 52's encoder, a masked
language model head whose decoder is the word-embedding table itself (tied), and the next-sentence
prediction head.

The ids arrive already corrupted by the 80/10/10 rule (``ml100.mlm.mask_tokens``: integer
bookkeeping, kept once outside the trees). With :math:`h` the last hidden state ``(B, T, E)``,
:math:`p` the pooled [CLS] state ``(B, E)`` and :math:`W` the word table ``(V, E)``:

.. math::  g = \mathrm{LN}_c(\mathrm{GELU}(h W_t^\top + b_t)), \qquad
           z = g W^\top + b_\text{dec}, \qquad s = p W_s^\top + b_s,

.. math::  L = \frac{1}{|M|}\sum_{(b,t) \in M} -\log \mathrm{softmax}(z_{bt})_{y_{bt}}
           + \frac{1}{B}\sum_b -\log \mathrm{softmax}(s_b)_{n_b},

:math:`M` the positions whose label is not -100, :math:`n_b` the next-sentence label. Backward: the
cross-entropies give :math:`\bar z = (\mathrm{softmax}(z) - \mathrm{onehot}(y))/|M|` on :math:`M` (0
elsewhere) and :math:`\bar s` likewise; the decoder gives :math:`\bar g = \bar z W`,
:math:`\bar b_\text{dec} = \sum \bar z` and :math:`\bar W_\text{head} = \bar z^\top g`. The table is
one parameter used twice, so its gradient is the sum of both uses,

.. math::  \bar W = \bar z^\top g + \textstyle\sum_{t:\,x_t = k} \bar e_t \quad(\text{row } k),

the lookup's share (padding row excepted) added by ``BertModel.backward``. The canonical state is
``BertForPreTraining.state_dict()``'s names less its two aliases of tied tensors,
``cls.predictions.decoder.weight`` (= ``bert.embeddings.word_embeddings.weight``) and
``cls.predictions.decoder.bias`` (= ``cls.predictions.bias``): the decoder is a product with the
table, not a second layer. Here autograd sums both uses of the one ``nn.Parameter``; the NumPy
tree writes the backward head by head.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ml100.checks import LM_IGNORE_INDEX, check_pretraining_labels, check_rng
from ml100.configs import BertConfig, check_config

from ..foundations.activations import GELU
from ..foundations.linear import Linear
from ..foundations.normalization import LayerNorm
from ..foundations.softmax_regression import CrossEntropyLoss
from ..module import Module, torch_dtype
from .bert import BertModel

#: Next-sentence prediction's classes: 0 = sentence B follows A, 1 = B is a random sentence.
NSP_CLASSES = 2


class BertPredictionHeadTransform(Module):
    """Hugging Face's ``BertPredictionHeadTransform``: ``LayerNorm(GELU(dense(h)))``, E -> E."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("BertPredictionHeadTransform", rng)
        self.dense = Linear(config.hidden_size, config.hidden_size, dtype=dtype, rng=rng)
        # hidden_act "gelu": the exact GELU, as the encoder's.
        self.transform_act_fn = GELU("none", dtype)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))  # (B, T, E)


class BertLMPredictionHead(Module):
    """Hugging Face's ``BertLMPredictionHead``: ``transform``, then the decoder — the word table
    ``decoder_weight`` ``(V, E)`` passed in (tied) — plus the head's own ``bias`` ``(V,)`` (zeros)."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("BertLMPredictionHead", rng)
        self.transform = BertPredictionHeadTransform(config, dtype, rng)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size, dtype=torch_dtype(dtype)))  # (V,)

    def forward(self, hidden_states: torch.Tensor, decoder_weight: torch.Tensor) -> torch.Tensor:
        transformed = self.transform(hidden_states)  # (B, T, E)
        return transformed @ decoder_weight.T + self.bias  # (B, T, V)


class BertPreTrainingHeads(Module):
    """Hugging Face's ``BertPreTrainingHeads`` (``cls``): ``predictions`` (MLM logits ``(B, T, V)``) on
    every position, ``seq_relationship`` (NSP logits ``(B, 2)``) on the pooled [CLS] state."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        rng = check_rng("BertPreTrainingHeads", rng)
        self.predictions = BertLMPredictionHead(config, dtype, rng)
        self.seq_relationship = Linear(config.hidden_size, NSP_CLASSES, dtype=dtype, rng=rng)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor, decoder_weight: torch.Tensor):
        prediction_scores = self.predictions(sequence_output, decoder_weight)  # (B, T, V)
        return prediction_scores, self.seq_relationship(pooled_output)  # (B, 2)


class BertForPreTraining(Module):
    """Hugging Face's ``BertForPreTraining``: ``forward(input_ids, attention_mask=None, token_type_ids=None,
    labels=None, next_sentence_label=None, dropout_masks=None)`` returns ``(prediction_logits (B, T, V),
    seq_relationship_logits (B, 2), loss)``; ``loss`` (MLM + NSP cross-entropy) is ``None`` unless both
    labels are given. ``dropout_masks`` are ``BertModel``'s (keyed as ``config.dropout_shapes``): the heads
    have no dropout."""

    def __init__(self, config: BertConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        check_config("BertForPreTraining", config, BertConfig)
        rng = check_rng("BertForPreTraining", rng)
        self.config = config
        self.bert = BertModel(config, dtype, rng)
        self.cls = BertPreTrainingHeads(config, dtype, rng)
        # One cross-entropy for both terms, as Hugging Face (-100 = not a masked position).
        self.loss_fct = CrossEntropyLoss(ignore_index=LM_IGNORE_INDEX, dtype=dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None, dropout_masks: dict | None = None):
        check_pretraining_labels("BertForPreTraining", self.config, input_ids, labels, next_sentence_label)
        # (B, T, E), (B, E)
        sequence_output, pooled_output = self.bert(input_ids, attention_mask, token_type_ids, dropout_masks)
        # The tied decoder: the word table, transposed, scores every token of the vocabulary.
        prediction_logits, seq_relationship_logits = self.cls(
            sequence_output, pooled_output, self.bert.embeddings.word_embeddings.weight)  # (B, T, V), (B, 2)
        loss = None
        if labels is not None:
            flat_logits = prediction_logits.reshape(-1, self.config.vocab_size)  # (BT, V)
            masked_lm_loss = self.loss_fct(flat_logits, labels.reshape(-1))  # ()
            next_sentence_loss = self.loss_fct(seq_relationship_logits, next_sentence_label)  # ()
            loss = masked_lm_loss + next_sentence_loss
        return prediction_logits, seq_relationship_logits, loss
