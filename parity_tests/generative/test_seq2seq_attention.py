"""Day 29: additive (Bahdanau) and multiplicative (Luong) attention in three trees.

References: ``keras.layers.AdditiveAttention`` and ``keras.layers.Attention`` (``score_mode="dot"``,
``dropout=0``) fed the converted weights; ``F.scaled_dot_product_attention`` for the dot forms
(``scale=1.0``, the learned scale folded into the query, and the weights read off as the attention
of the identity matrix); the additive formula written out in torch as the autograd reference.
The torch references mask with ``-inf`` as torch does, Keras and the trees subtract 1e9: the same
numbers wherever a row keeps one key (every case below); a fully masked row is its own test.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  gradcheck_numpy, run_numpy, run_tf, run_torch)

MODULE = "generative.seq2seq_attention"
N, TQ, TV, D, DK, DV, H = 3, 2, 4, 4, 5, 3, 3
# Every row keeps at least one key (see the module docstring for a fully masked row).
QUERY_MASK = np.array([[True, False], [True, True], [False, True]])  # (N, Tq)
VALUE_MASK = np.array([[True, True, False, True], [False, True, False, False], [True, True, True, True]])  # (N, Tv)
#: Canonical name -> the Keras layers' variable name (both call their weight ``scale``).
KERAS_NAMES = {"v": "scale", "scale": "scale"}
#: Why the torch references sit out the special-values pass when there are masks.
MASK_FILL_REASON = ("masks by filling -inf: masked_fill's backward gives a masked score the gradient 0, while Keras' "
                    "(and the trees') subtraction of 1e9 keeps its path, so a NaN in a row reaches the masked keys' "
                    "gradients as NaN there (0 * NaN) and as 0 in torch; see test_masked_key_gradient_under_nan")


def keras_attention_weights(state: dict) -> dict:
    """Canonical -> Keras: ``v`` (additive) and ``scale`` (dot) are Keras' ``scale``, same layout."""
    return {KERAS_NAMES[name]: value for name, value in state.items()}


def attention_inputs(key: bool = False, masks: bool = False, kdim: int = D, dv: int = DV):
    """``query (N, Tq, D)``, ``value (N, Tv, Dv)``, and a key and masks when asked (the value is
    the key otherwise, so its width is ``kdim``)."""
    def draw(dtype, rng):
        inputs = {"query": rng.standard_normal((N, TQ, D)).astype(dtype),
                  "value": rng.standard_normal((N, TV, dv if key else kdim)).astype(dtype)}
        if key:
            inputs["key"] = rng.standard_normal((N, TV, kdim)).astype(dtype)
        if masks:
            inputs.update(query_mask=QUERY_MASK, value_mask=VALUE_MASK)
        return inputs
    return draw


def differentiable(key: bool) -> tuple[str, ...]:
    return ("query", "value", "key") if key else ("query", "value")


def torch_call(score):
    """``call(query, value, key=None, query_mask=None, value_mask=None)`` around ``score(query, keys)``,
    masked as torch does (``-inf`` fill)."""
    def call(query, value, key=None, query_mask=None, value_mask=None):
        scores = score(query, value if key is None else key)  # (N, Tq, Tv)
        if value_mask is not None:
            scores = scores.masked_fill(~value_mask[:, None, :], -torch.inf)
        weights = torch.softmax(scores, dim=-1)  # (N, Tq, Tv)
        context = weights @ value  # (N, Tq, Dv)
        if query_mask is not None:
            context = torch.where(query_mask[:, :, None], context, 0.0)
        return context, weights
    return call


def torch_additive_reference(key: bool):
    """The additive score written out in torch: ``sum(v * tanh(W_q q + W_k k))`` (projections and
    ``v`` only where the state has them)."""
    def run(state, inputs, cotangents, dtype):
        params = {name: torch.tensor(value, requires_grad=True) for name, value in state.items()}

        def score(query, keys):
            if "query_proj.weight" in params:
                query, keys = F.linear(query, params["query_proj.weight"]), F.linear(keys, params["key_proj.weight"])
            hidden = torch.tanh(query[:, :, None, :] + keys[:, None, :, :])  # (N, Tq, Tv, H)
            return (hidden * params["v"]).sum(-1) if "v" in params else hidden.sum(-1)

        return run_torch(torch_call(score), inputs, differentiable(key), cotangents, params=params)
    return run


