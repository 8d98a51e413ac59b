"""Trajectories: N steps of a stateful process (optimizer updates, GAN alternation, diffusion
sampling, KV-cache decoding), every named array compared across trees and references after every
step.

A :class:`Trajectory` gives ``start(tree, dtype)`` — the tree's initial state (model, optimizer,
data, all in that tree's own classes) — and ``step(state, t)``, which advances a state by step
``t = 1, 2, …`` and returns the arrays to compare, by name (``{"weight": …, "bias": …}``).
``references`` maps a name to its own ``(start(dtype), step(state, t))``. :func:`check_trajectory`
runs them in lockstep and stops at the first step where any pair differs: the failure names that
step, the tensor and the pair.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml100.backends import get_module

from .case import TREES
from .compare import assert_no_failures, compare_tensors


@dataclass
class Trajectory:
    """``steps`` steps of ``step(start(tree, dtype), t)`` in every tree, and of each reference's own pair."""

    steps: int
    start: Callable[[str, str], Any]
    step: Callable[[Any, int], dict[str, np.ndarray]]
    references: dict[str, tuple[Callable[[str], Any], Callable[[Any, int], dict[str, np.ndarray]]]] = field(default_factory=dict)


def check_trajectory(trajectory: Trajectory, dtype: str, what: str) -> dict[str, list[dict[str, np.ndarray]]]:
    """Run every tree and reference step by step, comparing every named array after each step
    (integer arrays exactly); returns each one's history (a copy of the arrays after every step)."""
    processes = {tree: (trajectory.start(tree, dtype), trajectory.step) for tree in TREES}
    processes.update({name: (start(dtype), step) for name, (start, step) in trajectory.references.items()})
    histories: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in processes}
    for t in range(1, trajectory.steps + 1):
        for name, (state, step) in processes.items():
            histories[name].append({key: np.array(value, copy=True) for key, value in step(state, t).items()})
        failures: list[str] = []
        for (a, ha), (b, hb) in itertools.combinations(histories.items(), 2):
            sa, sb = ha[-1], hb[-1]
            if set(sa) != set(sb):
                failures.append(f"step {t} [{a} vs {b}]: names differ {sorted(set(sa) ^ set(sb))}")
            for key in sorted(set(sa) & set(sb)):
                compare_tensors(f"{key} after step {t}", f"{a} vs {b}", sa[key], sb[key], dtype, failures)
        assert_no_failures(failures, f"{what}: first divergence at step {t} of {trajectory.steps} ({dtype})")
    return histories


def gradient_descent_curves(module: str, build: Callable, make_loss: Callable, x: np.ndarray, y: np.ndarray,
                            steps: int, lr: float) -> dict[str, list[float]]:
    """Full-batch gradient descent in every tree through its own ``Trainer`` and ``SGD`` (days 9-11):
    the loss at each step. ``build(tree_module)`` and ``make_loss(tree_module)`` come from the topic."""
    curves = {}
    for tree in TREES:
        topic = get_module(tree, module)
        model = build(topic)
        optimizer = get_module(tree, "foundations.optim").SGD(dict(model.named_parameters()), lr=lr)
        trainer = get_module(tree, "foundations.trainer").Trainer(model, make_loss(topic), optimizer)
        curves[tree] = [trainer.train_step(x, y) for _ in range(steps)]
    return curves
