"""Day 69: Llama (Hugging Face's ``LlamaForCausalLM``) in three trees.

Reference: ``transformers.LlamaForCausalLM`` built offline from a small ``LlamaConfig`` (vocabulary 64,
width 32, MLP 64, 2 layers, 4 query heads with 2 key/value heads (GQA) or 4 (MHA, tied head and
biases), 32 positions), its state dict loaded from the canonical one by :func:`llama_state_to_hf`.
Logits, the shifted mean loss and every parameter gradient are compared in float32 and float64.

Float32: Hugging Face as it is (eager attention). Float64: Hugging Face computes three steps in
float32 whatever the model's dtype — ``LlamaRMSNorm`` casts its input to float32, the rotary angles
come from a float32 ``inv_freq`` and float32 positions, and eager attention's softmax runs in
float32 — so a ``.double()`` model is a float32 model in those places, about 1e-8 off
(:func:`test_hf_float64_computes_three_steps_in_float32` pins it). The float64 reference therefore
replaces, in the reference only, ``LlamaRMSNorm.forward`` by the same formula in the input's dtype
and ``LlamaRotaryEmbedding.forward`` by the same angles in float64 (:func:`hf_in_float64`), and uses
Hugging Face's ``sdpa`` attention (the same function, torch's math in the input's dtype). Its loss is
computed as the trees' (day 49's ``lm_loss``: Hugging Face's own casts the logits to float32).
"""
import contextlib
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig as HFLlamaConfig
from transformers import LlamaForCausalLM as HFLlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding

from ml100.backends import get_module
from ml100.configs import ConfigError, LlamaConfig
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  gradcheck_numpy, run_numpy, run_torch)
from parity_tests.modern.test_gpt import HFCalled

MODULE = "modern.llama"
B, T = 2, 6
#: Grouped-query attention: 4 query heads share 2 key/value heads; a non-default eps and theta.
GQA = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5, rope_theta=500.0)
#: Plain multi-head attention (as many key/value heads as query heads), the tied head and every bias.
MHA_TIED = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, max_position_embeddings=32, rms_norm_eps=1e-5, attention_bias=True,
                       mlp_bias=True, tie_word_embeddings=True)
#: The smallest model for finite differences: every weight is perturbed twice.
TINY = LlamaConfig(vocab_size=7, hidden_size=8, intermediate_size=6, num_hidden_layers=1, num_attention_heads=2,
                   num_key_value_heads=1, max_position_embeddings=4, rms_norm_eps=1e-5)
TINY_TIED = LlamaConfig(**{**TINY.to_dict(), "num_key_value_heads": 2, "tie_word_embeddings": True,
                           "attention_bias": True, "mlp_bias": True})

#: Each tree's array type from a NumPy array.
CONVERTERS = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}


def llama_state_to_hf(state: dict, config: LlamaConfig) -> dict:
    """The canonical Llama state -> ``LlamaForCausalLM.state_dict()``: the same names and layouts
    (``nn.Linear`` ``(out, in)``), plus ``lm_head.weight`` = ``model.embed_tokens.weight`` when tied
    (Hugging Face's state dict lists the shared tensor under both names)."""
    if not config.tie_word_embeddings:
        return dict(state)
    return {**state, "lm_head.weight": state["model.embed_tokens.weight"]}


def hf_state_to_llama(hf_state: dict, config: LlamaConfig) -> dict:
    """``LlamaForCausalLM.state_dict()`` -> the canonical Llama state: with a tied head, drop
    ``lm_head.weight`` after checking that it is the table itself."""
    state = dict(hf_state)
    if config.tie_word_embeddings:
        head = state.pop("lm_head.weight")
        if not np.array_equal(np.asarray(head), np.asarray(state["model.embed_tokens.weight"])):
            raise ValueError("lm_head.weight differs from model.embed_tokens.weight, but tie_word_embeddings is set")
    return state


def hf_model(config: LlamaConfig, dtype: str, attn_implementation: str = "eager") -> HFLlamaForCausalLM:
    """A Hugging Face Llama with the same architecture, built offline (no download)."""
    hf_config = HFLlamaConfig(**config.to_dict(), attn_implementation=attn_implementation, bos_token_id=0,
                              eos_token_id=0, pad_token_id=None)
    return HFLlamaForCausalLM(hf_config).to(getattr(torch, dtype)).eval()


