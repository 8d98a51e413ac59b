"""The base class of the TensorFlow tree: variables in native layouts, canonical at the edge.

A ``Module`` registers each ``tf.Variable`` under its canonical name together with a
:class:`Layout` saying how the native array maps to the canonical (PyTorch) one — a dense
kernel is stored ``(in, out)`` as Keras does and exported transposed to ``(out, in)``. The same
layouts convert ``tf.GradientTape`` gradients, so gradients come back canonical too.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ml100.checks import check_array_type, resolve_dtype
from ml100.weights import check_state_dict

#: Canonical dtype name -> TF dtype.
TF_DTYPES = {"float32": tf.float32, "float64": tf.float64}


def tf_dtype(dtype) -> tf.DType:
    return TF_DTYPES[resolve_dtype(dtype)]


@dataclass(frozen=True)
class Layout:
    """How a native array relates to its canonical form (both directions)."""

    to_native: Callable[[np.ndarray], np.ndarray]
    to_canonical: Callable[[np.ndarray], np.ndarray]


#: Stored as the canonical array is.
SAME = Layout(lambda a: a, lambda a: a)
#: Dense kernels: canonical ``(out, in)``, native ``(in, out)``.
TRANSPOSED = Layout(lambda a: a.T, lambda a: a.T)
#: Conv kernels: canonical OIHW ``(out, in, kh, kw)``, native HWIO ``(kh, kw, in, out)``.
HWIO = Layout(lambda a: np.transpose(a, (2, 3, 1, 0)), lambda a: np.transpose(a, (3, 2, 0, 1)))


def no_grad():
    """Inference without recording gradients. TF records only inside a ``tf.GradientTape``, so
    outside one there is nothing to switch off: the counterpart of the other trees' ``no_grad``."""
    return nullcontext()


class Module(tf.Module):
    """A layer or model: ``forward`` only; ``tf.GradientTape`` supplies the backward."""

    def __init__(self, dtype="float32"):
        super().__init__()
        self.dtype = resolve_dtype(dtype)
        # Insertion-ordered registries; children are found by attribute, like torch.
        self.params: dict[str, tf.Variable] = {}
        self.layouts: dict[str, Layout] = {}
        self.buffers: dict[str, tf.Variable] = {}
        self.training = True

    def __call__(self, *args, **kwargs):
        if args:
            check_array_type(type(self).__name__, "tf", args[0], (tf.Tensor, tf.Variable))
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def add_param(self, name: str, native_value, layout: Layout = SAME) -> tf.Variable:
        """Create a trainable variable from a native-layout array, registered under ``name``."""
        variable = tf.Variable(tf.constant(native_value, dtype=tf_dtype(self.dtype)), name=name)
        self.params[name] = variable
        self.layouts[name] = layout
        return variable

    def children(self) -> Iterator[tuple[str, "Module"]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix.rstrip("."), self
        for name, child in self.children():
            yield from child.named_modules(f"{prefix}{name}.")

    def named_parameters(self) -> Iterator[tuple[str, tf.Variable]]:
        for prefix, module in self.named_modules():
            for name, value in module.params.items():
                yield _join(prefix, name), value

    def named_buffers(self) -> Iterator[tuple[str, tf.Variable]]:
        for prefix, module in self.named_modules():
            for name, value in module.buffers.items():
                yield _join(prefix, name), value

    def named_layouts(self) -> Iterator[tuple[str, Layout]]:
        for prefix, module in self.named_modules():
            for name in module.params:
                yield _join(prefix, name), module.layouts[name]
            for name in module.buffers:
                yield _join(prefix, name), module.layouts.get(name, SAME)

    def to_canonical(self, tensors: dict) -> dict[str, np.ndarray]:
        """Convert native tensors keyed by full name (weights or their gradients) to canonical arrays."""
        layouts = dict(self.named_layouts())
        return {name: layouts[name].to_canonical(np.asarray(value)) for name, value in tensors.items()}

    def canonical_state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer in canonical layout, by canonical name."""
        native = {name: var.numpy() for name, var in (*self.named_parameters(), *self.named_buffers())}
        return {name: value.copy() for name, value in self.to_canonical(native).items()}

    def load_canonical_state_dict(self, state) -> None:
        """Strictly load a canonical state: every key, shape and dtype must match."""
        targets = dict((*self.named_parameters(), *self.named_buffers()))
        layouts = dict(self.named_layouts())
        expected = {
            name: (layouts[name].to_canonical(np.empty(var.shape, np.int8)).shape, var.dtype.name)
            for name, var in targets.items()
        }
        check_state_dict(type(self).__name__, expected, state)
        for name, var in targets.items():
            var.assign(layouts[name].to_native(np.asarray(state[name])))

    def canonical_grads(self, grads: dict) -> dict[str, np.ndarray]:
        """Tape gradients keyed by full parameter name -> canonical arrays (zeros where None; a gather's
        ``IndexedSlices`` made dense, repeated rows summed)."""
        params = dict(self.named_parameters())
        filled = {name: np.zeros(params[name].shape, params[name].dtype.as_numpy_dtype) if g is None else tf.convert_to_tensor(g)
                  for name, g in grads.items()}
        return self.to_canonical(filled)

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

    def children(self):
        for index, module in enumerate(self.items):
            yield str(index), module

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
