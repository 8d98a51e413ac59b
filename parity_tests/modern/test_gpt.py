"""Day 49: GPT (Hugging Face's ``GPT2LMHeadModel``) in three trees.

Reference: ``transformers.GPT2LMHeadModel`` built offline from a small ``GPT2Config`` (eager
attention, dropout 0, no download), its state dict loaded from the canonical one by
:func:`gpt_state_to_hf` (which adds the tied ``lm_head.weight``). Logits, the shifted mean loss and
every parameter gradient are compared in float64 (model ``.double()``) and float32.

One framework difference: Hugging Face's loss (``ForCausalLMLoss``) casts the logits to float32
before the cross-entropy, so a float64 model gets a float32-rounded loss (about 1e-8 off) and
gradients about 1e-9 off. The reference therefore computes the loss as the trees do, with
``torch.nn.functional.cross_entropy`` on Hugging Face's own float64 logits, and
:func:`test_hf_loss_is_computed_in_float32` pins the difference. No reference takes dropout masks:
the dropout cases are the trees' own parity plus the finite-difference check.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import tensorflow as tf
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ml100.backends import get_module
from ml100.configs import ConfigError, GPTConfig
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  gradcheck_numpy, run_numpy, run_torch, run_tree)

MODULE = "modern.gpt"
B, T = 2, 5
#: n_positions = T: every row of the position table is used (and gets a gradient).
CONFIG = GPTConfig(vocab_size=50, n_positions=T, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
                   attn_pdrop=0.0)
DROPOUT = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2, n_inner=12, resid_pdrop=0.2,
                    embd_pdrop=0.1, attn_pdrop=0.3, layer_norm_epsilon=1e-3)
#: The smallest model for finite differences: every weight is perturbed twice.
TINY = GPTConfig(vocab_size=7, n_positions=4, n_embd=4, n_layer=1, n_head=2, n_inner=6, resid_pdrop=0.0,
                 embd_pdrop=0.0, attn_pdrop=0.0)
TINY_DROPOUT = GPTConfig(vocab_size=7, n_positions=4, n_embd=4, n_layer=1, n_head=2, n_inner=6, resid_pdrop=0.2,
                         embd_pdrop=0.1, attn_pdrop=0.3)


#: Each tree's array type from a NumPy array.
CONVERTERS = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}


def gpt_state_to_hf(state: dict) -> dict:
    """The canonical GPT state -> ``GPT2LMHeadModel.state_dict()``: the same names and layouts (Conv1D
    ``(in, out)``), plus ``lm_head.weight``, the tied ``transformer.wte.weight`` listed a second time."""
    return {**state, "lm_head.weight": state["transformer.wte.weight"]}


def hf_state_to_gpt(hf_state: dict) -> dict:
    """``GPT2LMHeadModel.state_dict()`` -> the canonical GPT state: drop ``lm_head.weight`` after checking
    that it is the tied ``transformer.wte.weight`` (an untied head has no place in this model)."""
    state = dict(hf_state)
    head = state.pop("lm_head.weight")
    if not np.array_equal(np.asarray(head), np.asarray(state["transformer.wte.weight"])):
        raise ValueError("lm_head.weight differs from transformer.wte.weight: the GPT ties them (one parameter)")
    return state


def hf_model(config: GPTConfig, dtype: str) -> GPT2LMHeadModel:
    """A Hugging Face GPT-2 with the same architecture, built offline, eager attention, dropout as configured."""
    hf_config = GPT2Config(**config.to_dict(), attn_implementation="eager", bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(hf_config).to(getattr(torch, dtype))


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The shifted mean cross-entropy of the trees, in the logits' own dtype (Hugging Face's, less its float32 cast)."""
    vocab = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1),
                                             ignore_index=-100)


class HFCalled(torch.nn.Module):
    """``GPT2LMHeadModel`` called as the trees are: ``(logits, loss)`` from ``(input_ids, labels)``."""

    def __init__(self, model: GPT2LMHeadModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, labels):
        logits = self.model(input_ids).logits  # (B, T, V)
        return logits, lm_loss(logits, labels)


