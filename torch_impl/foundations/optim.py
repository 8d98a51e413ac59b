r"""Days 9-10: optimizers — SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam, AdamW.

An optimizer turns the gradient :math:`g_t = \nabla_\theta L(\theta_{t-1})` into a step. Every
class here follows PyTorch's ``torch.optim`` formulas exactly (its reference in the tests), with
learning rate :math:`\eta`, L2 coefficient :math:`\lambda` and the step count :math:`t = 1, 2, \dots`.
Products and powers of tensors are elementwise. An L2 penalty :math:`\tfrac\lambda2\lVert\theta\rVert^2`
in the loss adds :math:`\lambda\theta` to the gradient, so ``weight_decay`` (all but AdamW) does
:math:`g_t \leftarrow g_t + \lambda\theta_{t-1}` first.

**SGD** (Robbins & Monro, 1951), **momentum** (Polyak, 1964, the "heavy ball") and **Nesterov**
momentum (Nesterov, 1983; in the form of Sutskever et al., 2013), with buffer :math:`b_0 = 0`:

.. math::  b_t = \mu b_{t-1} + (1-\tau) g_t, \qquad
           d_t = \begin{cases} g_t + \mu b_t & \text{Nesterov} \\ b_t & \text{otherwise} \end{cases}, \qquad
           \theta_t = \theta_{t-1} - \eta\, d_t

with ``dampening`` :math:`\tau` (0 by default), except at the first step, where PyTorch sets
:math:`b_1 = g_1` undamped (Nesterov needs :math:`\tau = 0`).

Momentum averages the gradients of the last :math:`\sim 1/(1-\mu)` steps: directions that agree
add up, oscillations across a ravine cancel. Nesterov looks one step ahead along the buffer.

**AdaGrad** (Duchi, Hazan & Singer, 2011), accumulator :math:`s_0` = ``initial_accumulator_value``:

.. math::  s_t = s_{t-1} + g_t^2, \qquad \theta_t = \theta_{t-1} - \eta\, \frac{g_t}{\sqrt{s_t} + \epsilon}

Each coordinate gets its own step size, small where gradients have been large; the sum only
grows, so the steps shrink for ever (good for sparse features, too cautious for deep nets).

**RMSProp** (Hinton, Srivastava & Swersky, 2012, Coursera *Neural Networks* lecture 6e) replaces
the sum by a moving average, so old gradients are forgotten; :math:`\epsilon` sits outside the root:

.. math::  v_t = \alpha v_{t-1} + (1-\alpha)\, g_t^2, \qquad
           b_t = \mu b_{t-1} + \frac{g_t}{\sqrt{v_t} + \epsilon}, \qquad \theta_t = \theta_{t-1} - \eta\, b_t

(without momentum, :math:`\mu = 0` and :math:`b_t` is just the scaled gradient). ``centered``
divides by an estimate of the gradient's standard deviation instead of its root mean square:
:math:`\bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t` and :math:`\sqrt{v_t - \bar g_t^2} + \epsilon`.

**Adam** (Kingma & Ba, 2015): momentum on :math:`g` and RMSProp on :math:`g^2`, both corrected for
their start at zero (after :math:`t` steps an average of a constant :math:`c` is
:math:`(1-\beta^t)c`):

.. math::  m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \\
           \hat m_t = \frac{m_t}{1-\beta_1^t}, \qquad \hat v_t = \frac{v_t}{1-\beta_2^t}, \qquad
           \theta_t = \theta_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

The step is about :math:`\eta` per coordinate whatever the gradient's scale: :math:`\hat m/\sqrt{\hat v}`
is a signal-to-noise ratio. (Keras adds its epsilon to :math:`\sqrt{v_t}` before bias correction,
the paper's "epsilon hat": see docs/conventions.md.) **AMSGrad** (Reddi, Kale & Kumar, 2018,
``amsgrad=True``) divides by the largest second moment so far, :math:`\hat v_t = \max(v_1, \dots, v_t)
/ (1-\beta_2^t)` — the maximum of the raw averages, corrected with the current step's factor, as
PyTorch does — so a coordinate's step size never grows back after a large gradient.

**AdamW** (Loshchilov & Hutter, 2019): with Adam, an L2 term is divided by :math:`\sqrt{\hat v}`
like the rest of the gradient, so weights with large gradients are barely regularized. AdamW
decouples the decay from the gradient and shrinks the weights directly, before the Adam step:

.. math::  \theta \leftarrow (1 - \eta\lambda)\,\theta, \quad \text{then the Adam step with } g_t \text{ unchanged}

Interface, the same in all three trees: ``params`` maps canonical names to the parameters
(here ``torch.nn.Parameter``\ s, updated in place under ``torch.no_grad()`` so autograd does not
record the update), ``step(grads)`` takes gradients under the same names (``p.grad``). The update
is written with tensor ops; ``torch.optim`` is only the reference in the tests. State lives in
``self.state[name]`` under PyTorch's names
(``momentum_buffer``, ``sum``, ``square_avg``, ``grad_avg``, ``exp_avg``, ``exp_avg_sq``,
``max_exp_avg_sq``); ``self.t`` counts steps.
There is no backward here: an optimizer consumes gradients, it does not produce them.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ml100.checks import check_bool, check_fraction, check_input, check_range, dtype_name


class Optimizer:
    """Updates ``{name: parameter}`` in place from ``{name: gradient}``; subclasses write ``update``."""

    def __init__(self, params: dict[str, torch.Tensor], lr: float):
        owner = type(self).__name__
        check_range(owner, "lr", lr)
        # torch.optim takes model.parameters(); here every parameter needs its canonical name.
        if not isinstance(params, Mapping):
            raise TypeError(f"{owner}: params must be a dict {{canonical name: parameter}}, got {type(params).__name__}; "
                            "pass dict(model.named_parameters()), not model.parameters()")
        self.params = dict(params)
        if not self.params:
            raise ValueError(f"{owner}: params is empty; pass {{canonical_name: parameter}}")
        for name, p in self.params.items():
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"{owner}: params[{name!r}] must be a torch.Tensor (updated in place), got {type(p).__name__}")
        self.lr = lr
        self.state: dict[str, dict[str, torch.Tensor]] = {name: {} for name in self.params}
        self.t = 0

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor]) -> None:
        """One update of every parameter from its gradient (same names as ``params``)."""
        self.check_grads(grads)
        self.t += 1
        for name, p in self.params.items():
            self.update(p, grads[name], self.state[name])

    def check_grads(self, grads) -> None:
        """Names, shapes and dtypes must match the parameters exactly; nothing is broadcast or cast."""
        owner = f"{type(self).__name__}.step"
        missing = [name for name in self.params if name not in grads]
        unexpected = [name for name in grads if name not in self.params]
        if missing or unexpected:
            raise KeyError(f"{owner}: gradient names must be the parameters' names; missing {missing}, unexpected {unexpected}")
        for name, p in self.params.items():
            g = grads[name]
            if g is None:
                raise ValueError(f"{owner}: grads[{name!r}] is None (the loss does not depend on this parameter)")
            check_input(owner, f"grads[{name!r}]", g.shape, g.dtype, expected_dtype=dtype_name(p.dtype), shape_like=tuple(p.shape))

    def update(self, p: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    # The framework primitives: a new state buffer, an in-place write, an elementwise root and maximum.
    @staticmethod
    def buffer(p: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        return torch.full_like(p, value)  # like p

    @staticmethod
    def assign(target: torch.Tensor, value: torch.Tensor) -> None:
        # In place: the model and self.state keep holding the same tensor object.
        target.copy_(value)

    sqrt = staticmethod(torch.sqrt)
    maximum = staticmethod(torch.maximum)

    # The pieces several optimizers share.
    @staticmethod
    def add_l2(p: torch.Tensor, g: torch.Tensor, weight_decay: float) -> torch.Tensor:
        """The gradient of ``L + weight_decay/2 * |p|^2``: ``g + weight_decay * p``."""
        return g + weight_decay * p if weight_decay else g  # like p

    def accumulate_momentum(self, state: dict, g: torch.Tensor, momentum: float) -> torch.Tensor:
        """``b = momentum * b + g`` in ``state["momentum_buffer"]`` (zero at first, so ``b_1 = g``)."""
        b = state["momentum_buffer"]
        self.assign(b, momentum * b + g)  # like p
        return b

    def moving_average(self, average: torch.Tensor, value: torch.Tensor, decay: float) -> None:
        """``average = decay * average + (1 - decay) * value``, in place."""
        self.assign(average, decay * average + (1 - decay) * value)  # like p


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        super().__init__(params, lr)
        check_range("SGD", "momentum", momentum)
        check_fraction("SGD", "dampening", dampening)
        check_range("SGD", "weight_decay", weight_decay)
        if check_bool("SGD", "nesterov", nesterov) and (momentum == 0 or dampening != 0):
            raise ValueError("SGD: nesterov=True needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening, self.weight_decay, self.nesterov = momentum, dampening, weight_decay, nesterov
        if momentum:
            for name, p in self.params.items():
                self.state[name]["momentum_buffer"] = self.buffer(p)

    def update(self, p, g, state):
        g = self.add_l2(p, g, self.weight_decay)  # like p
        if self.momentum:
            # torch copies the first gradient into the buffer undamped, then damps the later ones.
            damped = g if self.t == 1 else (1 - self.dampening) * g  # like p
            b = self.accumulate_momentum(state, damped, self.momentum)  # like p
            # Nesterov evaluates the step at the look-ahead point: one more momentum term.
            g = g + self.momentum * b if self.nesterov else b  # like p
        self.assign(p, p - self.lr * g)


class Adagrad(Optimizer):
    """Per-coordinate steps ``lr / (sqrt(sum of squared gradients) + eps)``."""

    def __init__(self, params, lr: float = 1e-2, eps: float = 1e-10, initial_accumulator_value: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        check_range("Adagrad", "eps", eps)
        check_range("Adagrad", "initial_accumulator_value", initial_accumulator_value)
        check_range("Adagrad", "weight_decay", weight_decay)
        self.eps, self.weight_decay = eps, weight_decay
        for name, p in self.params.items():
            self.state[name]["sum"] = self.buffer(p, initial_accumulator_value)

    def update(self, p, g, state):
        g = self.add_l2(p, g, self.weight_decay)  # like p
        s = state["sum"]
        self.assign(s, s + g * g)  # like p
        # PyTorch's placement: eps outside the root (Keras puts it inside).
        self.assign(p, p - self.lr * g / (self.sqrt(s) + self.eps))


class RMSprop(Optimizer):
    """Steps scaled by a moving root-mean-square of the gradients, with optional momentum."""

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False):
        super().__init__(params, lr)
        check_range("RMSprop", "alpha", alpha, 0.0, 1.0)
        check_range("RMSprop", "eps", eps)
        check_range("RMSprop", "weight_decay", weight_decay)
        check_range("RMSprop", "momentum", momentum)
        self.centered = check_bool("RMSprop", "centered", centered)
        self.alpha, self.eps, self.weight_decay, self.momentum = alpha, eps, weight_decay, momentum
        for name, p in self.params.items():
            self.state[name]["square_avg"] = self.buffer(p)
            if centered:
                self.state[name]["grad_avg"] = self.buffer(p)
            if momentum:
                self.state[name]["momentum_buffer"] = self.buffer(p)

    def update(self, p, g, state):
        g = self.add_l2(p, g, self.weight_decay)  # like p
        v = state["square_avg"]
        self.moving_average(v, g * g, self.alpha)
        if self.centered:
            g_avg = state["grad_avg"]
            self.moving_average(g_avg, g, self.alpha)
            # E[g^2] - E[g]^2: the gradient's variance, not its second moment.
            v = v - g_avg * g_avg  # like p
        # PyTorch's placement: eps outside the root (Keras puts it inside).
        g = g / (self.sqrt(v) + self.eps)  # like p
        if self.momentum:
            g = self.accumulate_momentum(state, g, self.momentum)  # like p
        self.assign(p, p - self.lr * g)


class Adam(Optimizer):
    """Bias-corrected moving averages of ``g`` and ``g**2``; ``weight_decay`` is an L2 term in ``g``."""

    #: AdamW sets this: decay the weights directly instead of adding the L2 gradient.
    decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        super().__init__(params, lr)
        owner = type(self).__name__
        if len(tuple(betas)) != 2:
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
        for index, beta in enumerate(betas):
            check_range(owner, f"betas[{index}]", beta, 0.0, 1.0)
        check_range(owner, "eps", eps)
        check_range(owner, "weight_decay", weight_decay)
        self.amsgrad = check_bool(owner, "amsgrad", amsgrad)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay
        for name, p in self.params.items():
            self.state[name]["exp_avg"] = self.buffer(p)
            self.state[name]["exp_avg_sq"] = self.buffer(p)
            if amsgrad:
                self.state[name]["max_exp_avg_sq"] = self.buffer(p)

    def update(self, p, g, state):
        if self.decoupled_weight_decay:
            # Before the step and from the old weights, as torch.optim.AdamW does.
            self.assign(p, p * (1 - self.lr * self.weight_decay))
        else:
            g = self.add_l2(p, g, self.weight_decay)  # like p
        beta1, beta2 = self.betas
        m, v = state["exp_avg"], state["exp_avg_sq"]
        self.moving_average(m, g, beta1)
        self.moving_average(v, g * g, beta2)
        if self.amsgrad:
            # The largest raw second moment so far; the current step's correction is applied below.
            self.assign(state["max_exp_avg_sq"], self.maximum(state["max_exp_avg_sq"], v))
            v = state["max_exp_avg_sq"]  # like p
        # Both averages started at zero: divide out the (1 - beta^t) share they are missing.
        m_hat = m / (1 - beta1**self.t)  # like p
        v_hat = v / (1 - beta2**self.t)  # like p
        self.assign(p, p - self.lr * m_hat / (self.sqrt(v_hat) + self.eps))


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before each Adam step."""

    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
