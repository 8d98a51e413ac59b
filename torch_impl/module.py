"""The base class of the PyTorch tree: ``torch.nn.Module`` plus the canonical state dict.

In this tree the module's own ``state_dict`` names already are canonical, so
``nn.Module.state_dict`` stays as torch users know it; ``canonical_state_dict`` only converts
tensors to NumPy arrays at the edge, and ``load_canonical_state_dict`` adds the strict dtype
check that ``load_state_dict`` lacks (it silently casts).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ml100.checks import check_array_type, dtype_name, resolve_dtype
from ml100.weights import check_state_dict

#: Canonical dtype name -> torch dtype.
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(dtype) -> torch.dtype:
    return TORCH_DTYPES[resolve_dtype(dtype)]


def no_grad():
    """Inference without recording a graph: torch's own ``torch.no_grad()``."""
    return torch.no_grad()


class Module(nn.Module):
    """A layer or model: ``forward`` only; autograd supplies the backward."""

    def __init__(self, dtype="float32"):
        super().__init__()
        self.dtype = resolve_dtype(dtype)

    def __call__(self, *args, **kwargs):
        if args:
            check_array_type(type(self).__name__, "torch", args[0], torch.Tensor)
        return super().__call__(*args, **kwargs)

    def canonical_state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer as NumPy arrays, by canonical name."""
        return {name: value.detach().cpu().numpy().copy() for name, value in self.state_dict().items()}

    def load_canonical_state_dict(self, state) -> None:
        """Strictly load a canonical state: every key, shape and dtype must match."""
        expected = {name: (tuple(value.shape), dtype_name(value.dtype)) for name, value in self.state_dict().items()}
        check_state_dict(type(self).__name__, expected, state)
        self.load_state_dict({name: torch.from_numpy(np.array(state[name])) for name in expected}, strict=True)

    def canonical_grads(self) -> dict[str, np.ndarray]:
        """The gradients autograd accumulated, under the parameters' canonical names."""
        return {
            name: (torch.zeros_like(param) if param.grad is None else param.grad).detach().cpu().numpy().copy()
            for name, param in self.named_parameters()
        }


class ModuleList(nn.ModuleList):
    """A list of submodules named ``0``, ``1``, …: torch's own container, with the trees' signature."""

    def __init__(self, modules):
        super().__init__(modules)


class Sequential(nn.Sequential):
    """Submodules applied in order, named ``0``, ``1``, …: torch's own container, with the trees' signature."""

    def __init__(self, modules):
        super().__init__(*modules)
