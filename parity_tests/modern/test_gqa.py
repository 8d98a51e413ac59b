"""Day 67: multi-query and grouped-query attention in three trees.

References, fed the same inputs and weights:

- the core: torch's math backend ``torch.ops.aten._scaled_dot_product_attention_math(...,
  enable_gqa=True)`` (what ``F.scaled_dot_product_attention(enable_gqa=True)`` runs under
  ``SDPBackend.MATH``; it also returns the weights and takes a dropout mask, converted as on day 41),
  every output and the gradients of query, key and value (key/value summed over each group by
  torch's own ``repeat_interleave``); the public function is compared on the output;
- the module: a torch composition, :class:`TorchGQA` (``nn.Linear`` ``q_proj``/``k_proj``/``v_proj``/
  ``o_proj`` around the math backend with ``enable_gqa=True``), its ``state_dict`` the canonical one;
  and Hugging Face's ``LlamaAttention`` built offline from a small ``LlamaConfig`` (the ``sdpa``
  attention), its rotary embedding made the identity (cos = 1, sin = 0): RoPE is day 69. Both load
  the canonical state unchanged: the names are Llama's.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from ml100.backends import get_module
from parity_tests.harness import (TOLERANCES, TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  gradcheck_numpy, run_numpy, run_tf, run_torch)
from parity_tests.modern.test_attention import Bound, torch_dropout_arguments, torch_float_mask, tree_inputs
from parity_tests.modern.test_multihead import KERAS_MASK_REASON, keras_scale_correction

MODULE = "modern.gqa"
B, HQ, HKV, L, S, D, DV = 2, 4, 2, 3, 5, 4, 3
T, E = 4, 8
CORE = "GroupedScaledDotProductAttention"
OWNER = "GroupedQueryAttention"
#: A boolean mask (True = take part) with a fully masked row (1).
BOOL_MASK = np.array([[True, False, True, True, False], [False] * 5, [False, False, False, True, True]])  # (L, S)
P_DROP = 0.25


def torch_math_gqa(query, key, value, attn_mask=None, dropout_mask=None, is_causal=False, scale=None):
    """torch's math backend with ``enable_gqa=True``: output and the weights that multiply the values."""
    keep, p = torch_dropout_arguments(dropout_mask)
    output, weights = torch.ops.aten._scaled_dot_product_attention_math(
        query, key, value, torch_float_mask(attn_mask, query.dtype), p, is_causal, keep, scale=scale, enable_gqa=True)
    # The math backend returns the kept weights unscaled; the trees return those times 1/(1-p).
    return output, weights / (1.0 - p)


#: Why the unbatched case has no empty batch: its first axis is the head axis.
NO_BATCH_AXIS = ("unbatched: axis 0 is the head axis, and zero key heads is refused by the trees (torch's math backend "
                 "divides by the key head count: the process dies with SIGFPE)")


def core_case(shapes=((B, HQ, L, D), (B, HKV, S, D), (B, HKV, S, DV)), attn_mask=None, dropout=False,
              empty_batch_opt_out="", **kwargs):
    """``query, key, value`` of the given shapes (key and value with their own head counts), plus
    ``attn_mask`` (a boolean array, or ``"float"`` for a differentiable additive one with a ``-inf``
    row) and an inverted-dropout mask when asked."""
    float_mask = isinstance(attn_mask, str)
    names = ("query", "key", "value") + (("attn_mask",) if attn_mask is not None else ()) + (
        ("dropout_mask",) if dropout else ())

    def inputs(dtype, rng):
        drawn = dict(zip(("query", "key", "value"), (rng.standard_normal(s).astype(dtype) for s in shapes)))
        scores_shape = shapes[0][:-1] + (shapes[1][-2],)  # (..., Hq, L, S)
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
            return torch_math_gqa(query, key, value, **dict(zip(names[3:], masks)), **kwargs)
        return run_torch(call, inputs, differentiable, cotangents, params={})

    differentiable = ("query", "key", "value") + (("attn_mask",) if float_mask else ())
    return Case(
        MODULE, lambda module, dtype, rng: Bound(module.GroupedScaledDotProductAttention(dtype), names, float_mask, **kwargs),
        inputs, differentiable, references={"torch.math": reference}, output_names=("output", "weights"),
        special_finite_inputs={"dropout_mask": "a keep-mask of 0 and 1/(1-p) by contract; torch takes it as booleans"}
        if dropout else {}, empty_batch_opt_out=empty_batch_opt_out)