def hf_reference(config: GPTConfig):
    def run(state, inputs, cotangents, dtype):
        model = hf_model(config, dtype).eval()
        model.load_state_dict({name: torch.from_numpy(value) for name, value in gpt_state_to_hf(state).items()})
        # named_parameters lists the tied weight once, under its first name: transformer.wte.weight.
        params = dict(model.named_parameters())
        return run_torch(HFCalled(model), inputs, (), cotangents, params)
    return run


class Called:
    """A GPT as a case calls it: ids and labels positionally, the keep-masks (inputs named by their
    dropout site) gathered into ``dropout_masks``."""

    def __init__(self, model, names):
        self.model, self.names = model, tuple(names)

    def arguments(self, tensors) -> dict:
        named = dict(zip(self.names, tensors))
        masks = {name: named.pop(name) for name in list(named) if name.startswith("transformer.")}
        return {**named, "dropout_masks": masks or None}

    def __call__(self, *tensors):
        return self.model(**self.arguments(tensors))

    def forward(self, *tensors):
        return self.model.forward(**self.arguments(tensors))

    def backward(self, *cotangents):
        return self.model.backward(*cotangents)

    def __getattr__(self, name):
        return getattr(self.model, name)


def gpt_inputs(config: GPTConfig, batch: int = B, steps: int = T, dropout: bool = False):
    """Ids, labels (one ignored with -100) and, with dropout, one keep-mask per site (True = keep)."""
    def draw(dtype, rng):
        ids = rng.integers(0, config.vocab_size, (batch, steps))
        labels = ids.copy()
        if batch:
            labels[0, 2] = -100
        inputs = {"input_ids": ids, "labels": labels}
        if dropout:
            inputs.update({name: rng.random(shape) >= config.dropout_p(name)
                           for name, shape in config.dropout_shapes(batch, steps).items()})
        return inputs
    return draw


def gpt_case(config: GPTConfig, steps: int = T, dropout: bool = False) -> Case:
    draw = gpt_inputs(config, steps=steps, dropout=dropout)
    names = tuple(draw("float64", np.random.default_rng(0)))
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: Called(m.GPT(config, dtype=dtype, rng=rng), names),
        inputs=draw,
        differentiable=(),
        references={} if dropout else {"transformers GPT2LMHeadModel": hf_reference(config)},
        output_names=("logits", "loss"),
    )