def rms_norm_in_input_dtype(self, hidden_states):
    """``LlamaRMSNorm.forward`` without its float32 cast: the same formula in the input's dtype."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def rotary_in_float64(self, x, position_ids):
    """``LlamaRotaryEmbedding.forward`` with its frequencies and angles in float64 (its own are float32)."""
    dim = 2 * self.inv_freq.numel()
    theta = self.config.rope_parameters["rope_theta"]
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (d/2,)
    freqs = position_ids[..., None].to(torch.float64) * inv_freq  # (B, T, d/2)
    angles = torch.cat((freqs, freqs), dim=-1)  # (B, T, d)
    return angles.cos().to(x.dtype), angles.sin().to(x.dtype)


@contextlib.contextmanager
def hf_in_float64():
    """Hugging Face's Llama with its two float32 steps in float64 (the reference only; see the module docstring)."""
    with mock.patch.object(LlamaRMSNorm, "forward", rms_norm_in_input_dtype), \
            mock.patch.object(LlamaRotaryEmbedding, "forward", rotary_in_float64):
        yield


def hf_reference(config: LlamaConfig):
    def run(state, inputs, cotangents, dtype):
        # float64: sdpa (torch's math in float64) instead of eager's float32 softmax, and the patches.
        model = hf_model(config, dtype, "sdpa" if dtype == "float64" else "eager")
        model.load_state_dict({name: torch.from_numpy(v) for name, v in llama_state_to_hf(state, config).items()})
        # named_parameters lists a tied weight once, under its first name: model.embed_tokens.weight.
        params = dict(model.named_parameters())
        with hf_in_float64() if dtype == "float64" else contextlib.nullcontext():
            return run_torch(HFCalled(model), inputs, (), cotangents, params)
    return run


def llama_inputs(config: LlamaConfig, batch: int = B, steps: int = T):
    """Ids and labels (one ignored with -100)."""
    def draw(dtype, rng):
        ids = rng.integers(0, config.vocab_size, (batch, steps))
        labels = ids.copy()
        if batch:
            labels[0, steps // 2] = -100
        return {"input_ids": ids, "labels": labels}
    return draw


def llama_case(config: LlamaConfig, steps: int = T) -> Case:
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.LlamaForCausalLM(config, dtype=dtype, rng=rng),
        inputs=llama_inputs(config, steps=steps),
        differentiable=(),
        references={"transformers LlamaForCausalLM": hf_reference(config)},
        output_names=("logits", "loss"),
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", [GQA, MHA_TIED], ids=["gqa", "mha tied biases"])
def test_parity(config, dtype):
    check_parity(llama_case(config), dtype)


@pytest.mark.parametrize("config", [TINY, TINY_TIED], ids=["gqa", "mha tied biases"])
def test_gradcheck_numpy(config):
    gradcheck_numpy(llama_case(config, steps=3))


def hf_float64_logits(config: LlamaConfig, patched: bool, state: dict, ids: np.ndarray) -> np.ndarray:
    model = hf_model(config, "float64", "sdpa" if patched else "eager")
    model.load_state_dict({name: torch.from_numpy(value) for name, value in llama_state_to_hf(state, config).items()})
    with hf_in_float64() if patched else contextlib.nullcontext(), torch.no_grad():
        return model(torch.from_numpy(ids)).logits.numpy()


def test_hf_float64_computes_three_steps_in_float32():
    """Unpatched, a float64 Hugging Face Llama misses the float64 logits by more than float64's
    tolerance (its RMSNorm, rotary angles and softmax run in float32) and agrees within float32's;
    with the float64 formulas of :func:`hf_in_float64` and ``sdpa`` it agrees within float64's."""
    rng = np.random.default_rng(4)
    ours = get_module("numpy", MODULE).LlamaForCausalLM(GQA, dtype="float64", rng=rng)
    state = {name: rng.uniform(-1.0, 1.0, value.shape) for name, value in ours.canonical_state_dict().items()}
    ours.load_canonical_state_dict(state)
    ids = rng.integers(0, GQA.vocab_size, (B, T))
    logits, _ = ours(ids)
    scale = np.abs(logits).max()
    plain = np.abs(hf_float64_logits(GQA, False, state, ids) - logits).max() / scale
    patched = np.abs(hf_float64_logits(GQA, True, state, ids) - logits).max() / scale
    assert 1e-9 < plain < 1e-5, plain
    assert patched < 1e-12, patched


def test_numpy_model_used_twice_sums_gradients():
    """Two forwards, two backwards (LIFO) in the NumPy tree = autograd through the sum of both in torch."""
    rng = np.random.default_rng(7)
    draw = llama_inputs(MHA_TIED)
    first, second = draw("float64", rng), draw("float64", rng)
    models = {tree: get_module(tree, MODULE).LlamaForCausalLM(MHA_TIED, dtype="float64", rng=np.random.default_rng(0))
              for tree in ("numpy", "torch")}
    models["torch"].load_canonical_state_dict(models["numpy"].canonical_state_dict())
    cotangents = [rng.standard_normal((B, T, MHA_TIED.vocab_size)) for _ in range(2)]
    numpy_llama = models["numpy"]
    numpy_llama.zero_grad()
    numpy_llama(first["input_ids"], first["labels"])
    numpy_llama(second["input_ids"], second["labels"])
    numpy_llama.backward(cotangents[1], np.array(0.5))
    numpy_llama.backward(cotangents[0], np.array(2.0))
    total = 0
    for inputs, cotangent, weight in zip((first, second), cotangents, (2.0, 0.5)):
        logits, loss = models["torch"](torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["labels"]))
        total = total + (logits * torch.from_numpy(cotangent)).sum() + weight * loss
    total.backward()
    grads = numpy_llama.canonical_grads()
    for name, param in models["torch"].named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("config", [GQA, MHA_TIED], ids=["gqa", "mha tied biases"])
