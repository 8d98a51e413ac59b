r"""Day 12: regularization — dropout, L2 weight decay, early stopping.

**Dropout** (Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov, 2014, *Dropout: A Simple
Way to Prevent Neural Networks from Overfitting*, JMLR 15). In training each unit is kept with
probability :math:`1-p` and zeroed otherwise; the kept ones are scaled up by :math:`1/(1-p)`
("inverted" dropout), so that the expected output equals the input and evaluation needs no
rescaling at all — it is the identity:

.. math::  m_i \sim \mathrm{Bernoulli}(1-p), \qquad y_i = \frac{x_i\, m_i}{1-p}, \qquad
           \mathbb E[y_i] = x_i, \qquad \frac{\partial L}{\partial x_i} = \frac{\partial L}{\partial y_i}\,\frac{m_i}{1-p}

Intuition: a unit cannot rely on any particular other unit being present, so features must be
useful on their own (less co-adaptation); the net trains an ensemble of :math:`2^n` thinned
networks that share weights, and the eval-mode net approximates their average.

Randomness is an *input* here: ``forward(x, mask)`` takes the keep-mask (``True`` = kept), or
draws it with :func:`dropout_mask` from the ``rng`` given at construction. The same mask gives the
same numbers in all three trees. :math:`p = 1` is rejected: it would divide by zero (PyTorch
returns zeros there; a layer that drops everything is a bug, not a setting).

**L2 weight decay** (Krogh & Hertz, 1992): add :math:`\tfrac\lambda2\sum_w \lVert w\rVert^2` to the
loss. Its gradient is :math:`\lambda w`, which is exactly what ``torch.optim.SGD(weight_decay=λ)``
adds to every gradient — the :math:`\tfrac12` convention makes the two the same :math:`\lambda`.
Which tensors are decayed is the caller's choice: pass only the weights (biases are usually left out).

**Early stopping** (Prechelt, 1998, *Early Stopping — But When?*): keep the best validation metric;
stop once it has not improved by more than ``min_delta`` for ``patience`` steps in a row. The
same rule as ``keras.callbacks.EarlyStopping``. Plain Python: identical in all three trees.
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import check_input, check_range, check_rng, dtype_name

from ..module import Module

#: Directions of improvement for early stopping.
EARLY_STOPPING_MODES = ("min", "max")


def dropout_mask(shape, p: float, rng: np.random.Generator) -> np.ndarray:
    """The keep-mask of dropout: a NumPy bool array, ``True`` with probability ``1 - p``.

    ``u >= p`` for ``u ~ U[0, 1)`` keeps with probability exactly ``1 - p``; every tree draws its
    masks with this function, so one generator state gives one mask everywhere.
    """
    check_range("dropout_mask", "p", p, 0.0, 1.0)
    return rng.random(shape) >= p  # shape


class Dropout(Module):
    """Inverted dropout: ``x * mask / (1 - p)`` in training, the identity in eval mode."""

    def __init__(self, p: float = 0.5, dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        # p = 1 would divide by zero in 1 / (1 - p): rejected, see the module docstring.
        check_range("Dropout", "p", p, 0.0, 1.0)
        self.p = p
        self.rng = check_rng("Dropout", rng)

    def forward(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        check_input("Dropout", "x", x.shape, x.dtype, expected_dtype=self.dtype)
        if not self.training:
            # Inverted dropout already rescaled in training: eval is the identity (mask ignored).
            self.save_for_backward(None)
            return x
        if mask is None:
            mask = dropout_mask(x.shape, self.p, self.rng)  # x.shape
        check_mask(mask.shape, mask.dtype, x.shape, self.dtype)
        if mask.dtype != bool and not np.all((mask == 0) | (mask == 1)):
            raise ValueError("Dropout: a float mask must hold only 0 and 1")
        # A 0/1 mask in x's dtype: x * keep is exact, so the division is the only rounding.
        keep = mask.astype(x.dtype)  # x.shape
        self.save_for_backward(keep)
        return x * keep / (1 - self.p)  # x.shape

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        keep = self.saved_for_backward()  # x.shape, or None in eval mode
        if keep is None:
            return grad_out
        # y = x m / (1 - p) is linear in x: the gradient is zeroed and scaled by the same mask.
        return grad_out * keep / (1 - self.p)  # x.shape


def check_mask(shape, dtype, x_shape, x_dtype: str) -> None:
    """A keep-mask must have x's shape and be bool or x's own float dtype (0/1 values)."""
    if dtype_name(dtype) not in ("bool", x_dtype):
        raise TypeError(f"Dropout: mask must have dtype bool or {x_dtype}, got {dtype_name(dtype)}")
    check_input("Dropout", "mask", shape, dtype, shape_like=x_shape)


def l2_penalty(params: dict[str, np.ndarray], weight_decay: float) -> np.ndarray:
    r""":math:`\tfrac\lambda2 \sum_w \lVert w\rVert^2` over the tensors in ``params`` (a scalar)."""
    check_range("l2_penalty", "weight_decay", weight_decay)
    squares = [np.sum(w * w) for w in params.values()]  # one () per tensor
    return 0.5 * weight_decay * np.sum(squares)  # ()


def l2_penalty_grad(params: dict[str, np.ndarray], weight_decay: float) -> dict[str, np.ndarray]:
    r"""The gradient of :func:`l2_penalty`: :math:`\lambda w` for every tensor, under the same names."""
    check_range("l2_penalty_grad", "weight_decay", weight_decay)
    return {name: weight_decay * w for name, w in params.items()}  # each w.shape


class EarlyStopping:
    """``step(metric)`` returns ``True`` once ``patience`` steps in a row failed to improve the best
    value by more than ``min_delta`` (``mode="min"``: lower is better; ``"max"``: higher)."""

    def __init__(self, patience: int, min_delta: float = 0.0, mode: str = "min"):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        check_range("EarlyStopping", "min_delta", min_delta)
        if mode not in EARLY_STOPPING_MODES:
            raise ValueError(f"EarlyStopping: mode must be one of {EARLY_STOPPING_MODES}, got {mode!r}")
        self.patience, self.min_delta, self.mode = patience, min_delta, mode
        self.best = math.inf if mode == "min" else -math.inf
        self.best_step = -1
        self.steps = 0
        self.wait = 0
        self.should_stop = False

    def step(self, metric: float) -> bool:
        metric = float(metric)
        # A NaN metric compares False: it never counts as an improvement.
        if self.mode == "min":
            improved = metric + self.min_delta < self.best
        else:
            improved = metric - self.min_delta > self.best
        if improved:
            self.best, self.best_step, self.wait = metric, self.steps, 0
        else:
            self.wait += 1
        self.steps += 1
        self.should_stop = self.wait >= self.patience and not improved
        return self.should_stop
