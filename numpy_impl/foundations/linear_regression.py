r"""Days 1-2: linear regression — normal equation, gradient descent, SGD; polynomial features, ridge.

Least squares goes back to Legendre (1805) and Gauss (1809); ridge regression to Hoerl & Kennard,
"Ridge Regression: Biased Estimation for Nonorthogonal Problems" (1970); stochastic gradient
descent to Robbins & Monro, "A Stochastic Approximation Method" (1951).

The model is one dense layer, :math:`\hat Y = X W^\top + \mathbf 1 b^\top` with
:math:`X \in \mathbb{R}^{N\times d}`, :math:`W \in \mathbb{R}^{\text{out}\times d}`. Every fit here
minimizes one objective (the **1/N convention**: mean over rows of the squared error summed over
outputs, which for one output is the usual MSE and equals ``torch.nn.MSELoss``):

.. math::  J(W, b) = \frac1N \sum_{i=1}^N \lVert W x_i + b - y_i \rVert^2 + \lambda \lVert W \rVert_F^2

The bias is never penalized: shifting every target by a constant should shift :math:`b`, not
shrink the slopes. Gradients, with :math:`R = \hat Y - Y`:

.. math::  \frac{\partial J}{\partial \hat Y} = \frac2N R, \qquad
           \frac{\partial J}{\partial W} = \frac2N R^\top X + 2\lambda W, \qquad
           \frac{\partial J}{\partial b} = \frac2N R^\top \mathbf 1

Setting them to zero, with :math:`A = [X, \mathbf 1]` and :math:`\theta = [W, b]^\top`, gives the
**normal equations** :math:`(A^\top A + N\lambda E)\,\theta = A^\top Y`, where
:math:`E = \mathrm{diag}(1,\dots,1,0)` leaves the bias column unpenalized. They are solved by an
LU solve, never an explicit inverse. Scikit-learn's ``Ridge`` minimizes
:math:`\lVert Y - XW^\top - b\rVert^2 + \alpha \lVert W\rVert^2` without the :math:`1/N`, so our
:math:`\lambda` is its ``alpha = N * l2``.

Intuition: gradient descent walks downhill on the same bowl-shaped :math:`J` that the normal
equations solve in one step; SGD walks on a noisy estimate of the slope from a minibatch, which
is cheap and, averaged over an epoch, points the same way. Polynomial features make the model
nonlinear in :math:`x` while it stays linear in :math:`W`, so everything above still applies;
the validation curve shows where more degree stops helping and starts overfitting, and how
:math:`\lambda` pulls it back.
"""
from __future__ import annotations

import itertools

import numpy as np

from ml100.checks import FLOAT_DTYPES, check_input, dtype_name
from ml100.data import batch_indices

from ..module import Module
from .linear import Linear


