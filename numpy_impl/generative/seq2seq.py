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

**Backward**, chaining the layers' own backwards (:math:`\bar\ell` the logits' cotangent):
:math:`\bar d = \bar\ell W_o` (its :math:`d`-half with attention, whose :math:`c`-half goes through
the attention to :math:`\bar d \mathrel{+}= \bar q` and to the encoder outputs :math:`\bar o`);
the decoder's BPTT gives :math:`\bar E_{tgt}[y^{in}]` and :math:`\bar h_0`; the encoder's BPTT
starts from :math:`\bar h^{enc}_S = \bar h_0` (plus :math:`\bar o` at every step with attention).
Canonical names: ``encoder_embedding.weight``, ``encoder.weight_ih_l0`` …, ``decoder_embedding.weight``,
``decoder.…``, ``attention.key_proj.weight`` (``"general"`` only), ``out.weight``, ``out.bias``:
``nn.Embedding``/``nn.GRU``/``nn.Linear`` state dicts under those prefixes.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_int, check_rng, check_seq2seq_inputs
from ml100.configs import Seq2SeqConfig, check_config

from ..foundations.linear import Linear
from ..module import Module, no_grad
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

    def forward(self, src: np.ndarray, tgt_in: np.ndarray) -> np.ndarray:
        return self.teacher_forced(src, tgt_in)[0]  # (N, T, V)

    def teacher_forced(self, src: np.ndarray, tgt_in: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits ``(N, T, V)`` with the true previous tokens as the decoder's inputs, and the
        attention weights ``(N, T, S)`` (``None`` without attention)."""
        check_seq2seq_inputs(type(self).__name__, src, tgt_in)
        memory, state = self.encode(src)  # (N, S, H), (L, N, H)
        decoded, _ = self.decoder(self.decoder_embedding(tgt_in), state)  # (N, T, H)
        return self.head(decoded, memory)  # (N, T, V), (N, T, S) or None

    def encode(self, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's outputs ``(N, S, H)`` and final state ``(L, N, H)``."""
        return self.encoder(self.encoder_embedding(src))

    def head(self, decoded: np.ndarray, memory: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits ``(N, T, V)`` from the decoder outputs (no attention weights here)."""
        return self.out(decoded), None

    def backward(self, grad_logits: np.ndarray) -> None:
        return self._backward_model(grad_logits, None)

    def _backward_model(self, grad_logits: np.ndarray, grad_weights: np.ndarray | None) -> None:
        """Backpropagate one ``teacher_forced`` call into every parameter's gradient."""
        grad_decoded, grad_memory = self._head_backward(grad_logits, grad_weights)  # (N, T, H), (N, S, H) or None
        grad_embedded, grad_state = self.decoder.backward(grad_decoded, None)  # (N, T, E), (L, N, H)
        self.decoder_embedding.backward(grad_embedded)
        # The decoder's initial state was the encoder's final state: its gradient starts the encoder's
        # BPTT (with attention, the encoder outputs' gradient joins at every step).
        self.encoder_embedding.backward(self.encoder.backward(grad_memory, grad_state))
        # Token ids have no gradient.
        return None

    def _head_backward(self, grad_logits: np.ndarray, grad_weights: np.ndarray | None):
        """The gradients of the decoder outputs and of the encoder outputs (``None``: unused)."""
        return self.out.backward(grad_logits), None

    def greedy_decode(self, src: np.ndarray, max_len: int, bos_id: int) -> np.ndarray:
        """Feed the decoder its own argmax (the first maximum on ties) ``max_len`` times, starting
        from ``bos_id``: ids ``(N, max_len)`` int64. Forward-only."""
        max_len = check_int(type(self).__name__, "max_len", max_len, 1)
        bos_id = check_int(type(self).__name__, "bos_id", bos_id, 0)
        check_seq2seq_inputs(type(self).__name__, src)
        with no_grad():
            memory, state = self.encode(src)  # (N, S, H), (L, N, H)
            token = np.full((src.shape[0], 1), bos_id, dtype=np.int64)  # (N, 1)
            outputs = []
            for _ in range(max_len):
                decoded, state = self.decoder(self.decoder_embedding(token), state)  # (N, 1, H), (L, N, H)
                token = self.head(decoded, memory)[0].argmax(axis=-1)  # (N, 1)
                outputs.append(token)
        return np.concatenate(outputs, axis=1)  # (N, max_len)


class Seq2SeqAttention(Seq2Seq):
    """Day 29: :class:`Seq2Seq` whose decoder attends over the encoder outputs (Luong, global);
    ``forward`` returns ``logits (N, T, V), weights (N, T, S)``."""

    def build_head(self, rng: np.random.Generator) -> None:
        """Luong attention over the encoder outputs, then ``[c_t; d_t] -> logits``."""
        hidden = self.config.hidden_size
        self.attention = LuongAttention(hidden, score_mode=self.config.score_mode, dtype=self.dtype, rng=rng)
        self.out = Linear(2 * hidden, self.config.vocab_size, dtype=self.dtype, rng=rng)

    def forward(self, src: np.ndarray, tgt_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.teacher_forced(src, tgt_in)  # (N, T, V), (N, T, S)

    def head(self, decoded: np.ndarray, memory: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each decoder output queries the encoder outputs; the logits read context and query."""
        context, weights = self.attention(decoded, memory)  # (N, T, H), (N, T, S)
        return self.out(np.concatenate([context, decoded], axis=-1)), weights  # (N, T, V), (N, T, S)

    def backward(self, grad_logits: np.ndarray, grad_weights: np.ndarray | None = None) -> None:
        return self._backward_model(grad_logits, grad_weights)

    def _head_backward(self, grad_logits: np.ndarray, grad_weights: np.ndarray | None):
        hidden = self.config.hidden_size
        grad_features = self.out.backward(grad_logits)  # (N, T, 2H)
        grad_context, grad_decoded = grad_features[..., :hidden], grad_features[..., hidden:]  # (N, T, H) each
        # The value was the key too: LuongAttention returns the query's gradient and their sum.
        grad_query, grad_memory = self.attention.backward(grad_context, grad_weights)  # (N, T, H), (N, S, H)
        return grad_decoded + grad_query, grad_memory


class TeacherForcing(Module):
    """A seq2seq model seen as a classifier, for the day-19 ``Trainer``: ``x = [src | tgt_in]``
    ``(N, S + T)`` int64 -> logits ``(N*T, V)``, one row per target token (row ``n*T + t``)."""

    def __init__(self, model: Seq2Seq, src_len: int):
        super().__init__(model.dtype)
        self.model = model
        self.src_len = check_int(type(self).__name__, "src_len", src_len, 1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        logits = self.model.teacher_forced(x[:, :self.src_len], x[:, self.src_len:])[0]  # (N, T, V)
        self.save_for_backward(logits.shape)
        return logits.reshape(-1, logits.shape[-1])  # (N*T, V)

    def backward(self, grad_logits: np.ndarray) -> None:
        shape = self.saved_for_backward()
        return self.model._backward_model(grad_logits.reshape(shape), None)
