r"""Day 54: BERT fine-tuning for classification — Hugging Face's ``BertForSequenceClassification``: day 52's
encoder, dropout on the pooled [CLS] state and one ``Linear`` to ``num_labels`` logits.

With :math:`p = \tanh(h^L_0 W_p^\top + b_p)` the pooler output ``(B, E)`` and :math:`k` the classifier's
keep-mask (passed in, True = keep, rate ``hidden_dropout_prob`` as Hugging Face's default
``classifier_dropout=None``):

.. math::  z = \Big(\frac{k \odot p}{1 - q}\Big) W_c^\top + b_c, \qquad
           L = \frac1B \sum_b -\log \mathrm{softmax}(z_b)_{y_b},

:math:`q` the dropout probability. Backward: :math:`\bar z = (\mathrm{softmax}(z) - e_y)/B` (plus any cotangent
of the logits), :math:`\bar W_c = \bar z^\top \tilde p`, :math:`\bar b_c = \sum_b \bar z_b`,
:math:`\bar p = (k/(1-q)) \odot \bar z W_c`, then ``BertModel.backward`` with no gradient on the last hidden
state but the pooler's (autograd derives it here; the NumPy tree writes it). Canonical names are
Hugging Face's (``bert.*``, ``classifier.weight`` ``(num_labels, E)``, ``classifier.bias``), so its state
dict loads unchanged.
"""
from __future__ import annotations

import numpy as np
import torch

from ml100.checks import check_classifier_inputs, check_int, check_rng
from ml100.configs import BertConfig, check_config

from ..foundations.linear import Linear
from ..foundations.softmax_regression import CrossEntropyLoss
from ..module import Module, torch_dtype
from .bert import BertModel
from .gpt import _maybe_drop
from .multihead import dropout_scale


class BertForSequenceClassification(Module):
    """Hugging Face's ``BertForSequenceClassification`` (single-label): ``forward(input_ids, attention_mask=None,
    token_type_ids=None, labels=None, dropout_masks=None)`` returns ``(logits (B, num_labels), loss)``
    (``loss`` is ``None`` without labels); ``dropout_masks`` are ``BertModel``'s plus ``"dropout"`` ``(B, E)``,
    the classifier's."""

    def __init__(self, config: BertConfig, num_labels: int = 2, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        check_config("BertForSequenceClassification", config, BertConfig)
        rng = check_rng("BertForSequenceClassification", rng)
        self.config = config
        # Two classes at least: Hugging Face's num_labels = 1 is regression (MSE), not implemented.
        self.num_labels = check_int("BertForSequenceClassification", "num_labels", num_labels, 2)
        self.bert = BertModel(config, dtype, rng)
        self.classifier = Linear(config.hidden_size, num_labels, dtype=dtype, rng=rng)
        self.loss_fct = CrossEntropyLoss(dtype=dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                dropout_masks: dict | None = None):
        dropout_on = self.training and self.config.hidden_dropout_prob > 0
        bert_masks, classifier_mask = check_classifier_inputs("BertForSequenceClassification", self.config,
                                                              self.num_labels, input_ids, labels, dropout_masks,
                                                              dropout_on)
        # (B, T, E), (B, E)
        sequence_output, pooled_output = self.bert(input_ids, attention_mask, token_type_ids, bert_masks)
        # Kept entries scaled by 1/(1-p); None (eval) is the identity.
        keep = None if classifier_mask is None else (
            classifier_mask.to(torch_dtype(self.dtype)) * dropout_scale(self.config.hidden_dropout_prob))  # (B, E)
        logits = self.classifier(_maybe_drop(pooled_output, keep))  # (B, L)
        loss = None if labels is None else self.loss_fct(logits, labels)  # ()
        return logits, loss
