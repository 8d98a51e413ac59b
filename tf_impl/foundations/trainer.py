r"""Day 11: the training loop.

Every supervised training run is the same four beats, repeated over shuffled minibatches:

1. **forward** — ``logits = model(x)``;
2. **loss** — :math:`L = \frac1B\sum_i \ell(\text{logits}_i, y_i)`;
3. **backward** — :math:`\nabla_\theta L` for every parameter (here: ``tf.GradientTape``; the whole
   step, update included, runs as one ``tf.function`` graph, traced once, instead of dispatching
   ~30 µs eager ops one by one);
4. **update** — ``optimizer.step(grads)`` moves every parameter along its gradient.

The batch order comes from a NumPy ``Generator`` passed in (:func:`ml100.data.batch_indices`),
so the NumPy, PyTorch and TF loops see the same batches and — from the same initial weights —
trace the same loss curve (``parity_tests/foundations/test_trainer.py`` checks 100 steps in
float64 to 1e-9).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from ml100.checks import check_nonnegative
from ml100.data import batch_indices

from ..generative.clipping import clip_grad_norm_
from ..module import no_grad


class Trainer:
    """Trains ``model`` on ``loss_fn`` with ``optimizer`` (built on ``dict(model.named_parameters())``),
    clipping the gradients' total norm to ``max_norm`` before each update when it is given."""

    def __init__(self, model, loss_fn, optimizer, max_norm: float | None = None):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.max_norm = None if max_norm is None else check_nonnegative("Trainer", "max_norm", max_norm)
        self.params = dict(model.named_parameters())
        # Traced once per input signature; every batch has one shape (batch_indices drops the last).
        self.step_graph = tf.function(self._step)

    def _step(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = self.model(x)  # (B, C)
            loss = self.loss_fn(logits, y)  # ()
        grads = dict(zip(self.params, tape.gradient(loss, list(self.params.values()))))
        # Day 23: rescale all gradients together to a total 2-norm of at most max_norm (an LSTM's can explode).
        if self.max_norm is not None:
            clip_grad_norm_(grads, self.max_norm)
        self.optimizer.step(grads)
        return loss

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One forward, backward and update on a batch; returns the batch loss."""
        self.model.train()
        return float(self.step_graph(tf.constant(x), tf.constant(y)))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy on ``(x, y)`` in eval mode, without touching gradients."""
        self.model.eval()
        with no_grad():
            logits = self.model(tf.constant(x))  # (N, C)
            loss = float(self.loss_fn(logits, tf.constant(y)))
        accuracy = float(np.mean(np.argmax(logits.numpy(), axis=-1) == y))
        return loss, accuracy

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, rng: np.random.Generator,
            on_step: Callable[[int, float], None] | None = None) -> list[float]:
        """``epochs`` passes over shuffled batches (order from ``rng``); returns every step's loss."""
        losses = []
        for _ in range(epochs):
            for index in batch_indices(len(x), batch_size, rng):
                losses.append(self.train_step(x[index], y[index]))
                if on_step is not None:
                    on_step(len(losses), losses[-1])
        return losses
