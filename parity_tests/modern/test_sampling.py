"""Day 50: decoding — temperature, top-k and top-p warpers, greedy and inverse-CDF sampling, in three trees.

Reference: Hugging Face's ``TemperatureLogitsWarper``, ``TopKLogitsWarper`` and ``TopPLogitsWarper``
(a ``LogitsProcessorList`` chained in ``generate``'s order) on the same scores, and ``torch.argmax``
as ``generate`` picks greedily. Forward-only cases: the warped scores must be *identical* (``-inf``
positions included) and the tokens equal. Hugging Face draws with ``torch.multinomial`` and its own
generator, so for sampling the reference is the inverse CDF written with ``torch.searchsorted`` on
Hugging Face's warped probabilities, with the same uniforms.

One true difference: Hugging Face's top-p sorts with ``torch.sort``, which on CPU is not stable for
longer rows, so *which* of several tied tokens at the nucleus boundary survives is an accident of
torch's sort; the trees sort stably (the lower index goes first) and agree with Hugging Face on how
many survive and on their scores (``test_top_p_ties_at_the_boundary``).
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, Result, assert_no_failures, assert_raises_exactly, build_models,
                                  check_parity, compare_exact, run_all_trees, run_reference, to_tree)
from parity_tests.harness.special import check_special_values

MODULE = "modern.sampling"
BATCH, VOCAB = 4, 11
HF = "transformers.LogitsProcessorList"
#: warp()'s settings, each a row of Hugging Face's generate options (temperature, top_k, top_p, min_tokens_to_keep).
SETTINGS = {
    "temperature": dict(temperature=0.7),
    "top_k": dict(top_k=4),
    "top_p": dict(top_p=0.8),
    "all three": dict(temperature=1.3, top_k=6, top_p=0.6, min_tokens_to_keep=2),
    "top_k > V": dict(top_k=50),
    "tiny top_p": dict(top_p=1e-9),
    "top_p = 0, keep 3": dict(top_p=0.0, min_tokens_to_keep=3),
}


def hf_warpers(temperature=1.0, top_k=0, top_p=1.0, min_tokens_to_keep=1, filter_value=-math.inf) -> LogitsProcessorList:
    """Hugging Face's warpers, chosen and ordered as ``generate`` does for sampling."""
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k != 0:
        warpers.append(TopKLogitsWarper(top_k, filter_value=filter_value, min_tokens_to_keep=min_tokens_to_keep))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p, filter_value=filter_value, min_tokens_to_keep=min_tokens_to_keep))
    return warpers


def draw_scores(dtype: str, rng: np.random.Generator) -> dict:
    """Logits of spread ~2, so that every warper removes some tokens and keeps others."""
    return {"scores": (2.0 * rng.standard_normal((BATCH, VOCAB))).astype(dtype)}


def warp_and_pick(module, options: dict):
    """The tree's ``warp`` with ``options``, then ``greedy`` on the warped scores."""
    def call(scores):
        warped = module.warp(scores, **options)
        return warped, module.greedy(warped)
    return call


def hf_warp_reference(options: dict):
    def run(state, inputs, cotangents, dtype):
        warped = hf_warpers(**options)(None, torch.from_numpy(inputs["scores"]))
        return Result([warped.numpy(), torch.argmax(warped, dim=-1).numpy()], {}, {})
    return run


def warp_case(options: dict) -> Case:
    return Case(module=MODULE, build=lambda module, dtype, rng: warp_and_pick(module, options), inputs=draw_scores,
                differentiable=(), output_names=("warped", "greedy"), forward_only=True,
                references={HF: hf_warp_reference(options)})


def assert_identical(results: dict, what: str) -> None:
    """Every output of every implementation bit for bit equal to the first one's (``-inf`` included)."""
    failures = []
    (first, expected), *others = results.items()
    for name, result in others:
        for label, a, b in zip(expected.output_labels(), expected.outputs, result.outputs):
            compare_exact(label, f"{first} vs {name}", a, b, failures)
    assert_no_failures(failures, what)


def run_everyone(case: Case, dtype: str, inputs: dict) -> dict:
    results = {HF: run_reference(case, HF, {}, inputs, None, dtype)}
    results.update(run_all_trees(case, dtype, inputs, None))
    return results


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", SETTINGS)
def test_warp_matches_hugging_face_exactly(name, dtype):
    case = warp_case(SETTINGS[name])
    inputs = case.inputs(dtype, np.random.default_rng(case.seed + 2))
    results = run_everyone(case, dtype, inputs)
    assert_identical(results, f"warp({name}) in {dtype}")
    # Every setting but a pure temperature removes something, and keeps something, in this draw.
    removed = np.isneginf(results[HF].outputs[0])
    assert removed.any() == (name not in ("temperature", "top_k > V")) and not removed.all(axis=-1).any()


