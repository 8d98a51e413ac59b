"""Day 41: scaled dot-product attention in three trees.

Reference: torch's math backend, ``torch.ops.aten._scaled_dot_product_attention_math`` (what
``F.scaled_dot_product_attention`` runs on CPU under ``SDPBackend.MATH``), which also returns the
weights and takes a dropout mask: a boolean keep-mask with ``dropout_p``, from which
:func:`torch_dropout_arguments` converts the trees' inverted-dropout mask (0 or ``1/(1-p)``). It
returns the weights masked but not rescaled, so the reference multiplies them by ``1/(1-p)`` to get
the weights that multiply the values. The public ``F.scaled_dot_product_attention`` (default
dispatch) is compared too, on the output.
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

MODULE = "modern.attention"
B, H, L, S, E, EV = 2, 2, 3, 5, 4, 3
OWNER = "ScaledDotProductAttention"
#: A boolean mask (True = take part) with a fully masked row (1) and a row keeping one key (2).
BOOL_MASK = np.array([[True, False, True, True, False], [False] * 5, [False, False, False, True, False]])  # (L, S)
P_DROP = 0.25


class Bound:
    """A tree's module with the keyword arguments of one case fixed: the harness passes inputs
    positionally, and ``attn_mask`` may be absent while ``dropout_mask`` is given. ``backward`` keeps
    the float mask's gradient only when the case differentiates it."""

    def __init__(self, module, names, float_mask: bool, **kwargs):
        self.module, self.names, self.float_mask, self.kwargs = module, names, float_mask, kwargs

    def forward(self, query, key, value, *masks):
        return self.module(query, key, value, **dict(zip(self.names[3:], masks)), **self.kwargs)

    __call__ = forward

    def __getattr__(self, name):
        # The harness's other calls (state dicts, gradients) go to the module itself.
        return getattr(self.module, name)

    def backward(self, grad_output, grad_weights):
        grads = self.module.backward(grad_output, grad_weights)
        return grads if self.float_mask else grads[:3]


def torch_dropout_arguments(dropout_mask):
    """The trees' inverted-dropout mask (0, or ``1/(1-p)`` to keep) as torch's math backend takes it:
    a boolean keep-mask and ``p`` (``1 - 1/keep value``)."""
    if dropout_mask is None:
        return None, 0.0
    keep = dropout_mask != 0
    return keep, 1.0 - 1.0 / float(dropout_mask[keep].max())


def torch_float_mask(attn_mask, dtype):
    """A boolean mask as ``F.scaled_dot_product_attention`` hands it to the math op (0 where ``True``,
    ``-inf`` where ``False``; the op itself would add a boolean as 0/1)."""
    if attn_mask is None or attn_mask.is_floating_point():
        return attn_mask
    return torch.zeros(attn_mask.shape, dtype=dtype).masked_fill(~attn_mask, -torch.inf)


def attention_case(shapes=((B, H, L, E), (B, H, S, E), (B, H, S, EV)), attn_mask=None, dropout=False, **kwargs):
    """``query, key, value`` of the given shapes, plus ``attn_mask`` (a boolean array, or ``"float"``
    for a differentiable additive one with a ``-inf`` row) and a dropout mask when asked."""
    float_mask = isinstance(attn_mask, str)
    names = ("query", "key", "value") + (("attn_mask",) if attn_mask is not None else ()) + (
        ("dropout_mask",) if dropout else ())

    def inputs(dtype, rng):
        drawn = dict(zip(("query", "key", "value"), (rng.standard_normal(s).astype(dtype) for s in shapes)))
        scores_shape = np.broadcast_shapes(shapes[0][:-2], shapes[1][:-2]) + (shapes[0][-2], shapes[1][-2])
        if float_mask:
            mask = rng.standard_normal((shapes[0][0], 1, shapes[0][-2], shapes[1][-2])).astype(dtype)  # (B, 1, L, S)
            mask[:, :, 1] = -np.inf
            drawn["attn_mask"] = mask
        elif attn_mask is not None:
            drawn["attn_mask"] = attn_mask
        if dropout:
            keep = rng.random(scores_shape) >= P_DROP
            drawn["dropout_mask"] = np.where(keep, 1.0 / (1.0 - P_DROP), 0.0).astype(dtype)
        return drawn

    def reference(state, inputs, cotangents, dtype):
        def call(query, key, value, *masks):
            named = dict(zip(names[3:], masks))
            keep, p = torch_dropout_arguments(named.get("dropout_mask"))
            output, weights = torch.ops.aten._scaled_dot_product_attention_math(
                query, key, value, torch_float_mask(named.get("attn_mask"), query.dtype), p, kwargs.get("is_causal", False), keep,
                scale=kwargs.get("scale"))
            # The math backend returns the kept weights unscaled; the trees return those times 1/(1-p).
            return output, weights / (1.0 - p)
        return run_torch(call, inputs, differentiable, cotangents, params={})

    differentiable = ("query", "key", "value") + (("attn_mask",) if float_mask else ())
    return Case(
        MODULE, lambda module, dtype, rng: Bound(module.ScaledDotProductAttention(dtype), names, float_mask, **kwargs),
        inputs, differentiable, references={"torch.math": reference}, output_names=("output", "weights"),
        special_finite_inputs={"dropout_mask": "a keep-mask of 0 and 1/(1-p) by contract; torch takes it as booleans"}
        if dropout else {})


