"""The case: what a topic gives the harness (``Case``), and the steps every check shares —
build the model in each tree, share one set of weights through a safetensors file, run every tree
and reference on the same inputs and cotangents."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml100.backends import BACKENDS, get_module
from ml100.weights import load_weights, save_weights

from .compare import is_float
from .runners import Result, flatten, run_tree

TREES = tuple(BACKENDS)


@dataclass
class Case:
    """One parity scenario for a topic.

    ``build(tree_module, dtype, rng)`` constructs the model (or, forward-only, any callable) from
    the topic's module in any tree; ``inputs(dtype, rng)`` returns named NumPy inputs, in the
    order the model takes them — float inputs in ``dtype``, integer ones (token ids, lengths) as
    int64, never perturbed; ``differentiable`` names the inputs whose gradients are compared (the
    NumPy ``backward`` returns them in this order, and takes one cotangent per float output).
    ``output_names`` names the outputs once flattened depth-first (``("output", "h_n", "c_n")``
    for ``output, (h_n, c_n)``); failures then name them. ``forward_only`` cases have no backward.

    ``references`` maps a name (``"torch.nn"``, ``"keras"``) to
    ``run(state, inputs, cotangents, dtype) -> Result``: outside implementations fed the same
    weights, compared like a fourth tree. ``weights(name, shape, dtype, rng)`` may override the
    random draw of a tensor (return ``None`` to keep it).

    ``tf_layouts`` maps an input name to the axis permutation that takes it from the canonical
    (PyTorch) layout to the TF tree's native one — NCHW -> NHWC is ``(0, 2, 3, 1)``;
    ``tf_output_layouts`` maps an output (its index, or its name) to its permutation likewise. The
    harness feeds the TF tree permuted inputs and permutes the outputs back (see
    :func:`tf_layout_call`), so every tree is compared in the canonical layout.

    The special-values pass and the empty batch (:mod:`.special`) run on every differentiable
    case in float64; these fields, each a written reason, are its only exceptions:
    ``special_opt_out`` skips the whole pass; ``special_finite_inputs`` keeps named inputs finite
    (``{"target": "a class probability, finite by contract"}``); ``special_excluded_references``
    leaves references out of both passes (``{"keras.losses": "clips probabilities to [1e-7, 1-1e-7]"}``);
    ``empty_batch_opt_out`` skips the empty batch. ``batch_axes`` gives an input's batch axis
    (``None``: it has none), default axis 0 for every input with at least one axis.
    """

    module: str
    build: Callable
    inputs: Callable[[str, np.random.Generator], dict[str, np.ndarray]]
    differentiable: tuple[str, ...] = ("x",)
    references: dict[str, Callable] = field(default_factory=dict)
    weights: Callable[[str, tuple, str, np.random.Generator], np.ndarray | None] | None = None
    seed: int = 0
    tf_layouts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    tf_output_layouts: dict[int | str, tuple[int, ...]] = field(default_factory=dict)
    output_names: tuple[str, ...] = ()
    forward_only: bool = False
    special_opt_out: str = ""
    special_finite_inputs: dict[str, str] = field(default_factory=dict)
    special_excluded_references: dict[str, str] = field(default_factory=dict)
    empty_batch_opt_out: str = ""
    batch_axes: dict[str, int | None] = field(default_factory=dict)

    def output_layouts(self) -> dict[int, tuple[int, ...]]:
        """``tf_output_layouts`` keyed by output index (names resolved through ``output_names``)."""
        return {self.output_names.index(key) if isinstance(key, str) else key: perm
                for key, perm in self.tf_output_layouts.items()}


class WithoutParameters:
    """A tree's model whose parameters and gradients, as the harness sees them, leave out the names
    ``pattern`` (a compiled regex) matches; everything else goes to the model. For a gradient that is
    exactly zero in exact arithmetic (a bias that softmax or a LayerNorm cancels): every implementation
    returns rounding noise there, which no relative tolerance can compare, so the test checks it
    against the scale of its neighbours instead."""

    def __init__(self, model, pattern):
        self.model, self.pattern = model, pattern

    def kept(self, named) -> dict:
        """``named`` (name -> tensor) less the names :attr:`pattern` matches."""
        return {name: value for name, value in dict(named).items() if not self.pattern.search(name)}

    def __call__(self, *inputs):
        return self.model(*inputs)

    def forward(self, *inputs):
        return self.model.forward(*inputs)

    def backward(self, *cotangents):
        return self.model.backward(*cotangents)

    def named_parameters(self):
        return list(self.kept(self.model.named_parameters()).items())

    def canonical_grads(self, *tape_grads):
        return self.kept(self.model.canonical_grads(*tape_grads))

    def __getattr__(self, name):
        return getattr(self.model, name)


def random_weights(state: dict[str, np.ndarray], rng: np.random.Generator, custom=None) -> dict[str, np.ndarray]:
    """Uniform(-1, 1) for every tensor (so biases are non-zero and no pattern is symmetric), except
    batch norm's ``*running_var`` — a variance, drawn from Uniform(0.5, 1.5) — and whatever
    ``custom(name, shape, dtype, rng)`` draws (it returns ``None`` to keep the default)."""
    out = {}
    for name, value in state.items():
        if custom is not None and (drawn := custom(name, value.shape, value.dtype.name, rng)) is not None:
            out[name] = drawn
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 1.5, size=value.shape).astype(value.dtype)
        else:
            out[name] = rng.uniform(-1.0, 1.0, size=value.shape).astype(value.dtype)
    return out


def build_model(case: Case, tree: str, dtype: str):
    return case.build(get_module(tree, case.module), dtype, np.random.default_rng(case.seed))


def build_models(case: Case, dtype: str) -> dict:
    return {tree: build_model(case, tree, dtype) for tree in TREES}


def has_state(model) -> bool:
    """Whether a model has canonical weights to share (a forward-only function has none)."""
    return hasattr(model, "canonical_state_dict")


def share_weights(models: dict, case: Case, directory: Path) -> dict[str, np.ndarray]:
    """Random weights for the NumPy model's canonical names, through a safetensors file into every tree."""
    if not has_state(models["numpy"]):
        return {}
    rng = np.random.default_rng(case.seed + 1)
    state = random_weights(models["numpy"].canonical_state_dict(), rng, case.weights)
    path = directory / "weights.safetensors"
    save_weights(path, state)
    loaded = load_weights(path)
    for model in models.values():
        model.load_canonical_state_dict(loaded)
    return loaded