@pytest.mark.parametrize("name", SETTINGS)
def test_warp_special_values_and_empty_batch(name):
    """NaN, ±inf and huge scores (and a batch of 0) give Hugging Face's pattern: a NaN counts as the
    largest score in top-k (torch.topk), a row with NaN or +inf loses nothing in top-p (its
    probabilities are all NaN), greedy picks the first NaN."""
    case = warp_case(SETTINGS[name])
    inputs = case.inputs("float64", np.random.default_rng(case.seed + 2))
    check_special_values(case, build_models(case, "float64"), {}, inputs, None)


def warper_chain(module, dtype: str):
    """The three classes with a finite ``filter_value`` (every output finite: the full protocol applies)."""
    warpers = [module.Temperature(0.8, dtype=dtype), module.TopK(5, filter_value=-1e4, min_tokens_to_keep=2, dtype=dtype),
               module.TopP(0.7, filter_value=-1e4, min_tokens_to_keep=2, dtype=dtype)]

    def call(scores):
        for warper in warpers:
            scores = warper(scores)
        return scores
    return call


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_warper_classes_parity(dtype):
    def reference(state, inputs, cotangents, dtype):
        warpers = LogitsProcessorList([TemperatureLogitsWarper(0.8), TopKLogitsWarper(5, -1e4, 2), TopPLogitsWarper(0.7, -1e4, 2)])
        return Result([warpers(None, torch.from_numpy(inputs["scores"])).numpy()], {}, {})
    case = Case(module=MODULE, build=lambda module, dtype, rng: warper_chain(module, dtype), inputs=draw_scores,
                differentiable=(), output_names=("warped",), forward_only=True, references={HF: reference})
    results = check_parity(case, dtype)
    assert_identical(results, f"Temperature, TopK, TopP with filter_value -1e4 ({dtype})")


def one_warper_everywhere(make, scores: np.ndarray) -> dict:
    """``make(module_or_hf)`` built in every tree and from Hugging Face's classes, applied to ``scores`` (float64)."""
    results = {HF: Result([make(None)(None, torch.from_numpy(scores)).numpy()], {}, {})}
    for tree in TREES:
        results[tree] = Result([np.asarray(make(get_module(tree, MODULE))(to_tree(tree, scores)))], {}, {})
    return results


def test_top_k_keeps_every_tie_with_the_kth_largest():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0, 0.0], [5.0, 4.0, 4.0, 4.0, 1.0, 0.0]])
    results = one_warper_everywhere(lambda m: TopKLogitsWarper(2) if m is None else m.TopK(2, dtype="float64"), scores)
    assert_identical(results, "top-k ties")
    # Three tokens tie at the 2nd largest (3.0) in row 0; row 1 keeps the 5 and all three 4s.
    np.testing.assert_array_equal(np.isfinite(results["numpy"].outputs[0]).sum(axis=-1), [3, 4])


def test_top_p_ties_at_the_boundary():
    """All-equal scores hold exactly representable probabilities (1/4), so the boundary is hit exactly:
    cumulative 0.25, 0.5, 0.75, 1 and top_p = 0.5 removes the two first in the sort — stably, tokens 0
    and 1. Hugging Face agrees on this short row; on a longer one torch's unstable sort may keep
    other tied tokens than the trees, but always as many, with the same scores."""
    short = np.zeros((1, 4))
    results = one_warper_everywhere(lambda m: TopPLogitsWarper(0.5) if m is None else m.TopP(0.5, dtype="float64"), short)
    assert_identical(results, "top-p ties, 4 tokens")
    np.testing.assert_array_equal(results["numpy"].outputs[0], [[-np.inf, -np.inf, 0.0, 0.0]])
    long = np.tile([1.0, 3.0, 1.0, 2.0, 3.0, 1.0, 0.0, 3.0], (1, 4))  # (1, 32) many ties
    results = one_warper_everywhere(lambda m: TopPLogitsWarper(0.5) if m is None else m.TopP(0.5, dtype="float64"), long)
    hf, trees = results.pop(HF).outputs[0], results
    assert_identical(trees, "top-p ties, 32 tokens (trees)")
    kept = np.isfinite(trees["numpy"].outputs[0])
    assert kept.sum() == np.isfinite(hf).sum()
    np.testing.assert_array_equal(np.sort(long[kept]), np.sort(long[np.isfinite(hf)]))
    # The stable rule: of the tied 3.0s (indices 1, 4, 7, ...), the highest indices stay.
    threes = np.flatnonzero(long[0] == 3.0)
    assert kept[0, threes].tolist() == sorted(kept[0, threes].tolist())


