r"""Day 23: exploding and vanishing gradients, and gradient clipping.

Backpropagation through a vanilla RNN :math:`h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`
multiplies one Jacobian per time step:

.. math::  \frac{\partial L}{\partial h_t} = \frac{\partial L}{\partial h_T}
           \prod_{s=t+1}^{T} \operatorname{diag}(1 - h_s^2)\, W_{hh}, \qquad
           \Bigl\lVert\frac{\partial L}{\partial h_t}\Bigr\rVert \le
           \Bigl\lVert\frac{\partial L}{\partial h_T}\Bigr\rVert\, \lVert W_{hh}\rVert_2^{\,T-t}

(Bengio, Simard & Frasconi, 1994; Pascanu, Mikolov & Bengio, 2013). With every singular value of
:math:`W_{hh}` below 1 the gradient reaching early steps shrinks geometrically (**vanishing**: early
inputs cannot be learned from); with a spectral radius above 1 and unsaturated units it can grow
geometrically (**exploding**: one step of SGD throws the weights far away).

**Global-norm clipping** (Pascanu et al., 2013) rescales all gradients together, keeping their
direction, when their joint size exceeds ``max_norm`` :math:`c`. With the p-norm of the per-tensor
norms (``norm_type`` :math:`p`, ``inf`` meaning the largest :math:`|g|`):

.. math::  \nu = \Bigl\lVert \bigl(\lVert g_1\rVert_p, \dots, \lVert g_k\rVert_p\bigr) \Bigr\rVert_p, \qquad
           g_i \leftarrow g_i \cdot \min\Bigl(\frac{c}{\nu + 10^{-6}},\, 1\Bigr)

exactly as ``torch.nn.utils.clip_grad_norm_`` (its :math:`10^{-6}` keeps all-zero gradients finite,
and the product is always taken, so a NaN norm makes every gradient NaN and an inf norm turns
finite entries into 0 and infinite ones into NaN). ``tf.clip_by_global_norm`` uses
:math:`g_i \cdot c / \max(\nu, c)` (2-norm only, no :math:`10^{-6}`): the same result up to
:math:`10^{-6}/\nu`, but an all-zero gradient with ``clip_norm`` 0 gives NaN there.
``clip_grad_value_`` clamps every entry to :math:`[-c, c]` instead, changing the direction.

Interface, the same in all three trees: ``grads`` is the ``{canonical name: gradient}`` dict that
``optimizer.step(grads)`` takes (``None`` entries, parameters without a gradient, are skipped as
torch skips them). ``get_total_norm`` returns :math:`\nu` as a 0-d tensor of the gradients' dtype
(float32 0 for no gradients, as torch). ``clip_grad_norm_`` and ``clip_grad_value_`` change the
gradients in place and return :math:`\nu` / nothing. Here the gradients are NumPy arrays and are changed in place
(``g *= coef``), so a module's ``grads`` see the clipped values.
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import (check_bool, check_finite_norm, check_gradient_dict, check_inf_norm_sizes, check_nonnegative,
                          check_norm_type)


def vector_norm(x: np.ndarray, norm_type: float) -> np.ndarray:
    """:math:`\\lVert x\\rVert_p` over every element: :math:`\\max|x|` for ``inf``, else :math:`(\\sum|x|^p)^{1/p}`."""
    if norm_type == math.inf:
        return np.max(np.abs(x))  # ()
    # A huge entry overflows |x|^p to inf, and the norm is inf, as torch's (which does not rescale).
    with np.errstate(over="ignore"):
        return np.sum(np.abs(x) ** norm_type) ** (1.0 / norm_type)  # ()


def present_grads(owner: str, grads: dict) -> dict[str, np.ndarray]:
    """The dict's gradients that are not None, each checked to be an array of one float dtype."""
    return check_gradient_dict(owner, grads, np.ndarray, "numpy.ndarray")


def get_total_norm(grads: dict, norm_type=2.0, error_if_nonfinite: bool = False) -> np.ndarray:
    """:math:`\\nu`, the p-norm of the per-gradient p-norms, as a 0-d array (torch's ``get_total_norm``)."""
    owner = "get_total_norm"
    norm_type = check_norm_type(owner, norm_type)
    check_bool(owner, "error_if_nonfinite", error_if_nonfinite)
    present = present_grads(owner, grads)
    if not present:
        # torch returns torch.tensor(0.0): float32, whatever the model's dtype.
        return np.zeros((), dtype=np.float32)
    check_inf_norm_sizes(owner, norm_type, {name: g.size for name, g in present.items()})
    norms = np.stack([vector_norm(g, norm_type) for g in present.values()])  # (k,)
    total_norm = np.asarray(vector_norm(norms, norm_type))  # ()
    if error_if_nonfinite:
        check_finite_norm(owner, norm_type, float(total_norm))
    return total_norm


def clip_grads_with_norm_(grads: dict, max_norm, total_norm) -> None:
    """Scale every gradient in place by :math:`\\min(c / (\\nu + 10^{-6}), 1)` for a given :math:`\\nu`."""
    owner = "clip_grads_with_norm_"
    max_norm = check_nonnegative(owner, "max_norm", max_norm)
    present = present_grads(owner, grads)
    if not present:
        return
    # The 1e-6 is torch's: it keeps the coefficient finite when every gradient is zero.
    clip_coef = max_norm / (total_norm + 1e-6)  # ()
    # Always multiplied, never skipped when <= 1: a NaN norm must make the gradients NaN (np.minimum keeps NaN).
    clip_coef_clamped = np.minimum(clip_coef, np.ones((), dtype=total_norm.dtype))  # ()
    # An inf norm gives a 0 coefficient and inf * 0 is NaN, as in torch (without a warning).
    with np.errstate(invalid="ignore"):
        for g in present.values():
            g *= clip_coef_clamped


def clip_grad_norm_(grads: dict, max_norm, norm_type=2.0, error_if_nonfinite: bool = False) -> np.ndarray:
    """Rescale all gradients together so their total p-norm is at most ``max_norm``; returns the norm before."""
    # Checked here too, so a bad threshold is named by the function called, before any norm is computed.
    check_nonnegative("clip_grad_norm_", "max_norm", max_norm)
    total_norm = get_total_norm(grads, norm_type, error_if_nonfinite)  # ()
    clip_grads_with_norm_(grads, max_norm, total_norm)
    return total_norm


def clip_grad_value_(grads: dict, clip_value) -> None:
    """Clamp every gradient entry in place to :math:`[-c, c]` (NaN stays NaN, as ``torch.clamp``)."""
    owner = "clip_grad_value_"
    clip_value = check_nonnegative(owner, "clip_value", clip_value)
    for g in present_grads(owner, grads).values():
        np.clip(g, -clip_value, clip_value, out=g)
