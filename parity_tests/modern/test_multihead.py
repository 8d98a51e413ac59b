"""Day 42: multi-head attention with packed QKV in three trees.

References: ``torch.nn.MultiheadAttention`` fed the same state dict (its own names and layouts,
both ``batch_first`` layouts, key padding, ``attn_mask`` (T, S) and (B*H, T, S), bool and float,
averaged and per-head weights, ``need_weights=False``), and ``keras.layers.MultiHeadAttention``
fed the converted weights (:func:`torch_mha_to_keras`; its gradients come back through
:func:`keras_mha_to_torch`). Keras masks by adding -1e9 where torch adds -inf: the same numbers
wherever a row keeps a key (every case here), so Keras sits out only the special-values pass of
the masked case. No reference takes a dropout mask: the dropout case is the trees' own parity
plus the finite-difference check.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  gradcheck_numpy, run_numpy, run_tf, run_torch)

MODULE = "modern.multihead"
B, T, S, E, H = 2, 3, 4, 6, 2
D = E // H
#: Why Keras sits out the special-values pass when there is a mask.
KERAS_MASK_REASON = ("masks by adding -1e9 (torch and the trees add -inf): a +inf score plus -1e9 stays +inf, plus -inf "
                     "is NaN, so the NaN pattern of a row with a special value differs; the numbers agree otherwise")


class Called:
    """A tree's model as a case calls it: the harness passes the inputs positionally, this passes them
    by name (``names``) with the fixed keyword ``flags``; ``self_attention`` feeds the one input ``x``
    as query, key and value (the NumPy backward's three gradients summed here, in the caller); a
    ``None`` weights output (``need_weights=False``) is left out."""

    def __init__(self, model, names, self_attention=False, **flags):
        self.model, self.names, self.self_attention, self.flags = model, tuple(names), self_attention, flags

    def arguments(self, tensors) -> dict:
        named = dict(zip(self.names, tensors))
        if self.self_attention:
            x = named.pop("x")
            named.update(query=x, key=x, value=x)
        return {**named, **self.flags}

    def outputs(self, result):
        return result[0] if result[1] is None else result

    def __call__(self, *tensors):
        return self.outputs(self.model(**self.arguments(tensors)))

    def forward(self, *tensors):
        return self.outputs(self.model.forward(**self.arguments(tensors)))

    def backward(self, *cotangents):
        grads = self.model.backward(*cotangents)
        return sum(grads) if self.self_attention else grads

    def __getattr__(self, name):
        return getattr(self.model, name)


def torch_mha_to_keras(state: dict, num_heads: int) -> dict:
    """Canonical (torch) -> Keras ``MultiHeadAttention``: the packed ``(3E, E)`` rows split into
    query/key/value, each transposed to ``(E, 3E)``'s block and viewed per head as ``(E, H, d)``
    (torch's head ``h`` is output features ``h*d .. h*d + d-1``); biases ``(H, d)``; the output
    kernel ``(H, d, E)`` is ``out_proj.weight`` transposed and viewed per head."""
    embed_dim = state["in_proj_weight"].shape[1]
    head_dim = embed_dim // num_heads
    native = {}
    for name, weight in zip(("query", "key", "value"), np.split(state["in_proj_weight"], 3)):
        native[f"{name}.kernel"] = weight.T.reshape(embed_dim, num_heads, head_dim)  # (E, H, d)
    if "in_proj_bias" in state:
        for name, bias in zip(("query", "key", "value"), np.split(state["in_proj_bias"], 3)):
            native[f"{name}.bias"] = bias.reshape(num_heads, head_dim)  # (H, d)
    native["attention_output.kernel"] = state["out_proj.weight"].T.reshape(num_heads, head_dim, embed_dim)  # (H, d, E)
    if "out_proj.bias" in state:
        native["attention_output.bias"] = state["out_proj.bias"]  # (E,)
    return native


def keras_mha_to_torch(native: dict, num_heads: int) -> dict:
    """Keras ``MultiHeadAttention`` -> canonical: the inverse of :func:`torch_mha_to_keras`."""
    embed_dim = native["query.kernel"].shape[0]
    state = {"in_proj_weight": np.concatenate([native[f"{name}.kernel"].reshape(embed_dim, embed_dim).T
                                               for name in ("query", "key", "value")])}  # (3E, E)
    if "query.bias" in native:
        state["in_proj_bias"] = np.concatenate([native[f"{name}.bias"].reshape(-1) for name in ("query", "key", "value")])
    state["out_proj.weight"] = native["attention_output.kernel"].reshape(embed_dim, embed_dim).T  # (E, E)
    if "attention_output.bias" in native:
        state["out_proj.bias"] = native["attention_output.bias"]
    return state


def keras_scale_correction(head_dim: int, dtype: str) -> float:
    """Keras' ``MultiHeadAttention`` scales the query by ``ops.cast(1/sqrt(d), dtype)``; under TF that
    casts a *float32* constant, so in float64 its scale is off by ~1e-8 relative. The reference
    multiplies its query kernel and bias by this factor (and their gradients by it too, the chain
    rule), so it computes the exact ``1/sqrt(d)`` that torch uses; 1.0 in float32."""
    exact = 1.0 / np.sqrt(head_dim)
    return float(exact / np.float64(np.float32(exact))) if dtype == "float64" else 1.0


def mha_inputs(batch_first: bool, self_attention=False, key_padding=False, attn_mask=None, dropout=False,
               batch: int = B):
    """The named inputs: ``query``/``key``/``value`` (or one ``x``), and the masks asked for. Every
    query row keeps at least one key (key 0), so no row is all ``-inf``."""
    def layout(length):
        return (batch, length, E) if batch_first else (length, batch, E)

    def draw(dtype, rng):
        source = T if self_attention else S
        if self_attention:
            inputs = {"x": rng.standard_normal(layout(T)).astype(dtype)}
        else:
            inputs = {name: rng.standard_normal(layout(length)).astype(dtype)
                      for name, length in (("query", T), ("key", S), ("value", S))}
        if key_padding:
            padding = rng.random((batch, source)) < 0.4  # (B, S), True = ignore
            padding[:, 0] = False
            inputs["key_padding_mask"] = padding
        if attn_mask is not None:
            shape = (T, source) if attn_mask.endswith("2d") else (batch * H, T, source)
            mask = rng.random(shape) < 0.4
            mask[..., 0] = False
            # A float mask is added as it is: 0 where allowed, a finite penalty elsewhere.
            inputs["attn_mask"] = mask if attn_mask.startswith("bool") else np.where(mask, -3.0, 0.5).astype(dtype)
        if dropout:
            inputs["dropout_mask"] = rng.random((batch, H, T, source)) < 0.8  # (B, H, T, S), True = keep
        return inputs
    return draw


def torch_reference(batch_first: bool, bias: bool, self_attention: bool, flags: dict):
    """``nn.MultiheadAttention`` loaded with the canonical state unchanged."""
    def run(state, inputs, cotangents, dtype):
        module = torch.nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first, dtype=getattr(torch, dtype))
        module.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
        return run_torch(Called(module, inputs, self_attention, **flags), inputs,
                         ("x",) if self_attention else ("query", "key", "value"), cotangents)
    return run


def keras_reference(batch_first: bool, bias: bool, self_attention: bool, flags: dict):
    """``keras.layers.MultiHeadAttention(num_heads=H, key_dim=d)`` with :func:`torch_mha_to_keras`'s
    weights, called batch first with ``attention_mask`` = not masked (Keras' True = attend)."""
    import keras
    import tensorflow as tf

    def run(state, inputs, cotangents, dtype):
        layer = keras.layers.MultiHeadAttention(num_heads=H, key_dim=D, use_bias=bias, dtype=dtype)
        layer.build((B, T, E), (B, S, E), (B, S, E))
        dense = {"query": layer.query_dense, "key": layer.key_dense, "value": layer.value_dense,
                 "attention_output": layer.output_dense}
        variables = {f"{name}.{part}": getattr(sub, part) for name, sub in dense.items()
                     for part in ("kernel", "bias") if part == "kernel" or bias}
        correction = keras_scale_correction(D, dtype)
        for name, value in torch_mha_to_keras(state, H).items():
            variables[name].assign(value * correction if name.startswith("query.") else value)

        def call(*tensors):
            named = Called(None, inputs, self_attention).arguments(tensors)
            query, key, value = (x if batch_first else tf.transpose(x, (1, 0, 2))
                                 for x in (named["query"], named["key"], named["value"]))
            allowed = None
            if "key_padding_mask" in named:
                allowed = tf.logical_not(named["key_padding_mask"])[:, None, :]  # (B, 1, S)
            if "attn_mask" in named:
                attend = tf.logical_not(named["attn_mask"])  # (T, S) or (B*H, T, S)
                allowed = attend if allowed is None else tf.logical_and(allowed, attend)
            if allowed is not None:
                allowed = tf.broadcast_to(allowed, (query.shape[0], query.shape[1], key.shape[1]))  # (B, T, S)
            output, scores = layer(query, value, key=key, attention_mask=allowed, return_attention_scores=True)
            if not batch_first:
                output = tf.transpose(output, (1, 0, 2))
            if not flags.get("need_weights", True):
                return output
            return output, tf.reduce_mean(scores, axis=1) if flags.get("average_attn_weights", True) else scores

        to_canonical = lambda grads: keras_mha_to_torch(
            {name: np.asarray(grad) * (correction if name.startswith("query.") else 1.0) for name, grad in grads.items()}, H)
        return run_tf(call, inputs, ("x",) if self_attention else ("query", "key", "value"), cotangents, variables,
                      to_canonical)
    return run


def mha_case(batch_first=False, bias=True, self_attention=False, key_padding=False, attn_mask=None, dropout=0.0,
             **flags):
    """One configuration; ``flags`` are ``forward``'s keyword flags (``need_weights``,
    ``average_attn_weights``)."""
    draw = mha_inputs(batch_first, self_attention, key_padding, attn_mask, bool(dropout))
    names = tuple(draw("float64", np.random.default_rng(0)))
    references = {}
    if not dropout:
        references["torch nn.MultiheadAttention"] = torch_reference(batch_first, bias, self_attention, flags)
        # Keras' attention_mask is boolean and per sample (B, T, S): a float or per-head mask has no counterpart.
        if attn_mask in (None, "bool 2d"):
            references["keras MultiHeadAttention"] = keras_reference(batch_first, bias, self_attention, flags)
    sequence_axis = 0 if batch_first else 1
    keras_masked = "keras MultiHeadAttention" in references and (key_padding or attn_mask is not None)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: Called(m.MultiheadAttention(E, H, dropout=dropout, bias=bias, batch_first=batch_first,
                                                                dtype=dtype, rng=rng), names, self_attention, **flags),
        inputs=draw,
        differentiable=("x",) if self_attention else ("query", "key", "value"),
        references=references,
        output_names=("attn_output", "attn_weights") if flags.get("need_weights", True) else ("attn_output",),
        special_excluded_references={"keras MultiHeadAttention": KERAS_MASK_REASON} if keras_masked else {},
        batch_axes={"x": sequence_axis, "query": sequence_axis, "key": sequence_axis, "value": sequence_axis,
                    "attn_mask": None if attn_mask is None or attn_mask.endswith("2d") else 0},
    )


CASES = {
    "sequence first": lambda: mha_case(),
    "batch first": lambda: mha_case(batch_first=True),
    "no bias": lambda: mha_case(bias=False),
    "key padding, batch first": lambda: mha_case(batch_first=True, key_padding=True),
    "bool attn_mask (T, S) and key padding": lambda: mha_case(key_padding=True, attn_mask="bool 2d"),
    "bool attn_mask (B*H, T, S), per-head weights": lambda: mha_case(attn_mask="bool 3d", average_attn_weights=False),
    "float attn_mask (T, S)": lambda: mha_case(batch_first=True, attn_mask="float 2d"),
    "need_weights False": lambda: mha_case(need_weights=False),
    "self-attention, per-head weights": lambda: mha_case(self_attention=True, average_attn_weights=False),
    "self-attention, key padding, batch first": lambda: mha_case(batch_first=True, self_attention=True, key_padding=True),
    "dropout mask": lambda: mha_case(dropout=0.25),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_multihead_parity(name, dtype):
    check_parity(CASES[name](), dtype)


@pytest.mark.parametrize("name", ["sequence first", "bool attn_mask (T, S) and key padding",
                                  "self-attention, per-head weights", "dropout mask"])
def test_multihead_gradcheck(name):
    gradcheck_numpy(CASES[name]())


def build(tree: str, *args, **kwargs):
    return getattr(get_module(tree, MODULE), "MultiheadAttention")(*args, dtype="float64", rng=np.random.default_rng(0),
                                                                    **kwargs)


def tree_tensor(tree: str, array):
    import tensorflow as tf
    return {"numpy": lambda a: a, "torch": torch.from_numpy, "tf": tf.constant}[tree](array)


@pytest.mark.parametrize("tree", TREES)
def test_default_init_is_torchs(tree):
    """Xavier-uniform ``in_proj_weight`` (bound sqrt(6 / (E + 3E))), zero biases, ``out_proj.weight``
    within Linear's bound 1/sqrt(E): torch's ``_reset_parameters``. Names and shapes are torch's."""
    state = build(tree, 16, 4).canonical_state_dict()
    reference = torch.nn.MultiheadAttention(16, 4).state_dict()
    assert list(state) == list(reference)
    assert all(state[name].shape == tuple(reference[name].shape) for name in state)
    bound = np.sqrt(6.0 / (16 + 48))
    assert np.abs(state["in_proj_weight"]).max() <= bound and np.abs(state["in_proj_weight"]).max() > 0.9 * bound
    assert not state["in_proj_bias"].any() and not state["out_proj.bias"].any()
    assert np.abs(state["out_proj.weight"]).max() <= 1.0 / np.sqrt(16)


def test_numpy_module_used_twice_matches_torch_autograd():
    """Two forwards (an encoder block applied twice), two backwards in reverse order: the NumPy
    module's parameter gradients are both uses' sum, as torch autograd's."""
    numpy_m, torch_m = build("numpy", E, H), build("torch", E, H)
    torch_m.load_canonical_state_dict(numpy_m.canonical_state_dict())
    rng = np.random.default_rng(6)
    calls = [[rng.standard_normal((T, B, E)), rng.standard_normal((S, B, E)), rng.standard_normal((S, B, E))]
             for _ in range(2)]
    cotangents = [(rng.standard_normal((T, B, E)), rng.standard_normal((B, T, S))) for _ in range(2)]
    for arrays in calls:
        numpy_m(*arrays)
    numpy_grads = [numpy_m.backward(*cot) for cot in reversed(cotangents)][::-1]
    tensors = [[torch.tensor(a, requires_grad=True) for a in arrays] for arrays in calls]
    loss = sum((out * torch.from_numpy(c)).sum() for args, cot in zip(tensors, cotangents)
               for out, c in zip(torch_m(*args), cot))
    loss.backward()
    for ours, theirs in zip(numpy_grads, tensors):
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b.grad.numpy(), rtol=1e-12, atol=1e-12)
    for name, grad in torch_m.canonical_grads().items():
        np.testing.assert_allclose(numpy_m.canonical_grads()[name], grad, rtol=1e-12, atol=1e-12, err_msg=name)


def test_keras_conversion_round_trips():
    """:func:`keras_mha_to_torch` inverts :func:`torch_mha_to_keras`, bias or not."""
    for bias in (True, False):
        state = build("numpy", E, H, bias=bias).canonical_state_dict()
        back = keras_mha_to_torch(torch_mha_to_keras(state, H), H)
        assert list(back) == list(state)
        for name in state:
            np.testing.assert_array_equal(back[name], state[name])


def torch_fully_masked(model_state: dict, query, key, attn_mask, need_weights: bool):
    """``nn.MultiheadAttention`` on the fully masked case, loaded with ``model_state``."""
    reference = torch.nn.MultiheadAttention(E, H, dtype=torch.float64)
    reference.load_state_dict({n: torch.from_numpy(v) for n, v in model_state.items()})
    output, weights = reference(*(torch.from_numpy(a) for a in (query, key, key)), need_weights=need_weights,
                                attn_mask=torch.from_numpy(attn_mask))
    return output.detach().numpy(), None if weights is None else weights.detach().numpy()


@pytest.mark.parametrize("tree", TREES)
def test_fully_masked_row_is_zero_as_torch_without_weights(tree):
    """A query whose keys are all masked: day 41's safe softmax gives it zero weights, so its output
    row is ``out_proj.bias``, as ``nn.MultiheadAttention(need_weights=False)`` (which routes to SDPA).
    With ``need_weights=True`` torch takes its math path and returns NaN there instead: torch's two
    paths disagree, and the trees follow SDPA's."""
    rng = np.random.default_rng(7)
    query, key = rng.standard_normal((T, 1, E)), rng.standard_normal((S, 1, E))
    attn_mask = np.zeros((T, S), dtype=bool)
    attn_mask[0] = True
    model = build(tree, E, H)
    state = {name: rng.uniform(-1, 1, value.shape) for name, value in model.canonical_state_dict().items()}
    model.load_canonical_state_dict(state)
    output, weights = (np.asarray(t.detach() if tree == "torch" else t)
                       for t in model(*(tree_tensor(tree, a) for a in (query, key, key)),
                                      attn_mask=tree_tensor(tree, attn_mask)))
    assert (weights[:, 0] == 0).all()
    np.testing.assert_allclose(output[0, 0], state["out_proj.bias"], rtol=1e-12)
    expected, _ = torch_fully_masked(state, query, key, attn_mask, need_weights=False)
    np.testing.assert_allclose(output, expected, rtol=1e-12, atol=1e-12)
    nan_output, nan_weights = torch_fully_masked(state, query, key, attn_mask, need_weights=True)
    assert np.isnan(nan_output[0]).all() and np.isnan(nan_weights[:, 0]).all()
    np.testing.assert_allclose(nan_output[1:], output[1:], rtol=1e-12, atol=1e-12)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 2), target=st.integers(1, 3), source=st.integers(1, 3), heads=st.sampled_from([1, 2, 4]),
       batch_first=st.booleans(), seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_torch_module(batch, target, source, heads, batch_first, seed):
    """Random small shapes (an empty batch included) with key padding keeping key 0: the NumPy
    tree's outputs and gradients equal ``nn.MultiheadAttention``'s."""
    rng = np.random.default_rng(seed)
    model = get_module("numpy", MODULE).MultiheadAttention(4, heads, batch_first=batch_first, dtype="float64", rng=rng)
    layout = (lambda n: (batch, n, 4)) if batch_first else (lambda n: (n, batch, 4))
    padding = rng.random((batch, source)) < 0.5
    padding[:, 0] = False
    inputs = {"query": rng.standard_normal(layout(target)), "key": rng.standard_normal(layout(source)),
              "value": rng.standard_normal(layout(source)), "key_padding_mask": padding}
    cotangents = [rng.standard_normal(layout(target)), rng.standard_normal((batch, target, source))]
    names = tuple(inputs)
    ours = run_numpy(Called(model, names), inputs, ("query", "key", "value"), cotangents)
    module = torch.nn.MultiheadAttention(4, heads, batch_first=batch_first, dtype=torch.float64)
    module.load_state_dict({n: torch.from_numpy(v) for n, v in model.canonical_state_dict().items()})
    theirs = run_torch(Called(module, names), inputs, ("query", "key", "value"), cotangents)
    assert_no_failures(compare_results({"numpy": ours, "torch nn.MultiheadAttention": theirs}, "float64"), "fuzz")


BAD_ARGUMENTS = {
    "embed_dim 0": ((0, 1), {}, ValueError, "MultiheadAttention: embed_dim must be an int >= 1, got 0"),
    "num_heads float": ((6, 2.0), {}, ValueError, "MultiheadAttention: num_heads must be an int >= 1, got 2.0"),
    "not divisible": ((6, 4), {}, ValueError, "MultiheadAttention: embed_dim (6) must be divisible by num_heads (4)"),
    "dropout 1.5": ((6, 2), {"dropout": 1.5}, ValueError, "MultiheadAttention: dropout must be in [0, 1], got 1.5"),
    "bias string": ((6, 2), {"bias": "yes"}, TypeError, "MultiheadAttention: bias must be a bool (True or False), got 'yes'"),
    "batch_first int": ((6, 2), {"batch_first": 1}, TypeError,
                        "MultiheadAttention: batch_first must be a bool (True or False), got 1"),
    "rng seed": ((6, 2), {"rng": 0}, TypeError,
                 "MultiheadAttention: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: get_module(tree, MODULE).MultiheadAttention(*args, **kwargs))


def bad_inputs():
    """What -> (positional inputs, keyword inputs, error, message), for ``MultiheadAttention(6, 2)`` (sequence first)."""
    rng = np.random.default_rng(8)
    query, key = rng.standard_normal((T, B, E)), rng.standard_normal((S, B, E))
    owner = "MultiheadAttention"
    return {
        "query 2-d": ((query[:, 0], key, key), {}, ValueError, f"{owner}: query must have 3 dimensions, got shape (3, 6)"),
        "query width": ((query[..., :4], key, key), {}, ValueError, f"{owner}: query must have shape (..., 6), got (3, 2, 4)"),
        "query float32": ((query.astype("float32"), key, key), {}, TypeError,
                          f"{owner}: query must have dtype float64, got float32 (cast it explicitly)"),
        "key batch": ((query, key[:, :1], key), {}, ValueError, f"{owner}: key must have shape (4, 2, 6), got (4, 1, 6)"),
        "value length": ((query, key, key[:3]), {}, ValueError, f"{owner}: value must have shape (4, 2, 6), got (3, 2, 6)"),
        "key_padding_mask ints": ((query, key, key), {"key_padding_mask": np.ones((B, S), dtype=np.int64)}, TypeError,
                                  f"{owner}: key_padding_mask must have dtype bool or float64, got int64 (cast it explicitly)"),
        "key_padding_mask shape": ((query, key, key), {"key_padding_mask": np.zeros((S, B), dtype=bool)}, ValueError,
                                   f"{owner}: key_padding_mask must have shape (2, 4), got (4, 2)"),
        "attn_mask shape": ((query, key, key), {"attn_mask": np.zeros((B, T, S), dtype=bool)}, ValueError,
                            f"{owner}: attn_mask must have shape (3, 4) or (4, 3, 4), got (2, 3, 4)"),
        "is_causal without mask": ((query, key, key), {"is_causal": True}, ValueError,
                                   f"{owner}: is_causal is only a hint that attn_mask is the causal mask (torch's rule): "
                                   "pass the (T, S) causal attn_mask too"),
        "dropout_mask without dropout": ((query, key, key), {"dropout_mask": np.ones((B, H, T, S), dtype=bool)}, ValueError,
                                         f"{owner}: dropout_mask was given but dropout is off (dropout == 0 or eval mode)"),
        "need_weights string": ((query, key, key), {"need_weights": "no"}, TypeError,
                                f"{owner}: need_weights must be a bool (True or False), got 'no'"),
    }


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(bad_inputs()))
def test_bad_inputs_raise_one_clear_error(what, tree):
    args, kwargs, error, message = bad_inputs()[what]
    model = build(tree, E, H)
    tensor = lambda a: tree_tensor(tree, a) if isinstance(a, np.ndarray) else a
    assert_raises_exactly(error, message, lambda: model(*(tensor(a) for a in args), **{k: tensor(v) for k, v in kwargs.items()}))


@pytest.mark.parametrize("tree", TREES)
def test_dropout_in_training_needs_its_mask(tree):
    """Training with ``dropout > 0`` and no mask is an error (randomness is an input); ``eval()`` needs none."""
    rng = np.random.default_rng(9)
    query = tree_tensor(tree, rng.standard_normal((T, B, E)))
    model = build(tree, E, H, dropout=0.5)
    assert_raises_exactly(ValueError, "MultiheadAttention: dropout is on (training, dropout > 0), so dropout_mask "
                          "(B, H, T, S) bool, True = keep, must be given, got None", lambda: model(query, query, query))
    model.eval()
    model(query, query, query)