def name_outputs(case: Case, result: Result, who: str) -> Result:
    """Label ``result``'s outputs with the case's ``output_names`` (their count must match)."""
    if case.output_names:
        if len(result.outputs) != len(case.output_names):
            raise AssertionError(f"{who} returned {len(result.outputs)} outputs, the case names {len(case.output_names)}: "
                                 f"{case.output_names}")
        result.output_names = case.output_names
    return result


def run_one_tree(case: Case, tree: str, model, inputs: dict, cotangents) -> Result:
    result = run_tree(tree, model, inputs, case.differentiable, cotangents, case.tf_layouts, case.output_layouts(),
                      case.forward_only)
    return name_outputs(case, result, tree)


def run_all_trees(case: Case, dtype: str, inputs: dict, cotangents, models: dict | None = None) -> dict[str, Result]:
    """Every tree's result on ``inputs``; ``models`` defaults to fresh ones built from the case's seed."""
    models = build_models(case, dtype) if models is None else models
    return {tree: run_one_tree(case, tree, models[tree], inputs, cotangents) for tree in TREES}


def run_reference(case: Case, name: str, state: dict, inputs: dict, cotangents, dtype: str) -> Result:
    return name_outputs(case, case.references[name](state, inputs, cotangents, dtype), name)


def probe_cotangents(model, inputs: dict, dtype: str, rng: np.random.Generator) -> list[np.ndarray]:
    """One standard-normal cotangent per float output of a no-grad NumPy forward (no cache kept)."""
    with get_module("numpy", "module").no_grad():
        outputs = flatten(model.forward(*inputs.values()))
    return [rng.standard_normal(np.shape(out)).astype(dtype) for out in outputs if is_float(out)]