CASES = {
    "eval, Hugging Face reference": lambda: gpt_case(CONFIG),
    "training with dropout masks": lambda: gpt_case(DROPOUT, steps=4, dropout=True),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    check_parity(CASES[name](), dtype)


@pytest.mark.parametrize("config, dropout", [(TINY, False), (TINY_DROPOUT, True)], ids=["eval", "dropout"])
def test_gradcheck_numpy(config, dropout):
    gradcheck_numpy(gpt_case(config, steps=3, dropout=dropout))


def test_tied_weight_gradient_is_the_sum_of_both_uses():
    """Untie Hugging Face's head (a separate copy of wte): the tied gradient of every tree is the
    lookup's gradient plus the head's."""
    case = gpt_case(CONFIG)
    rng = np.random.default_rng(5)
    inputs = case.inputs("float64", rng)
    model = hf_model(CONFIG, "float64").eval()
    state = {name: value.detach().numpy().copy() for name, value in hf_state_to_gpt(model.state_dict()).items()}
    model.lm_head.weight = torch.nn.Parameter(model.transformer.wte.weight.detach().clone())
    cotangent = rng.standard_normal((B, T, CONFIG.vocab_size))
    logits, loss = HFCalled(model)(*(torch.from_numpy(inputs[name]) for name in ("input_ids", "labels")))
    ((logits * torch.from_numpy(cotangent)).sum() + loss).backward()
    untied = model.transformer.wte.weight.grad + model.lm_head.weight.grad
    assert model.lm_head.weight.grad.abs().max() > 0 and model.transformer.wte.weight.grad.abs().max() > 0
    results = {}
    for tree in TREES:
        gpt = case.build(get_module(tree, MODULE), "float64", np.random.default_rng(0))
        gpt.load_canonical_state_dict(state)
        results[tree] = run_tree(tree, gpt, inputs, (), [cotangent, np.array(1.0)])
    for tree, result in results.items():
        np.testing.assert_allclose(result.param_grads["transformer.wte.weight"], untied.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=tree)


def test_hf_loss_is_computed_in_float32():
    """Hugging Face's own loss casts float64 logits to float32: it misses the float64 loss by more
    than float64's tolerance but agrees within float32's; the trees' loss is the float64 one."""
    model = hf_model(CONFIG, "float64").eval()
    ids = torch.from_numpy(np.random.default_rng(3).integers(0, CONFIG.vocab_size, (B, T)))
    out = model(ids, labels=ids)
    ours = lm_loss(out.logits, ids)
    assert out.loss.dtype == torch.float32
    assert abs(out.loss.item() - ours.item()) > 1e-9 * abs(ours.item())
    assert abs(out.loss.item() - ours.item()) < 1e-6 * abs(ours.item())
    gpt = get_module("numpy", MODULE).GPT(CONFIG, dtype="float64")
    gpt.load_canonical_state_dict(hf_state_to_gpt({k: v.detach().numpy() for k, v in model.state_dict().items()}))
    _, loss = gpt(ids.numpy(), ids.numpy())
    assert abs(float(loss) - ours.item()) <= 1e-12 * abs(ours.item())


def test_hf_state_dict_round_trip():
    """A Hugging Face state dict loads into every tree through ``hf_state_to_gpt``, and each tree's
    canonical state goes back through ``gpt_state_to_hf`` into Hugging Face unchanged (strict)."""
    model = hf_model(CONFIG, "float32")
    hf_state = {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}
    for tree in TREES:
        gpt = get_module(tree, MODULE).GPT(CONFIG, dtype="float32", rng=np.random.default_rng(1))
        gpt.load_canonical_state_dict(hf_state_to_gpt(hf_state))
        back = gpt_state_to_hf(gpt.canonical_state_dict())
        assert sorted(back) == sorted(hf_state)
        for name, value in hf_state.items():
            np.testing.assert_array_equal(back[name], value, err_msg=f"{tree} {name}")
    untied = {**hf_state, "lm_head.weight": hf_state["lm_head.weight"] + 1.0}
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        hf_state_to_gpt(untied)


def test_numpy_model_used_twice_sums_gradients():
    """Two forwards, two backwards (LIFO) in the NumPy tree = autograd through the sum of both in torch."""
    case = gpt_case(CONFIG)
    rng = np.random.default_rng(7)
    first, second = case.inputs("float64", rng), case.inputs("float64", rng)
    models = {tree: get_module(tree, MODULE).GPT(CONFIG, dtype="float64", rng=np.random.default_rng(0)) for tree in
              ("numpy", "torch")}
    models["torch"].load_canonical_state_dict(models["numpy"].canonical_state_dict())
    cotangents = [rng.standard_normal((B, T, CONFIG.vocab_size)) for _ in range(2)]
    numpy_gpt = models["numpy"]
    numpy_gpt.zero_grad()
    numpy_gpt(first["input_ids"], first["labels"])
    numpy_gpt(second["input_ids"], second["labels"])
    numpy_gpt.backward(cotangents[1], np.array(0.5))
    numpy_gpt.backward(cotangents[0], np.array(2.0))
    total = 0
    for inputs, cotangent, weight in zip((first, second), cotangents, (2.0, 0.5)):
        logits, loss = models["torch"](torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["labels"]))
        total = total + (logits * torch.from_numpy(cotangent)).sum() + weight * loss
    total.backward()
    grads = numpy_gpt.canonical_grads()
    for name, param in models["torch"].named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_single_token_and_empty_batch():
    """T = 1 has no next token to predict: the loss is a mean over nothing, NaN, in every tree and
    Hugging Face (logits equal). B = 0: Hugging Face refuses (its ``view(..., -1, head_dim)`` is
    ambiguous on 0 elements); the trees return empty logits and a NaN loss, the same in each (the
    special-values pass of ``test_parity`` compares their gradients too)."""
    model = hf_model(CONFIG, "float64").eval()
    state = hf_state_to_gpt({k: v.detach().numpy() for k, v in model.state_dict().items()})
    single = np.random.default_rng(2).integers(0, CONFIG.vocab_size, (B, 1))
    with torch.no_grad():
        reference = model(torch.from_numpy(single)).logits
    assert torch.isnan(lm_loss(reference, torch.from_numpy(single)))
    empty = np.zeros((0, T), dtype=np.int64)
    with pytest.raises(RuntimeError, match="ambiguous"):
        model(torch.from_numpy(empty))
    for tree in TREES:
        gpt = get_module(tree, MODULE).GPT(CONFIG, dtype="float64")
        gpt.load_canonical_state_dict(state)
        convert = CONVERTERS[tree]
        for ids, expected in ((single, reference.numpy()), (empty, np.zeros((0, T, CONFIG.vocab_size)))):
            logits, loss = gpt(convert(ids), convert(ids))
            logits = logits.detach().numpy() if tree == "torch" else np.asarray(logits)
            np.testing.assert_allclose(logits, expected, rtol=1e-9, atol=1e-12, err_msg=tree)
            assert np.isnan(float(loss.detach() if tree == "torch" else loss)), tree


