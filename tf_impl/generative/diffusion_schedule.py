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

The tape derives exactly these two scalings. The timesteps are integers: no gradient. There are
no parameters (the schedule is fixed, plain tensor attributes). ``x0`` may have any layout
(``(N, H, W, C)`` in this tree): the scaling is per sample, the same for every element.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.checks import check_ids, check_noising_inputs, check_rng
from ml100.schedules import alphas_cumprod, make_betas

from ..module import Module, tf_dtype


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
        self.betas = tf.constant(betas, dtype=tf_dtype(dtype))  # (T,)
        self.alphas = tf.constant(1 - betas, dtype=tf_dtype(dtype))  # (T,)
        self.alphas_cumprod = tf.constant(alphas_cumprod(betas), dtype=tf_dtype(dtype))  # (T,)

    def forward(self, x0: tf.Tensor, noise: tf.Tensor, timesteps: tf.Tensor) -> tf.Tensor:
        scale_x0, scale_noise = self.scales(x0, noise, timesteps)  # (N, 1, ..., 1) each
        return scale_x0 * x0 + scale_noise * noise  # (N, *)

    def add_noise(self, x0: tf.Tensor, noise: tf.Tensor, timesteps: tf.Tensor) -> tf.Tensor:
        """diffusers' name for the forward: one draw of :math:`q(x_t \\mid x_0)` with the given noise."""
        return self(x0, noise, timesteps)

    def scales(self, x0: tf.Tensor, noise: tf.Tensor, timesteps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        r"""The inputs checked, then :math:`\sqrt{\bar\alpha_{t_n}}` and :math:`\sqrt{1-\bar\alpha_{t_n}}`
        shaped ``(N, 1, ..., 1)`` to broadcast over each sample."""
        check_noising_inputs("DDPMSchedule", self.dtype, x0, noise, timesteps)
        # The values are known in eager calls only; traced, CPU tf.gather still refuses a bad index.
        if tf.executing_eagerly():
            check_ids("DDPMSchedule", "timesteps", timesteps, self.num_train_timesteps)
        alpha_bar = tf.reshape(tf.gather(self.alphas_cumprod, timesteps), (-1,) + (1,) * (x0.shape.rank - 1))  # (N, 1, ..., 1)
        return tf.sqrt(alpha_bar), tf.sqrt(1 - alpha_bar)