CASES = {
    "plain": attention_case(),
    "bool_mask": attention_case(attn_mask=BOOL_MASK),
    "float_mask": attention_case(attn_mask="float"),
    "causal": attention_case(is_causal=True),
    "causal_more_queries": attention_case(shapes=((B, 6, E), (B, 4, E), (B, 4, EV)), is_causal=True),
    "dropout_scale": attention_case(attn_mask=BOOL_MASK, dropout=True, scale=0.7),
    "negative_scale": attention_case(scale=-0.3),
    "broadcast_batch": attention_case(shapes=((1, H, L, E), (B, 1, S, E), (B, H, S, EV))),
    "unbatched": attention_case(shapes=((L, E), (S, E), (S, EV))),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    check_parity(CASES[name], dtype)


@pytest.mark.parametrize("name", ["plain", "float_mask", "dropout_scale", "broadcast_batch", "causal_more_queries"])
def test_gradcheck(name):
    gradcheck_numpy(CASES[name])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 2), query_len=st.integers(0, 4), key_len=st.integers(0, 4), width=st.integers(1, 3),
       mask=st.sampled_from(["none", "bool", "causal"]), seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_torch_math(batch, query_len, key_len, width, mask, seed):
    """Random small shapes (empty batch, no queries, no keys included) and random boolean masks
    (fully masked rows included): the NumPy tree's outputs and gradients equal the math backend's."""
    rng = np.random.default_rng(seed)
    shapes = ((batch, query_len, width), (batch, key_len, width), (batch, key_len, 2))
    attn_mask = rng.random((query_len, key_len)) < 0.6 if mask == "bool" else None
    case = attention_case(shapes, attn_mask=attn_mask, is_causal=mask == "causal")
    inputs = case.inputs("float64", rng)
    cotangents = [rng.standard_normal((batch, query_len, 2)), rng.standard_normal((batch, query_len, key_len))]
    ours = run_numpy(case.build(get_module("numpy", MODULE), "float64", rng), inputs, case.differentiable, cotangents)
    theirs = case.references["torch.math"]({}, inputs, cotangents, "float64")
    assert_no_failures(compare_results({"numpy": ours, "torch.math": theirs}, "float64"), "attention fuzz")


def tree_inputs(tree, *arrays):
    """NumPy arrays as ``tree``'s tensors."""
    import tensorflow as tf
    convert = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}
    return [convert[tree](a) for a in arrays]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("mask", ["bool", "float"])
def test_fully_masked_row_is_zero_as_torch(tree, mask):
    """torch 2.14 on CPU returns zeros (not NaN) for a row with no key, for a boolean all-False row
    and for an additive all -inf row alike, with zero gradients; the trees match both dispatches."""
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal(s) for s in ((L, E), (S, E), (S, EV)))
    attn = BOOL_MASK if mask == "bool" else np.where(BOOL_MASK, 0.0, -np.inf)
    expected = F.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)), attn_mask=torch.from_numpy(attn))
    output, weights = get_module(tree, MODULE).ScaledDotProductAttention("float64")(*tree_inputs(tree, q, k, v, attn))
    assert np.array_equal(np.asarray(output)[1], np.zeros(EV)) and np.array_equal(np.asarray(weights)[1], np.zeros(S))
    np.testing.assert_allclose(np.asarray(output), expected.numpy(), rtol=1e-9, atol=1e-12)


def test_public_function_agrees():
    """``F.scaled_dot_product_attention`` under its default CPU dispatch gives the NumPy tree's output."""
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal(s) for s in ((B, H, L, E), (B, H, S, E), (B, H, S, EV)))
    module = get_module("numpy", MODULE).ScaledDotProductAttention("float64")
    for kwargs in ({}, {"is_causal": True}, {"scale": 0.3}):
        expected = F.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)), **kwargs).numpy()
        np.testing.assert_allclose(module(q, k, v, **kwargs)[0], expected, rtol=1e-9, atol=1e-12)