def error_cases():
    """(what, call(module) -> None, error type, message): one bad argument each, the same text in every tree."""
    ids = np.zeros((1, 3), dtype=np.int64)
    too_long = np.zeros((1, CONFIG.n_positions + 1), dtype=np.int64)
    return [
        ("sequence longer than n_positions", lambda m, cv: m.GPT(CONFIG)(cv(too_long)), ValueError,
         f"GPT: 0 cached + {CONFIG.n_positions + 1} new tokens exceed n_positions = {CONFIG.n_positions} "
         "(the rows of the position table wpe)"),
        ("id out of range", lambda m, cv: m.GPT(CONFIG)(cv(np.array([[1, 50, -1]]))), ValueError,
         "GPT: input_ids must lie in [0, 50), got out-of-range values [-1, 50]"),
        ("float ids", lambda m, cv: m.GPT(CONFIG)(cv(np.zeros((1, 3), dtype=np.float32))), TypeError,
         "GPT: input_ids must have dtype int64, got float32 (cast it explicitly)"),
        ("1-d ids", lambda m, cv: m.GPT(CONFIG)(cv(np.zeros(3, dtype=np.int64))), ValueError,
         "GPT: input_ids must have 2 dimensions, got shape (3,)"),
        ("no tokens", lambda m, cv: m.GPT(CONFIG)(cv(np.zeros((1, 0), dtype=np.int64))), ValueError,
         "GPT: input_ids must hold at least one token per sequence, got shape (1, 0)"),
        ("label out of range", lambda m, cv: m.GPT(CONFIG)(cv(ids), cv(np.array([[0, 50, -100]]))), ValueError,
         "GPT: labels must lie in [0, 50) or be -100 (ignored), got [50]"),
        ("labels of another shape", lambda m, cv: m.GPT(CONFIG)(cv(ids), cv(np.zeros((1, 2), dtype=np.int64))),
         ValueError,
         "GPT: labels must have shape (1, 3), got (1, 2)"),
        ("dropout on without masks", lambda m, cv: m.GPT(DROPOUT)(cv(ids)), ValueError,
         "GPT: dropout is on (training, a probability > 0), so dropout_masks, a dict keyed as "
         "config.dropout_shapes(B, T) names them (bool, True = keep), must be given, got None"),
        ("masks with dropout off", lambda m, cv: m.GPT(CONFIG)(cv(ids), dropout_masks={}), ValueError,
         "GPT: dropout_masks was given but dropout is off (every probability 0, or eval mode)"),
        ("a mask of the wrong shape", lambda m, cv: m.GPT(DROPOUT)(cv(ids), dropout_masks={
            **{k: cv(np.ones(s, dtype=bool)) for k, s in DROPOUT.dropout_shapes(1, 3).items()},
            "transformer.drop": cv(np.ones((1, 3, 9), dtype=bool))}), ValueError,
         "GPT: dropout_masks['transformer.drop'] must have shape (1, 3, 8), got (1, 3, 9)"),
        ("a dict for a config", lambda m, cv: m.GPT(CONFIG.to_dict()), TypeError,
         f"GPT: config must be an ml100.configs.GPTConfig, got dict {CONFIG.to_dict()!r}; build one with "
         "GPTConfig.from_dict(...)"),
    ]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, call, error, message", error_cases(), ids=[case[0] for case in error_cases()])
