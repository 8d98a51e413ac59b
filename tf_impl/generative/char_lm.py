r"""Day 27: a character-level language model — Embedding, LSTM, a linear head — and sampling.

For ids :math:`c_1 \dots c_T` the model predicts each next character (Karpathy's char-rnn):

.. math::  e_t = E_{c_t,:}, \qquad (h_t, s_t) = \operatorname{LSTM}(e_t, (h_{t-1}, s_{t-1})), \qquad
           z_t = h_t W^\top + b \in \mathbb{R}^V

trained on the mean cross-entropy over every position, :math:`L = -\frac{1}{NT}\sum_{n,t}
\log\operatorname{softmax}(z_{n,t})_{c_{n,t+1}}` (nats per character).

The tape chains the three days' backwards, which the NumPy tree calls by hand: the head's,
the LSTM's BPTT (day 24), the embedding's scatter-add (day 21). The ids get no gradient. Text
is a sequence, not an image: the layout is torch's ``(N, T, F)`` here too.

Sampling feeds each chosen character back with the carried state. The choice is
:func:`ml100.text.choose_next`: greedy at temperature 0, else the inverse CDF of
:math:`\operatorname{softmax}(z/\tau)` at one uniform draw per character, passed in.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_input, check_rng
from ml100.configs import CharLMConfig, check_config
from ml100.text import check_sampling, choose_next

from ..foundations.linear import Linear
from ..foundations.losses import CrossEntropyLoss
from ..module import Module, no_grad
from .embedding import Embedding
from .lstm import LSTM


class CharLM(Module):
    """``ids (N, T) int64 -> logits (N, T, vocab_size), (h_n, c_n)``; canonical names ``embedding.weight``,
    ``lstm.weight_ih_l0`` … (torch.nn.LSTM's), ``head.weight``, ``head.bias``."""

    def __init__(self, config: CharLMConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("CharLM", config, CharLMConfig)
        super().__init__(dtype)
        rng = check_rng("CharLM", rng)
        self.config = config
        self.embedding = Embedding(config.vocab_size, config.embedding_dim, dtype=dtype, rng=rng)
        # batch_first: the batches are (N, T) windows of text.
        self.lstm = LSTM(config.embedding_dim, config.hidden_size, config.num_layers, batch_first=True,
                         dtype=dtype, rng=rng)
        self.head = Linear(config.hidden_size, config.vocab_size, dtype=dtype, rng=rng)

    def forward(self, ids: tf.Tensor, hx: tuple | None = None) -> tuple[tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
        check_input("CharLM", "ids", ids.shape, ids.dtype, expected_dtype="int64", ndim=2)
        x = self.embedding(ids)  # (N, T, E)
        output, (h_n, c_n) = self.lstm(x, hx)  # (N, T, H); (L, N, H) each
        logits = self.head(output)  # (N, T, V)
        return logits, (h_n, c_n)


class NextCharLoss(Module):
    """Mean cross-entropy of the next character over every position: the model's output
    ``(logits (N, T, V), state)`` against targets ``(N, T)`` int64, as one ``(N*T, V)`` batch."""

    def __init__(self, dtype="float32"):
        super().__init__(dtype)
        self.cross_entropy = CrossEntropyLoss(dtype=dtype)

    def __call__(self, output: tuple, target: tf.Tensor) -> tf.Tensor:
        # The model's whole output comes in (the Trainer passes it on); the state is not scored.
        logits, _ = output
        return super().__call__(logits, target)

    def forward(self, logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        check_input("NextCharLoss", "logits", logits.shape, logits.dtype, expected_dtype=self.dtype, ndim=3)
        check_input("NextCharLoss", "target", target.shape, target.dtype, expected_dtype="int64",
                    shape_like=logits.shape[:2])
        n, t, v = logits.shape
        return self.cross_entropy(tf.reshape(logits, (n * t, v)), tf.reshape(target, (n * t,)))  # ()


def sample(model: CharLM, prompt_ids: np.ndarray, length: int, temperature: float, uniforms) -> np.ndarray:
    """``length`` ids continuing ``prompt_ids`` ``(P,)`` int64, one uniform draw in ``[0, 1)`` per id
    (``uniforms`` ``(length,)``); temperature 0 is greedy. Returns ``(length,)`` int64."""
    uniforms = check_sampling(prompt_ids, length, temperature, uniforms)  # (length,)
    generated = np.empty(length, dtype=np.int64)  # (length,)
    with no_grad():
        logits, state = model(tf.constant(prompt_ids[None, :]))  # (1, P, V)
        for k in range(length):
            # The state carries the whole text so far: only the newest character is fed.
            if k:
                logits, state = model(tf.constant(generated[None, k - 1:k]), state)  # (1, 1, V)
            generated[k] = choose_next(logits[0, -1].numpy(), temperature, uniforms[k])
    return generated