def test_hf_state_dict_round_trip_and_parameter_count(config):
    """A Hugging Face state dict loads into every tree through ``hf_state_to_llama`` and comes back
    through ``llama_state_to_hf`` unchanged (strict); ``LlamaConfig.parameter_counts`` sums to
    Hugging Face's parameter count and to every tree's canonical state."""
    model = hf_model(config, "float32")
    hf_state = {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}
    expected = sum(p.numel() for p in model.parameters())
    assert sum(config.parameter_counts().values()) == expected
    for tree in TREES:
        llama = get_module(tree, MODULE).LlamaForCausalLM(config, dtype="float32", rng=np.random.default_rng(1))
        llama.load_canonical_state_dict(hf_state_to_llama(hf_state, config))
        state = llama.canonical_state_dict()
        assert sum(value.size for value in state.values()) == expected, tree
        back = llama_state_to_hf(state, config)
        assert sorted(back) == sorted(hf_state), tree
        for name, value in hf_state.items():
            np.testing.assert_array_equal(back[name], value, err_msg=f"{tree} {name}")


def test_llama_2_7b_parameter_count():
    """Llama-2-7B's config (``meta-llama/Llama-2-7b-hf``'s config.json) gives its 6,738,415,616 parameters."""
    config = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                         rms_norm_eps=1e-5)
    assert sum(config.parameter_counts().values()) == 6_738_415_616


def test_single_token_and_empty_batch():
    """T = 1 has no next token to predict: the loss is a mean over nothing, NaN, in every tree (logits
    equal Hugging Face's). B = 0: the trees return empty logits and a NaN loss."""
    model = hf_model(GQA, "float64", "sdpa")
    state = hf_state_to_llama({k: v.detach().numpy() for k, v in model.state_dict().items()}, GQA)
    single = np.random.default_rng(2).integers(0, GQA.vocab_size, (B, 1))
    with hf_in_float64(), torch.no_grad():
        reference = model(torch.from_numpy(single)).logits.numpy()
    empty = np.zeros((0, T), dtype=np.int64)
    for tree in TREES:
        llama = get_module(tree, MODULE).LlamaForCausalLM(GQA, dtype="float64")
        llama.load_canonical_state_dict(state)
        convert = CONVERTERS[tree]
        for ids, expected in ((single, reference), (empty, np.zeros((0, T, GQA.vocab_size)))):
            logits, loss = llama(convert(ids), convert(ids))
            logits = logits.detach().numpy() if tree == "torch" else np.asarray(logits)
            np.testing.assert_allclose(logits, expected, rtol=1e-9, atol=1e-12, err_msg=tree)
            assert np.isnan(float(loss.detach() if tree == "torch" else loss)), tree


