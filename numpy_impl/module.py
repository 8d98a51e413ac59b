"""The base class of the NumPy tree: parameters, gradients and the canonical state dict.

There is no autograd here. A ``Module`` keeps its parameters in ``self.params`` (canonical local
name -> array) and its ``backward`` **adds** the gradient of each into ``self.grads`` under the
same key, as autograd accumulates into torch's ``.grad``; ``zero_grad()`` clears them. Submodules
assigned as attributes are registered, so full names read like PyTorch's (``layers.0.weight``)
and one canonical state dict describes the whole model.

What backward needs is a **stack**: ``forward`` pushes it with ``save_for_backward`` and
``backward`` pops it with ``saved_for_backward`` (last in, first out). A module called twice —
an RNN cell over T steps, a tied embedding, a block reused — is backpropagated in the reverse
order of its calls and ends up with the sum of both uses' gradients, as in torch::

    y = lin(lin(x))                       # two pushes
    g_x = lin.backward(lin.backward(g))   # two pops; lin.grads holds both uses' sum

Inside ``with no_grad():`` (the counterpart of ``torch.no_grad()``) forwards push nothing, so
inference and long sampling loops keep no memory; ``eval()`` only switches layer behaviour
(batch norm, dropout), as in torch.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ml100.checks import check_array_type, resolve_dtype
from ml100.weights import check_state_dict


#: Whether forwards save what backward needs; ``no_grad`` switches it off for a block.
_grad_mode = {"enabled": True}


@contextmanager
def no_grad():
    """Forwards inside keep no cache (nothing to backpropagate), as in ``torch.no_grad()``."""
    previous = _grad_mode["enabled"]
    _grad_mode["enabled"] = False
    try:
        yield
    finally:
        _grad_mode["enabled"] = previous


class Module:
    """A layer or model: ``forward`` pushes its cache, ``backward`` pops it and returns the input gradient."""

    def __init__(self, dtype="float32"):
        # Registered before any attribute, since __setattr__ below writes into it.
        object.__setattr__(self, "_modules", {})
        self.dtype = resolve_dtype(dtype)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True
        self._saved: list[tuple] = []

    def __setattr__(self, name, value):
        if isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        if args:
            check_array_type(type(self).__name__, "numpy", args[0], np.ndarray)
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def save_for_backward(self, *values) -> None:
        """Push what this call's ``backward`` will need (nothing inside ``no_grad``)."""
        if _grad_mode["enabled"]:
            self._saved.append(values)

    def saved_for_backward(self):
        """Pop what the latest not yet backpropagated call saved: one value, or a tuple of several."""
        if not self._saved:
            raise RuntimeError(
                f"{type(self).__name__}.backward: nothing cached to backpropagate; call forward (outside "
                "no_grad()) once before each backward, and backward at most once per forward call")
        values = self._saved.pop()
        return values[0] if len(values) == 1 else values

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix.rstrip("."), self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}{name}.")

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        for prefix, module in self.named_modules():
            for name, value in module.params.items():
                yield _join(prefix, name), value

    def named_grads(self) -> Iterator[tuple[str, np.ndarray]]:
        for prefix, module in self.named_modules():
            for name in module.params:
                yield _join(prefix, name), module.grads[name]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for prefix, module in self.named_modules():
            for name, value in module.buffers.items():
                yield _join(prefix, name), value

    def canonical_state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, by canonical name."""
        return {name: value.copy() for name, value in (*self.named_parameters(), *self.named_buffers())}

    def load_canonical_state_dict(self, state) -> None:
        """Strictly load a canonical state: every key, shape and dtype must match."""
        targets = dict((*self.named_parameters(), *self.named_buffers()))
        expected = {name: (value.shape, value.dtype.name) for name, value in targets.items()}
        check_state_dict(type(self).__name__, expected, state)
        for name, target in targets.items():
            # In place, so that an optimizer holding these arrays sees the new values.
            target[...] = state[name]

    def canonical_grads(self) -> dict[str, np.ndarray]:
        """The gradients accumulated since the last ``zero_grad``, under the parameters' canonical names."""
        return {name: grad.copy() for name, grad in self.named_grads()}

    def zero_grad(self) -> None:
        """Clear every gradient (to zeros, ready for ``+=``), as ``optimizer.zero_grad()`` does in torch."""
        for _, module in self.named_modules():
            module.grads = {name: np.zeros_like(value) for name, value in module.params.items()}

    def train(self, mode: bool = True) -> "Module":
        for _, module in self.named_modules():
            module.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)


class ModuleList(Module):
    """A list of submodules named ``0``, ``1``, … as in ``torch.nn.ModuleList``."""

    def __init__(self, modules):
        super().__init__()
        self.items = list(modules)
        for index, module in enumerate(self.items):
            self._modules[str(index)] = module

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class Sequential(ModuleList):
    """Submodules applied in order, named ``0``, ``1``, … as in ``torch.nn.Sequential``."""

    def forward(self, x):
        for module in self.items:
            x = module(x)
        return x

    def backward(self, grad_out):
        # The chain rule in reverse order: each module hands its input gradient to the one before.
        for module in reversed(self.items):
            grad_out = module.backward(grad_out)
        return grad_out