def test_top_p_of_one_removes_only_probability_zero():
    """Hugging Face's rule at top_p = 1: cumulative <= 0 removes the tokens whose probability
    underflows to 0 (``generate`` skips the warper at 1.0; the class still applies it)."""
    scores = np.array([[0.0, -1000.0, 1.0, -745.0], [2.0, 1.0, 0.0, -1.0]])
    results = one_warper_everywhere(lambda m: TopPLogitsWarper(1.0) if m is None else m.TopP(1.0, dtype="float64"), scores)
    assert_identical(results, "top_p = 1")
    np.testing.assert_array_equal(np.isneginf(results["numpy"].outputs[0]), [[False, True, False, True], [False] * 4])


def sample_case() -> Case:
    options = SETTINGS["all three"]

    def build(module, dtype, rng):
        return lambda scores, uniforms: module.sample(module.warp(scores, **options), uniforms)

    def reference(state, inputs, cotangents, dtype):
        warped = hf_warpers(**options)(None, torch.from_numpy(inputs["scores"]))
        cdf = torch.softmax(warped, dim=-1).double().cumsum(dim=-1)  # (B, V)
        uniforms = torch.from_numpy(inputs["uniforms"])
        return Result([torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None], right=True)[:, 0].numpy()], {}, {})

    def inputs(dtype, rng):
        return {**draw_scores(dtype, rng), "uniforms": rng.random(BATCH)}

    return Case(module=MODULE, build=build, inputs=inputs, differentiable=(), output_names=("tokens",), forward_only=True,
                references={HF: reference})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sample_parity(dtype):
    check_parity(sample_case(), dtype)


@pytest.mark.parametrize("tree", TREES)
def test_sample_frequencies_are_the_probabilities(tree):
    """Uniforms on a grid of n points: each token is drawn n * p times, to within one; filtered tokens never."""
    module = get_module(tree, MODULE)
    n = 2000
    logits = np.array([[0.5, -1.0, 2.0, 0.0, -3.0, 1.0]])
    warped = module.warp(to_tree(tree, np.repeat(logits, n, axis=0)), top_k=4)  # (n, 6)
    tokens = np.asarray(module.sample(warped, to_tree(tree, (np.arange(n) + 0.5) / n)))
    probabilities = np.exp(logits[0] - logits[0].max()) * (logits[0] >= 0.0)
    probabilities /= probabilities.sum()
    counts = np.bincount(tokens, minlength=6)
    assert np.all(np.abs(counts - n * probabilities) <= 1.0), (counts, n * probabilities)


@pytest.mark.parametrize("tree", TREES)
def test_sample_ends_of_the_unit_interval_pick_tokens_that_can_be_drawn(tree):
    """u = 0 draws the first token of positive probability, the largest u below 1 the last one, even
    when the tokens around them were filtered (probability 0)."""
    module = get_module(tree, MODULE)
    scores = np.array([[-np.inf, 1.0, 2.0, -np.inf], [-np.inf, 1.0, 2.0, -np.inf]])
    uniforms = np.array([0.0, np.nextafter(1.0, 0.0)])
    np.testing.assert_array_equal(np.asarray(module.sample(to_tree(tree, scores), to_tree(tree, uniforms))), [1, 2])


@pytest.mark.parametrize("tree", TREES)
def test_greedy_takes_the_first_maximum_and_nan_first(tree):
    """torch.argmax's rules, which ``generate``'s greedy search uses: the first of tied maxima; a NaN
    counts as the maximum (TF's argmax skips NaN: the TF tree looks for it first)."""
    module = get_module(tree, MODULE)
    scores = np.array([[1.0, 3.0, 3.0, 2.0], [1.0, np.inf, np.nan, np.nan], [-np.inf] * 4])
    expected = torch.argmax(torch.from_numpy(scores), dim=-1).numpy()
    np.testing.assert_array_equal(np.asarray(module.greedy(to_tree(tree, scores))), expected)
    np.testing.assert_array_equal(expected, [1, 2, 0])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 3), vocab=st.integers(1, 8), top_k=st.integers(0, 9), top_p=st.sampled_from([1.0, 0.9, 0.5, 0.1, 0.0]),
       temperature=st.sampled_from([1.0, 0.5, 2.0]), keep=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_fuzz_warp_against_hugging_face(batch, vocab, top_k, top_p, temperature, keep, seed):
    """Small shapes, integer-valued scores (so ties are common), every tree bit for bit equal to Hugging Face."""
    scores = np.random.default_rng(seed).integers(-3, 4, size=(batch, vocab)).astype(np.float64)
    options = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_tokens_to_keep=keep)
    results = {HF: Result([hf_warpers(**options)(None, torch.from_numpy(scores)).numpy()], {}, {})}
    for tree in TREES:
        results[tree] = Result([np.asarray(get_module(tree, MODULE).warp(to_tree(tree, scores), **options))], {}, {})
    assert_identical(results, f"warp{options} on {scores.tolist()}")


