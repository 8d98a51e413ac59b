r"""Day 40: DDIM sampling (Song et al. 2021) and classifier-free guidance (Ho & Salimans 2022), as
diffusers' ``DDIMScheduler``.

**DDIM step** ``t -> prev`` (``prev = t - T // n`` for ``n`` inference steps, diffusers' rule whatever
the spacing; past the end :math:`\bar\alpha_{prev}` is 1 with ``set_alpha_to_one``, else :math:`\bar\alpha_0`).
From the model's output :math:`m`, the clean-sample and noise estimates (day 39's :math:`\hat x_0`, and
:math:`\hat\varepsilon = m` for "epsilon", :math:`(x_t - \sqrt{\bar\alpha_t}\,m)/\sqrt{1-\bar\alpha_t}` for
"sample", :math:`\sqrt{\bar\alpha_t}\,m + \sqrt{1-\bar\alpha_t}\,x_t` for "v_prediction"), :math:`\hat x_0`
optionally clipped, then

.. math::  x_{prev} = \sqrt{\bar\alpha_{prev}}\,\hat x_0 + \sqrt{1-\bar\alpha_{prev}-\sigma^2}\;\hat\varepsilon + \sigma z,
           \qquad \sigma = \eta\sqrt{\tfrac{1-\bar\alpha_{prev}}{1-\bar\alpha_t}\big(1-\tfrac{\bar\alpha_t}{\bar\alpha_{prev}}\big)}

:math:`\eta = 0` is deterministic (no noise: an ODE solver, so few steps suffice); :math:`\eta = 1` has
DDPM's posterior variance. The noise :math:`z` is **passed in** (needed only for :math:`\eta > 0`).
The step is affine: the tape derives the NumPy tree's hand-written backward. Every op is elementwise:
any layout works, ``(N, H, W, C)`` in this tree.

**Classifier-free guidance.** One model trained with labels dropped to a null class now and then
predicts both :math:`\varepsilon(x_t, \varnothing)` and :math:`\varepsilon(x_t, c)`; sampling uses

.. math::  \hat\varepsilon = \varepsilon(x_t, \varnothing) + w\,\big(\varepsilon(x_t, c) - \varepsilon(x_t, \varnothing)\big)

(``guidance_scale`` :math:`w`; 1 is the conditional model alone, 0 the unconditional one).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from ml100.checks import (check_bool, check_choice, check_input, check_int, check_nonnegative, check_positive,
                          check_real, check_step_inputs, check_timestep, dtype_name)
from ml100.schedules import PREDICTION_TYPES, ddim_previous_timestep, ddim_step_coefficients, noise_iterator

from ..module import Module, no_grad
from .ddpm import clip_original_sample, predict_original_sample


def predict_epsilon(model_output: tf.Tensor, sample: tf.Tensor, pred_original_sample: tf.Tensor, coef,
                    prediction_type: str) -> tf.Tensor:
    r""":math:`\hat\varepsilon` from the model's output (and the unclipped :math:`\hat x_0`), as diffusers writes it."""
    if prediction_type == "epsilon":
        return model_output  # (N, *)
    if prediction_type == "sample":
        return (sample - coef.sqrt_alpha_prod * pred_original_sample) / coef.sqrt_beta_prod  # (N, *)
    return coef.sqrt_alpha_prod * model_output + coef.sqrt_beta_prod * sample  # (N, *)


