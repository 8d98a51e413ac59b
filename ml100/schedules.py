r"""Day 37: the DDPM noise schedules, as float64 NumPy arrays every tree converts to its tensors.

The forward (noising) process of a diffusion model adds Gaussian noise in :math:`T` steps,
:math:`q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I)`, so that

.. math::  \alpha_t = 1 - \beta_t, \qquad \bar\alpha_t = \prod_{s=0}^{t} \alpha_s, \qquad
           q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I)

(``t`` counts from 0, as diffusers' ``DDPMScheduler`` does). The schedules, with diffusers'
names and defaults (``num_train_timesteps=1000``, ``beta_start=1e-4``, ``beta_end=0.02``):

- ``"linear"`` (Ho et al. 2020): :math:`\beta_t` evenly spaced from ``beta_start`` to ``beta_end``;
- ``"scaled_linear"`` (latent diffusion): :math:`\sqrt{\beta_t}` evenly spaced from
  :math:`\sqrt{\text{beta\_start}}` to :math:`\sqrt{\text{beta\_end}}`, then squared;
- ``"squaredcos_cap_v2"`` (Nichol & Dhariwal 2021): :math:`\bar\alpha(u) = \cos^2\!\big(\tfrac{u + s}{1 + s}\tfrac{\pi}{2}\big)`,
  :math:`s = 0.008`, discretized as :math:`\beta_t = \min\big(1 - \bar\alpha(\tfrac{t+1}{T}) / \bar\alpha(\tfrac{t}{T}),\ 0.999\big)`
  (the clip keeps the last steps from :math:`\beta = 1`; ``beta_start``/``beta_end`` are unused).

The arithmetic needs no framework and is the same for every tree, so it lives here once, in
float64; diffusers computes the same formulas in float32 (see the day-37 page).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .checks import check_choice, check_int, check_positive

#: The schedules ``DDPMScheduler`` names this way (its other ones are not part of day 37).
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
#: The cosine schedule's offset ``s``: keeps :math:`\beta_0` from being vanishingly small.
COSINE_OFFSET = 0.008
#: The cosine schedule's largest :math:`\beta_t` (near ``t = T`` the ratio tends to 1).
MAX_BETA = 0.999


def cosine_alpha_bar(u: np.ndarray) -> np.ndarray:
    r""":math:`\bar\alpha(u) = \cos^2\big(\frac{u + s}{1 + s} \frac{\pi}{2}\big)` for :math:`u \in [0, 1]`."""
    return np.cos((u + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2


def make_betas(owner: str, num_train_timesteps: int, beta_start: float, beta_end: float,
               beta_schedule: str) -> np.ndarray:
    r"""``(T,)`` float64 :math:`\beta_t` of the named schedule, arguments checked (the message names ``owner``)."""
    steps = check_int(owner, "num_train_timesteps", num_train_timesteps, 1)
    check_positive(owner, "beta_start", beta_start)
    check_positive(owner, "beta_end", beta_end)
    check_choice(owner, "beta_schedule", beta_schedule, BETA_SCHEDULES)
    if beta_schedule == "linear":
        return np.linspace(beta_start, beta_end, steps)  # (T,)
    if beta_schedule == "scaled_linear":
        return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), steps) ** 2  # (T,)
    u = np.arange(steps + 1) / steps  # (T+1,) the step boundaries t/T
    alpha_bar = cosine_alpha_bar(u)  # (T+1,)
    return np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA)  # (T,)


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    r"""``(T,)`` :math:`\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)`."""
    return np.cumprod(1 - betas)  # (T,)


# --- Days 39-40: the reverse (sampling) process's per-step scalars and the DDIM timestep lists ---------------
# Every tree samples with tensors of its own; the scalars of one step (square roots of products of
# the schedule) need no framework, so they are computed here once, in float64 Python arithmetic,
# from the tree's ``alphas_cumprod`` read as a NumPy array.

#: What the model predicts (diffusers' ``prediction_type``): the noise, the clean sample, or
#: :math:`v = \sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1-\bar\alpha_t}\,x_0` (Salimans & Ho 2022).
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
#: ``DDPMScheduler``'s fixed variances of the ancestral step (its learned ones need a model that predicts them).
VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log")
#: ``DDIMScheduler.set_timesteps``' spacings of the inference timesteps (Lin et al. 2023, table 2).
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
#: ``DDPMScheduler`` floors the posterior variance here, so its log stays finite at ``t = 0``.
MIN_VARIANCE = 1e-20


@dataclass(frozen=True)
class DDPMStepCoefficients:
    r"""One ancestral step ``t -> prev``: :math:`\sqrt{\bar\alpha_t}`, :math:`\sqrt{1-\bar\alpha_t}`, the
    posterior mean's coefficients of :math:`\hat x_0` (``original``) and of :math:`x_t` (``current``),
    and the noise's standard deviation ``std`` (``None`` at ``t = 0``: no noise is added)."""

    sqrt_alpha_prod: float
    sqrt_beta_prod: float
    original: float
    current: float
    std: float | None


