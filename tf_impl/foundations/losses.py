r"""Day 8: the loss functions, one elementwise term :math:`\ell_i` each, then one shared reduction.

With :math:`d = x - y` (input minus target):

=============== ============================================================== ===============================================
loss            :math:`\ell_i`                                                  :math:`\partial\ell_i/\partial x_i`
=============== ============================================================== ===============================================
MSELoss         :math:`d^2`                                                     :math:`2d`
L1Loss (MAE)    :math:`|d|`                                                     :math:`\operatorname{sign} d` (0 at 0)
HuberLoss       :math:`\tfrac12 d^2` if :math:`|d|<\delta` else                 :math:`\operatorname{clip}(d, -\delta, \delta)`
                :math:`\delta(|d| - \tfrac12\delta)`
BCELoss         :math:`-y\log_{\ge-100} p - (1-y)\log_{\ge-100}(1-p)`           :math:`-y/p + (1-y)/(1-p)` where not floored
KLDivLoss       :math:`y(\log y - x)` (0 where :math:`y=0`), or                 :math:`-y`, or :math:`-e^{y}`
                :math:`e^{y}(y - x)` with ``log_target``
=============== ============================================================== ===============================================

``BCEWithLogitsLoss`` (day 3) and ``CrossEntropyLoss`` (day 4) live with their models and are
re-exported here. Conventions are PyTorch's: ``BCELoss`` floors each log at -100, so a
probability of exactly 0 or 1 costs at most 100 instead of infinity (the gradient there is 0:
the floored log is flat); ``KLDivLoss`` takes *log*-probabilities as input and probabilities (or,
with ``log_target``, log-probabilities) as target, and its default reduction here is
``"batchmean"``, the true KL divergence per example (torch defaults to ``"mean"``, which divides
by the number of elements too and warns). ``reduction="none"`` keeps every element.
"""
from __future__ import annotations

import tensorflow as tf

from ml100.checks import check_bool, check_positive

from .logistic_regression import REDUCTIONS, BCEWithLogitsLoss, Loss, reduce_loss
from .softmax_regression import CrossEntropyLoss

__all__ = ["REDUCTIONS", "reduce_loss", "Loss", "BCEWithLogitsLoss", "CrossEntropyLoss",
           "MSELoss", "L1Loss", "HuberLoss", "BCELoss", "KLDivLoss", "LOG_FLOOR"]

#: BCELoss floors each log at this value, as torch does.
LOG_FLOOR = -100.0


class MSELoss(Loss):
    """Squared error :math:`(x - y)^2`."""

    def forward(self, input: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        self.check_pair(input, target)
        return self.reduce((input - target) ** 2)


class L1Loss(Loss):
    """Absolute error :math:`|x - y|` (mean absolute error with the default reduction)."""

    def forward(self, input: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        self.check_pair(input, target)
        diff = input - target
        # |d| = s d with the sign s held constant: its slope is s, taken 0 where d is NaN as torch's
        # abs does (tf.abs's own gradient is sign(d), NaN there).
        one = tf.ones_like(diff)
        sign = tf.stop_gradient(tf.where(diff > 0, one, tf.where(diff < 0, -one, tf.zeros_like(diff))))
        return self.reduce(sign * diff)


class HuberLoss(Loss):
    """Quadratic within ``delta`` of the target, linear (slope ``delta``) beyond."""

    def __init__(self, delta: float = 1.0, reduction: str = "mean", dtype="float32"):
        super().__init__(reduction, dtype)
        self.delta = check_positive("HuberLoss", "delta", delta)

    def forward(self, input: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        self.check_pair(input, target)
        diff = input - target
        abs_diff = tf.abs(diff)
        # Written "not beyond delta" so that NaN counts as quadratic: its NaN slope reaches the
        # gradient, as in torch; the quadratic branch sees 0 beyond delta, so an inf there cannot
        # turn into inf * 0 = NaN in the gradient of the branch that where discards.
        quadratic = ~(abs_diff >= self.delta)
        inner = tf.where(quadratic, diff, tf.zeros_like(diff))
        return self.reduce(tf.where(quadratic, 0.5 * inner**2, self.delta * (abs_diff - 0.5 * self.delta)))


class BCELoss(Loss):
    """Binary cross-entropy of ``target`` given probabilities ``input`` in ``[0, 1]``; logs floored at -100."""

    def forward(self, input: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        self.check_pair(input, target)
        # Inside tf.function the values are symbolic: only an eager call can check them.
        # Written as 'not inside' so that NaN is refused too, as torch refuses it.
        if tf.executing_eagerly() and not bool(tf.reduce_all((input >= 0) & (input <= 1))):
            raise ValueError("BCELoss: input must hold probabilities in [0, 1] (use BCEWithLogitsLoss on logits)")
        positive, below_one = input > 0, input < 1
        # The inner where feeds log a harmless 1 where the outer one answers LOG_FLOOR anyway,
        # so that the autograd trees' gradient stays 0 (not 0/0) at p = 0 and p = 1.
        floor = tf.fill(tf.shape(input), tf.constant(LOG_FLOOR, input.dtype))
        log_p = tf.where(positive, tf.maximum(tf.math.log(tf.where(positive, input, tf.ones_like(input))), LOG_FLOOR), floor)
        log_1mp = tf.where(below_one, tf.maximum(tf.math.log1p(-tf.where(below_one, input, tf.zeros_like(input))), LOG_FLOOR), floor)
        return self.reduce(-(target * log_p + (1.0 - target) * log_1mp))


class KLDivLoss(Loss):
    """:math:`\\mathrm{KL}(y \\,\\|\\, e^x)` terms for log-probabilities ``input`` and probabilities ``target``."""

    reductions = (*REDUCTIONS, "batchmean")

    def __init__(self, reduction: str = "batchmean", log_target: bool = False, dtype="float32"):
        super().__init__(reduction, dtype)
        self.log_target = check_bool("KLDivLoss", "log_target", log_target)

    def forward(self, input: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        self.check_pair(input, target)
        if self.log_target:
            loss = tf.exp(target) * (target - input)
        else:
            loss = tf.math.xlogy(target, target) - target * input  # y log y is 0 where y = 0
        return self.reduce(loss)