def test_errors(tree, what, call, error, message):
    assert_raises_exactly(error, message, lambda: call(get_module(tree, MODULE), CONVERTERS[tree]))


@pytest.mark.parametrize("changes, message", [
    ({"n_head": 3}, "GPTConfig: n_head must divide n_embd = 16, got 3"),
    ({"attn_pdrop": 1.0},
     "GPTConfig: attn_pdrop must be < 1 (a probability of dropping; 1 would divide by zero), got 1.0"),
    ({"resid_pdrop": -0.1}, "GPTConfig: resid_pdrop must be a finite number >= 0, got -0.1"),
    ({"layer_norm_epsilon": 0.0},
     "GPTConfig: layer_norm_epsilon must be > 0 (a constant row would divide 0 by 0), got 0.0"),
    ({"activation_function": "relu"}, "GPTConfig: activation_function must be one of: gelu_new, got 'relu'"),
    ({"n_inner": 0}, "GPTConfig: n_inner must be an int >= 1, got 0"),
])
def test_config_errors(changes, message):
    assert_raises_exactly(ConfigError, message, lambda: GPTConfig(**{**CONFIG.to_dict(), **changes}))


def test_parameter_count_matches_hugging_face():
    """The same parameters as GPT2LMHeadModel (whose count lists the tied head once)."""
    model = hf_model(CONFIG, "float32")
    expected = sum(p.numel() for p in model.parameters())
    for tree in TREES:
        state = get_module(tree, MODULE).GPT(CONFIG).canonical_state_dict()
        assert sum(v.size for v in state.values()) == expected, tree


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 3), steps=st.integers(3, 5), heads=st.sampled_from([1, 2, 4]), layers=st.integers(1, 2),
       vocab=st.integers(2, 20), seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_hugging_face(batch, steps, heads, layers, vocab, seed):
    """Random small models and inputs: the NumPy tree's logits, loss and every gradient equal
    ``GPT2LMHeadModel``'s (float64, loss in float64 as the reference of ``test_parity``)."""
    config = GPTConfig(vocab_size=vocab, n_positions=steps, n_embd=8, n_layer=layers, n_head=heads, n_inner=6,
                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    rng = np.random.default_rng(seed)
    model = get_module("numpy", MODULE).GPT(config, dtype="float64", rng=rng)
    state = {name: rng.uniform(-1.0, 1.0, value.shape) for name, value in model.canonical_state_dict().items()}
    model.load_canonical_state_dict(state)
    inputs = gpt_inputs(config, batch, steps)("float64", rng)
    cotangents = [rng.standard_normal((batch, steps, vocab)), np.array(1.5)]
    ours = run_numpy(Called(model, tuple(inputs)), inputs, (), cotangents)
    theirs = hf_reference(config)(state, inputs, cotangents, "float64")
    assert_no_failures(compare_results({"numpy": ours, "transformers GPT2LMHeadModel": theirs}, "float64"), "fuzz")


def test_initialization_is_gpt2s_and_the_same_in_every_tree():
    """One rng draws the same initial state in every tree: N(0, 0.02^2) weights and tables, the residual
    projections N(0, (0.02 / sqrt(2 n_layer))^2), zero biases, LayerNorms 1 and 0 (Hugging Face's rule)."""
    config = GPTConfig(**{**CONFIG.to_dict(), "n_embd": 64, "n_positions": 64, "vocab_size": 256})
    states = {tree: get_module(tree, MODULE).GPT(config, dtype="float64", rng=np.random.default_rng(3))
              .canonical_state_dict() for tree in TREES}
    for tree in TREES[1:]:
        for name, value in states["numpy"].items():
            np.testing.assert_array_equal(states[tree][name], value, err_msg=f"{tree} {name}")
    state = states["numpy"]
    projection = 0.02 / np.sqrt(2 * config.n_layer)
    for name, value in state.items():
        if ".ln_" in name or name.endswith("bias"):
            # LayerNorms (ln_1, ln_2, ln_f) start as the identity; every bias at 0.
            expected = 1.0 if ".ln_" in name and name.endswith("weight") else 0.0
            np.testing.assert_array_equal(value, expected, err_msg=name)
        else:
            std = projection if name.endswith("c_proj.weight") else 0.02
            assert abs(value.std() / std - 1) < 0.1, name