CONSTRUCTOR_ERRORS = [
    ("Temperature", (0.0,), {}, ValueError, "Temperature: temperature must be > 0, got 0.0"),
    ("Temperature", (-1,), {}, ValueError, "Temperature: temperature must be > 0, got -1"),
    ("Temperature", ("hot",), {}, TypeError, "Temperature: temperature must be a real number, got 'hot'"),
    ("TopK", (0,), {}, ValueError, "TopK: top_k must be an int >= 1, got 0"),
    ("TopK", (2.5,), {}, ValueError, "TopK: top_k must be an int >= 1, got 2.5"),
    ("TopK", (3,), {"min_tokens_to_keep": 0}, ValueError, "TopK: min_tokens_to_keep must be an int >= 1, got 0"),
    ("TopP", (1.5,), {}, ValueError, "TopP: top_p must be in [0, 1], got 1.5"),
    ("TopP", (-0.1,), {}, ValueError, "TopP: top_p must be in [0, 1], got -0.1"),
    ("TopP", (0.5,), {"filter_value": math.nan}, ValueError, "TopP: filter_value must be in [-inf, inf), got nan"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("name, args, kwargs, error, message", CONSTRUCTOR_ERRORS)
def test_constructor_errors(tree, name, args, kwargs, error, message):
    assert_raises_exactly(error, message, lambda: getattr(get_module(tree, MODULE), name)(*args, **kwargs))


@pytest.mark.parametrize("tree", TREES)
def test_input_errors(tree):
    module = get_module(tree, MODULE)
    scores = np.zeros((2, 3))
    as_tree = lambda array: to_tree(tree, array)  # noqa: E731 - one conversion, many calls
    assert_raises_exactly(ValueError, "TopK: scores must have 2 dimensions, got shape (3,)",
                          lambda: module.TopK(2, dtype="float64")(as_tree(scores[0])))
    assert_raises_exactly(TypeError, "TopP: scores must have dtype float32, got float64 (cast it explicitly)",
                          lambda: module.TopP(0.5)(as_tree(scores)))
    assert_raises_exactly(ValueError, "Temperature: scores must have at least one token, shape (B, V) with V >= 1, got (2, 0)",
                          lambda: module.Temperature(2.0, dtype="float64")(as_tree(np.zeros((2, 0)))))
    assert_raises_exactly(TypeError, "greedy: scores must have dtype float32 or float64, got int64",
                          lambda: module.greedy(as_tree(np.zeros((2, 3), dtype=np.int64))))
    assert_raises_exactly(ValueError, "warp: top_p must be in [0, 1], got 1.5", lambda: module.warp(as_tree(scores), top_p=1.5))
    assert_raises_exactly(ValueError, "sample: uniforms must have shape (2,), got (3,)",
                          lambda: module.sample(as_tree(scores), as_tree(np.zeros(3))))
    assert_raises_exactly(TypeError, "sample: uniforms must have dtype float64, got float32 (cast it explicitly)",
                          lambda: module.sample(as_tree(scores), as_tree(np.zeros(2, dtype=np.float32))))
    assert_raises_exactly(ValueError, "sample: uniforms must lie in [0, 1), one draw per row of scores",
                          lambda: module.sample(as_tree(scores), as_tree(np.array([0.5, 1.0]))))


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "+inf", "all -inf"])
def test_sample_refuses_a_row_that_is_no_distribution(tree, bad):
    """A row holding NaN or +inf, or only -inf, has no probabilities: torch.multinomial (Hugging Face's
    draw) raises on it, and so does every tree, with one message."""
    scores = np.zeros((3, 4))
    scores[1] = -math.inf if bad == -math.inf else [0.0, bad, 1.0, 2.0]
    with pytest.raises(RuntimeError):
        torch.multinomial(torch.softmax(torch.from_numpy(scores), dim=-1), 1)
    module = get_module(tree, MODULE)
    with np.errstate(invalid="ignore"):
        assert_raises_exactly(ValueError, "sample: scores row 1 is not a distribution: it holds NaN or +inf, or every score is -inf",
                              lambda: module.sample(to_tree(tree, scores), to_tree(tree, np.full(3, 0.5))))
