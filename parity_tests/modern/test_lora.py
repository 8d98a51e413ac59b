"""Days 64–65: LoRA adapters in three trees.

References, fed the same weights (``lora_B`` non-zero, so the adapter path counts):

- ``peft`` 0.21's ``LoraLayer`` from ``get_peft_model``: around an ``nn.Linear`` (``LoraConfig(target_modules=
  ["proj"])``, plain and rsLoRA) and around Hugging Face's ``Conv1D`` (``fan_in_fan_out=True``); and
  ``get_peft_model(GPT2LMHeadModel(small config), LoraConfig(target_modules=["c_attn"], fan_in_fan_out=True))``
  for the whole LoRA'd GPT: logits, loss and every adapter gradient, its ``state_dict`` through
  :func:`peft_to_canonical`, ``merge_and_unload`` against our ``merge``, and its
  ``get_nb_trainable_parameters`` (what ``print_trainable_parameters`` prints) against ours.

The NumPy tree's finite-difference check perturbs the input and the adapter only: the frozen base
weight gets no gradient by design (its analytic gradient is 0, its numerical one is not), which is
what :func:`test_base_weight_gets_no_gradient` asserts instead.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import tensorflow as tf
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers.pytorch_utils import Conv1D as HFConv1D

from ml100.backends import get_module
from ml100.configs import GPTConfig
from numpy_impl.module import no_grad
from parity_tests.harness import (FD_STEP, FD_TOLERANCE, TREES, Case, assert_no_failures, assert_raises_exactly,
                                  check_parity, compare_results, max_errors, random_weights, run_numpy, run_torch,
                                  run_tree)
from parity_tests.modern.test_gpt import CONVERTERS, HFCalled, gpt_state_to_hf, hf_model, hf_state_to_gpt

MODULE = "modern.lora"
B, T, IN, OUT, R, ALPHA = 2, 3, 5, 4, 2, 3.0
P_DROP = 0.25
#: A GPT small enough for every tree in well under a second; dropout off (the LoRA dropout is its own).
CONFIG = GPTConfig(vocab_size=17, n_positions=T + 1, n_embd=8, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
                   attn_pdrop=0.0)
#: peft's prefix on every key of a ``PeftModel``'s state dict.
PEFT_PREFIX = "base_model.model."


def as_numpy(tensor) -> np.ndarray:
    """Any tree's output as a NumPy array (sequences keep their layout in every tree)."""
    return tensor.detach().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)


def peft_to_canonical(peft_state: dict, module: str = "") -> dict:
    """A ``PeftModel``'s ``state_dict`` -> the canonical state: drop ``base_model.model.`` (and the wrapped
    layer's own path ``module``, for a lone layer); the rest — ``base_layer.weight``,
    ``lora_A.default.weight`` ``(r, in)``, ``lora_B.default.weight`` ``(out, r)`` — is already ours."""
    prefix = PEFT_PREFIX + (module + "." if module else "")
    return {name.removeprefix(prefix): np.asarray(value) for name, value in peft_state.items()}


def canonical_to_peft(state: dict, module: str = "") -> dict:
    """The inverse of :func:`peft_to_canonical`, as torch tensors."""
    prefix = PEFT_PREFIX + (module + "." if module else "")
    return {prefix + name: torch.from_numpy(np.asarray(value)) for name, value in state.items()}