def torch_sdpa_reference(key: bool):
    """``F.scaled_dot_product_attention`` (math backend) with ``scale=1.0``: a learned scale multiplies the query
    (the same scores, ``s q.k``), Luong's ``W`` projects the key, and the weights are the
    attention of the identity matrix (``weights @ I``)."""
    def run(state, inputs, cotangents, dtype):
        params = {name: torch.tensor(value, requires_grad=True) for name, value in state.items()}

        def call(query, value, key=None, query_mask=None, value_mask=None):
            keys = value if key is None else key  # (N, Tv, Dk)
            if "key_proj.weight" in params:
                keys = F.linear(keys, params["key_proj.weight"])  # (N, Tv, D)
            if "scale" in params:
                query = query * params["scale"]  # (N, Tq, D)
            mask = None if value_mask is None else value_mask[:, None, :]  # (N, 1, Tv): True takes part
            identity = torch.eye(value.shape[1], dtype=value.dtype).expand(value.shape[0], -1, -1)  # (N, Tv, Tv)
            context = F.scaled_dot_product_attention(query, keys, value, attn_mask=mask, scale=1.0)  # (N, Tq, Dv)
            weights = F.scaled_dot_product_attention(query, keys, identity, attn_mask=mask, scale=1.0)  # (N, Tq, Tv)
            if query_mask is not None:
                context = torch.where(query_mask[:, :, None], context, 0.0)
            return context, weights

        # The math backend, torch's reference implementation: the fused CPU kernel (online softmax)
        # spreads NaN differently (fewer NaN weights) and loses huge (1e100) gradients.
        with sdpa_kernel(SDPBackend.MATH):
            return run_torch(call, inputs, differentiable(key), cotangents, params=params)
    return run


def keras_reference(layer_name: str, use_scale: bool, key: bool, **layer_kwargs):
    """``keras.layers.<layer_name>`` called as ``layer([query, value, key], mask=[query_mask,
    value_mask], return_attention_scores=True)``, its ``scale`` loaded from the canonical state."""
    import keras

    def run(state, inputs, cotangents, dtype):
        layer = getattr(keras.layers, layer_name)(use_scale=use_scale, dtype=dtype, **layer_kwargs)
        layer.build([inputs[name].shape for name in ("query", "value", "key") if name in inputs])
        native = keras_attention_weights(state)
        for name, value in native.items():
            getattr(layer, name).assign(value)
        canonical = {keras_name: name for name, keras_name in KERAS_NAMES.items() if name in state}
        params = {canonical[name]: getattr(layer, name) for name in native}

        def call(*tensors):
            named = dict(zip(inputs, tensors))
            layer_inputs = [named[name] for name in ("query", "value", "key") if name in named]
            mask = [named["query_mask"], named["value_mask"]] if "value_mask" in named else None
            return layer(layer_inputs, mask=mask, return_attention_scores=True)

        to_canonical = lambda grads: {name: np.asarray(grad) for name, grad in grads.items()}
        return run_tf(call, inputs, differentiable(key), cotangents, params, to_canonical)
    return run


def keras_additive_reference(use_scale: bool, key: bool):
    return keras_reference("AdditiveAttention", use_scale, key)


def keras_dot_reference(use_scale: bool, key: bool):
    return keras_reference("Attention", use_scale, key, score_mode="dot", dropout=0.0)


def additive_case(hidden_size=None, use_scale=True, key=True, masks=True, kdim=D):
    references = {"torch formula": torch_additive_reference(key)}
    if hidden_size is None:
        references["keras.layers.AdditiveAttention"] = keras_additive_reference(use_scale, key)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.AdditiveAttention(D, kdim=kdim if kdim != D else None, hidden_size=hidden_size,
                                                        use_scale=use_scale, dtype=dtype, rng=rng),
        inputs=attention_inputs(key, masks, kdim),
        differentiable=differentiable(key),
        references=references,
        output_names=("context", "weights"),
        special_excluded_references={"torch formula": MASK_FILL_REASON} if masks else {},
    )


