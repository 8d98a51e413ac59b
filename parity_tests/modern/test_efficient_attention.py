"""Day 68: sliding-window and linear attention in three trees.

References, fed the same inputs:

- sliding window: torch's math backend (``torch.ops.aten._scaled_dot_product_attention_math``,
  which also returns the weights and takes a dropout mask, converted as on day 41) with the
  boolean mask that Hugging Face's own mask functions build — ``sliding_window_causal_mask_function``
  (Mistral's ``sliding_window``) or ``sliding_window_bidirectional_mask_function`` — so the window's
  meaning is Hugging Face's, not re-derived; the public ``F.scaled_dot_product_attention`` with that
  mask is compared on the output;
- linear attention: the same formula in its quadratic form written with torch autograd,
  :func:`quadratic_linear_attention` — :math:`(\\phi(Q)\\phi(K)^\\top \\odot M)V` normalized by its
  row sums — which the trees' linear form (sums regrouped, prefix sums when causal) must equal.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  gradcheck_numpy, run_numpy, run_torch)
from parity_tests.modern.test_attention import Bound, torch_dropout_arguments, torch_float_mask, tree_inputs

MODULE = "modern.efficient_attention"
B, H, T, E, EV = 2, 2, 5, 4, 3
P_DROP = 0.25
#: Why the quadratic reference sits out the special-values pass of linear attention.
QUADRATIC_REASON = ("another association of the same sums: an inf or a 1e100 feature overflows in phi(Q)phi(K)^T (one "
                    "product per pair) where the linear form first sums phi(K)^T V, so the NaN/inf patterns differ; "
                    "the three trees share the linear form and are compared with each other")


def hugging_face_window(query_len: int, key_len: int, window: int, symmetric: bool) -> np.ndarray:
    """``(L, S)`` boolean mask (True = take part) from Hugging Face's own mask functions."""
    from transformers import masking_utils
    make = (masking_utils.sliding_window_bidirectional_mask_function if symmetric
            else masking_utils.sliding_window_causal_mask_function)
    visible = make(window)
    return np.array([[bool(visible(0, 0, torch.tensor(i), torch.tensor(j))) for j in range(key_len)]
                     for i in range(query_len)], dtype=bool).reshape(query_len, key_len)


def sliding_case(shapes=((B, H, T, E), (B, H, T, E), (B, H, T, EV)), window=2, symmetric=False, dropout=False, **kwargs):
    """``SlidingWindowAttention(window, symmetric)`` on ``query, key, value`` of the given shapes,
    with an inverted-dropout mask when asked."""
    names = ("query", "key", "value") + (("dropout_mask",) if dropout else ())
    mask = hugging_face_window(shapes[0][-2], shapes[1][-2], window, symmetric)

    def inputs(dtype, rng):
        drawn = dict(zip(("query", "key", "value"), (rng.standard_normal(s).astype(dtype) for s in shapes)))
        if dropout:
            keep = rng.random(shapes[0][:-1] + (shapes[1][-2],)) >= P_DROP
            drawn["dropout_mask"] = np.where(keep, 1.0 / (1.0 - P_DROP), 0.0).astype(dtype)
        return drawn

    def reference(state, inputs, cotangents, dtype):
        def call(query, key, value, *masks):
            keep, p = torch_dropout_arguments(dict(zip(names[3:], masks)).get("dropout_mask"))
            output, weights = torch.ops.aten._scaled_dot_product_attention_math(
                query, key, value, torch_float_mask(torch.from_numpy(mask), query.dtype), p, False, keep,
                scale=kwargs.get("scale"))
            # The math backend returns the kept weights unscaled; the trees return those times 1/(1-p).
            return output, weights / (1.0 - p)
        return run_torch(call, inputs, ("query", "key", "value"), cotangents, params={})

    return Case(
        MODULE, lambda module, dtype, rng: Bound(module.SlidingWindowAttention(window, symmetric, dtype), names, False, **kwargs),
        inputs, ("query", "key", "value"), references={"torch.math+hf_mask": reference}, output_names=("output", "weights"),
        special_finite_inputs={"dropout_mask": "a keep-mask of 0 and 1/(1-p) by contract; torch takes it as booleans"}
        if dropout else {})


def quadratic_linear_attention(query, key, value, causal: bool, eps: float):
    """Linear attention's quadratic form with torch autograd: the ``(L, S)`` kernel matrix
    :math:`\\phi(Q)\\phi(K)^\\top` (causal: zero above the diagonal), times ``V``, over its row sums."""
    kernel = (F.elu(query) + 1.0) @ (F.elu(key) + 1.0).transpose(-1, -2)  # (..., L, S)
    if causal:
        kernel = torch.where(torch.ones(kernel.shape[-2:], dtype=torch.bool).tril(), kernel, 0.0)  # (..., L, S)
    return (kernel @ value) / (kernel.sum(dim=-1, keepdim=True) + eps)  # (..., L, dv)