class Holder(nn.Module):
    """One dense layer named ``proj``, the module peft targets."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.proj = layer


def peft_layer(conv1d: bool, use_rslora: bool, dtype: str) -> nn.Module:
    """peft's LoRA around an ``nn.Linear`` or Hugging Face's ``Conv1D`` (``fan_in_fan_out``), built offline."""
    base = HFConv1D(OUT, IN) if conv1d else nn.Linear(IN, OUT)
    config = LoraConfig(r=R, lora_alpha=ALPHA, target_modules=["proj"], lora_dropout=0.0, fan_in_fan_out=conv1d,
                        use_rslora=use_rslora)
    return get_peft_model(Holder(base), config).to(getattr(torch, dtype))


def peft_reference(conv1d: bool, use_rslora: bool):
    def run(state, inputs, cotangents, dtype):
        model = peft_layer(conv1d, use_rslora, dtype)
        model.load_state_dict(canonical_to_peft(state, "proj"), strict=True)
        params = {name.removeprefix(PEFT_PREFIX + "proj."): p for name, p in model.named_parameters()}
        return run_torch(model.base_model.model.proj, inputs, ("x",), cotangents, params)
    return run


def base_layer(tree_module, conv1d: bool, dtype: str, rng):
    """Day 6's Linear ``(out, in)`` or the GPT's Conv1D ``(in, out)`` from the same tree."""
    tree = {f"{name}_impl": name for name in TREES}[tree_module.__name__.split(".")[0]]
    if conv1d:
        return get_module(tree, "modern.gpt").Conv1D(OUT, IN, dtype=dtype, rng=rng)
    return get_module(tree, "foundations.linear").Linear(IN, OUT, dtype=dtype, rng=rng)


def layer_case(conv1d: bool = False, use_rslora: bool = False, dropout: bool = False) -> Case:
    """``LoRALinear`` on ``x (B, T, in)``; with ``dropout`` a keep mask is an input (no peft reference:
    its dropout draws its own mask)."""

    def build(module, dtype, rng):
        return module.LoRALinear(base_layer(module, conv1d, dtype, rng), R, ALPHA, P_DROP if dropout else 0.0,
                                 use_rslora, rng)

    def inputs(dtype, rng):
        drawn = {"x": rng.standard_normal((B, T, IN)).astype(dtype)}
        if dropout:
            drawn["dropout_mask"] = rng.random((B, T, IN)) >= P_DROP
        return drawn

    references = {} if dropout else {"peft": peft_reference(conv1d, use_rslora)}
    return Case(MODULE, build, inputs, ("x",), references=references)


CASES = {
    "linear": layer_case(),
    "conv1d": layer_case(conv1d=True),
    "rslora": layer_case(use_rslora=True),
    "dropout": layer_case(dropout=True),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CASES)
def test_parity(name, dtype):
    check_parity(CASES[name], dtype)


@pytest.mark.parametrize("conv1d", [False, True])
def test_gradcheck_numpy_adapter_and_input(conv1d):
    """Central differences of ``sum(y * G)`` for the input and both adapter matrices, dropout on."""
    rng = np.random.default_rng(4)
    layer = get_module("numpy", MODULE).LoRALinear(base_layer(get_module("numpy", MODULE), conv1d, "float64", rng),
                                                   R, ALPHA, P_DROP, rng=rng)
    layer.load_canonical_state_dict(random_weights(layer.canonical_state_dict(), rng))
    x = rng.standard_normal((B, T, IN))
    keep = rng.random((B, T, IN)) >= P_DROP
    cotangent = rng.standard_normal((B, T, OUT))
    layer.zero_grad()
    layer(x, keep)
    grad_x = layer.backward(cotangent)
    params = dict(layer.named_parameters())
    targets = {"input x": (x, grad_x)}
    targets.update({name: (params[name], grad) for name, grad in layer.canonical_grads().items() if "lora_" in name})
    failures = []
    for label, (array, grad) in targets.items():
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            original = array[index]
            values = []
            for step in (FD_STEP, -FD_STEP):
                array[index] = original + step
                with no_grad():
                    values.append(float(np.sum(layer(x, keep) * cotangent)))
            array[index] = original
            numeric[index] = (values[0] - values[1]) / (2 * FD_STEP)
        abs_err, rel_err = max_errors(numeric, grad)
        if rel_err > FD_TOLERANCE:
            failures.append(f"{label}: max abs err {abs_err:.3e}, max rel err {rel_err:.3e}")
    assert_no_failures(failures, "finite-difference check of numpy LoRALinear")


def lora_gpt(tree: str, dtype: str, rng_seed: int = 0):
    """The tree's GPT with LoRA on every ``c_attn`` (peft's GPT-2 recipe)."""
    model = get_module(tree, "modern.gpt").GPT(CONFIG, dtype=dtype, rng=np.random.default_rng(rng_seed))
    return get_module(tree, MODULE).apply_lora(model, ["c_attn"], R, ALPHA, 0.0, np.random.default_rng(rng_seed + 1))


def peft_gpt(dtype: str):
    config = LoraConfig(r=R, lora_alpha=ALPHA, target_modules=["c_attn"], fan_in_fan_out=True, lora_dropout=0.0)
    return get_peft_model(hf_model(CONFIG, dtype).eval(), config)


def shared_gpt_state(dtype: str) -> dict:
    return random_weights(lora_gpt("numpy", dtype).canonical_state_dict(), np.random.default_rng(7))


def adapter_only(result, names):
    """``result`` with only the adapter's parameter gradients (the frozen rest is not compared: see the page)."""
    result.param_grads = {name: grad for name, grad in result.param_grads.items() if name in names}
    return result


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpt_matches_peft(dtype):
    """Logits, loss, input-free backward: every adapter gradient equal in the three trees and peft's GPT-2."""
    state = shared_gpt_state(dtype)
    rng = np.random.default_rng(8)
    inputs = {"input_ids": rng.integers(0, CONFIG.vocab_size, (B, T + 1)),
              "labels": rng.integers(0, CONFIG.vocab_size, (B, T + 1))}
    cotangents = [rng.standard_normal((B, T + 1, CONFIG.vocab_size)).astype(dtype), np.asarray(1.0, dtype)]
    adapters = [name for name in state if "lora_" in name]
    results = {}
    for tree in TREES:
        model = lora_gpt(tree, dtype)
        model.load_canonical_state_dict(state)
        results[tree] = adapter_only(run_tree(tree, model, inputs, (), cotangents), adapters)
    reference = peft_gpt(dtype)
    reference.load_state_dict(canonical_to_peft(gpt_state_to_hf(state)), strict=True)
    params = {name.removeprefix(PEFT_PREFIX): p for name, p in reference.named_parameters()}
    results["peft"] = adapter_only(run_torch(HFCalled(reference.base_model.model), inputs, (), cotangents, params),
                                   adapters)
    assert all(len(result.param_grads) == len(adapters) for result in results.values())
    assert_no_failures(compare_results(results, dtype), f"LoRA GPT vs peft ({dtype})")


