r"""Days 64–65: LoRA — low-rank adapters on a frozen dense layer, ``peft``'s ``LoraLayer``.

A frozen base map :math:`y_0 = x W^\top + b` (day 6's ``Linear``, :math:`W` ``(out, in)``; or the GPT's
``Conv1D``, which stores :math:`W^\top` ``(in, out)`` — peft's ``fan_in_fan_out``) gets a trainable
low-rank update of rank :math:`r`:

.. math::  y = x W^\top + b + s\, (m \odot x)\, A^\top B^\top, \qquad
           A \in \mathbb{R}^{r\times\text{in}},\; B \in \mathbb{R}^{\text{out}\times r},\;
           s = \alpha / r \ (\text{rsLoRA: } \alpha/\sqrt r),

with :math:`m` the inverted-dropout keep mask of ``lora_dropout`` (0 or :math:`1/(1-p)`; 1 when off).
:math:`A` starts Kaiming-uniform (:math:`a=\sqrt5`, as ``nn.Linear``) and :math:`B` at zero, so the
wrapped layer starts equal to the base. Backward, with :math:`G = \partial L/\partial y`:

.. math::  \frac{\partial L}{\partial B} = s\, G^\top (u A^\top), \qquad
           \frac{\partial L}{\partial A} = s\, (G B)^\top u, \qquad
           \frac{\partial L}{\partial x} = G W + m \odot (s\, G B A), \qquad u = m \odot x,

and **nothing** for :math:`W, b`: the base is frozen. Autograd derives the rest; this tree freezes
with torch's own flag, ``requires_grad = False`` on every base parameter, so their ``.grad`` stays
``None`` and :func:`named_trainable_parameters` (what an optimizer gets) leaves them out.
``merge()`` folds :math:`\Delta W = s\,BA` into the base weight (then the adapter path is skipped) and
``unmerge()`` subtracts the same :math:`\Delta W`; in floating point :math:`(W + \Delta W) - \Delta W`
returns :math:`W` to within half an ulp of the sum plus half an ulp of the result, per element.

Canonical names are peft's: ``base_layer.weight``, ``base_layer.bias``, ``lora_A.default.weight``
``(r, in)``, ``lora_B.default.weight`` ``(out, r)`` (``default`` is peft's adapter name).
:func:`apply_lora` replaces the dense layers whose names end with a ``target_modules`` entry (peft's
suffix rule) and freezes everything else; :func:`trainable_parameters` counts as peft's
``print_trainable_parameters``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ml100.checks import (check_input, check_lora_args, check_lora_base, check_lora_dropout_mask,
                          check_lora_merge_state, check_lora_targets)

from ..foundations.linear import Linear
from ..module import Module, torch_dtype
from .gpt import Conv1D
from .multihead import dropout_scale


class LoRAAdapter(Module):
    """One named adapter, peft's ``ModuleDict`` entry: holds ``layer`` as ``default`` (peft's adapter name)."""

    def __init__(self, layer: Linear):
        super().__init__(layer.dtype)
        self.default = layer


def transpose(weight: torch.Tensor, fan_in_fan_out: bool) -> torch.Tensor:
    """peft's helper: a Conv1D weight ``(in, out)`` is the transpose of a Linear's ``(out, in)``."""
    return weight.T if fan_in_fan_out else weight


class LoRALinear(Module):
    """``base_layer(x) + scaling * lora_B(lora_A(dropout(x)))`` around a frozen ``Linear`` or ``Conv1D``;
    ``forward(x, dropout_mask=None)``: a bool keep mask shaped like ``x`` (True = keep), or ``None`` to
    draw one from ``rng`` when dropout is on (training and ``lora_dropout > 0``)."""

    def __init__(self, base_layer, r: int = 8, lora_alpha: float = 8, lora_dropout: float = 0.0,
                 use_rslora: bool = False, rng: np.random.Generator | None = None):
        check_lora_base("LoRALinear", base_layer, (Linear, Conv1D))
        super().__init__(base_layer.dtype)
        self.r, self.lora_alpha, self.lora_dropout, self.use_rslora, self.rng = check_lora_args(
            "LoRALinear", r, lora_alpha, lora_dropout, use_rslora, rng)
        # rsLoRA keeps the update's scale steady as r grows; plain LoRA divides by r.
        self.scaling = self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)
        self.fan_in_fan_out = isinstance(base_layer, Conv1D)
        self.in_features, self.out_features = ((base_layer.nx, base_layer.nf) if self.fan_in_fan_out
                                               else (base_layer.in_features, base_layer.out_features))
        self.base_layer = freeze(base_layer)
        # A: Kaiming-uniform a=sqrt(5) (Linear's own default, as peft's); B: zeros, so the update starts at 0.
        self.lora_A = LoRAAdapter(Linear(self.in_features, self.r, bias=False, dtype=self.dtype, rng=self.rng))
        self.lora_B = LoRAAdapter(Linear(self.r, self.out_features, bias=False, dtype=self.dtype, rng=self.rng))
        with torch.no_grad():
            self.lora_B.default.weight.zero_()
        self.merged = False

    def get_delta_weight(self) -> torch.Tensor:
        """:math:`\\Delta W = s\\,BA` in the base weight's own layout (transposed for a Conv1D)."""
        delta = self.lora_B.default.weight @ self.lora_A.default.weight  # (out, in)
        return transpose(delta, self.fan_in_fan_out) * self.scaling  # base layout

    def merge(self) -> None:
        """Fold the update into the base weight: later forwards are one dense map."""
        check_lora_merge_state("LoRALinear.merge", self.merged, expected=False)
        # An in-place edit of the weight's values, not a step autograd should record.
        with torch.no_grad():
            self.base_layer.weight += self.get_delta_weight()
        self.merged = True

    def unmerge(self) -> None:
        """Take the update back out of the base weight (exact up to rounding)."""
        check_lora_merge_state("LoRALinear.unmerge", self.merged, expected=True)
        with torch.no_grad():
            self.base_layer.weight -= self.get_delta_weight()
        self.merged = False

    def forward(self, x: torch.Tensor, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
        check_input("LoRALinear", "x", x.shape, x.dtype, expected_dtype=self.dtype, last_dim=self.in_features)
        keep = self.keep_scale(x.shape, dropout_mask)
        # The base's parameters do not require grad: autograd takes x's gradient through them, and no more.
        result = self.base_layer(x)  # (..., out)
        if self.merged:
            return result
        # The adapter path: dropout on the input, down to r, up to out, scaled.
        dropped = x if keep is None else x * keep  # (..., in)
        update = self.lora_B.default(self.lora_A.default(dropped))  # (..., out)
        return result + update * self.scaling  # (..., out)

    def keep_scale(self, shape: tuple, dropout_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The inverted-dropout factor (0 or 1/(1-p)) per input element, or ``None`` when dropout is off."""
        active = self.training and self.lora_dropout > 0.0
        mask = check_lora_dropout_mask("LoRALinear", dropout_mask, shape, active)
        if not active:
            return None
        if mask is None:
            # Drawn from the layer's generator: trees built from equally seeded generators draw alike.
            mask = torch.from_numpy(self.rng.random(tuple(shape)) >= self.lora_dropout)  # (..., in)
        return mask.to(torch_dtype(self.dtype)) * dropout_scale(self.lora_dropout)  # (..., in)


def freeze(module: Module) -> Module:
    """Freeze every parameter of ``module`` (torch's ``requires_grad_(False)``): autograd gives them no gradient."""
    return module.requires_grad_(False)


def named_trainable_parameters(model: Module):
    """``(name, parameter)`` of every parameter that requires grad."""
    for name, value in model.named_parameters():
        if value.requires_grad:
            yield name, value


def trainable_parameters(model: Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts, as peft's ``print_trainable_parameters``."""
    trainable = sum(value.numel() for _, value in named_trainable_parameters(model))
    total = sum(value.numel() for _, value in model.named_parameters())
    return int(trainable), int(total)


def apply_lora(model: Module, target_modules, r: int = 8, lora_alpha: float = 8, lora_dropout: float = 0.0,
               rng: np.random.Generator | None = None) -> Module:
    """peft's ``get_peft_model`` in place: wrap every ``Linear``/``Conv1D`` whose name is, or ends with
    ``.`` + , an entry of ``target_modules`` in a :class:`LoRALinear`; freeze everything else."""
    modules = dict(model.named_modules())
    targets = check_lora_targets("apply_lora", target_modules, modules, (Linear, Conv1D), LoRALinear)
    freeze(model)
    for name in targets:
        parent_name, _, child_name = name.rpartition(".")
        wrapped = LoRALinear(modules[name], r, lora_alpha, lora_dropout, rng=rng)
        set_submodule(modules[parent_name], child_name, wrapped)
    return model


def set_submodule(parent: Module, name: str, module: Module) -> None:
    """Put ``module`` where ``parent``'s child ``name`` was (torch registers an index of a ``ModuleList`` alike)."""
    setattr(parent, name, module)

