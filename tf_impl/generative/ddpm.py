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
and :math:`z`: the tape derives the NumPy tree's hand-written scalings. The clip is written so its
gradient is torch's (inside the range, bounds included, never at NaN: ``tf.clip_by_value``'s own
gradient passes at NaN). Every op is elementwise: any layout works, ``(N, H, W, C)`` in this tree.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

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

    def forward(self, model_output: tf.Tensor, x0: tf.Tensor, noise: tf.Tensor,
                timesteps: tf.Tensor) -> tf.Tensor:
        scale_x0, scale_noise = self.schedule.scales(x0, noise, timesteps)  # (N, 1, ..., 1) each
        check_input("DDPMLoss", "model_output", model_output.shape, model_output.dtype, expected_dtype=self.dtype,
                    shape_like=x0.shape)
        return self.mse(model_output, self.target(x0, noise, scale_x0, scale_noise))  # ()

    def target(self, x0: tf.Tensor, noise: tf.Tensor, scale_x0: tf.Tensor,
               scale_noise: tf.Tensor) -> tf.Tensor:
        r"""What the model should output: :math:`\varepsilon`, :math:`x_0`, or diffusers' ``get_velocity``
        :math:`v = \sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1-\bar\alpha_t}\,x_0`."""
        if self.prediction_type == "epsilon":
            return noise  # (N, *)
        if self.prediction_type == "sample":
            return x0  # (N, *)
        return scale_x0 * noise - scale_noise * x0  # (N, *)


def predict_original_sample(model_output: tf.Tensor, sample: tf.Tensor, coef, prediction_type: str) -> tf.Tensor:
    r""":math:`\hat x_0` from the model's output, written as diffusers writes it (so NaN and inf land alike)."""
    if prediction_type == "epsilon":
        return (sample - coef.sqrt_beta_prod * model_output) / coef.sqrt_alpha_prod  # (N, *)
    if prediction_type == "sample":
        return model_output  # (N, *)
    return coef.sqrt_alpha_prod * sample - coef.sqrt_beta_prod * model_output  # (N, *)


def clip_original_sample(x: tf.Tensor, clip_sample: bool, clip_sample_range: float) -> tf.Tensor:
    """``x`` clipped to ``[-r, r]`` (NaN stays NaN), with torch ``clamp``'s gradient: it passes inside the
    range, bounds included, never at NaN."""
    if not clip_sample:
        return x
    inside = (x >= -clip_sample_range) & (x <= clip_sample_range)  # (N, *)
    # Outside (NaN included) the value is the clipped one, held constant: no gradient flows there.
    return tf.where(inside, x, tf.stop_gradient(tf.clip_by_value(x, -clip_sample_range, clip_sample_range)))  # (N, *)


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

    def forward(self, model_output: tf.Tensor, timestep, sample: tf.Tensor,
                noise: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        t = check_timestep("DDPMStep", timestep, self.num_train_timesteps)
        coef = ddpm_step_coefficients(self.alphas_cumprod, t, self.variance_type)
        check_step_inputs("DDPMStep", self.dtype, model_output, sample, noise, coef.std is not None)
        unclipped = predict_original_sample(model_output, sample, coef, self.prediction_type)  # (N, *)
        pred_original_sample = clip_original_sample(unclipped, self.clip_sample, self.clip_sample_range)  # (N, *)
        prev_sample = coef.original * pred_original_sample + coef.current * sample  # (N, *)
        if coef.std is not None:
            prev_sample = prev_sample + coef.std * noise  # (N, *)
        return prev_sample, pred_original_sample


def ddpm_step(model_output: tf.Tensor, timestep, sample: tf.Tensor, noise: tf.Tensor | None, schedule,
              variance_type: str = "fixed_small", clip_sample: bool = True, clip_sample_range: float = 1.0,
              prediction_type: str = "epsilon") -> tuple[tf.Tensor, tf.Tensor]:
    """One ancestral step as a function: ``DDPMStep(schedule, ...)(model_output, timestep, sample, noise)``."""
    step = DDPMStep(schedule, variance_type, clip_sample, clip_sample_range, prediction_type)
    return step(model_output, timestep, sample, noise)


def ddpm_sample(model: Callable, x_T: tf.Tensor, noises, schedule, labels: tf.Tensor | None = None,
                variance_type: str = "fixed_small", clip_sample: bool = True, clip_sample_range: float = 1.0,
                prediction_type: str = "epsilon") -> tf.Tensor:
    """The whole reverse chain ``t = T-1, ..., 0`` from ``x_T`` (N, *): ``model(x, timesteps (N,) int64,
    labels)`` at each step, then :class:`DDPMStep`. ``noises`` holds the ``T - 1`` noise tensors, in the
    order of the steps ``t = T-1, ..., 1`` (any iterable: a generator may draw them lazily)."""
    step = DDPMStep(schedule, variance_type, clip_sample, clip_sample_range, prediction_type)
    steps = schedule.num_train_timesteps
    noise_for = noise_iterator("ddpm_sample", noises, steps - 1)
    sample = x_T  # (N, *)
    with no_grad():
        for t in range(steps - 1, -1, -1):
            timesteps = tf.fill((x_T.shape[0],), tf.constant(t, tf.int64))  # (N,)
            model_output = model(sample, timesteps, labels)  # (N, *)
            sample, _ = step(model_output, t, sample, next(noise_for) if t > 0 else None)
    return sample
