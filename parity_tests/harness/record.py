"""Every tolerance comparison the harness makes, told to whoever listens: the parity dashboard's data
(:mod:`.dashboard`) and the day notebooks' agreement tables (:mod:`ml100.notebooks`).

:func:`~parity_tests.harness.compare.compare_tensors` calls :func:`record` once per compared pair of
float tensors with the relative error it measured (the same number its tolerance is checked
against), pass or fail; ``compare_exact`` reports integer and bool tensors under the dtype
``"exact"`` with the share of elements that differ. Nothing listens by default, and then recording costs one empty loop.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """One compared tensor: its label (``grad of weight``), the pair (``numpy vs torch``), the dtype
    whose tolerance applied, and the largest |a - b| relative to the larger tensor's max magnitude —
    or, for integers and bools (dtype ``"exact"``), the share of elements that differ."""

    label: str
    pair: str
    dtype: str
    rel_err: float


_listeners: list[Callable[[Comparison], None]] = []


def record(label: str, pair: str, dtype: str, rel_err: float) -> None:
    """Tell every listener about one comparison."""
    for listener in _listeners:
        listener(Comparison(label, pair, dtype, rel_err))


@contextmanager
def listening(listener: Callable[[Comparison], None]) -> Iterator[None]:
    """Call ``listener`` with every :class:`Comparison` made inside the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
