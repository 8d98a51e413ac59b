r"""Day 28: the encoder-decoder (seq2seq) of Sutskever et al. (2014) and Cho et al. (2014), with
teacher forcing; day 29's variant attends over the encoder's outputs (Luong et al., 2015).

The encoder reads the source ids :math:`x_{1..S}` and the decoder starts from its last state:

.. math::  (o_{1..S}, h^{enc}_S) = \mathrm{GRU}_{enc}(E_{src}[x]), \qquad
           (d_{1..T}, \cdot) = \mathrm{GRU}_{dec}(E_{tgt}[y^{in}], h_0 = h^{enc}_S), \qquad
           \ell_t = d_t W_o^\top + b_o .

**Teacher forcing**: in training the decoder's input at step :math:`t` is the *true* previous
token, :math:`y^{in} = (\mathrm{BOS}, y_1, \dots, y_{T-1})`, so the whole target is one GRU call
and the loss is the cross-entropy of :math:`\ell_t` against :math:`y_t`. At inference
(:meth:`Seq2Seq.greedy_decode`) the decoder is fed its own argmax, one step at a time.

**Attention** (:class:`Seq2SeqAttention`, Luong's *global* attention without input feeding): each
decoder output queries every encoder output, :math:`(c_t, a_t) = \mathrm{Attn}(d_t, o_{1..S})`
(day 29's :class:`~.seq2seq_attention.LuongAttention`, ``"dot"`` or ``"general"`` scores), and the
logits read both, :math:`\ell_t = [c_t; d_t] W_o^\top + b_o` (Luong's
:math:`\tanh(W_c[c_t; d_t])` layer is left out: one Linear is enough for the toy tasks).

Autograd derives the backward the NumPy tree chains by hand (the decoder's BPTT, then the
encoder's, started from the gradient of the decoder's initial state).
Canonical names: ``encoder_embedding.weight``, ``encoder.weight_ih_l0`` …, ``decoder_embedding.weight``,
``decoder.…``, ``attention.key_proj.weight`` (``"general"`` only), ``out.weight``, ``out.bias``:
``nn.Embedding``/``nn.GRU``/``nn.Linear`` state dicts under those prefixes.
"""
from __future__ import annotations

import numpy as np
import torch

from ml100.checks import check_int, check_rng, check_seq2seq_inputs
from ml100.configs import Seq2SeqConfig, check_config

from ..foundations.linear import Linear
from ..module import Module
from .embedding import Embedding
from .gru import GRU
from .seq2seq_attention import LuongAttention


class Seq2Seq(Module):
    """GRU encoder-decoder: ``forward(src (N, S), tgt_in (N, T))`` int64 -> logits ``(N, T, V)``."""

    def __init__(self, config: Seq2SeqConfig, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        check_config(type(self).__name__, config, Seq2SeqConfig)
        rng = check_rng(type(self).__name__, rng)
        self.config = config
        vocab, width, hidden, layers = config.vocab_size, config.embedding_dim, config.hidden_size, config.num_layers
        self.encoder_embedding = Embedding(vocab, width, dtype=dtype, rng=rng)
        self.encoder = GRU(width, hidden, layers, batch_first=True, dtype=dtype, rng=rng)
        self.decoder_embedding = Embedding(vocab, width, dtype=dtype, rng=rng)
        self.decoder = GRU(width, hidden, layers, batch_first=True, dtype=dtype, rng=rng)
        self.build_head(rng)

    def build_head(self, rng: np.random.Generator) -> None:
        """The decoder's output layer: ``d_t -> logits``."""
        self.out = Linear(self.config.hidden_size, self.config.vocab_size, dtype=self.dtype, rng=rng)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.teacher_forced(src, tgt_in)[0]  # (N, T, V)

    def teacher_forced(self, src: torch.Tensor, tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(N, T, V)`` with the true previous tokens as the decoder's inputs, and the
        attention weights ``(N, T, S)`` (``None`` without attention)."""
        check_seq2seq_inputs(type(self).__name__, src, tgt_in)
        memory, state = self.encode(src)  # (N, S, H), (L, N, H)
        decoded, _ = self.decoder(self.decoder_embedding(tgt_in), state)  # (N, T, H)
        return self.head(decoded, memory)  # (N, T, V), (N, T, S) or None

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's outputs ``(N, S, H)`` and final state ``(L, N, H)``."""
        return self.encoder(self.encoder_embedding(src))

    def head(self, decoded: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(N, T, V)`` from the decoder outputs (no attention weights here)."""
        return self.out(decoded), None

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_len: int, bos_id: int) -> torch.Tensor:
        """Feed the decoder its own argmax (the first maximum on ties) ``max_len`` times, starting
        from ``bos_id``: ids ``(N, max_len)`` int64. Forward-only."""
        max_len = check_int(type(self).__name__, "max_len", max_len, 1)
        bos_id = check_int(type(self).__name__, "bos_id", bos_id, 0)
        check_seq2seq_inputs(type(self).__name__, src)
        memory, state = self.encode(src)  # (N, S, H), (L, N, H)
        token = torch.full((src.shape[0], 1), bos_id, dtype=torch.int64)  # (N, 1)
        outputs = []
        for _ in range(max_len):
            decoded, state = self.decoder(self.decoder_embedding(token), state)  # (N, 1, H), (L, N, H)
            token = self.head(decoded, memory)[0].argmax(dim=-1)  # (N, 1)
            outputs.append(token)
        return torch.cat(outputs, dim=1)  # (N, max_len)


class Seq2SeqAttention(Seq2Seq):
    """Day 29: :class:`Seq2Seq` whose decoder attends over the encoder outputs (Luong, global);
    ``forward`` returns ``logits (N, T, V), weights (N, T, S)``."""

    def build_head(self, rng: np.random.Generator) -> None:
        """Luong attention over the encoder outputs, then ``[c_t; d_t] -> logits``."""
        hidden = self.config.hidden_size
        self.attention = LuongAttention(hidden, score_mode=self.config.score_mode, dtype=self.dtype, rng=rng)
        self.out = Linear(2 * hidden, self.config.vocab_size, dtype=self.dtype, rng=rng)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.teacher_forced(src, tgt_in)  # (N, T, V), (N, T, S)

    def head(self, decoded: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each decoder output queries the encoder outputs; the logits read context and query."""
        context, weights = self.attention(decoded, memory)  # (N, T, H), (N, T, S)
        return self.out(torch.cat([context, decoded], dim=-1)), weights  # (N, T, V), (N, T, S)


class TeacherForcing(Module):
    """A seq2seq model seen as a classifier, for the day-19 ``Trainer``: ``x = [src | tgt_in]``
    ``(N, S + T)`` int64 -> logits ``(N*T, V)``, one row per target token (row ``n*T + t``)."""

    def __init__(self, model: Seq2Seq, src_len: int):
        super().__init__(model.dtype)
        self.model = model
        self.src_len = check_int(type(self).__name__, "src_len", src_len, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model.teacher_forced(x[:, :self.src_len], x[:, self.src_len:])[0]  # (N, T, V)
        return logits.reshape(-1, logits.shape[-1])  # (N*T, V)