def test_peft_state_dict_loads_unchanged_into_every_tree():
    """peft's own state (its A drawn by peft, B made non-zero) loads through one key conversion and gives its logits."""
    reference = peft_gpt("float64")
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if "lora_B" in name:
                p.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(0))
    state = hf_state_to_gpt(peft_to_canonical(reference.state_dict()))
    ids = np.random.default_rng(9).integers(0, CONFIG.vocab_size, (B, T))
    expected = reference(torch.from_numpy(ids)).logits.detach().numpy()
    for tree in TREES:
        model = lora_gpt(tree, "float64")
        model.load_canonical_state_dict(state)
        logits, _ = model(CONVERTERS[tree](ids))
        assert np.allclose(as_numpy(logits), expected, rtol=0, atol=1e-9 * np.abs(expected).max()), tree


def test_merge_equals_peft_merge_and_unload_and_the_unmerged_forward():
    state = shared_gpt_state("float64")
    reference = peft_gpt("float64")
    reference.load_state_dict(canonical_to_peft(gpt_state_to_hf(state)), strict=True)
    merged_reference = {name: value.numpy() for name, value in reference.merge_and_unload().state_dict().items()}
    ids = np.random.default_rng(10).integers(0, CONFIG.vocab_size, (B, T))
    for tree in TREES:
        model = lora_gpt(tree, "float64")
        model.load_canonical_state_dict(state)
        before, _ = model(CONVERTERS[tree](ids))
        layers = [module for _, module in model.named_modules() if type(module).__name__ == "LoRALinear"]
        for layer in layers:
            layer.merge()
        after, _ = model(CONVERTERS[tree](ids))
        assert np.allclose(as_numpy(after), as_numpy(before), rtol=0, atol=1e-9 * np.abs(as_numpy(before)).max())
        merged = model.canonical_state_dict()
        for index in range(CONFIG.n_layer):
            ours = merged[f"transformer.h.{index}.attn.c_attn.base_layer.weight"]
            theirs = merged_reference[f"transformer.h.{index}.attn.c_attn.weight"]
            assert np.allclose(ours, theirs, rtol=0, atol=1e-12 * np.abs(theirs).max()), tree


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("conv1d", [False, True])
def test_merge_then_unmerge_is_exact_to_rounding(tree, conv1d):
    """``(W + dW) - dW`` returns ``W`` within half an ulp of the sum plus half an ulp of the result,
    element by element (float64); a second merge or an unmerge of an unmerged layer is refused."""
    module = get_module(tree, MODULE)
    rng = np.random.default_rng(11)
    layer = module.LoRALinear(base_layer(module, conv1d, "float64", rng), R, ALPHA, rng=rng)
    layer.load_canonical_state_dict(random_weights(layer.canonical_state_dict(), rng))
    weight = layer.canonical_state_dict()["base_layer.weight"]
    layer.merge()
    merged = layer.canonical_state_dict()["base_layer.weight"]
    assert not np.array_equal(merged, weight)
    merge_message = "LoRALinear.merge: the adapter is already merged; merge() and unmerge() alternate"
    assert_raises_exactly(RuntimeError, merge_message, layer.merge)
    layer.unmerge()
    back = layer.canonical_state_dict()["base_layer.weight"]
    assert np.all(np.abs(back - weight) <= (np.spacing(np.abs(merged)) + np.spacing(np.abs(back))) / 2)
    unmerge_message = "LoRALinear.unmerge: the adapter is not merged; merge() and unmerge() alternate"
    assert_raises_exactly(RuntimeError, unmerge_message, layer.unmerge)