def linear_case(shapes=((B, H, 3, E), (B, H, T, E), (B, H, T, EV)), causal=False, eps=1e-6):
    """``LinearAttention(causal, eps)`` on ``query, key, value`` of the given shapes."""
    def inputs(dtype, rng):
        return dict(zip(("query", "key", "value"), (rng.standard_normal(s).astype(dtype) for s in shapes)))

    def reference(state, inputs, cotangents, dtype):
        return run_torch(lambda q, k, v: quadratic_linear_attention(q, k, v, causal, eps), inputs,
                         ("query", "key", "value"), cotangents, params={})

    return Case(MODULE, lambda module, dtype, rng: module.LinearAttention(causal, eps, dtype), inputs,
                ("query", "key", "value"), references={"torch.quadratic": reference}, output_names=("output",),
                special_excluded_references={"torch.quadratic": QUADRATIC_REASON})


CAUSAL_SHAPES = ((B, H, T, E), (B, H, T, E), (B, H, T, EV))
CASES = {
    "sliding_causal": sliding_case(),
    "sliding_window_1": sliding_case(window=1),
    "sliding_wider_than_sequence": sliding_case(window=T + 3),
    "sliding_symmetric": sliding_case(window=1, symmetric=True),
    "sliding_more_queries": sliding_case(shapes=((B, 6, E), (B, 4, E), (B, 4, EV)), window=3),
    "sliding_dropout_scale": sliding_case(dropout=True, scale=0.7),
    "linear": linear_case(),
    "linear_causal": linear_case(CAUSAL_SHAPES, causal=True),
    "linear_causal_no_eps": linear_case(CAUSAL_SHAPES, causal=True, eps=0.0),
    "linear_unbatched": linear_case(((3, E), (T, E), (T, EV))),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    check_parity(CASES[name], dtype)


@pytest.mark.parametrize("name", ["sliding_causal", "sliding_symmetric", "sliding_dropout_scale", "linear",
                                  "linear_causal", "linear_unbatched"])
def test_gradcheck(name):
    gradcheck_numpy(CASES[name])


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("symmetric", [False, True])
def test_sliding_window_mask_matches_hugging_face(tree, symmetric):
    """Every tree's ``sliding_window_mask`` is Hugging Face's mask for windows 1..6 and up to 7 x 7
    (a square, more queries, more keys): causal ``i - w < j <= i`` (the window counts the current
    token), bidirectional ``|i - j| <= w``."""
    module = get_module(tree, MODULE)
    for window in range(1, 7):
        for query_len, key_len in ((7, 7), (7, 4), (3, 6)):
            ours = np.asarray(module.sliding_window_mask(query_len, key_len, window, symmetric))
            np.testing.assert_array_equal(ours, hugging_face_window(query_len, key_len, window, symmetric),
                                          err_msg=f"window {window}, L={query_len}, S={key_len}")


def test_sliding_window_is_masked_full_attention():
    """The public ``F.scaled_dot_product_attention`` with Hugging Face's mask gives the NumPy output;
    a window as wide as the sequence is plain causal attention (``is_causal=True``), bit for bit."""
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal(s) for s in CAUSAL_SHAPES)
    module = get_module("numpy", MODULE)
    expected = F.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)),
                                              attn_mask=torch.from_numpy(hugging_face_window(T, T, 2, False))).numpy()
    np.testing.assert_allclose(module.SlidingWindowAttention(2, dtype="float64")(q, k, v)[0], expected,
                               rtol=1e-9, atol=1e-12)
    causal = get_module("numpy", "modern.attention").ScaledDotProductAttention("float64")(q, k, v, is_causal=True)[0]
    np.testing.assert_array_equal(module.SlidingWindowAttention(T, dtype="float64")(q, k, v)[0], causal)


def test_linear_attention_non_causal_is_the_last_causal_row():
    """Non-causal linear attention over every key equals the causal output of the last position,
    where the prefix sums have reached every key."""
    rng = np.random.default_rng(6)
    q, k, v = (rng.standard_normal(s) for s in CAUSAL_SHAPES)
    module = get_module("numpy", MODULE)
    causal = module.LinearAttention(causal=True, dtype="float64")(q, k, v)
    full = module.LinearAttention(dtype="float64")(q[..., -1:, :], k, v)
    np.testing.assert_allclose(causal[..., -1:, :], full, rtol=1e-12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 2), steps=st.sampled_from([0, 2, 3, 4, 5]), width=st.integers(2, 3), causal=st.booleans(),
       seed=st.integers(0, 2**16))