def luong_case(score_mode="dot", use_scale=False, key=True, masks=True, kdim=D):
    references = {"torch F.scaled_dot_product_attention": torch_sdpa_reference(key)}
    if score_mode == "dot":
        references["keras.layers.Attention"] = keras_dot_reference(use_scale, key)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.LuongAttention(D, kdim=kdim if kdim != D else None, score_mode=score_mode,
                                                     use_scale=use_scale, dtype=dtype, rng=rng),
        inputs=attention_inputs(key, masks, kdim),
        differentiable=differentiable(key),
        references=references,
        output_names=("context", "weights"),
        special_excluded_references={"torch F.scaled_dot_product_attention": MASK_FILL_REASON} if masks else {},
    )


CASES = {
    "additive keras-style, key and masks": lambda: additive_case(),
    "additive keras-style, value as key": lambda: additive_case(key=False, masks=False),
    "additive keras-style, no scale": lambda: additive_case(use_scale=False),
    "additive bahdanau, projections, kdim 5": lambda: additive_case(hidden_size=H, kdim=DK),
    "additive bahdanau, value as key": lambda: additive_case(hidden_size=H, key=False, masks=False),
    "luong dot, key and masks": lambda: luong_case(),
    "luong dot, learned scale, value as key": lambda: luong_case(use_scale=True, key=False, masks=False),
    "luong general, learned scale, kdim 5": lambda: luong_case("general", use_scale=True, kdim=DK),
    "luong general, value as key": lambda: luong_case("general", key=False, masks=False),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_attention_parity(name, dtype):
    check_parity(CASES[name](), dtype)


@pytest.mark.parametrize("name", list(CASES))
def test_attention_gradcheck(name):
    gradcheck_numpy(CASES[name]())


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 3), query_len=st.integers(1, 3), value_len=st.integers(1, 4), width=st.integers(1, 4),
       hidden=st.one_of(st.none(), st.integers(1, 3)), seed=st.integers(0, 2**16))
def test_additive_fuzz_numpy_matches_torch_formula(batch, query_len, value_len, width, hidden, seed):
    """Random small shapes (an empty batch included) and random masks with a key kept per row: the
    NumPy tree's outputs and gradients equal the torch formula's."""
    rng = np.random.default_rng(seed)
    model = get_module("numpy", MODULE).AdditiveAttention(
        width, hidden_size=hidden, dtype="float64", rng=rng)
    inputs = {"query": rng.standard_normal((batch, query_len, width)), "value": rng.standard_normal((batch, value_len, 2)),
              "key": rng.standard_normal((batch, value_len, width)),
              "query_mask": rng.random((batch, query_len)) < 0.7, "value_mask": rng.random((batch, value_len)) < 0.7}
    inputs["value_mask"][:, 0] = True
    cotangents = [rng.standard_normal((batch, query_len, 2)), rng.standard_normal((batch, query_len, value_len))]
    ours = run_numpy(model, inputs, differentiable(True), cotangents)
    theirs = torch_additive_reference(True)(model.canonical_state_dict(), inputs, cotangents, "float64")
    assert_no_failures(compare_results({"numpy": ours, "torch formula": theirs}, "float64"), "additive fuzz")


def build(tree: str, cls: str, *args, **kwargs):
    return getattr(get_module(tree, MODULE), cls)(*args, dtype="float64", rng=np.random.default_rng(0), **kwargs)


def tree_tensor(tree: str, array: np.ndarray):
    import tensorflow as tf
    return {"numpy": lambda a: a, "torch": torch.from_numpy, "tf": tf.constant}[tree](array)


def to_numpy(tensor) -> np.ndarray:
    return tensor.detach().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)


