r"""Day 37: a DDPM noise schedule and the forward process :math:`q(x_t \mid x_0)`, in closed form.

The schedule (:mod:`ml100.schedules`, float64, converted here to the module's dtype) gives
:math:`\beta_t`, :math:`\alpha_t = 1 - \beta_t` and :math:`\bar\alpha_t = \prod_{s\le t}\alpha_s`.
Noising a clean batch :math:`x_0` ``(N, *)`` to integer timesteps :math:`t_n` ``(N,)`` with noise
:math:`\varepsilon \sim \mathcal N(0, I)` **passed in** (randomness is an input) is one sample of
:math:`q(x_t \mid x_0)`, as diffusers' ``DDPMScheduler.add_noise``:

.. math::  x_{t_n} = \sqrt{\bar\alpha_{t_n}}\, x_{0,n} + \sqrt{1 - \bar\alpha_{t_n}}\, \varepsilon_n

Backward, with :math:`G = \partial L/\partial x_t`: two scalings per sample, the same ones,

.. math::  \frac{\partial L}{\partial x_{0,n}} = \sqrt{\bar\alpha_{t_n}}\, G_n, \qquad
           \frac{\partial L}{\partial \varepsilon_n} = \sqrt{1 - \bar\alpha_{t_n}}\, G_n

The timesteps are integers: no gradient. There are no parameters (the schedule is fixed).
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_ids, check_noising_inputs, check_rng
from ml100.schedules import alphas_cumprod, make_betas

from ..module import Module


class DDPMSchedule(Module):
    """``(x0 (N, *), noise (N, *), timesteps (N,) int64) -> x_t (N, *)``; no parameters. Arguments
    and defaults are ``diffusers.DDPMScheduler``'s; ``betas``, ``alphas``, ``alphas_cumprod`` ``(T,)``."""

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                 beta_schedule: str = "linear", dtype="float32", rng: np.random.Generator | None = None):
        super().__init__(dtype)
        # Nothing is random (no parameters); the rng is checked for the common constructor contract.
        check_rng("DDPMSchedule", rng)
        betas = make_betas("DDPMSchedule", num_train_timesteps, beta_start, beta_end, beta_schedule)  # (T,) float64
        self.num_train_timesteps = int(num_train_timesteps)
        self.beta_schedule = beta_schedule
        # Computed in float64, then rounded once to the module's dtype.
        self.betas = betas.astype(self.dtype)  # (T,)
        self.alphas = (1 - betas).astype(self.dtype)  # (T,)
        self.alphas_cumprod = alphas_cumprod(betas).astype(self.dtype)  # (T,)

    def forward(self, x0: np.ndarray, noise: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
        scale_x0, scale_noise = self.scales(x0, noise, timesteps)  # (N, 1, ..., 1) each
        self.save_for_backward(scale_x0, scale_noise)
        return scale_x0 * x0 + scale_noise * noise  # (N, *)

    def add_noise(self, x0: np.ndarray, noise: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
        """diffusers' name for the forward: one draw of :math:`q(x_t \\mid x_0)` with the given noise."""
        return self(x0, noise, timesteps)

    def scales(self, x0: np.ndarray, noise: np.ndarray, timesteps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""The inputs checked, then :math:`\sqrt{\bar\alpha_{t_n}}` and :math:`\sqrt{1-\bar\alpha_{t_n}}`
        shaped ``(N, 1, ..., 1)`` to broadcast over each sample."""
        check_noising_inputs("DDPMSchedule", self.dtype, x0, noise, timesteps)
        check_ids("DDPMSchedule", "timesteps", timesteps, self.num_train_timesteps)
        alpha_bar = self.alphas_cumprod[timesteps].reshape((x0.shape[0],) + (1,) * (x0.ndim - 1))  # (N, 1, ..., 1)
        return np.sqrt(alpha_bar), np.sqrt(1 - alpha_bar)

    def backward(self, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale_x0, scale_noise = self.saved_for_backward()  # (N, 1, ..., 1) each
        return scale_x0 * grad_out, scale_noise * grad_out  # (N, *) each