@dataclass(frozen=True)
class DDIMStepCoefficients:
    r"""One DDIM step ``t -> prev``: :math:`\sqrt{\bar\alpha_t}`, :math:`\sqrt{1-\bar\alpha_t}`, the
    coefficients of :math:`\hat x_0` (``original`` :math:`=\sqrt{\bar\alpha_{prev}}`) and of
    :math:`\hat\varepsilon` (``direction``), and ``std`` :math:`=\eta\sigma_t` (``None`` for
    :math:`\eta = 0`: no noise is added)."""

    sqrt_alpha_prod: float
    sqrt_beta_prod: float
    original: float
    direction: float
    std: float | None


def ddpm_step_coefficients(alphas_cumprod: np.ndarray, timestep: int, variance_type: str) -> DDPMStepCoefficients:
    r"""``DDPMScheduler.step``'s scalars for ``timestep -> timestep - 1`` (:math:`\bar\alpha_{-1} = 1`):

    .. math::  \tilde\mu = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,\hat x_0
               + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t, \qquad
               \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t

    with :math:`\alpha_t = \bar\alpha_t/\bar\alpha_{t-1}`, :math:`\beta_t = 1-\alpha_t`; the noise's
    standard deviation is :math:`\sqrt{\tilde\beta_t}` ("small") or :math:`\sqrt{\beta_t}` ("large"),
    the ``_log`` variants through :math:`\exp(\tfrac12\log\cdot)` as diffusers computes them."""
    alpha_prod_t = float(alphas_cumprod[timestep])
    alpha_prod_t_prev = float(alphas_cumprod[timestep - 1]) if timestep > 0 else 1.0
    beta_prod_t, beta_prod_t_prev = 1 - alpha_prod_t, 1 - alpha_prod_t_prev
    current_alpha_t = alpha_prod_t / alpha_prod_t_prev
    current_beta_t = 1 - current_alpha_t
    std = None
    if timestep > 0:
        variance = max(beta_prod_t_prev / beta_prod_t * current_beta_t, MIN_VARIANCE)
        std = {"fixed_small": lambda: variance ** 0.5,
               "fixed_small_log": lambda: math.exp(0.5 * math.log(variance)),
               "fixed_large": lambda: current_beta_t ** 0.5,
               "fixed_large_log": lambda: math.exp(0.5 * math.log(current_beta_t))}[variance_type]()
    return DDPMStepCoefficients(
        sqrt_alpha_prod=alpha_prod_t ** 0.5, sqrt_beta_prod=beta_prod_t ** 0.5,
        original=alpha_prod_t_prev ** 0.5 * current_beta_t / beta_prod_t,
        current=current_alpha_t ** 0.5 * beta_prod_t_prev / beta_prod_t, std=std)


def ddim_previous_timestep(timestep: int, num_train_timesteps: int, num_inference_steps: int) -> int:
    """``DDIMScheduler.step``'s previous timestep, ``t - T // n`` whatever the spacing (negative: the end)."""
    return timestep - num_train_timesteps // num_inference_steps