def test_fuzz_linear_matches_quadratic(batch, steps, width, causal, seed):
    """Random small shapes (empty batch, no steps included), causal or not: the NumPy tree's linear
    form and its hand-written backward equal the quadratic form through autograd. One key and width 1
    are left out: with one key the output is that key's value, with width 1 the scalar phi(q) cancels
    in the ratio; either way the query's (and key's) gradient is only eps-sized and made of rounding
    noise in both forms."""
    rng = np.random.default_rng(seed)
    shapes = ((batch, steps, width), (batch, steps, width), (batch, steps, 2))
    case = linear_case(shapes, causal=causal)
    inputs = case.inputs("float64", rng)
    cotangents = [rng.standard_normal((batch, steps, 2))]
    ours = run_numpy(case.build(get_module("numpy", MODULE), "float64", rng), inputs, case.differentiable, cotangents)
    theirs = case.references["torch.quadratic"]({}, inputs, cotangents, "float64")
    assert_no_failures(compare_results({"numpy": ours, "torch.quadratic": theirs}, "float64"), "linear attention fuzz")


#: Each module as the used-twice test builds it, and how its output is read (sliding window also returns weights).
TWICE = {"linear_causal": (lambda module: module.LinearAttention(causal=True, dtype="float64"), lambda result: result),
         "sliding_window": (lambda module: module.SlidingWindowAttention(2, dtype="float64"), lambda result: result[0])}


@pytest.mark.parametrize("name", list(TWICE))
def test_module_used_twice_sums_gradients(name):
    """The module applied twice (the output is the next query), two backwards in reverse order: the
    NumPy cache stack gives autograd's gradients, the key's and value's two uses summed."""
    make, output_of = TWICE[name]
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal(s) for s in ((T, E), (T, E), (T, E)))
    cot = rng.standard_normal((T, E))
    module = make(get_module("numpy", MODULE))
    second = output_of(module(output_of(module(q, k, v)), k, v))
    grad_first, grad_k2, grad_v2 = module.backward(cot)
    grad_q, grad_k1, grad_v1 = module.backward(grad_first)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    torch_module = make(get_module("torch", MODULE))
    t_second = output_of(torch_module(output_of(torch_module(tq, tk, tv)), tk, tv))
    (t_second * torch.from_numpy(cot)).sum().backward()
    np.testing.assert_allclose(second, t_second.detach().numpy(), rtol=1e-9)
    np.testing.assert_allclose(grad_q, tq.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad_k1 + grad_k2, tk.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad_v1 + grad_v2, tv.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("tree", TREES)
def test_bad_arguments(tree):
    """One refusal, one text in every tree."""
    module = get_module(tree, MODULE)
    assert_raises_exactly(ValueError, "SlidingWindowAttention: window must be an int >= 1, got 0",
                          lambda: module.SlidingWindowAttention(0))
    assert_raises_exactly(TypeError, "SlidingWindowAttention: symmetric must be a bool (True or False), got 1",
                          lambda: module.SlidingWindowAttention(2, symmetric=1))
    assert_raises_exactly(ValueError, "sliding_window_mask: window must be an int >= 1, got -1",
                          lambda: module.sliding_window_mask(3, 3, -1))
    assert_raises_exactly(ValueError, "LinearAttention: eps must be a real number >= 0, got -1.0",
                          lambda: module.LinearAttention(eps=-1.0))
    assert_raises_exactly(TypeError, "LinearAttention: causal must be a bool (True or False), got 'yes'",
                          lambda: module.LinearAttention(causal="yes"))


BAD_INPUTS = [
    ("causal lengths", True, ((3, E), (T, E), (T, EV)),
     f"LinearAttention: causal linear attention needs as many queries as keys, got L = 3 and S = {T}"),
    ("batch axes", False, ((1, 3, E), (B, T, E), (B, T, EV)),
     f"LinearAttention: query, key and value must have the same batch axes, got (1,), ({B},) and ({B},)"),
    ("key width", False, ((3, E), (T, E + 1), (T, EV)),
     f"LinearAttention: key must have the query's feature size on its last axis (..., S, {E}), got ({T}, {E + 1})"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, causal, shapes, message", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_linear_inputs(tree, what, causal, shapes, message):
    module = get_module(tree, MODULE).LinearAttention(causal=causal, dtype="float64")
    arrays = tree_inputs(tree, *(np.zeros(s) for s in shapes))
    assert_raises_exactly(ValueError, message, lambda: module(*arrays))


@pytest.mark.parametrize("tree", TREES)
def test_bad_sliding_inputs(tree):
    module = get_module(tree, MODULE).SlidingWindowAttention(2, dtype="float64")
    arrays = tree_inputs(tree, np.zeros((T, E)), np.zeros((T, E + 1)), np.zeros((T, EV)))
    assert_raises_exactly(ValueError, f"SlidingWindowAttention: key must have the query's feature size on its last axis "
                          f"(..., S, {E}), got ({T}, {E + 1})", lambda: module(*arrays))
    single = tree_inputs(tree, *(np.zeros(s, np.float32) for s in ((T, E), (T, E), (T, EV))))
    assert_raises_exactly(TypeError, "SlidingWindowAttention: query must have dtype float64, got float32 (cast it explicitly)",
                          lambda: module(*single))