class TorchGQA(nn.Module):
    """The module reference: ``nn.Linear`` projections with Llama's names around torch's math
    backend with ``enable_gqa=True`` (no project code)."""

    def __init__(self, embed_dim, num_heads, num_key_value_heads, bias, is_causal, attn_mask):
        super().__init__()
        self.num_heads, self.num_key_value_heads, self.is_causal = num_heads, num_key_value_heads, is_causal
        self.attn_mask = None if attn_mask is None else torch.from_numpy(attn_mask)
        head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, num_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, num_key_value_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, num_key_value_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(num_heads * head_dim, embed_dim, bias=bias)

    def forward(self, hidden_states):
        batch, steps, _ = hidden_states.shape
        q, k, v = (proj(hidden_states).unflatten(-1, (heads, -1)).transpose(1, 2) for proj, heads in (
            (self.q_proj, self.num_heads), (self.k_proj, self.num_key_value_heads), (self.v_proj, self.num_key_value_heads)))
        context, weights = torch_math_gqa(q, k, v, attn_mask=self.attn_mask, is_causal=self.is_causal)
        return self.o_proj(context.transpose(1, 2).reshape(batch, steps, -1)), weights


#: A key bias adds q . b_k to every score of a row: softmax ignores it, so its gradient is 0 in exact
#: arithmetic and rounding noise (~1e-16) in every implementation, which no relative tolerance can
#: compare. The parity cases leave it out; test_key_bias_gradient_is_zero checks it against the scale
#: of the query bias's gradient instead.
KEY_BIAS = "k_proj.bias"


class WithFlags:
    """A tree's ``GroupedQueryAttention`` called on ``hidden_states`` alone with fixed keyword flags
    (a mask, ``is_causal``), its parameters and gradients without :data:`KEY_BIAS`; everything else
    goes to the model."""

    def __init__(self, model, **flags):
        self.model, self.flags = model, flags

    def __call__(self, hidden_states):
        return self.model(hidden_states, **self.flags)

    def forward(self, hidden_states):
        return self.model.forward(hidden_states, **self.flags)

    def named_parameters(self):
        return [(name, value) for name, value in self.model.named_parameters() if name != KEY_BIAS]

    def canonical_grads(self, *tape_grads):
        return {name: grad for name, grad in self.model.canonical_grads(*tape_grads).items() if name != KEY_BIAS}

    def __getattr__(self, name):
        return getattr(self.model, name)


def llama_to_keras_gqa(state: dict, num_heads: int, num_key_value_heads: int) -> dict:
    """Canonical (Llama) -> Keras ``GroupQueryAttention``: each projection's ``(H*d, E)`` weight
    transposed and viewed per head as an ``EinsumDense`` kernel ``(E, H, d)`` (head ``h`` is output
    features ``h*d .. h*d + d-1``), biases ``(H, d)``; ``o_proj.weight`` ``(E, Hq*d)`` transposed and
    viewed ``(Hq, d, E)``."""
    embed_dim = state["q_proj.weight"].shape[1]
    native = {}
    for name, heads in (("query", num_heads), ("key", num_key_value_heads), ("value", num_key_value_heads)):
        weight = state[f"{name[0]}_proj.weight"]  # (H*d, E)
        native[f"{name}.kernel"] = weight.T.reshape(embed_dim, heads, -1)  # (E, H, d)
        if f"{name[0]}_proj.bias" in state:
            native[f"{name}.bias"] = state[f"{name[0]}_proj.bias"].reshape(heads, -1)  # (H, d)
    native["attention_output.kernel"] = state["o_proj.weight"].T.reshape(num_heads, -1, embed_dim)  # (Hq, d, E)
    if "o_proj.bias" in state:
        native["attention_output.bias"] = state["o_proj.bias"]  # (E,)
    return native