def error_cases():
    """(what, call(module, convert) -> None, error type, message): one bad argument each, the same text in
    every tree."""
    ids = np.zeros((1, 3), dtype=np.int64)
    too_long = np.zeros((1, GQA.max_position_embeddings + 1), dtype=np.int64)
    return [
        ("sequence longer than max_position_embeddings", lambda m, cv: m.LlamaForCausalLM(GQA)(cv(too_long)),
         ValueError,
         "LlamaForCausalLM: 33 tokens exceed max_position_embeddings = 32 (the positions the rotary tables cover)"),
        ("id out of range", lambda m, cv: m.LlamaForCausalLM(GQA)(cv(np.array([[1, 64, -1]]))), ValueError,
         "LlamaForCausalLM: input_ids must lie in [0, 64), got out-of-range values [-1, 64]"),
        ("float ids", lambda m, cv: m.LlamaForCausalLM(GQA)(cv(np.zeros((1, 3), dtype=np.float32))), TypeError,
         "LlamaForCausalLM: input_ids must have dtype int64, got float32 (cast it explicitly)"),
        ("1-d ids", lambda m, cv: m.LlamaForCausalLM(GQA)(cv(np.zeros(3, dtype=np.int64))), ValueError,
         "LlamaForCausalLM: input_ids must have 2 dimensions, got shape (3,)"),
        ("no tokens", lambda m, cv: m.LlamaForCausalLM(GQA)(cv(np.zeros((1, 0), dtype=np.int64))), ValueError,
         "LlamaForCausalLM: input_ids must hold at least one token per sequence, got shape (1, 0)"),
        ("label out of range", lambda m, cv: m.LlamaForCausalLM(GQA)(cv(ids), cv(np.array([[0, 64, -100]]))),
         ValueError, "LlamaForCausalLM: labels must lie in [0, 64) or be -100 (ignored), got [64]"),
        ("a dict for a config", lambda m, cv: m.LlamaForCausalLM(GQA.to_dict()), TypeError,
         f"LlamaForCausalLM: config must be an ml100.configs.LlamaConfig, got dict {GQA.to_dict()!r}; build one with "
         "LlamaConfig.from_dict(...)"),
    ]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, call, error, message", error_cases(), ids=[case[0] for case in error_cases()])
def test_errors(tree, what, call, error, message):
    assert_raises_exactly(error, message, lambda: call(get_module(tree, MODULE), CONVERTERS[tree]))


@pytest.mark.parametrize("changes, message", [
    ({"num_attention_heads": 3}, "LlamaConfig: num_attention_heads must divide hidden_size = 32, got 3"),
    ({"num_key_value_heads": 3}, "LlamaConfig: num_key_value_heads must divide num_attention_heads = 4, got 3"),
    ({"hidden_size": 12},
     "LlamaConfig: hidden_size must give an even head dimension when divided by num_attention_heads = 4 "
     "(RoPE turns channel pairs), got 12"),
    ({"rms_norm_eps": 0.0}, "LlamaConfig: rms_norm_eps must be > 0 (a zero row would divide 0 by 0), got 0.0"),
    ({"rope_theta": 1.0},
     "LlamaConfig: rope_theta must be > 1 (the frequencies theta_i = rope_theta^(-2i/d) must fall), got 1.0"),
    ({"num_hidden_layers": 0}, "LlamaConfig: num_hidden_layers must be an int >= 1, got 0"),
])
def test_config_errors(changes, message):
    assert_raises_exactly(ConfigError, message, lambda: LlamaConfig(**{**GQA.to_dict(), **changes}))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 3), steps=st.integers(3, 5), heads=st.sampled_from([(2, 1), (2, 2), (4, 1), (4, 2)]),
       layers=st.integers(1, 2), vocab=st.integers(5, 20), tied=st.booleans(), seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_hugging_face(batch, steps, heads, layers, vocab, tied, seed):
    """Random small models and inputs: the NumPy tree's logits, loss and every gradient equal
    Hugging Face's (float64, the reference of ``test_parity``)."""
    config = LlamaConfig(vocab_size=vocab, hidden_size=8, intermediate_size=6, num_hidden_layers=layers,
                         num_attention_heads=heads[0], num_key_value_heads=heads[1], max_position_embeddings=steps,
                         rms_norm_eps=1e-5, tie_word_embeddings=tied)
    rng = np.random.default_rng(seed)
    model = get_module("numpy", MODULE).LlamaForCausalLM(config, dtype="float64", rng=rng)
    state = {name: rng.uniform(-1.0, 1.0, value.shape) for name, value in model.canonical_state_dict().items()}
    model.load_canonical_state_dict(state)
    # Distinct tokens in each row: a row that repeats its first tokens has identical values there, so
    # the attention weights do not matter and q_proj/k_proj get an exactly-zero gradient (rounding noise only).
    ids = np.stack([rng.permutation(vocab)[:steps] for _ in range(batch)])  # (B, T)
    labels = ids.copy()
    labels[0, steps // 2] = -100
    inputs = {"input_ids": ids, "labels": labels}
    cotangents = [rng.standard_normal((batch, steps, vocab)), np.array(1.5)]
    ours = run_numpy(model, inputs, (), cotangents)
    theirs = hf_reference(config)(state, inputs, cotangents, "float64")
    assert_no_failures(compare_results({"numpy": ours, "transformers LlamaForCausalLM": theirs}, "float64"), "fuzz")
