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
