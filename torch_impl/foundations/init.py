r"""Day 6: weight initializers — Xavier/Glorot, He/Kaiming, LeCun.

A layer's output variance is the sum of ``fan_in`` products of weight and input, so
:math:`\mathrm{Var}(y) = n_\text{in}\,\mathrm{Var}(w)\,\mathrm{Var}(x)`. Keeping activations (and,
backwards, gradients) at unit scale through depth fixes the weight variance:

* LeCun (1998): :math:`\mathrm{Var}(w) = 1/n_\text{in}` (linear or SELU-like units);
* Xavier/Glorot & Bengio (2010): :math:`\mathrm{Var}(w) = 2/(n_\text{in}+n_\text{out})`, a compromise
  between the forward (``fan_in``) and backward (``fan_out``) conditions;
* He/Kaiming et al. (2015): :math:`\mathrm{Var}(w) = \text{gain}^2/n_\text{in}`, with
  :math:`\text{gain}^2 = 2/(1+a^2)` for (leaky) ReLU, which zeroes half its inputs.

A uniform :math:`U(-b, b)` has variance :math:`b^2/3`, so the uniform versions use
:math:`b = \sqrt{3\,\mathrm{Var}(w)}`.

Shapes are canonical ``(out, in, *kernel)`` in every tree, and the random numbers come from a
NumPy ``Generator`` passed in: one seed gives the same weights in NumPy, PyTorch and TF.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..module import torch_dtype


def compute_fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a canonical weight shape ``(out, in, *kernel)``."""
    if len(shape) < 2:
        raise ValueError(f"fans need a weight of at least 2 dimensions (out, in, ...), got shape {tuple(shape)}")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor that restores unit variance after ``nonlinearity`` (as ``torch.nn.init.calculate_gain``)."""
    if nonlinearity in ("linear", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1.0 + slope**2))
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}; expected linear, sigmoid, tanh, relu or leaky_relu")


def _fan(shape, mode: str) -> int:
    fan_in, fan_out = compute_fans(shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def uniform(shape, rng: np.random.Generator, bound: float, dtype="float32") -> torch.Tensor:
    """``U(-bound, bound)``: the draw comes from ``rng`` so every tree sees the same numbers."""
    return torch.from_numpy(rng.uniform(-1.0, 1.0, size=tuple(shape)) * bound).to(torch_dtype(dtype))


def normal(shape, rng: np.random.Generator, std: float, dtype="float32") -> torch.Tensor:
    """``N(0, std^2)``: the draw comes from ``rng`` so every tree sees the same numbers."""
    return torch.from_numpy(rng.standard_normal(size=tuple(shape)) * std).to(torch_dtype(dtype))


def xavier_uniform(shape, rng: np.random.Generator, gain: float = 1.0, dtype="float32") -> torch.Tensor:
    fan_in, fan_out = compute_fans(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return uniform(shape, rng, math.sqrt(3.0) * std, dtype)


def xavier_normal(shape, rng: np.random.Generator, gain: float = 1.0, dtype="float32") -> torch.Tensor:
    fan_in, fan_out = compute_fans(shape)
    return normal(shape, rng, gain * math.sqrt(2.0 / (fan_in + fan_out)), dtype)


def kaiming_uniform(shape, rng: np.random.Generator, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", dtype="float32") -> torch.Tensor:
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(shape, mode))
    return uniform(shape, rng, math.sqrt(3.0) * std, dtype)


def kaiming_normal(shape, rng: np.random.Generator, a: float = 0.0, mode: str = "fan_in",
                   nonlinearity: str = "leaky_relu", dtype="float32") -> torch.Tensor:
    return normal(shape, rng, calculate_gain(nonlinearity, a) / math.sqrt(_fan(shape, mode)), dtype)


def lecun_uniform(shape, rng: np.random.Generator, dtype="float32") -> torch.Tensor:
    fan_in, _ = compute_fans(shape)
    return uniform(shape, rng, math.sqrt(3.0 / fan_in), dtype)


def lecun_normal(shape, rng: np.random.Generator, dtype="float32") -> torch.Tensor:
    fan_in, _ = compute_fans(shape)
    return normal(shape, rng, math.sqrt(1.0 / fan_in), dtype)