def test_trainable_counts_match_peft():
    expected = peft_gpt("float32").get_nb_trainable_parameters()
    assert expected[0] == CONFIG.n_layer * R * (CONFIG.n_embd + 3 * CONFIG.n_embd)
    for tree in TREES:
        assert get_module(tree, MODULE).trainable_parameters(lora_gpt(tree, "float32")) == expected, tree


def test_base_weight_gets_no_gradient():
    """NumPy: the base's grads stay 0 and only the adapter is trainable; torch: requires_grad False,
    ``.grad`` None; TF: non-trainable variables, the tape returns None for them."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((B, T, IN))
    names = {"lora_A.default.weight", "lora_B.default.weight"}
    for tree in TREES:
        module = get_module(tree, MODULE)
        layer = module.LoRALinear(base_layer(module, False, "float64", np.random.default_rng(0)), R, ALPHA,
                                  rng=np.random.default_rng(1))
        assert {name for name, _ in module.named_trainable_parameters(layer)} == names, tree
        if tree == "numpy":
            layer.zero_grad()
            layer(x)
            layer.backward(np.ones((B, T, OUT)))
            assert not np.any(layer.base_layer.grads["weight"]) and not np.any(layer.base_layer.grads["bias"])
        elif tree == "torch":
            layer(torch.from_numpy(x)).sum().backward()
            assert layer.base_layer.weight.grad is None and layer.base_layer.bias.grad is None
            assert not layer.base_layer.weight.requires_grad
        else:
            variables = dict(layer.named_parameters())
            with tf.GradientTape() as tape:
                total = tf.reduce_sum(layer(tf.constant(x)))
            grads = tape.gradient(total, variables)
            assert grads["base_layer.weight"] is None and grads["base_layer.bias"] is None
            assert grads["lora_B.default.weight"] is not None


def test_numpy_layer_used_twice_sums_gradients():
    """``y = f(f(x))`` with one square LoRA layer: the NumPy stack against torch's autograd."""
    width = IN
    state = None
    results = {}
    for tree in ("numpy", "torch"):
        module = get_module(tree, MODULE)
        linear = get_module(tree, "foundations.linear").Linear(width, width, dtype="float64",
                                                               rng=np.random.default_rng(0))
        layer = module.LoRALinear(linear, R, ALPHA, rng=np.random.default_rng(1))
        state = random_weights(layer.canonical_state_dict(), np.random.default_rng(2)) if state is None else state
        layer.load_canonical_state_dict(state)

        class Twice:
            def __call__(self, x):
                return layer(layer(x))

            forward = __call__

            def backward(self, grad):
                return layer.backward(layer.backward(grad))

            def canonical_grads(self):
                return layer.canonical_grads()

            def zero_grad(self):
                layer.zero_grad()

        x = {"x": np.random.default_rng(3).standard_normal((B, T, width))}
        cot = [np.random.default_rng(4).standard_normal((B, T, width))]
        results[tree] = (run_numpy(Twice(), x, ("x",), cot) if tree == "numpy"
                         else run_torch(Twice(), x, ("x",), cot, dict(layer.named_parameters())))
    assert_no_failures(compare_results(results, "float64"), "LoRA layer used twice")


