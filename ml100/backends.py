"""Backend selection: ``"numpy"``, ``"torch"`` or ``"tf"`` -> the mirrored tree's package.

The trees share sub-module names, so ``get_backend(name).foundations.mlp.MLP`` is the same
model in every framework. Frameworks are imported lazily: asking for NumPy never loads TF.
"""
from __future__ import annotations

import importlib
from types import ModuleType

#: Backend name -> the package that implements it.
BACKENDS = {"numpy": "numpy_impl", "torch": "torch_impl", "tf": "tf_impl"}


def check_backend(name: str) -> str:
    """Return ``name`` if it is a backend, else raise a ``ValueError`` listing the valid ones."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")
    return name


def get_backend(name: str) -> ModuleType:
    """Import and return the tree package for backend ``name``."""
    return importlib.import_module(BACKENDS[check_backend(name)])


def get_module(name: str, path: str) -> ModuleType:
    """Import ``path`` (e.g. ``"foundations.mlp"``) from backend ``name``'s tree."""
    return importlib.import_module(f"{BACKENDS[check_backend(name)]}.{path}")