def test_fully_masked_row_keeps_its_softmax_as_keras():
    """A query whose keys are all masked: Keras' subtraction shifts the whole row, so its weights are
    the unmasked softmax; torch's ``-inf`` fill gives NaN, and SDPA returns zeros."""
    import keras
    rng = np.random.default_rng(3)
    query, value = rng.standard_normal((1, TQ, D)), rng.standard_normal((1, TV, D))  # (1, Tq, D), (1, Tv, D)
    all_masked = np.zeros((1, TV), dtype=bool)  # (1, Tv)
    unmasked = torch.softmax(torch.from_numpy(query) @ torch.from_numpy(value).transpose(1, 2), dim=-1).numpy()
    _, keras_weights = keras.layers.Attention(dtype="float64")([query, value], mask=[None, all_masked],
                                                               return_attention_scores=True)
    np.testing.assert_allclose(np.asarray(keras_weights), unmasked, rtol=1e-6)
    for tree in TREES:
        _, weights = build(tree, "LuongAttention", D)(tree_tensor(tree, query), tree_tensor(tree, value),
                                                     value_mask=tree_tensor(tree, all_masked))
        # Bit-for-bit Keras' numbers (1e9 subtracted the same way), close to the unmasked softmax.
        np.testing.assert_allclose(to_numpy(weights), np.asarray(keras_weights), rtol=1e-12)
    fill = torch.softmax((torch.from_numpy(query) @ torch.from_numpy(value).transpose(1, 2)).masked_fill(
        ~torch.from_numpy(all_masked)[:, None, :], -torch.inf), dim=-1)
    assert torch.isnan(fill).all()
    sdpa = F.scaled_dot_product_attention(torch.from_numpy(query), torch.from_numpy(value), torch.from_numpy(value),
                                          attn_mask=torch.from_numpy(all_masked)[:, None, :])
    assert (sdpa == 0).all()


def test_masked_key_gradient_under_nan():
    """The one difference between the trees' (Keras') mask and torch's ``-inf`` fill with a key kept
    in every row: a NaN in a row's value gives its masked keys a NaN gradient (the subtraction keeps
    their path, 0 * NaN) where ``masked_fill`` gives 0; everything else agrees NaN for NaN."""
    case = additive_case()
    rng = np.random.default_rng(4)
    inputs = case.inputs("float64", rng)
    inputs["value"][0, 0, 0] = np.nan
    numpy_model = case.build(get_module("numpy", MODULE), "float64", np.random.default_rng(0))
    state = numpy_model.canonical_state_dict()
    cotangents = [rng.standard_normal((N, TQ, DV)), rng.standard_normal((N, TQ, TV))]
    ours = case.references["keras.layers.AdditiveAttention"](state, inputs, cotangents, "float64")
    theirs = case.references["torch formula"](state, inputs, cotangents, "float64")
    masked_keys = ~VALUE_MASK[0]  # (Tv,) sample 0's masked keys
    assert np.isnan(ours.input_grads["key"][0][masked_keys]).all()
    assert (theirs.input_grads["key"][0][masked_keys] == 0).all()
    kept = np.ones((N, TV), dtype=bool)
    kept[0] = VALUE_MASK[0]
    np.testing.assert_array_equal(np.isnan(ours.input_grads["key"][kept]), np.isnan(theirs.input_grads["key"][kept]))
    for a, b in zip(ours.outputs, theirs.outputs):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))


def test_sdpa_default_scale_is_a_learned_scale_of_one_over_sqrt_d():
    """torch's SDPA scales by ``1/sqrt(D)`` by default; Keras' ``use_scale`` learns a scalar that
    starts at 1. Loading ``scale = 1/sqrt(D)`` makes them the same attention."""
    rng = np.random.default_rng(5)
    query, value = rng.standard_normal((N, TQ, D)), rng.standard_normal((N, TV, D))  # (N, Tq, D), (N, Tv, D)
    expected = F.scaled_dot_product_attention(torch.from_numpy(query), torch.from_numpy(value),
                                              torch.from_numpy(value)).numpy()
    for tree in TREES:
        model = build(tree, "LuongAttention", D, use_scale=True)
        model.load_canonical_state_dict({"scale": np.array(1.0 / np.sqrt(D))})
        context, _ = model(tree_tensor(tree, query), tree_tensor(tree, value))
        np.testing.assert_allclose(to_numpy(context), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls, kwargs", [("AdditiveAttention", {"kdim": DK, "hidden_size": H}),
                                         ("LuongAttention", {"kdim": DK, "score_mode": "general", "use_scale": True})])