class LinearRegression(Module):
    """``y = x @ W.T + b`` for ``x`` of shape ``(N, in)``; canonical names ``linear.weight``, ``linear.bias``."""

    def __init__(self, in_features: int, out_features: int = 1, dtype="float32",
                 rng: np.random.Generator | None = None):
        super().__init__(dtype)
        self.in_features, self.out_features = in_features, out_features
        self.linear = Linear(in_features, out_features, dtype=dtype, rng=rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("LinearRegression", "x", x.shape, x.dtype, expected_dtype=self.dtype, ndim=2, last_dim=self.in_features)
        return self.linear.forward(x)  # (N, out)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        # The model is the layer: its backward is the layer's (dW = G^T x, db = sum G, dx = G W).
        return self.linear.backward(grad_out)  # (N, in)


def mse_loss(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """:math:`\\frac1N \\sum_i \\lVert \\hat y_i - y_i \\rVert^2` for ``(N, out)`` predictions and targets."""
    check_input("mse_loss", "target", target.shape, target.dtype, expected_dtype=dtype_name(pred.dtype), shape_like=pred.shape)
    return np.sum((pred - target) ** 2) / pred.shape[0]  # ()


def normal_equation(x: np.ndarray, y: np.ndarray, l2: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The minimizer of :math:`J` in closed form: ``(weight (out, in), bias (out,))``.

    ``l2 > 0`` is ridge regression. With ``l2 = 0`` the columns of ``x`` (plus the constant) must
    be linearly independent, or the system is singular.
    """
    _check_data("normal_equation", x, y)
    _check_l2("normal_equation", l2)
    n, d = x.shape
    # The constant column carries the intercept, so one solve finds W and b together.
    a = np.concatenate([x, np.ones((n, 1), dtype=x.dtype)], axis=1)  # (N, d+1)
    # N * l2 on the weights' diagonal (the 1/N convention), 0 on the bias: it is not penalized.
    penalty = np.diag(np.concatenate([np.full(d, n * l2), np.zeros(1)])).astype(x.dtype)  # (d+1, d+1)
    # A linear solve of the normal equations: cheaper and more accurate than forming the inverse.
    theta = np.linalg.solve(a.T @ a + penalty, a.T @ y)  # (d+1, out)
    return np.ascontiguousarray(theta[:d].T), theta[d]  # (out, d), (out,)


def polynomial_features(x: np.ndarray, degree: int) -> np.ndarray:
    """Every monomial of the columns of ``x`` of total degree 1..``degree``, no constant column.

    Columns come in scikit-learn's ``PolynomialFeatures(include_bias=False)`` order: by degree,
    then lexicographically by the (sorted) feature indices, e.g. ``x0, x1, x0², x0·x1, x1²``.
    """
    check_input("polynomial_features", "x", x.shape, x.dtype, ndim=2)
    _float_dtype("polynomial_features", "x", x.dtype)
    _check_degree("polynomial_features", degree)
    columns = []
    for k in range(1, degree + 1):
        index = _monomial_indices(x.shape[1], k)  # (F_k, k)
        # Gather the k factors of every degree-k monomial at once and multiply them together.
        columns.append(np.prod(x[:, index], axis=2))  # (N, F_k)
    return np.concatenate(columns, axis=1)  # (N, F)


def fit_gd(model: LinearRegression, x: np.ndarray, y: np.ndarray, lr: float, steps: int, l2: float = 0.0) -> list[float]:
    """Full-batch gradient descent on :math:`J`; the loss before each of the ``steps`` updates."""
    _check_data("fit_gd", x, y, model)
    _check_l2("fit_gd", l2)
    return [_gd_step(model, x, y, lr, l2) for _ in range(steps)]


def fit_sgd(model: LinearRegression, x: np.ndarray, y: np.ndarray, lr: float, epochs: int, batch_size: int,
            rng: np.random.Generator, l2: float = 0.0) -> list[float]:
    """Minibatch SGD on :math:`J`: batches drawn from ``rng``; the minibatch loss before each update."""
    _check_data("fit_sgd", x, y, model)
    _check_l2("fit_sgd", l2)
    losses = []
    for _ in range(epochs):
        for index in batch_indices(x.shape[0], batch_size, rng):
            losses.append(_gd_step(model, x[index], y[index], lr, l2))
    return losses


def validation_curve(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                     degrees=(1,), l2s=(0.0,)) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation ``mse_loss`` (no penalty) of the normal-equation fit for every
    ``(degree, l2)``: two float64 NumPy arrays of shape ``(len(degrees), len(l2s))``."""
    for degree in degrees:
        _check_degree("validation_curve", degree)
    for l2 in l2s:
        _check_l2("validation_curve", l2)
    _check_data("validation_curve", x_train, y_train)
    _check_data("validation_curve", x_val, y_val)
    # The validation set must have the training set's features, outputs and dtype.
    check_input("validation_curve", "x_val", x_val.shape, x_val.dtype, expected_dtype=dtype_name(x_train.dtype), last_dim=x_train.shape[1])
    check_input("validation_curve", "y_val", y_val.shape, y_val.dtype, last_dim=y_train.shape[1])
    train_mse = np.zeros((len(degrees), len(l2s)))
    val_mse = np.zeros((len(degrees), len(l2s)))
    for i, degree in enumerate(degrees):
        phi_train = polynomial_features(x_train, degree)  # (N, F)
        phi_val = polynomial_features(x_val, degree)  # (M, F)
        for j, l2 in enumerate(l2s):
            weight, bias = normal_equation(phi_train, y_train, l2)  # (out, F), (out,)
            train_mse[i, j] = float(mse_loss(phi_train @ weight.T + bias, y_train))
            val_mse[i, j] = float(mse_loss(phi_val @ weight.T + bias, y_val))
    return train_mse, val_mse


def _gd_step(model: LinearRegression, x: np.ndarray, y: np.ndarray, lr: float, l2: float) -> float:
    """One plain gradient step on :math:`J` over the rows given; returns :math:`J` before the step."""
    weight = model.linear.params["weight"]  # (out, in)
    # Gradients accumulate: clear the last step's before this backward.
    model.zero_grad()
    pred = model.forward(x)  # (B, out)
    loss = mse_loss(pred, y) + l2 * np.sum(weight**2)  # ()
    # dJ/dpred of the mean over rows of the summed squares.
    grad_pred = 2.0 * (pred - y) / x.shape[0]  # (B, out)
    model.backward(grad_pred)
    # The penalty never touches the prediction, so its gradient 2*l2*W is added after backward.
    model.linear.grads["weight"] += 2.0 * l2 * weight  # (out, in)
    for (_, param), (_, grad) in zip(model.named_parameters(), model.named_grads()):
        # In place, so the arrays the model (and its state dict) hold are the ones updated.
        param -= lr * grad
    return float(loss)


def _monomial_indices(d: int, k: int) -> np.ndarray:
    """The sorted feature-index tuples of every degree-``k`` monomial in ``d`` features: ``(F_k, k)``."""
    return np.array(list(itertools.combinations_with_replacement(range(d), k)), dtype=np.int64).reshape(-1, k)


def _float_dtype(owner: str, arg: str, dtype) -> str:
    name = dtype_name(dtype)
    if name not in FLOAT_DTYPES:
        raise TypeError(f"{owner}: {arg} must have dtype float32 or float64, got {name} (cast it explicitly)")
    return name


def _check_data(owner: str, x, y, model=None) -> None:
    """``x`` ``(N, in)`` and ``y`` ``(N, out)``, of one float dtype (the model's, if one is given)."""
    dtype = model.dtype if model is not None else _float_dtype(owner, "x", x.dtype)
    in_features = model.in_features if model is not None else None
    check_input(owner, "x", x.shape, x.dtype, expected_dtype=dtype, ndim=2, last_dim=in_features)
    check_input(owner, "y", y.shape, y.dtype, expected_dtype=dtype, ndim=2)
    out_features = model.out_features if model is not None else y.shape[1]
    check_input(owner, "y", y.shape, y.dtype, shape_like=(x.shape[0], out_features))


def _check_l2(owner: str, l2: float) -> None:
    if not l2 >= 0.0:
        raise ValueError(f"{owner}: l2 must be >= 0, got {l2}")


def _check_degree(owner: str, degree: int) -> None:
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 1:
        raise ValueError(f"{owner}: degree must be an integer >= 1, got {degree!r}")
