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

and **nothing** for :math:`W, b`: the base is frozen. This tree never calls the base layer's
``backward`` (its forward runs inside ``no_grad()``, so it caches nothing) and its ``grads`` stay 0;
:func:`named_trainable_parameters` leaves every frozen module out, which is what an optimizer gets.
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

from ml100.checks import (check_input, check_lora_args, check_lora_base, check_lora_dropout_mask,
                          check_lora_merge_state, check_lora_targets)

from ..foundations.linear import Linear
from ..module import Module, ModuleList, no_grad
from .gpt import Conv1D
from .multihead import dropout_scale


class LoRAAdapter(Module):
    """One named adapter, peft's ``ModuleDict`` entry: holds ``layer`` as ``default`` (peft's adapter name)."""

    def __init__(self, layer: Linear):
        super().__init__(layer.dtype)
        self.default = layer


def transpose(weight: np.ndarray, fan_in_fan_out: bool) -> np.ndarray:
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
        self.lora_B.default.params["weight"][...] = 0.0
        self.merged = False
        self.zero_grad()

    def get_delta_weight(self) -> np.ndarray:
        """:math:`\\Delta W = s\\,BA` in the base weight's own layout (transposed for a Conv1D)."""
        delta = self.lora_B.default.params["weight"] @ self.lora_A.default.params["weight"]  # (out, in)
        return transpose(delta, self.fan_in_fan_out) * self.scaling  # base layout

    def merge(self) -> None:
        """Fold the update into the base weight: later forwards are one dense map."""
        check_lora_merge_state("LoRALinear.merge", self.merged, expected=False)
        self.base_layer.params["weight"] += self.get_delta_weight()
        self.merged = True

    def unmerge(self) -> None:
        """Take the update back out of the base weight (exact up to rounding)."""
        check_lora_merge_state("LoRALinear.unmerge", self.merged, expected=True)
        self.base_layer.params["weight"] -= self.get_delta_weight()
        self.merged = False

    def forward(self, x: np.ndarray, dropout_mask: np.ndarray | None = None) -> np.ndarray:
        check_input("LoRALinear", "x", x.shape, x.dtype, expected_dtype=self.dtype, last_dim=self.in_features)
        keep = self.keep_scale(x.shape, dropout_mask)
        # The frozen base caches nothing: its input gradient is computed here, its weights get none.
        with no_grad():
            result = self.base_layer(x)  # (..., out)
        self.save_for_backward(keep, self.merged)
        if self.merged:
            return result
        # The adapter path: dropout on the input, down to r, up to out, scaled.
        dropped = x if keep is None else x * keep  # (..., in)
        update = self.lora_B.default(self.lora_A.default(dropped))  # (..., out)
        return result + update * self.scaling  # (..., out)

    def keep_scale(self, shape: tuple, dropout_mask: np.ndarray | None) -> np.ndarray | None:
        """The inverted-dropout factor (0 or 1/(1-p)) per input element, or ``None`` when dropout is off."""
        active = self.training and self.lora_dropout > 0.0
        mask = check_lora_dropout_mask("LoRALinear", dropout_mask, shape, active)
        if not active:
            return None
        if mask is None:
            # Drawn from the layer's generator: trees built from equally seeded generators draw alike.
            mask = self.rng.random(shape) >= self.lora_dropout  # (..., in)
        return mask.astype(self.dtype) * dropout_scale(self.lora_dropout)  # (..., in)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        keep, merged = self.saved_for_backward()
        weight = self.base_layer.params["weight"]  # base layout
        # Through the frozen base: G W with W in Linear's (out, in) layout (a Conv1D's transposed back).
        grad_x = grad_out @ transpose(weight, self.fan_in_fan_out)  # (..., in)
        if merged:
            return grad_x
        grad_update = grad_out * self.scaling  # (..., out)
        grad_down = self.lora_B.default.backward(grad_update)  # (..., r)
        grad_dropped = self.lora_A.default.backward(grad_down)  # (..., in)
        return grad_x + (grad_dropped if keep is None else grad_dropped * keep)  # (..., in)


def freeze(module: Module) -> Module:
    """Mark ``module`` and its submodules frozen: :func:`named_trainable_parameters` leaves them out."""
    for _, child in module.named_modules():
        child.requires_grad = False
    return module


def named_trainable_parameters(model: Module):
    """``(name, parameter)`` of every module not frozen, as ``p.requires_grad`` selects in torch."""
    for prefix, module in model.named_modules():
        if getattr(module, "requires_grad", True):
            for name, value in module.params.items():
                yield (f"{prefix}.{name}" if prefix else name), value


def trainable_parameters(model: Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts, as peft's ``print_trainable_parameters``."""
    trainable = sum(value.size for _, value in named_trainable_parameters(model))
    total = sum(value.size for _, value in model.named_parameters())
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
    """Put ``module`` where ``parent``'s child ``name`` was (an index in a ``ModuleList``)."""
    if isinstance(parent, ModuleList):
        parent.items[int(name)] = module
        parent._modules[name] = module
    else:
        setattr(parent, name, module)