def keras_gqa_to_llama(native: dict) -> dict:
    """Keras ``GroupQueryAttention`` -> canonical: the inverse of :func:`llama_to_keras_gqa`."""
    embed_dim = native["query.kernel"].shape[0]
    state = {}
    for name in ("query", "key", "value"):
        state[f"{name[0]}_proj.weight"] = native[f"{name}.kernel"].reshape(embed_dim, -1).T  # (H*d, E)
        if f"{name}.bias" in native:
            state[f"{name[0]}_proj.bias"] = native[f"{name}.bias"].reshape(-1)  # (H*d,)
    state["o_proj.weight"] = native["attention_output.kernel"].reshape(-1, embed_dim).T  # (E, Hq*d)
    if "attention_output.bias" in native:
        state["o_proj.bias"] = native["attention_output.bias"]
    return state


def keras_reference(num_key_value_heads: int, bias: bool, attn_mask, is_causal: bool):
    """``keras.layers.GroupQueryAttention(head_dim=E/HQ, num_query_heads=HQ, num_key_value_heads)``
    with :func:`llama_to_keras_gqa`'s weights, self-attention, ``return_attention_scores=True``;
    its query kernel and bias carry :func:`keras_scale_correction` (Keras casts 1/sqrt(d) through
    float32), and their gradients the same factor on the way back."""
    import keras
    import tensorflow as tf

    def run(state, inputs, cotangents, dtype):
        layer = keras.layers.GroupQueryAttention(E // HQ, HQ, num_key_value_heads, use_bias=bias, dtype=dtype)
        layer.build((B, T, E), (B, T, E))
        dense = {"query": layer._query_dense, "key": layer._key_dense, "value": layer._value_dense,
                 "attention_output": layer._output_dense}
        variables = {f"{name}.{part}": getattr(sub, part) for name, sub in dense.items()
                     for part in ("kernel", "bias") if part == "kernel" or bias}
        correction = keras_scale_correction(E // HQ, dtype)
        for name, value in llama_to_keras_gqa(state, HQ, num_key_value_heads).items():
            variables[name].assign(value * correction if name.startswith("query.") else value)

        def call(hidden_states):
            # Keras' mask: True = attend, (B, T, S).
            mask = None if attn_mask is None else tf.broadcast_to(attn_mask, (hidden_states.shape[0], T, T))
            return layer(hidden_states, hidden_states, attention_mask=mask, use_causal_mask=is_causal,
                         return_attention_scores=True)

        def to_canonical(grads):
            native = {name: np.asarray(g) * (correction if name.startswith("query.") else 1.0) for name, g in grads.items()}
            return {name: value for name, value in keras_gqa_to_llama(native).items() if name != KEY_BIAS}

        return run_tf(call, inputs, ("hidden_states",), cotangents, variables, to_canonical)

    return run


def module_case(num_key_value_heads=HKV, bias=True, attn_mask=None, is_causal=False):
    """``GroupedQueryAttention(E, HQ, num_key_value_heads)`` on ``hidden_states (B, T, E)``."""
    def build(module, dtype, rng):
        model = module.GroupedQueryAttention(E, HQ, num_key_value_heads, bias=bias, dtype=dtype, rng=rng)
        tree = module.__name__.split("_impl")[0]
        mask = None if attn_mask is None else tree_inputs(tree, attn_mask)[0]
        return WithFlags(model, attn_mask=mask, is_causal=is_causal)

    def reference(state, inputs, cotangents, dtype):
        module = TorchGQA(E, HQ, num_key_value_heads, bias, is_causal, attn_mask).to(getattr(torch, dtype))
        module.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
        params = {name: value for name, value in module.named_parameters() if name != KEY_BIAS}
        return run_torch(module, inputs, ("hidden_states",), cotangents, params=params)

    masked = attn_mask is not None or is_causal
    return Case(MODULE, build, lambda dtype, rng: {"hidden_states": rng.standard_normal((B, T, E)).astype(dtype)},
                ("hidden_states",), output_names=("attn_output", "attn_weights"),
                references={"torch.nn+math": reference,
                            "keras.GroupQueryAttention": keras_reference(num_key_value_heads, bias, attn_mask, is_causal)},
                special_excluded_references={"keras.GroupQueryAttention": KERAS_MASK_REASON} if masked else {})


#: A (T, T) boolean mask, True = take part: causal with one extra hole.
MODULE_MASK = np.tril(np.ones((T, T), bool)) & ~np.eye(T, k=-2, dtype=bool)

CASES = {
    "gqa": core_case(),
    "mqa": core_case(shapes=((B, HQ, L, D), (B, 1, S, D), (B, 1, S, DV))),
    "mha": core_case(shapes=((B, HQ, L, D), (B, HQ, S, D), (B, HQ, S, DV))),
    "key_value_heads_differ": core_case(shapes=((B, HQ, L, D), (B, 2, S, D), (B, 1, S, DV))),
    "bool_mask": core_case(attn_mask=BOOL_MASK),
    "float_mask": core_case(attn_mask="float"),
    "causal": core_case(is_causal=True),
    "dropout_scale": core_case(attn_mask=BOOL_MASK, dropout=True, scale=0.7),
    "unbatched": core_case(shapes=((HQ, L, D), (HKV, S, D), (HKV, S, DV)), empty_batch_opt_out=NO_BATCH_AXIS),
    "module_gqa": module_case(),
    "module_mqa_no_bias": module_case(num_key_value_heads=1, bias=False),
    "module_mha_causal": module_case(num_key_value_heads=HQ, is_causal=True),
    "module_mask": module_case(attn_mask=MODULE_MASK),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    check_parity(CASES[name], dtype)


@pytest.mark.parametrize("name", ["gqa", "key_value_heads_differ", "float_mask", "dropout_scale", "module_gqa",
                                  "module_mask"])
def test_gradcheck(name):
    gradcheck_numpy(CASES[name])


def test_public_function_agrees():
    """``F.scaled_dot_product_attention(enable_gqa=True)`` under its default CPU dispatch gives the
    NumPy tree's output, and equals attention over explicitly repeated key/value heads."""
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal(s) for s in ((B, HQ, L, D), (B, HKV, S, D), (B, HKV, S, DV)))
    module = get_module("numpy", MODULE).GroupedScaledDotProductAttention("float64")
    for kwargs in ({}, {"is_causal": True}, {"scale": 0.3}):
        expected = torch.nn.functional.scaled_dot_product_attention(
            *map(torch.from_numpy, (q, k, v)), enable_gqa=True, **kwargs).numpy()
        np.testing.assert_allclose(module(q, k, v, **kwargs)[0], expected, rtol=1e-9, atol=1e-12)
        repeated = get_module("numpy", "modern.attention").ScaledDotProductAttention("float64")(
            q, np.repeat(k, HQ // HKV, axis=1), np.repeat(v, HQ // HKV, axis=1), **kwargs)[0]
        np.testing.assert_array_equal(module(q, k, v, **kwargs)[0], repeated)


def llama_attention(num_key_value_heads: int, bias: bool, dtype: str):
    """Hugging Face's ``LlamaAttention`` (``sdpa``) from a small config, offline, in ``dtype``."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention
    config = LlamaConfig(hidden_size=E, num_attention_heads=HQ, num_key_value_heads=num_key_value_heads,
                         attention_bias=bias, attention_dropout=0.0)
    config._attn_implementation = "sdpa"
    return LlamaAttention(config, layer_idx=0).to(getattr(torch, dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("num_key_value_heads, bias", [(HKV, True), (1, False)])
def test_llama_attention_agrees(num_key_value_heads, bias, dtype):
    """Causal self-attention: Hugging Face's ``LlamaAttention`` with the identity rotation loads the
    canonical state unchanged and gives the trees' ``attn_output`` and the gradients of the hidden
    states and of every projection but the key bias (:data:`KEY_BIAS`); its ``sdpa`` path returns no
    weights: their cotangent is 0."""
    case = module_case(num_key_value_heads, bias, is_causal=True)
    rng = np.random.default_rng(7)
    numpy_model = case.build(get_module("numpy", MODULE), dtype, rng)
    state = {name: rng.uniform(-1, 1, value.shape).astype(dtype) for name, value in numpy_model.canonical_state_dict().items()}
    numpy_model.load_canonical_state_dict(state)
    inputs = case.inputs(dtype, rng)
    cotangents = [rng.standard_normal((B, T, E)).astype(dtype), np.zeros((B, HQ, T, T), dtype)]
    ours = run_numpy(numpy_model, inputs, case.differentiable, cotangents)
    ours.outputs = ours.outputs[:1]
    llama = llama_attention(num_key_value_heads, bias, dtype)
    llama.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    # The identity rotation: cos = 1, sin = 0 for every position and feature.
    rotation = (torch.ones(B, T, E // HQ, dtype=getattr(torch, dtype)), torch.zeros(B, T, E // HQ, dtype=getattr(torch, dtype)))
    theirs = run_torch(lambda x: llama(x, position_embeddings=rotation)[0], inputs, case.differentiable, cotangents[:1],
                       params={name: value for name, value in llama.named_parameters() if name != KEY_BIAS})
    assert_no_failures(compare_results({"numpy": ours, "hf.LlamaAttention": theirs}, dtype), "GQA vs LlamaAttention")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_key_bias_gradient_is_zero(dtype):
    """Softmax is blind to the key bias (it shifts a whole row of scores by q . b_k): in every tree
    and in the torch reference its gradient is zero up to the dtype's tolerance relative to the
    query bias's gradient, while the query bias's gradient is not small."""
    case = CASES["module_gqa"]
    rng = np.random.default_rng(8)
    inputs = case.inputs(dtype, rng)
    cotangents = [rng.standard_normal((B, T, E)).astype(dtype), rng.standard_normal((B, HQ, T, T)).astype(dtype)]
    for tree in TREES:
        model = case.build(get_module(tree, MODULE), dtype, rng).model
        if tree == "numpy":
            run_numpy(WithFlags(model), inputs, case.differentiable, cotangents)
            grads = model.canonical_grads()
        elif tree == "torch":
            run_torch(model, inputs, case.differentiable, cotangents)
            grads = {name: p.grad.numpy() for name, p in model.named_parameters()}
        else:
            import tensorflow as tf
            with tf.GradientTape() as tape:
                output, weights = model(tf.constant(inputs["hidden_states"]))
                loss = tf.reduce_sum(output * cotangents[0]) + tf.reduce_sum(weights * cotangents[1])
            params = dict(model.named_parameters())
            grads = model.canonical_grads(dict(zip(params, tape.gradient(loss, list(params.values())))))
        query_scale = np.abs(grads["q_proj.bias"]).max()
        assert query_scale > 1e-2, f"{tree}: the query bias's gradient is unexpectedly small ({query_scale:.3e})"
        assert np.abs(grads[KEY_BIAS]).max() <= TOLERANCES[dtype] * query_scale, f"{tree}: {grads[KEY_BIAS]}"


def test_keras_gqa_conversion_round_trips():
    """:func:`keras_gqa_to_llama` inverts :func:`llama_to_keras_gqa` exactly, and Keras' query head
    ``h`` is rows ``h*d .. h*d + d-1`` of ``q_proj.weight``, its kv head ``j`` those of ``k_proj.weight``."""
    rng = np.random.default_rng(9)
    d = E // HQ
    shapes = {"q_proj.weight": (HQ * d, E), "q_proj.bias": (HQ * d,), "k_proj.weight": (HKV * d, E),
              "k_proj.bias": (HKV * d,), "v_proj.weight": (HKV * d, E), "v_proj.bias": (HKV * d,),
              "o_proj.weight": (E, HQ * d), "o_proj.bias": (E,)}
    state = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    native = llama_to_keras_gqa(state, HQ, HKV)
    back = keras_gqa_to_llama(native)
    assert back.keys() == state.keys() and all(np.array_equal(back[name], state[name]) for name in state)
    np.testing.assert_array_equal(native["query.kernel"][:, 1], state["q_proj.weight"][d:2 * d].T)
    np.testing.assert_array_equal(native["key.kernel"][:, 1], state["k_proj.weight"][d:2 * d].T)
    np.testing.assert_array_equal(native["attention_output.kernel"][1], state["o_proj.weight"][:, d:2 * d].T)


def test_module_used_twice_sums_gradients():
    """The NumPy module applied twice (its output fed back in), two backwards in reverse order:
    every gradient equals autograd's through the torch tree."""
    rng = np.random.default_rng(5)
    x, cot = rng.standard_normal((B, T, E)), rng.standard_normal((B, T, E))
    models = {tree: get_module(tree, MODULE).GroupedQueryAttention(E, HQ, HKV, bias=True, dtype="float64",
                                                                  rng=np.random.default_rng(6)) for tree in ("numpy", "torch")}
    first, _ = models["numpy"](x)
    second, _ = models["numpy"](first, is_causal=True)
    grad_x = models["numpy"].backward(models["numpy"].backward(cot))
    tx = torch.tensor(x, requires_grad=True)
    t_first, _ = models["torch"](tx)
    t_second, _ = models["torch"](t_first, is_causal=True)
    (t_second * torch.from_numpy(cot)).sum().backward()
    np.testing.assert_allclose(second, t_second.detach().numpy(), rtol=1e-9)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, grad in models["numpy"].named_grads():
        np.testing.assert_allclose(grad, models["torch"].get_parameter(name).grad.numpy(), rtol=1e-9, atol=1e-12)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 2), key_heads=st.sampled_from([1, 2, 3]), group=st.integers(1, 3),
       query_len=st.integers(0, 3), key_len=st.integers(0, 3), causal=st.booleans(), seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_torch_math(batch, key_heads, group, query_len, key_len, causal, seed):
    """Random head counts and groups, empty batch and empty sequences included: the NumPy core's
    outputs and gradients equal the math backend's."""
    rng = np.random.default_rng(seed)
    shapes = ((batch, key_heads * group, query_len, 2), (batch, key_heads, key_len, 2), (batch, key_heads, key_len, 3))
    case = core_case(shapes, is_causal=causal)
    inputs = case.inputs("float64", rng)
    cotangents = [rng.standard_normal(shapes[0][:-1] + (3,)), rng.standard_normal(shapes[0][:-1] + (key_len,))]
    ours = run_numpy(case.build(get_module("numpy", MODULE), "float64", rng), inputs, case.differentiable, cotangents)
    theirs = case.references["torch.math"]({}, inputs, cotangents, "float64")
    assert_no_failures(compare_results({"numpy": ours, "torch.math": theirs}, "float64"), "GQA fuzz")


BAD_CORE_INPUTS = [
    ("heads not dividing", ((B, HQ, L, D), (B, 3, S, D), (B, 3, S, DV)), {},
     f"{CORE}: key's head count must be at least 1 and divide the query's {HQ} heads, got 3 (shape ({B}, 3, {S}, {D}))"),
    ("value heads", ((B, HQ, L, D), (B, HKV, S, D), (B, 3, S, DV)), {},
     f"{CORE}: value's head count must be at least 1 and divide the query's {HQ} heads, got 3 (shape ({B}, 3, {S}, {DV}))"),
    ("no key heads", ((B, HQ, L, D), (B, 0, S, D), (B, 0, S, DV)), {},
     f"{CORE}: key's head count must be at least 1 and divide the query's {HQ} heads, got 0 (shape ({B}, 0, {S}, {D}))"),
    ("no head axis", ((L, D), (S, D), (S, DV)), {},
     f"{CORE}: query must have at least 3 dimensions (..., heads, length, features), got shape ({L}, {D})"),
    ("key width", ((B, HQ, L, D), (B, HKV, S, D + 1), (B, HKV, S, DV)), {},
     f"{CORE}: key must have the query's feature size on its last axis (..., S, {D}), got ({B}, {HQ}, {S}, {D + 1})"),
    ("mask shape", ((B, HQ, L, D), (B, HKV, S, D), (B, HKV, S, DV)), {"attn_mask": np.ones((L + 1, S), bool)},
     f"{CORE}: attn_mask must broadcast to the attention scores' shape ({B}, {HQ}, {L}, {S}) (..., L, S), got ({L + 1}, {S})"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, shapes, kwargs, message", BAD_CORE_INPUTS, ids=[row[0] for row in BAD_CORE_INPUTS])
def test_bad_core_inputs(tree, what, shapes, kwargs, message):
    """One refusal, one text in every tree; torch refuses each of these too (its own words)."""
    module = get_module(tree, MODULE).GroupedScaledDotProductAttention("float64")
    arrays = tree_inputs(tree, *(np.zeros(s) for s in shapes))
    kwargs = {name: tree_inputs(tree, value)[0] for name, value in kwargs.items()}
    assert_raises_exactly(ValueError, message, lambda: module(*arrays, **kwargs))


BAD_CONSTRUCTORS = [
    ((E, HQ, 3), ValueError, f"{OWNER}: num_heads ({HQ}) must be divisible by num_key_value_heads (3)"),
    ((E, 3, 1), ValueError, f"{OWNER}: embed_dim ({E}) must be divisible by num_heads (3)"),
    ((E, HQ, 0), ValueError, f"{OWNER}: num_key_value_heads must be an int >= 1, got 0"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("args, error, message", BAD_CONSTRUCTORS, ids=[row[2] for row in BAD_CONSTRUCTORS])
def test_bad_constructor(tree, args, error, message):
    """``LlamaConfig`` takes these silently and fails later (or never); the trees refuse at once."""
    module = get_module(tree, MODULE)
    assert_raises_exactly(error, message, lambda: module.GroupedQueryAttention(*args, dtype="float64"))


@pytest.mark.parametrize("tree", TREES)
def test_bad_module_inputs(tree):
    module = get_module(tree, MODULE).GroupedQueryAttention(E, HQ, HKV, dtype="float64")
    wide, = tree_inputs(tree, np.zeros((B, T, E + 1)))
    assert_raises_exactly(ValueError, f"{OWNER}: hidden_states must have shape (..., {E}), got ({B}, {T}, {E + 1})",
                          lambda: module(wide))
    flat, = tree_inputs(tree, np.zeros((T, E)))
    assert_raises_exactly(ValueError, f"{OWNER}: hidden_states must have 3 dimensions, got shape ({T}, {E})",
                          lambda: module(flat))
    single, = tree_inputs(tree, np.zeros((B, T, E), np.float32))
    assert_raises_exactly(TypeError, f"{OWNER}: hidden_states must have dtype float64, got float32 (cast it explicitly)",
                          lambda: module(single))
