"""Day 51: the KV cache and generation in three trees.

Reference: ``transformers.GPT2LMHeadModel`` (day 49's offline model, eager attention) decoding with
its ``DynamicCache`` (``past_key_values``), step by step, and its ``generate(do_sample=False)``.
Every step of a trajectory (the prompt, then one token at a time) compares, across the trees and
Hugging Face: the cached logits, the uncached logits of the whole sequence so far (their last rows),
and every layer's cached keys and values; then, inside each tree and Hugging Face, the cached logits
must equal the uncached ones at every step. Inference only: no gradient flows into the cache, so no
backward is checked (the GPT's own backward is day 49's).
"""
import numpy as np
import pytest
import torch
from transformers import DynamicCache

from ml100.backends import get_module
from ml100.configs import GPTConfig
from parity_tests.harness import TREES, Trajectory, assert_no_failures, assert_raises_exactly, check_trajectory
from parity_tests.harness.compare import compare_tensors
from parity_tests.modern.test_gpt import CONVERTERS, hf_model, hf_state_to_gpt

MODULE = "modern.kv_cache"
B, PROMPT, NEW = 2, 3, 5
CONFIG = GPTConfig(vocab_size=40, n_positions=PROMPT + NEW, n_embd=16, n_layer=2, n_head=4, resid_pdrop=0.0,
                   embd_pdrop=0.0, attn_pdrop=0.0)
#: One sequence for teacher-forced decoding: the prompt, then one token per step.
IDS = np.random.default_rng(11).integers(0, CONFIG.vocab_size, (B, PROMPT + NEW))


def shared_state() -> dict:
    """Hugging Face's own random initialization, std 0.5 instead of 0.02 (logits far from uniform, so
    a wrong key or position shows), in the canonical names."""
    model = hf_model(CONFIG, "float64")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.5)
    return hf_state_to_gpt({name: value.detach().numpy().copy() for name, value in model.state_dict().items()})


STATE = shared_state()


def to_numpy(value) -> np.ndarray:
    return value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def window(t: int) -> tuple[int, int]:
    """The positions step ``t`` feeds: the prompt at step 1, then position ``PROMPT + t - 2``."""
    return (0, PROMPT) if t == 1 else (PROMPT + t - 2, PROMPT + t - 1)


def tree_start(tree: str, dtype: str):
    gpt = get_module(tree, "modern.gpt").GPT(CONFIG, dtype=dtype)
    gpt.load_canonical_state_dict({name: value.astype(dtype) for name, value in STATE.items()})
    gpt.eval()
    topic = get_module(tree, MODULE)
    return {"tree": tree, "gpt": gpt, "cache": topic.KVCache(CONFIG.n_layer, CONFIG.n_positions)}


def tree_step(state: dict, t: int) -> dict:
    """Feed step ``t``'s tokens through the cache, and the whole sequence so far without one."""
    convert, (start, stop) = CONVERTERS[state["tree"]], window(t)
    with get_module(state["tree"], "module").no_grad():
        cached, _ = state["gpt"](convert(IDS[:, start:stop]), cache=state["cache"])  # (B, stop - start, V)
        uncached, _ = state["gpt"](convert(IDS[:, :stop]))  # (B, stop, V)
    arrays = {"logits": to_numpy(cached), "logits without cache": to_numpy(uncached)[:, start:stop]}
    for layer in range(CONFIG.n_layer):
        arrays[f"layer {layer} keys"] = to_numpy(state["cache"].keys[layer])  # (B, H, stop, d)
        arrays[f"layer {layer} values"] = to_numpy(state["cache"].values[layer])
    return arrays


def hf_start(dtype: str):
    model = hf_model(CONFIG, dtype).eval()
    model.load_state_dict({name: torch.from_numpy(value.astype(dtype)) for name, value in
                           {**STATE, "lm_head.weight": STATE["transformer.wte.weight"]}.items()})
    return {"model": model, "cache": DynamicCache(config=model.config)}


def hf_step(state: dict, t: int) -> dict:
    start, stop = window(t)
    with torch.no_grad():
        cached = state["model"](torch.from_numpy(IDS[:, start:stop]), cache=state["cache"], use_cache=True)
        uncached = state["model"](torch.from_numpy(IDS[:, :stop]), use_cache=False)
    arrays = {"logits": cached.logits.numpy(), "logits without cache": uncached.logits.numpy()[:, start:stop]}
    for layer in range(CONFIG.n_layer):
        arrays[f"layer {layer} keys"] = state["cache"].layers[layer].keys.numpy()
        arrays[f"layer {layer} values"] = state["cache"].layers[layer].values.numpy()
    return arrays


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cached_decoding_trajectory(dtype):
    """Every step, every tree and Hugging Face's past_key_values agree; and in each of them the cached
    logits equal the uncached ones."""
    trajectory = Trajectory(steps=NEW + 1, start=tree_start, step=tree_step,
                            references={"transformers DynamicCache": (hf_start, hf_step)})
    histories = check_trajectory(trajectory, dtype, "KV-cache decoding")
    failures = []
    for name, history in histories.items():
        for t, arrays in enumerate(history, start=1):
            compare_tensors(f"logits at step {t}", f"{name} cached vs uncached", arrays["logits"],
                            arrays["logits without cache"], dtype, failures)
    assert_no_failures(failures, f"cached vs uncached logits ({dtype})")