def test_initialization_is_peft_default_and_the_same_in_every_tree():
    """B = 0 (the wrapped layer starts as its base), A Kaiming-uniform with a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in)),
    drawn from the rng, so equally seeded trees start with the same A."""
    states = {}
    for tree in TREES:
        module = get_module(tree, MODULE)
        layer = module.LoRALinear(base_layer(module, False, "float64", np.random.default_rng(0)), R, ALPHA,
                                  rng=np.random.default_rng(1))
        states[tree] = layer.canonical_state_dict()
    a = states["numpy"]["lora_A.default.weight"]
    assert not np.any(states["numpy"]["lora_B.default.weight"])
    assert np.abs(a).max() <= 1 / np.sqrt(IN) and np.abs(a).max() > 0.5 / np.sqrt(IN)
    for tree in ("torch", "tf"):
        assert all(np.array_equal(states[tree][name], value) for name, value in states["numpy"].items()), tree


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(leading=st.lists(st.integers(0, 3), min_size=0, max_size=2), width_in=st.integers(1, 4),
       width_out=st.integers(1, 4), r=st.integers(1, 3), conv1d=st.booleans(), use_rslora=st.booleans(),
       seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_peft(leading, width_in, width_out, r, conv1d, use_rslora, seed):
    """Random leading axes (none, or empty ones included), widths, ranks and bases: the NumPy layer's
    output and every gradient equal peft's, fed the same weights."""
    rng = np.random.default_rng(seed)
    numpy_module = get_module("numpy", MODULE)
    gpt, linear = get_module("numpy", "modern.gpt"), get_module("numpy", "foundations.linear")
    base = (gpt.Conv1D(width_out, width_in, dtype="float64", rng=rng) if conv1d
            else linear.Linear(width_in, width_out, dtype="float64", rng=rng))
    layer = numpy_module.LoRALinear(base, r, ALPHA, use_rslora=use_rslora, rng=rng)
    state = random_weights(layer.canonical_state_dict(), rng)
    layer.load_canonical_state_dict(state)
    inputs = {"x": rng.standard_normal((*leading, width_in))}
    cotangents = [rng.standard_normal((*leading, width_out))]
    reference = get_peft_model(Holder(HFConv1D(width_out, width_in) if conv1d else nn.Linear(width_in, width_out)),
                               LoraConfig(r=r, lora_alpha=ALPHA, target_modules=["proj"], fan_in_fan_out=conv1d,
                                          use_rslora=use_rslora)).double()
    reference.load_state_dict(canonical_to_peft(state, "proj"), strict=True)
    params = {name.removeprefix(PEFT_PREFIX + "proj."): p for name, p in reference.named_parameters()}
    results = {"numpy": run_numpy(layer, inputs, ("x",), cotangents),
               "peft": run_torch(reference.base_model.model.proj, inputs, ("x",), cotangents, params)}
    assert_no_failures(compare_results(results, "float64"), "LoRA fuzz")


def error_calls(tree: str):
    module = get_module(tree, MODULE)
    linear = get_module(tree, "foundations.linear").Linear(IN, OUT, dtype="float64", rng=np.random.default_rng(0))
    wrapped = module.LoRALinear(get_module(tree, "foundations.linear").Linear(IN, OUT, dtype="float64"), R, ALPHA)
    x = CONVERTERS[tree](np.zeros((B, IN)))
    return {
        "r < 1": (lambda: module.LoRALinear(linear, 0, ALPHA), ValueError, "LoRALinear: r must be an int >= 1, got 0"),
        "alpha <= 0": (lambda: module.LoRALinear(linear, R, 0.0), ValueError,
                       "LoRALinear: lora_alpha must be > 0, got 0.0"),
        "dropout 1": (lambda: module.LoRALinear(linear, R, ALPHA, 1.0), ValueError,
                      "LoRALinear: lora_dropout must be in [0.0, 1.0), got 1.0"),
        "wrapped twice": (lambda: module.LoRALinear(wrapped, R, ALPHA), TypeError,
                          "LoRALinear: base_layer must be a Linear or Conv1D, got LoRALinear (it already has an "
                          "adapter: a layer is wrapped once)"),
        "x width": (lambda: wrapped(CONVERTERS[tree](np.zeros((B, IN + 1)))), ValueError,
                    f"LoRALinear: x must have shape (..., {IN}), got ({B}, {IN + 1})"),
        "x dtype": (lambda: wrapped(CONVERTERS[tree](np.zeros((B, IN), np.float32))), TypeError,
                    "LoRALinear: x must have dtype float64, got float32 (cast it explicitly)"),
        "mask while off": (lambda: wrapped(x, CONVERTERS[tree](np.ones((B, IN), bool))), ValueError,
                           "LoRALinear: dropout_mask given but dropout is off (eval mode or lora_dropout = 0)"),
        "unknown target": (lambda: module.apply_lora(lora_gpt(tree, "float64"), ["q_proj"]), ValueError,
                           "apply_lora: target_modules ['q_proj'] match no submodule; its dense layers are "
                           + str([f"transformer.h.{i}.{name}" for i in range(CONFIG.n_layer) for name in
                                  ("attn.c_attn.base_layer", "attn.c_attn.lora_A.default", "attn.c_attn.lora_B.default",
                                   "attn.c_proj", "mlp.c_fc", "mlp.c_proj")])),
        "applied twice": (lambda: module.apply_lora(lora_gpt(tree, "float64"), ["c_attn"]), ValueError,
                          "apply_lora: transformer.h.0.attn.c_attn already has an adapter (apply_lora runs once per "
                          "model)"),
        "not dense": (lambda: module.apply_lora(lora_gpt(tree, "float64"), ["ln_1"]), TypeError,
                      "apply_lora: transformer.h.0.ln_1: base_layer must be a Linear or Conv1D, got LayerNorm"),
        "targets a string": (lambda: module.apply_lora(lora_gpt(tree, "float64"), "c_attn"), TypeError,
                             "apply_lora: target_modules must be a non-empty list of module names, got 'c_attn'"),
    }


ERROR_NAMES = tuple(error_calls("numpy"))


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", ERROR_NAMES)
def test_errors(tree, what):
    call, error, message = error_calls(tree)[what]
    assert_raises_exactly(error, message, call)