def ddim_step_coefficients(alphas_cumprod: np.ndarray, timestep: int, prev_timestep: int, eta: float,
                           set_alpha_to_one: bool) -> DDIMStepCoefficients:
    r"""``DDIMScheduler.step``'s scalars (Song et al. 2021, eq. 12 and 16):

    .. math::  \sigma_t^2 = \frac{1-\bar\alpha_{prev}}{1-\bar\alpha_t}\Big(1 - \frac{\bar\alpha_t}{\bar\alpha_{prev}}\Big),
               \qquad x_{prev} = \sqrt{\bar\alpha_{prev}}\,\hat x_0
               + \sqrt{1-\bar\alpha_{prev}-\eta^2\sigma_t^2}\;\hat\varepsilon + \eta\sigma_t\,z

    past the last step (``prev_timestep < 0``) :math:`\bar\alpha_{prev}` is 1 with ``set_alpha_to_one``,
    else :math:`\bar\alpha_0`."""
    alpha_prod_t = float(alphas_cumprod[timestep])
    final_alpha_cumprod = 1.0 if set_alpha_to_one else float(alphas_cumprod[0])
    alpha_prod_t_prev = float(alphas_cumprod[prev_timestep]) if prev_timestep >= 0 else final_alpha_cumprod
    beta_prod_t, beta_prod_t_prev = 1 - alpha_prod_t, 1 - alpha_prod_t_prev
    variance = beta_prod_t_prev / beta_prod_t * (1 - alpha_prod_t / alpha_prod_t_prev)
    std_dev_t = eta * variance ** 0.5
    # eta > 1 can make the radicand negative: NaN, as diffusers' torch arithmetic gives.
    radicand = 1 - alpha_prod_t_prev - std_dev_t ** 2
    return DDIMStepCoefficients(
        sqrt_alpha_prod=alpha_prod_t ** 0.5, sqrt_beta_prod=beta_prod_t ** 0.5, original=alpha_prod_t_prev ** 0.5,
        direction=radicand ** 0.5 if radicand >= 0 else math.nan, std=std_dev_t if eta > 0 else None)


def ddim_timesteps(num_train_timesteps: int, num_inference_steps: int, timestep_spacing: str = "leading",
                   steps_offset: int = 0) -> np.ndarray:
    r"""``(n,)`` int64 inference timesteps, descending, as ``DDIMScheduler.set_timesteps(n)``:
    ``"leading"`` :math:`k\lfloor T/n\rfloor` + ``steps_offset``; ``"trailing"``
    :math:`\operatorname{round}(T - kT/n) - 1`; ``"linspace"`` :math:`\operatorname{round}(k(T-1)/(n-1))`."""
    owner = "ddim_timesteps"
    steps = check_int(owner, "num_train_timesteps", num_train_timesteps, 1)
    count = check_int(owner, "num_inference_steps", num_inference_steps, 1)
    if count > steps:
        raise ValueError(f"{owner}: num_inference_steps must be <= num_train_timesteps = {steps}, got {count}")
    check_choice(owner, "timestep_spacing", timestep_spacing, TIMESTEP_SPACINGS)
    offset = check_int(owner, "steps_offset", steps_offset, 0)
    if timestep_spacing == "leading":
        return (np.arange(count) * (steps // count))[::-1].astype(np.int64) + offset  # (n,)
    if timestep_spacing == "trailing":
        return np.round(np.arange(steps, 0, -steps / count)).astype(np.int64) - 1  # (n,)
    return np.linspace(0, steps - 1, count).round()[::-1].astype(np.int64)  # (n,)


def noise_iterator(owner: str, noises, count: int):
    """The ``count`` noise tensors a sampling loop adds, one per noisy step, from any iterable (a list,
    or a generator drawing them lazily: 1000 batches of images need not be in memory at once). A
    sized iterable must hold exactly ``count``; one that runs out early is named when it does."""
    if noises is None:
        noises = ()
    if hasattr(noises, "__len__") and len(noises) != count:
        raise ValueError(f"{owner}: noises must hold {count} tensors (one per noisy step), got {len(noises)}")
    iterator = iter(noises)
    for index in range(count):
        try:
            yield next(iterator)
        except StopIteration:
            raise ValueError(f"{owner}: noises must hold {count} tensors (one per noisy step), got {index}") from None