def test_generate_greedy_matches_hugging_face():
    """Greedy ids of every tree, with and without the cache, equal ``GPT2LMHeadModel.generate``'s."""
    model = hf_start("float64")["model"]
    prompt = IDS[:, :PROMPT]
    expected = model.generate(torch.from_numpy(prompt), max_new_tokens=NEW, do_sample=False, pad_token_id=0).numpy()
    for tree in TREES:
        gpt = tree_start(tree, "float64")["gpt"]
        for use_cache in (True, False):
            ids = get_module(tree, MODULE).generate(gpt, CONVERTERS[tree](prompt), NEW, use_cache=use_cache)
            np.testing.assert_array_equal(to_numpy(ids), expected, err_msg=f"{tree}, use_cache={use_cache}")


def test_generate_sampling_is_the_same_in_every_tree():
    """With uniforms passed in, top-k and top-p sampling gives the same ids in every tree, cached or not."""
    uniforms = np.random.default_rng(4).random((NEW, B))
    outcomes = {}
    for tree in TREES:
        gpt = tree_start(tree, "float64")["gpt"]
        for use_cache in (True, False):
            ids = get_module(tree, MODULE).generate(gpt, CONVERTERS[tree](IDS[:, :PROMPT]), NEW, temperature=0.7,
                                                    top_k=10, top_p=0.9, uniforms=CONVERTERS[tree](uniforms),
                                                    use_cache=use_cache)
            outcomes[f"{tree}, use_cache={use_cache}"] = to_numpy(ids)
    first = next(iter(outcomes.values()))
    assert first.shape == (B, PROMPT + NEW) and first.dtype == np.int64
    for name, ids in outcomes.items():
        np.testing.assert_array_equal(ids, first, err_msg=name)


def update_twice(topic, convert, max_length: int, first: np.ndarray, second: np.ndarray) -> None:
    """Two updates of layer 0 of a two-layer cache, each with one array as key and value."""
    cache = topic.KVCache(2, max_length)
    for key in (first, second):
        cache.update(0, convert(key), convert(key))


def decode_twice(gpt, topic, convert, first_steps: int, second_steps: int) -> None:
    """Two cached forwards of an eval-mode GPT, the sequence's first tokens each time."""
    cache = topic.KVCache(gpt.config.n_layer, 16)
    for steps in (first_steps, second_steps):
        gpt(convert(IDS[:, :steps]), cache=cache)


def error_cases():
    """(what, call(topic, gpt_topic, convert), error, message), the same text in every tree."""
    key = np.zeros((B, 4, 3, 4))

    def eval_gpt(gpt_topic, config=CONFIG):
        return gpt_topic.GPT(config).eval()

    dropout = GPTConfig(**{**CONFIG.to_dict(), "resid_pdrop": 0.1})
    return [
        ("cache full", lambda t, g, cv: update_twice(t, cv, 4, key, key[:, :, :2]), ValueError,
         "KVCache: full: 3 cached + 2 new steps exceed max_length = 4"),
        ("layer out of range", lambda t, g, cv: t.KVCache(2, 4).update(2, cv(key), cv(key)), ValueError,
         "KVCache: layer must be an int in [0, 2), got 2"),
        ("value of another shape", lambda t, g, cv: t.KVCache(2, 4).update(0, cv(key), cv(key[:, :2])), ValueError,
         "KVCache: value must have shape (2, 4, 3, 4), got (2, 2, 3, 4)"),
        ("another batch than the cache's", lambda t, g, cv: update_twice(t, cv, 8, key, key[:1, :, :1]), ValueError,
         "KVCache: key must have shape (2, 4, 1, 4) (the cached batch, heads and head width), got (1, 4, 1, 4)"),
        ("3-d key", lambda t, g, cv: t.KVCache(2, 4).update(0, cv(key[0]), cv(key[0])), ValueError,
         "KVCache: key must have 4 dimensions, got shape (4, 3, 4)"),
        ("no layers", lambda t, g, cv: t.KVCache(0, 4), ValueError, "KVCache: n_layer must be an int >= 1, got 0"),
        ("prompt + new past n_positions", lambda t, g, cv: t.generate(eval_gpt(g), cv(IDS[:, :PROMPT]), NEW + 1),
         ValueError, f"generate: {PROMPT} prompt + {NEW + 1} new tokens exceed n_positions = {PROMPT + NEW}"),
        ("no new tokens", lambda t, g, cv: t.generate(eval_gpt(g), cv(IDS[:, :PROMPT]), 0), ValueError,
         "generate: max_new_tokens must be an int >= 1, got 0"),
        ("uniforms of another shape", lambda t, g, cv: t.generate(eval_gpt(g), cv(IDS[:, :PROMPT]), 2,
                                                               uniforms=cv(np.zeros((2, B + 1)))), ValueError,
         f"generate: uniforms must have shape (2, {B}), got (2, {B + 1})"),
        ("cache with dropout in training", lambda t, g, cv: g.GPT(dropout)(cv(IDS[:, :1]), cache=t.KVCache(2, 4)),
         ValueError, "GPT: decoding with a KVCache is inference only; call model.eval() (or use dropout 0) first"),
        ("more tokens than the positions left", lambda t, g, cv: decode_twice(eval_gpt(g), t, cv, 6, 3), ValueError,
         f"GPT: 6 cached + 3 new tokens exceed n_positions = {PROMPT + NEW} (the rows of the position table wpe)"),
    ]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, call, error, message", error_cases(), ids=[case[0] for case in error_cases()])
def test_errors(tree, what, call, error, message):
    assert_raises_exactly(error, message, lambda: call(get_module(tree, MODULE), get_module(tree, "modern.gpt"),
                                                       CONVERTERS[tree]))


def test_cache_is_inference_only_in_torch():
    """Under ``no_grad`` (as ``generate`` runs) the cached keys carry no graph: nothing to backpropagate."""
    state = tree_start("torch", "float64")
    tree_step(state, 1)
    assert not state["cache"].keys[0].requires_grad and state["cache"].keys[0].grad_fn is None
