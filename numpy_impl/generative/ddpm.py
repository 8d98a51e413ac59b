r"""Day 39: the DDPM training objective and ancestral sampling (Ho et al. 2020), as diffusers' ``DDPMScheduler``.

**Objective.** A clean batch :math:`x_0` is noised to :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon`
(day 37's ``DDPMSchedule``, noise passed in); the model sees :math:`(x_t, t)` and its output :math:`m` is
regressed onto a target by the mean squared error over every element,

.. math::  L = \operatorname{mean}\big((m - y)^2\big), \qquad
           y = \varepsilon \;(\text{"epsilon"}), \quad x_0 \;(\text{"sample"}), \quad
           \sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1-\bar\alpha_t}\,x_0 \;(\text{"v\_prediction"})

Backward, with :math:`G = \tfrac{2}{|m|}(m - y)\,\partial L`: :math:`\partial m = G`, :math:`\partial y = -G`,
and :math:`\partial y` flows to :math:`\varepsilon` and :math:`x_0` through the target's coefficients.

**Ancestral step** ``t -> t-1``. The model's output gives an estimate of the clean sample
(:math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,m)/\sqrt{\bar\alpha_t}` for "epsilon", :math:`m` for "sample",
:math:`\sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,m` for "v_prediction"), optionally clipped to
``[-clip_sample_range, clip_sample_range]``; then one draw of the posterior
:math:`q(x_{t-1} \mid x_t, \hat x_0) = \mathcal N(\tilde\mu, \sigma_t^2 I)`,

.. math::  x_{t-1} = \underbrace{\frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}}_{c_0}\,\hat x_0
           + \underbrace{\frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}}_{c_t}\,x_t + \sigma_t z,
           \qquad \sigma_t^2 = \tilde\beta_t = \tfrac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t \text{ (small) or } \beta_t \text{ (large)}

with the noise :math:`z` **passed in** (none at :math:`t = 0`). The scalars come from
:func:`ml100.schedules.ddpm_step_coefficients` (float64). The step is affine in :math:`m`, :math:`x_t`
and :math:`z`, so its backward is a few scalings: with :math:`G_{prev}` and :math:`G_0` the cotangents of
:math:`x_{t-1}` and of the returned :math:`\hat x_0`, :math:`G_{\hat x_0} = \mathbb 1_{|\hat x_0|\le r}(c_0 G_{prev} + G_0)`
(the clip passes the gradient inside its range, bounds included, as torch's ``clamp``), then
:math:`\partial m`, :math:`\partial x_t` from :math:`\hat x_0`'s coefficients, :math:`\partial x_t \mathrel{+}= c_t G_{prev}`,
:math:`\partial z = \sigma_t G_{prev}`.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ml100.checks import check_bool, check_choice, check_input, check_positive, check_step_inputs, check_timestep
from ml100.schedules import PREDICTION_TYPES, VARIANCE_TYPES, ddpm_step_coefficients, noise_iterator

from ..foundations.losses import MSELoss
from ..module import Module, no_grad


class DDPMLoss(Module):
    """``(model_output, x0, noise, timesteps (N,) int64) -> ()``: the mean squared error of the model's
    output to the ``prediction_type``'s target; the schedule (day 37) gives the v-target's scales."""

    def __init__(self, schedule, prediction_type: str = "epsilon"):
        # The dtype is the schedule's: a second dtype argument could only disagree with it.
        super().__init__(schedule.dtype)
        check_choice("DDPMLoss", "prediction_type", prediction_type, PREDICTION_TYPES)
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.mse = MSELoss(dtype=schedule.dtype)

    def forward(self, model_output: np.ndarray, x0: np.ndarray, noise: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
        scale_x0, scale_noise = self.schedule.scales(x0, noise, timesteps)  # (N, 1, ..., 1) each
        check_input("DDPMLoss", "model_output", model_output.shape, model_output.dtype, expected_dtype=self.dtype,
                    shape_like=x0.shape)
        self.save_for_backward(scale_x0, scale_noise)
        return self.mse(model_output, self.target(x0, noise, scale_x0, scale_noise))  # ()

    def target(self, x0: np.ndarray, noise: np.ndarray, scale_x0: np.ndarray, scale_noise: np.ndarray) -> np.ndarray:
        r"""What the model should output: :math:`\varepsilon`, :math:`x_0`, or diffusers' ``get_velocity``
        :math:`v = \sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1-\bar\alpha_t}\,x_0`."""
        if self.prediction_type == "epsilon":
            return noise  # (N, *)
        if self.prediction_type == "sample":
            return x0  # (N, *)
        return scale_x0 * noise - scale_noise * x0  # (N, *)

    def backward(self, grad_out=1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale_x0, scale_noise = self.saved_for_backward()  # (N, 1, ..., 1) each
        grad_model_output = self.mse.backward(grad_out)  # (N, *)
        # The target enters the squared error with the opposite sign to the output.
        grad_target = -grad_model_output  # (N, *)
        zeros = np.zeros_like(grad_target)  # (N, *)
        if self.prediction_type == "epsilon":
            return grad_model_output, zeros, grad_target
        if self.prediction_type == "sample":
            return grad_model_output, grad_target, zeros
        return grad_model_output, -scale_noise * grad_target, scale_x0 * grad_target


def predict_original_sample(model_output: np.ndarray, sample: np.ndarray, coef, prediction_type: str) -> np.ndarray:
    r""":math:`\hat x_0` from the model's output, written as diffusers writes it (so NaN and inf land alike)."""
    if prediction_type == "epsilon":
        return (sample - coef.sqrt_beta_prod * model_output) / coef.sqrt_alpha_prod  # (N, *)
    if prediction_type == "sample":
        return model_output  # (N, *)
    return coef.sqrt_alpha_prod * sample - coef.sqrt_beta_prod * model_output  # (N, *)