class DDIMStep(Module):
    """``(model_output, timestep, sample, noise) -> (prev_sample, pred_original_sample)``: one step of
    ``DDIMScheduler.step`` for a schedule of ``num_inference_steps`` (its arguments' names and
    defaults); ``noise`` may be ``None`` for ``eta = 0``. No parameters."""

    def __init__(self, schedule, num_inference_steps: int, eta: float = 0.0, clip_sample: bool = True,
                 clip_sample_range: float = 1.0, set_alpha_to_one: bool = True, prediction_type: str = "epsilon"):
        super().__init__(schedule.dtype)
        self.num_train_timesteps = schedule.num_train_timesteps
        self.num_inference_steps = check_int("DDIMStep", "num_inference_steps", num_inference_steps, 1)
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(f"DDIMStep: num_inference_steps must be <= num_train_timesteps = {self.num_train_timesteps}, "
                             f"got {num_inference_steps}")
        self.eta = check_nonnegative("DDIMStep", "eta", eta)
        self.clip_sample = check_bool("DDIMStep", "clip_sample", clip_sample)
        self.clip_sample_range = check_positive("DDIMStep", "clip_sample_range", clip_sample_range)
        self.set_alpha_to_one = check_bool("DDIMStep", "set_alpha_to_one", set_alpha_to_one)
        check_choice("DDIMStep", "prediction_type", prediction_type, PREDICTION_TYPES)
        self.prediction_type = prediction_type
        # A float64 host copy: each step's scalars are read from it, the same way in every tree.
        self.alphas_cumprod = np.asarray(schedule.alphas_cumprod, dtype=np.float64)  # (T,)

    def forward(self, model_output: tf.Tensor, timestep, sample: tf.Tensor,
                noise: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        t = check_timestep("DDIMStep", timestep, self.num_train_timesteps)
        prev_t = ddim_previous_timestep(t, self.num_train_timesteps, self.num_inference_steps)
        coef = ddim_step_coefficients(self.alphas_cumprod, t, prev_t, self.eta, self.set_alpha_to_one)
        check_step_inputs("DDIMStep", self.dtype, model_output, sample, noise, coef.std is not None)
        unclipped = predict_original_sample(model_output, sample, coef, self.prediction_type)  # (N, *)
        # diffusers derives the noise estimate from the unclipped x0_hat.
        pred_epsilon = predict_epsilon(model_output, sample, unclipped, coef, self.prediction_type)  # (N, *)
        pred_original_sample = clip_original_sample(unclipped, self.clip_sample, self.clip_sample_range)  # (N, *)
        prev_sample = coef.original * pred_original_sample + coef.direction * pred_epsilon  # (N, *)
        if coef.std is not None:
            prev_sample = prev_sample + coef.std * noise  # (N, *)
        return prev_sample, pred_original_sample


def ddim_step(model_output: tf.Tensor, timestep, sample: tf.Tensor, noise: tf.Tensor | None, schedule,
              num_inference_steps: int, eta: float = 0.0, clip_sample: bool = True, clip_sample_range: float = 1.0,
              set_alpha_to_one: bool = True, prediction_type: str = "epsilon") -> tuple[tf.Tensor, tf.Tensor]:
    """One DDIM step as a function: ``DDIMStep(schedule, num_inference_steps, ...)(model_output, timestep, sample, noise)``."""
    step = DDIMStep(schedule, num_inference_steps, eta, clip_sample, clip_sample_range, set_alpha_to_one,
                    prediction_type)
    return step(model_output, timestep, sample, noise)


def classifier_free_guidance(eps_uncond: tf.Tensor, eps_cond: tf.Tensor, guidance_scale: float) -> tf.Tensor:
    r""":math:`\varepsilon_\varnothing + w(\varepsilon_c - \varepsilon_\varnothing)`, both predictions of one shape."""
    scale = check_real("classifier_free_guidance", "guidance_scale", guidance_scale)
    check_input("classifier_free_guidance", "eps_cond", eps_cond.shape, eps_cond.dtype,
                expected_dtype=dtype_name(eps_uncond.dtype), shape_like=eps_uncond.shape)
    return eps_uncond + scale * (eps_cond - eps_uncond)  # (N, *)


def ddim_sample(model: Callable, x_T: tf.Tensor, timesteps, eta: float, noises, schedule,
                labels: tf.Tensor | None = None, guidance_scale: float = 1.0, null_label: int | None = None,
                clip_sample: bool = True, clip_sample_range: float = 1.0, set_alpha_to_one: bool = True,
                prediction_type: str = "epsilon") -> tf.Tensor:
    """DDIM from ``x_T`` (N, *) over ``timesteps`` (descending ints, e.g. :func:`ml100.schedules.ddim_timesteps`):
    ``model(x, timesteps (N,) int64, labels)`` at each, then :class:`DDIMStep`. With ``guidance_scale != 1``
    the model also runs on ``null_label`` for every sample and the two are combined by
    :func:`classifier_free_guidance`. ``noises``: one tensor per step for ``eta > 0`` (any iterable),
    ``None`` for ``eta = 0``."""
    steps = [check_timestep("ddim_sample", t, schedule.num_train_timesteps) for t in timesteps]
    step = DDIMStep(schedule, len(steps), eta, clip_sample, clip_sample_range, set_alpha_to_one, prediction_type)
    noise_for = noise_iterator("ddim_sample", noises, len(steps) if step.eta > 0 else 0)
    guided = check_real("ddim_sample", "guidance_scale", guidance_scale) != 1.0
    if guided and (labels is None or null_label is None):
        raise ValueError("ddim_sample: guidance_scale != 1 needs labels and null_label (the unconditional class id)")
    n = x_T.shape[0]
    null_labels = tf.fill((n,), tf.constant(check_int("ddim_sample", "null_label", null_label, 0), tf.int64)) if guided else None
    sample = x_T  # (N, *)
    with no_grad():
        for t in steps:
            timestep_batch = tf.fill((n,), tf.constant(t, tf.int64))  # (N,)
            model_output = model(sample, timestep_batch, labels)  # (N, *)
            if guided:
                model_output = classifier_free_guidance(model(sample, timestep_batch, null_labels), model_output,
                                                        guidance_scale)  # (N, *)
            sample, _ = step(model_output, t, sample, next(noise_for) if step.eta > 0 else None)
    return sample