def test_module_used_twice_sums_gradients():
    """Two calls, two backwards in reverse order: the NumPy cache stack gives autograd's gradients."""
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal(s) for s in ((L, E), (S, E), (S, E)))
    cot = rng.standard_normal((L, E))
    module = get_module("numpy", MODULE).ScaledDotProductAttention("float64")
    first, _ = module(q, k, v)
    second, _ = module(first, k, v, is_causal=True)
    grad_first, grad_k2, grad_v2, _ = module.backward(cot, None)
    grad_q, grad_k1, grad_v1, _ = module.backward(grad_first, None)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    torch_module = get_module("torch", MODULE).ScaledDotProductAttention("float64")
    t_first, _ = torch_module(tq, tk, tv)
    t_second, _ = torch_module(t_first, tk, tv, is_causal=True)
    (t_second * torch.from_numpy(cot)).sum().backward()
    np.testing.assert_allclose(second, t_second.detach().numpy(), rtol=1e-9)
    np.testing.assert_allclose(grad_q, tq.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad_k1 + grad_k2, tk.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad_v1 + grad_v2, tv.grad.numpy(), rtol=1e-9, atol=1e-12)


BAD_INPUTS = [
    ("key width", ((L, E), (S, E + 1), (S, EV)), {},
     ValueError, f"{OWNER}: key must have the query's feature size on its last axis (..., S, {E}), got ({S}, {E + 1})"),
    ("value length", ((L, E), (S, E), (S + 1, EV)), {},
     ValueError, f"{OWNER}: value must have the key's length (..., {S}, Ev), got ({S + 1}, {EV})"),
    ("one axis", ((E,), (S, E), (S, EV)), {},
     ValueError, f"{OWNER}: query must have at least 2 dimensions (..., length, features), got shape ({E},)"),
    ("batch", ((2, L, E), (3, S, E), (3, S, EV)), {},
     ValueError, f"{OWNER}: the batch axes of query (2, {L}, {E}), key (3, {S}, {E}) and value (3, {S}, {EV}) "
                 "must broadcast together"),
    ("mask shape", ((L, E), (S, E), (S, EV)), {"attn_mask": np.ones((L + 1, S), bool)},
     ValueError, f"{OWNER}: attn_mask must broadcast to the attention scores' shape ({L}, {S}) (..., L, S), "
                 f"got ({L + 1}, {S})"),
    ("mask one axis", ((L, E), (S, E), (S, EV)), {"attn_mask": np.ones((S,), bool)},
     ValueError, f"{OWNER}: attn_mask must broadcast to the attention scores' shape ({L}, {S}) (..., L, S), got ({S},)"),
    ("mask grows the output", ((L, E), (S, E), (S, EV)), {"attn_mask": np.ones((2, L, S), bool)},
     ValueError, f"{OWNER}: attn_mask must broadcast to the attention scores' shape ({L}, {S}) (..., L, S), "
                 f"got (2, {L}, {S})"),
    ("mask dtype", ((L, E), (S, E), (S, EV)), {"attn_mask": np.ones((L, S), np.int64)},
     TypeError, f"{OWNER}: attn_mask must be boolean (True = take part) or additive with dtype float64, got int64"),
    ("mask and causal", ((L, E), (S, E), (S, EV)), {"attn_mask": np.ones((L, S), bool), "is_causal": True},
     ValueError, f"{OWNER}: attn_mask must be None when is_causal=True (the causal mask replaces it)"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, shapes, kwargs, error, message", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_inputs(tree, what, shapes, kwargs, error, message):
    """The same refusal and text in every tree; torch refuses each of these too (a mask that would
    grow the scores fails its in-place add), except the float mask of another dtype, which torch
    would cast and the trees refuse as they refuse every silent cast."""
    module = get_module(tree, MODULE).ScaledDotProductAttention("float64")
    arrays = tree_inputs(tree, *(np.zeros(s) for s in shapes))
    if "attn_mask" in kwargs:
        kwargs = {**kwargs, "attn_mask": tree_inputs(tree, kwargs["attn_mask"])[0]}
    assert_raises_exactly(error, message, lambda: module(*arrays, **kwargs))


@pytest.mark.parametrize("tree", TREES)
def test_bad_arguments(tree):
    module = get_module(tree, MODULE).ScaledDotProductAttention("float64")
    arrays = tree_inputs(tree, np.zeros((L, E)), np.zeros((S, E)), np.zeros((S, EV)))
    assert_raises_exactly(TypeError, f"{OWNER}: is_causal must be a bool (True or False), got 1",
                          lambda: module(*arrays, is_causal=1))
    assert_raises_exactly(ValueError, f"{OWNER}: scale must be finite, got inf", lambda: module(*arrays, scale=float("inf")))
    assert_raises_exactly(TypeError, f"{OWNER}: query must have dtype float64, got float32 (cast it explicitly)",
                          lambda: module(*tree_inputs(tree, np.zeros((L, E), np.float32)), *arrays[1:]))