def _original_sample_grads(grad: np.ndarray, coef, prediction_type: str) -> tuple[np.ndarray, np.ndarray]:
    r"""``grad`` of :math:`\hat x_0` -> (grad of the model's output, grad of :math:`x_t`) through
    :func:`predict_original_sample`'s coefficients."""
    if prediction_type == "epsilon":
        return -coef.sqrt_beta_prod / coef.sqrt_alpha_prod * grad, grad / coef.sqrt_alpha_prod
    if prediction_type == "sample":
        return grad, np.zeros_like(grad)
    return -coef.sqrt_beta_prod * grad, coef.sqrt_alpha_prod * grad


def clip_original_sample(x: np.ndarray, clip_sample: bool, clip_sample_range: float) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` clipped to ``[-r, r]`` (NaN stays NaN), and where the gradient passes: inside the range,
    bounds included, never at NaN (torch's ``clamp``); ``None`` when nothing is clipped."""
    if not clip_sample:
        return x, None
    inside = (x >= -clip_sample_range) & (x <= clip_sample_range)  # (N, *)
    return np.clip(x, -clip_sample_range, clip_sample_range), inside


class DDPMStep(Module):
    """``(model_output, timestep, sample, noise) -> (prev_sample, pred_original_sample)``: one ancestral
    step ``t -> t-1`` of ``DDPMScheduler.step`` (its arguments' names and defaults); ``noise`` may be
    ``None`` at ``t = 0``, where none is added. No parameters."""

    def __init__(self, schedule, variance_type: str = "fixed_small", clip_sample: bool = True,
                 clip_sample_range: float = 1.0, prediction_type: str = "epsilon"):
        super().__init__(schedule.dtype)
        check_choice("DDPMStep", "variance_type", variance_type, VARIANCE_TYPES)
        check_choice("DDPMStep", "prediction_type", prediction_type, PREDICTION_TYPES)
        self.variance_type = variance_type
        self.clip_sample = check_bool("DDPMStep", "clip_sample", clip_sample)
        self.clip_sample_range = check_positive("DDPMStep", "clip_sample_range", clip_sample_range)
        self.prediction_type = prediction_type
        self.num_train_timesteps = schedule.num_train_timesteps
        # A float64 host copy: each step's scalars are read from it, the same way in every tree.
        self.alphas_cumprod = np.asarray(schedule.alphas_cumprod, dtype=np.float64)  # (T,)

    def forward(self, model_output: np.ndarray, timestep, sample: np.ndarray,
                noise: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        t = check_timestep("DDPMStep", timestep, self.num_train_timesteps)
        coef = ddpm_step_coefficients(self.alphas_cumprod, t, self.variance_type)
        check_step_inputs("DDPMStep", self.dtype, model_output, sample, noise, coef.std is not None)
        unclipped = predict_original_sample(model_output, sample, coef, self.prediction_type)  # (N, *)
        pred_original_sample, inside = clip_original_sample(unclipped, self.clip_sample, self.clip_sample_range)
        prev_sample = coef.original * pred_original_sample + coef.current * sample  # (N, *)
        if coef.std is not None:
            prev_sample = prev_sample + coef.std * noise  # (N, *)
        self.save_for_backward(coef, inside)
        return prev_sample, pred_original_sample

    def backward(self, grad_prev_sample: np.ndarray | None,
                 grad_pred_original_sample: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        coef, inside = self.saved_for_backward()
        grad_prev, grad_original = _fill_none(grad_prev_sample, grad_pred_original_sample)  # (N, *) each
        grad_original = coef.original * grad_prev + grad_original  # (N, *)
        if inside is not None:
            grad_original = np.where(inside, grad_original, 0.0)  # (N, *)
        grad_model_output, grad_sample = _original_sample_grads(grad_original, coef, self.prediction_type)
        grad_sample = grad_sample + coef.current * grad_prev  # (N, *)
        grad_noise = np.zeros_like(grad_prev) if coef.std is None else coef.std * grad_prev  # (N, *)
        return grad_model_output, grad_sample, grad_noise


def _fill_none(*grads: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Cotangents with ``None`` (no gradient flows from that output) replaced by zeros of the others' shape."""
    like = next(g for g in grads if g is not None)
    return tuple(np.zeros_like(like) if g is None else g for g in grads)


def ddpm_step(model_output: np.ndarray, timestep, sample: np.ndarray, noise: np.ndarray | None, schedule,
              variance_type: str = "fixed_small", clip_sample: bool = True, clip_sample_range: float = 1.0,
              prediction_type: str = "epsilon") -> tuple[np.ndarray, np.ndarray]:
    """One ancestral step as a function: ``DDPMStep(schedule, ...)(model_output, timestep, sample, noise)``."""
    step = DDPMStep(schedule, variance_type, clip_sample, clip_sample_range, prediction_type)
    return step(model_output, timestep, sample, noise)


def ddpm_sample(model: Callable, x_T: np.ndarray, noises, schedule, labels: np.ndarray | None = None,
                variance_type: str = "fixed_small", clip_sample: bool = True, clip_sample_range: float = 1.0,
                prediction_type: str = "epsilon") -> np.ndarray:
    """The whole reverse chain ``t = T-1, ..., 0`` from ``x_T`` (N, *): ``model(x, timesteps (N,) int64,
    labels)`` at each step, then :class:`DDPMStep`. ``noises`` holds the ``T - 1`` noise tensors, in the
    order of the steps ``t = T-1, ..., 1`` (any iterable: a generator may draw them lazily)."""
    step = DDPMStep(schedule, variance_type, clip_sample, clip_sample_range, prediction_type)
    steps = schedule.num_train_timesteps
    noise_for = noise_iterator("ddpm_sample", noises, steps - 1)
    sample = x_T  # (N, *)
    with no_grad():
        for t in range(steps - 1, -1, -1):
            timesteps = np.full((x_T.shape[0],), t, dtype=np.int64)  # (N,)
            model_output = model(sample, timesteps, labels)  # (N, *)
            sample, _ = step(model_output, t, sample, next(noise_for) if t > 0 else None)
    return sample
