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
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ml100.backends import get_module
from parity_tests.harness import TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy, run_tf, run_torch

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