def test_numpy_module_used_twice_matches_torch_autograd(cls, kwargs):
    """Two forwards (a decoder attending at two steps), two backwards in reverse order: the NumPy
    module's gradients are both uses' sum, as torch autograd's."""
    numpy_m, torch_m = build("numpy", cls, D, **kwargs), build("torch", cls, D, **kwargs)
    torch_m.load_canonical_state_dict(numpy_m.canonical_state_dict())
    rng = np.random.default_rng(6)
    value, key = rng.standard_normal((N, TV, DV)), rng.standard_normal((N, TV, DK))  # (N, Tv, Dv), (N, Tv, Dk)
    queries = [rng.standard_normal((N, TQ, D)) for _ in range(2)]  # 2 x (N, Tq, D)
    cotangents = [(rng.standard_normal((N, TQ, DV)), rng.standard_normal((N, TQ, TV))) for _ in range(2)]
    for query in queries:
        numpy_m(query, value, key)
    numpy_grads = [numpy_m.backward(*cot) for cot in reversed(cotangents)]
    tensors = [torch.tensor(q, requires_grad=True) for q in queries]
    value_t, key_t = torch.tensor(value, requires_grad=True), torch.tensor(key, requires_grad=True)
    loss = sum((out * torch.from_numpy(c)).sum() for q, cot in zip(tensors, cotangents)
               for out, c in zip(torch_m(q, value_t, key_t), cot))
    loss.backward()
    np.testing.assert_allclose(numpy_grads[1][0], tensors[0].grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(numpy_grads[0][0], tensors[1].grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(numpy_grads[0][1] + numpy_grads[1][1], value_t.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(numpy_grads[0][2] + numpy_grads[1][2], key_t.grad.numpy(), rtol=1e-12, atol=1e-12)
    for name, grad in torch_m.canonical_grads().items():
        np.testing.assert_allclose(numpy_m.canonical_grads()[name], grad, rtol=1e-12, atol=1e-12, err_msg=name)


def test_numpy_backward_takes_none_for_the_weights_cotangent():
    """``backward(grad_context)`` (the weights unused downstream) equals ``backward(grad_context, zeros)``."""
    model = build("numpy", "AdditiveAttention", D, hidden_size=H)
    rng = np.random.default_rng(7)
    query, value = rng.standard_normal((N, TQ, D)), rng.standard_normal((N, TV, D))  # (N, Tq, D), (N, Tv, D)
    grad_context = rng.standard_normal((N, TQ, D))  # (N, Tq, D)
    model(query, value)
    with_none = model.backward(grad_context, None)
    model(query, value)
    with_zeros = model.backward(grad_context, np.zeros((N, TQ, TV)))
    for a, b in zip(with_none, with_zeros):
        np.testing.assert_array_equal(a, b)


BAD_ARGUMENTS = {
    "embed_dim 0": ("AdditiveAttention", (0,), {}, ValueError, "AdditiveAttention: embed_dim must be an int >= 1, got 0"),
    "hidden_size float": ("AdditiveAttention", (4,), {"hidden_size": 2.0}, ValueError,
                          "AdditiveAttention: hidden_size must be an int >= 1, got 2.0"),
    "kdim without projections": ("AdditiveAttention", (4,), {"kdim": 5}, ValueError,
                                 "AdditiveAttention: without hidden_size, kdim (5) must equal embed_dim (4)"),
    "use_scale string": ("AdditiveAttention", (4,), {"use_scale": "yes"}, TypeError,
                         "AdditiveAttention: use_scale must be a bool (True or False), got 'yes'"),
    "score_mode concat": ("LuongAttention", (4,), {"score_mode": "concat"}, ValueError,
                          "LuongAttention: score_mode must be one of ('dot', 'general'), got 'concat'"),
    "dot with kdim": ("LuongAttention", (4,), {"kdim": 5}, ValueError,
                      "LuongAttention: score_mode 'dot' needs kdim (5) equal to embed_dim (4)"),
    "rng seed": ("LuongAttention", (4,), {"rng": 0}, TypeError,
                 "LuongAttention: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    cls, args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: getattr(get_module(tree, MODULE), cls)(*args, **kwargs))


def bad_inputs():
    """What -> (inputs, keyword inputs, error, message), for ``LuongAttention(4, kdim=5, score_mode="general")``."""
    rng = np.random.default_rng(8)
    query, value, key = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 6, 5))
    owner = "LuongAttention"
    return {
        "query 2-d": ((query[0], value, key), {}, ValueError, f"{owner}: query must have 3 dimensions, got shape (3, 4)"),
        "query width": ((value, value, key), {}, ValueError, f"{owner}: query must have shape (..., 4), got (2, 6, 3)"),
        "query float32": ((query.astype("float32"), value, key), {}, TypeError,
                          f"{owner}: query must have dtype float64, got float32 (cast it explicitly)"),
        "value batch": ((query, value[:1], key), {}, ValueError, f"{owner}: value must have shape (2, 6, 3), got (1, 6, 3)"),
        "key length": ((query, value, key[:, :5]), {}, ValueError, f"{owner}: key must have shape (2, 6, 5), got (2, 5, 5)"),
        "value as key, wrong width": ((query, value), {}, ValueError,
                                      f"{owner}: value (used as the key) must have shape (..., 5), got (2, 6, 3)"),
        "value_mask ints": ((query, value, key), {"value_mask": np.ones((2, 6), dtype=np.int64)}, TypeError,
                            f"{owner}: value_mask must have dtype bool, got int64 (cast it explicitly)"),
        "query_mask shape": ((query, value, key), {"query_mask": np.ones((2, 6), dtype=bool)}, ValueError,
                             f"{owner}: query_mask must have shape (2, 3), got (2, 6)"),
    }


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(bad_inputs()))
def test_bad_inputs_raise_one_clear_error(what, tree):
    args, kwargs, error, message = bad_inputs()[what]
    model = build(tree, "LuongAttention", 4, kdim=5, score_mode="general")
    call = lambda: model(*(tree_tensor(tree, a) for a in args), **{k: tree_tensor(tree, v) for k, v in kwargs.items()})
    assert_raises_exactly(error, message, call)


def reversal_attention(tree: str = "numpy"):
    """Luong dot attention of a toy "reverse the sequence" alignment: query ``i`` is key ``T-1-i``
    (times 2; the keys are orthonormal) plus noise; the second sample masks its last two keys.
    Returns the weights ``(2, T, T)`` and the value mask."""
    rng = np.random.default_rng(9)
    length, width = 6, 8
    # Orthonormal rows (QR of a Gaussian), so a key scores only its own query highly.
    keys = np.stack([np.linalg.qr(rng.standard_normal((width, width)))[0][:length] for _ in range(2)])  # (2, T, D)
    query = 2.0 * keys[:, ::-1, :] + 0.3 * rng.standard_normal((2, length, width))  # (2, T, D)
    value_mask = np.ones((2, length), dtype=bool)  # (2, T)
    value_mask[1, -2:] = False
    model = build(tree, "LuongAttention", width)
    _, weights = model(*(tree_tensor(tree, a) for a in (np.ascontiguousarray(query), keys)),
                       value_mask=tree_tensor(tree, value_mask))
    return to_numpy(weights), value_mask


@pytest.mark.parametrize("tree", TREES)
def test_dot_attention_finds_the_reversal_alignment(tree):
    """Each query puts most of its weight on its reversed key, and none on a masked key."""
    weights, value_mask = reversal_attention(tree)
    length = weights.shape[-1]
    np.testing.assert_array_equal(weights[0].argmax(axis=-1), np.arange(length)[::-1])
    assert (weights[1][:, ~value_mask[1]] == 0).all()
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-12)


def write_heatmap(path) -> None:
    """The day page's figure: both samples' weights of :func:`reversal_attention` as heat maps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    weights, value_mask = reversal_attention()
    figure, axes = plt.subplots(1, 2, figsize=(7, 3.2), constrained_layout=True)
    titles = ("reversal alignment", "last two keys masked")
    for axis, sample, title in zip(axes, weights, titles):
        image = axis.imshow(sample, cmap="viridis", vmin=0.0, vmax=1.0)
        axis.set(title=title, xlabel="key j (encoder step)", ylabel="query i (decoder step)")
    figure.colorbar(image, ax=axes, label="weight $a_{ij}$")
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    write_heatmap("docs/days/img/day29_attention.png")
