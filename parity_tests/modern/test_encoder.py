"""Day 45: the Transformer encoder block in three trees.

Reference: ``torch.nn.TransformerEncoderLayer`` fed the same state dict (its own names and
layouts), post-LN and pre-LN, ReLU and GELU, both ``batch_first`` layouts, with and without masks,
twice per case: in eval mode and in train mode with ``dropout=0``. In eval mode torch has a fused
"fast path" (``torch._transformer_encoder_layer_fwd``), but it is taken only when no input or
parameter needs a gradient; the harness asks for gradients, so both references run torch's
composite path, and :func:`test_torch_fast_path_agrees_without_grad` compares the fast path's
forward on its own. No reference takes dropout masks: the dropout cases are the trees' own parity
plus the finite-difference check.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  gradcheck_numpy, run_numpy, run_torch)

MODULE = "modern.encoder"
B, T, E, H, F = 2, 3, 4, 2, 5
#: dropout_masks key -> the input that carries it in a case.
DROPOUT_INPUTS = {"self_attn": "keep_attention", "dropout1": "keep_attended", "dropout": "keep_inner",
                  "dropout2": "keep_feedforward"}


#: Why torch sits out the special-values pass of the float-mask case (checked by
#: :func:`test_torch_fused_attention_backward_loses_ties`).
TORCH_FLOAT_MASK_REASON = (
    "a float src_mask times 1e100 ties scores at 5e99 where the O(1) query-key part rounds away; torch's CPU "
    "fused (flash) attention backward rebuilds the weights as exp(s - logsumexp), and logsumexp = 5e99 + log n "
    "rounds to 5e99, so its gradient weighs n tied keys 1 each instead of 1/n (its forward and the math backend agree "
    "with the trees)")


class Called:
    """A model as a case calls it: the harness passes the inputs positionally, this passes them by
    name (``names``), the four dropout masks gathered into ``dropout_masks``, with the keyword ``flags``."""

    def __init__(self, model, names, **flags):
        self.model, self.names, self.flags = model, tuple(names), flags

    def arguments(self, tensors) -> dict:
        named = dict(zip(self.names, tensors))
        masks = {key: named.pop(name) for key, name in DROPOUT_INPUTS.items() if name in named}
        if masks:
            named["dropout_masks"] = masks
        return {**named, **self.flags}

    def __call__(self, *tensors):
        return self.model(**self.arguments(tensors))

    def forward(self, *tensors):
        return self.model.forward(**self.arguments(tensors))

    def backward(self, *cotangents):
        return self.model.backward(*cotangents)

    def __getattr__(self, name):
        return getattr(self.model, name)


def encoder_inputs(batch_first: bool, key_padding=False, src_mask=None, dropout=False, batch: int = B):
    """The named inputs: ``src`` and the masks asked for. Every query keeps key 0, so no row is all ``-inf``."""
    layout = (batch, T, E) if batch_first else (T, batch, E)

    def draw(dtype, rng):
        inputs = {"src": rng.standard_normal(layout).astype(dtype)}
        if src_mask == "causal":
            # True = ignore (nn.MultiheadAttention's meaning): the keys after each query.
            inputs["src_mask"] = np.triu(np.ones((T, T), dtype=bool), 1)
        elif src_mask is not None:
            mask = rng.random((T, T)) < 0.4
            mask[:, 0] = False
            inputs["src_mask"] = mask if src_mask == "bool" else np.where(mask, -3.0, 0.5).astype(dtype)
        if key_padding:
            padding = rng.random((batch, T)) < 0.4  # (B, T), True = ignore
            padding[:, 0] = False
            inputs["src_key_padding_mask"] = padding
        if dropout:
            inputs["keep_attention"] = rng.random((batch, H, T, T)) < 0.8  # (B, H, T, T), True = keep
            inputs["keep_attended"] = rng.random(layout) < 0.8
            inputs["keep_inner"] = rng.random(layout[:-1] + (F,)) < 0.8
            inputs["keep_feedforward"] = rng.random(layout) < 0.8
        return inputs
    return draw


def torch_reference(options: dict, flags: dict, eval_mode: bool):
    """``nn.TransformerEncoderLayer`` loaded with the canonical state unchanged (``dropout=0``)."""
    def run(state, inputs, cotangents, dtype):
        module = torch.nn.TransformerEncoderLayer(E, H, F, dropout=0.0, dtype=getattr(torch, dtype), **options)
        module.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
        module.train(not eval_mode)
        return run_torch(Called(module, inputs, **flags), inputs, ("src",), cotangents)
    return run


def encoder_case(key_padding=False, src_mask=None, dropout=0.0, **options):
    """One configuration; ``options`` are constructor arguments (``norm_first``, ``activation``, ...)."""
    batch_first = options.get("batch_first", False)
    draw = encoder_inputs(batch_first, key_padding, src_mask, bool(dropout))
    names = tuple(draw("float64", np.random.default_rng(0)))
    flags = {"is_causal": True} if src_mask == "causal" else {}
    references = {} if dropout else {
        "torch nn.TransformerEncoderLayer eval": torch_reference(options, flags, eval_mode=True),
        "torch nn.TransformerEncoderLayer train, dropout 0": torch_reference(options, flags, eval_mode=False)}
    batch_axis = 0 if batch_first else 1
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: Called(m.TransformerEncoderLayer(E, H, F, dropout=dropout, dtype=dtype, rng=rng,
                                                                     **options), names, **flags),
        inputs=draw,
        differentiable=("src",),
        references=references,
        output_names=("output",),
        special_excluded_references={name: TORCH_FLOAT_MASK_REASON for name in references} if src_mask == "float" else {},
        batch_axes={"src": batch_axis, "src_mask": None, "keep_attended": batch_axis, "keep_inner": batch_axis,
                    "keep_feedforward": batch_axis},
    )


CASES = {
    "post-LN relu": lambda: encoder_case(),
    "pre-LN relu": lambda: encoder_case(norm_first=True),
    "post-LN gelu, batch first": lambda: encoder_case(activation="gelu", batch_first=True),
    "pre-LN gelu, batch first": lambda: encoder_case(activation="gelu", batch_first=True, norm_first=True),
    "post-LN, bool src_mask and key padding": lambda: encoder_case(key_padding=True, src_mask="bool"),
    "pre-LN, causal src_mask with is_causal": lambda: encoder_case(src_mask="causal", norm_first=True),
    "pre-LN, float src_mask, batch first": lambda: encoder_case(src_mask="float", norm_first=True, batch_first=True),
    "post-LN, no bias, eps 1e-3": lambda: encoder_case(bias=False, layer_norm_eps=1e-3),
    "post-LN dropout masks": lambda: encoder_case(dropout=0.25),
    "pre-LN dropout masks, gelu": lambda: encoder_case(dropout=0.25, norm_first=True, activation="gelu"),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_encoder_parity(name, dtype):
    check_parity(CASES[name](), dtype)


@pytest.mark.parametrize("name", ["post-LN gelu, batch first", "pre-LN, causal src_mask with is_causal",
                                  "post-LN dropout masks", "pre-LN dropout masks, gelu"])
def test_encoder_gradcheck(name):
    gradcheck_numpy(CASES[name]())


def build(tree: str, *args, **kwargs):
    return get_module(tree, MODULE).TransformerEncoderLayer(*args, dtype="float64", rng=np.random.default_rng(0),
                                                            **kwargs)


def tree_tensor(tree: str, array):
    import tensorflow as tf
    return {"numpy": lambda a: a, "torch": torch.from_numpy, "tf": tf.constant}[tree](array)


@pytest.mark.parametrize("tree", TREES)
def test_state_dict_names_and_init_are_torchs(tree):
    """Names, order and shapes are ``nn.TransformerEncoderLayer``'s; LayerNorms start at 1 and 0,
    the attention as day 42 (zero biases), the Linears within ``1/sqrt(fan_in)``."""
    state = build(tree, 8, 2, 16).canonical_state_dict()
    reference = torch.nn.TransformerEncoderLayer(8, 2, 16).state_dict()
    assert list(state) == list(reference)
    assert all(state[name].shape == tuple(reference[name].shape) for name in state)
    assert (state["norm1.weight"] == 1).all() and not state["norm2.bias"].any()
    assert not state["self_attn.in_proj_bias"].any()
    assert np.abs(state["linear1.weight"]).max() <= 1 / np.sqrt(8) and np.abs(state["linear2.weight"]).max() <= 1 / 4


@pytest.mark.parametrize("norm_first", [False, True])
def test_numpy_module_used_twice_matches_torch_autograd(norm_first):
    """Two forwards (one layer applied twice, as a weight-shared stack), two backwards in reverse
    order: the NumPy layer's parameter gradients are both uses' sum, as torch autograd's."""
    numpy_m, torch_m = build("numpy", E, H, F, norm_first=norm_first), build("torch", E, H, F, norm_first=norm_first)
    torch_m.load_canonical_state_dict(numpy_m.canonical_state_dict())
    rng = np.random.default_rng(6)
    sources, cotangents = rng.standard_normal((2, T, B, E)), rng.standard_normal((2, T, B, E))
    for src in sources:
        numpy_m(src)
    numpy_grads = [numpy_m.backward(cot) for cot in cotangents[::-1]][::-1]
    tensors = [torch.tensor(src, requires_grad=True) for src in sources]
    sum((torch_m(src) * torch.from_numpy(cot)).sum() for src, cot in zip(tensors, cotangents)).backward()
    for ours, theirs in zip(numpy_grads, tensors):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-12, atol=1e-12)
    for name, grad in torch_m.canonical_grads().items():
        np.testing.assert_allclose(numpy_m.canonical_grads()[name], grad, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("norm_first", [False, True])
def test_torch_fast_path_agrees_without_grad(norm_first, monkeypatch):
    """Eval mode under ``no_grad``, batch first: torch takes its fused fast path (the call to
    ``torch._transformer_encoder_layer_fwd`` is counted). Its float32 output agrees with the NumPy
    tree's within the float32 tolerance (it sums in another order)."""
    fused, calls = torch._transformer_encoder_layer_fwd, []
    monkeypatch.setattr(torch, "_transformer_encoder_layer_fwd", lambda *args: calls.append(1) or fused(*args))
    state = {name: value.astype("float32")
             for name, value in build("numpy", E, H, F, norm_first=norm_first).canonical_state_dict().items()}
    ours = get_module("numpy", MODULE).TransformerEncoderLayer(E, H, F, norm_first=norm_first, batch_first=True,
                                                               rng=np.random.default_rng(0))
    ours.load_canonical_state_dict(state)
    reference = torch.nn.TransformerEncoderLayer(E, H, F, norm_first=norm_first, batch_first=True).eval()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    src = np.random.default_rng(3).standard_normal((B, T, E)).astype("float32")
    with torch.no_grad():
        fast = reference(torch.from_numpy(src)).numpy()
    assert calls == [1]
    np.testing.assert_allclose(ours(src), fast, rtol=1e-4, atol=1e-4)


def test_torch_fused_attention_backward_loses_ties():
    """The reason the float-mask case's special pass leaves torch out: with two scores tied at
    5e99, torch's CPU flash-attention backward differs from its math backend's (which the trees
    match), while the two forwards agree."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    rng = np.random.default_rng(4)
    query, key, value = (torch.tensor(rng.standard_normal((1, 1, 2, 2)), requires_grad=True) for _ in range(3))
    mask = torch.tensor([[5e99, 5e99], [5e99, -3e100]], dtype=torch.float64)  # row 0: two tied keys
    outputs, grads = {}, {}
    for backend in (SDPBackend.MATH, SDPBackend.FLASH_ATTENTION):
        with sdpa_kernel(backend):
            outputs[backend] = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        grads[backend] = torch.autograd.grad(outputs[backend].sum(), query)[0]
    torch.testing.assert_close(outputs[SDPBackend.MATH], outputs[SDPBackend.FLASH_ATTENTION], rtol=1e-9, atol=0.0)
    assert not torch.allclose(grads[SDPBackend.MATH][..., 0, :], grads[SDPBackend.FLASH_ATTENTION][..., 0, :])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 2), steps=st.integers(1, 3), heads=st.sampled_from([1, 2, 4]), norm_first=st.booleans(),
       activation=st.sampled_from(["relu", "gelu"]), seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_torch_layer(batch, steps, heads, norm_first, activation, seed):
    """Random small shapes with key padding keeping key 0: the NumPy tree's outputs and gradients
    equal ``nn.TransformerEncoderLayer``'s. (An empty batch with a key padding mask is one torch
    refuses: ``attn_mask.view`` cannot infer a size from 0 elements; the harness's empty-batch
    pass covers the trees there.)"""
    rng = np.random.default_rng(seed)
    options = dict(dim_feedforward=3, norm_first=norm_first, activation=activation)
    model = get_module("numpy", MODULE).TransformerEncoderLayer(4, heads, dtype="float64", rng=rng, **options)
    padding = rng.random((batch, steps)) < 0.5
    padding[:, 0] = False
    inputs = {"src": rng.standard_normal((steps, batch, 4)), "src_key_padding_mask": padding}
    cotangents = [rng.standard_normal((steps, batch, 4))]
    ours = run_numpy(Called(model, tuple(inputs)), inputs, ("src",), cotangents)
    module = torch.nn.TransformerEncoderLayer(4, heads, dropout=0.0, dtype=torch.float64, **options)
    module.load_state_dict({n: torch.from_numpy(v) for n, v in model.canonical_state_dict().items()})
    theirs = run_torch(Called(module, tuple(inputs)), inputs, ("src",), cotangents)
    assert_no_failures(compare_results({"numpy": ours, "torch nn.TransformerEncoderLayer": theirs}, "float64"), "fuzz")


OWNER = "TransformerEncoderLayer"
BAD_ARGUMENTS = {
    "d_model 0": ((0, 1), {}, ValueError, f"{OWNER}: d_model must be an int >= 1, got 0"),
    "nhead float": ((4, 2.0), {}, ValueError, f"{OWNER}: nhead must be an int >= 1, got 2.0"),
    "not divisible": ((6, 4), {}, ValueError, f"{OWNER}: d_model (6) must be divisible by nhead (4)"),
    "dim_feedforward 0": ((4, 2, 0), {}, ValueError, f"{OWNER}: dim_feedforward must be an int >= 1, got 0"),
    "dropout 1.5": ((4, 2), {"dropout": 1.5}, ValueError, f"{OWNER}: dropout must be in [0, 1], got 1.5"),
    "activation tanh": ((4, 2), {"activation": "tanh"}, ValueError,
                        f"{OWNER}: activation must be one of ('relu', 'gelu'), got 'tanh'"),
    "norm_first int": ((4, 2), {"norm_first": 1}, TypeError, f"{OWNER}: norm_first must be a bool (True or False), got 1"),
    "rng seed": ((4, 2), {"rng": 0}, TypeError,
                 f"{OWNER}: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: get_module(tree, MODULE).TransformerEncoderLayer(*args, **kwargs))


def bad_inputs():
    """What -> (model options, src, keyword inputs, error, message), for ``TransformerEncoderLayer(4, 2, 5)``."""
    rng = np.random.default_rng(8)
    src = rng.standard_normal((T, B, E))
    masks = {"self_attn": np.ones((B, H, T, T), dtype=bool), "dropout1": np.ones((T, B, E), dtype=bool),
             "dropout": np.ones((T, B, F), dtype=bool), "dropout2": np.ones((T, B, E), dtype=bool)}
    return {
        "src 2-d": ({}, src[:, 0], {}, ValueError, f"{OWNER}: src must have 3 dimensions, got shape (3, 4)"),
        "src width": ({}, src[..., :3], {}, ValueError, f"{OWNER}: src must have shape (..., 4), got (3, 2, 3)"),
        "src float32": ({}, src.astype("float32"), {}, TypeError,
                        f"{OWNER}: src must have dtype float64, got float32 (cast it explicitly)"),
        "masks without dropout": ({}, src, {"dropout_masks": masks}, ValueError,
                                  f"{OWNER}: dropout_masks was given but dropout is off (dropout == 0 or eval mode)"),
        "dropout without masks": ({"dropout": 0.5}, src, {}, ValueError,
                                  f"{OWNER}: dropout is on (training, dropout > 0), so dropout_masks, a dict with keys "
                                  "self_attn, dropout1, dropout, dropout2 (bool, True = keep), must be given, got None"),
        "masks missing a key": ({"dropout": 0.5}, src, {"dropout_masks": {"dropout1": masks["dropout1"]}}, ValueError,
                                f"{OWNER}: dropout_masks must be a dict with exactly the keys self_attn, dropout1, "
                                "dropout, dropout2, got keys ['dropout1']"),
        "inner mask width": ({"dropout": 0.5}, src, {"dropout_masks": {**masks, "dropout": masks["dropout1"]}},
                             ValueError, f"{OWNER}: dropout_masks['dropout'] must have shape (3, 2, 5), got (3, 2, 4)"),
    }


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(bad_inputs()))
def test_bad_inputs_raise_one_clear_error(what, tree):
    options, src, kwargs, error, message = bad_inputs()[what]
    model = build(tree, E, H, F, **options)
    tensor = lambda a: tree_tensor(tree, a)
    if "dropout_masks" in kwargs:
        kwargs = {"dropout_masks": {k: tensor(v) for k, v in kwargs["dropout_masks"].items()}}
    assert_raises_exactly(error, message, lambda: model(tensor(src), **kwargs))


@pytest.mark.parametrize("tree", TREES)
def test_eval_needs_no_dropout_masks(tree):
    """``eval()`` turns dropout off: no masks needed, and the output is deterministic."""
    model = build(tree, E, H, F, dropout=0.5).eval()
    src = tree_tensor(tree, np.random.default_rng(9).standard_normal((T, B, E)))
    first, second = (np.asarray(model(src).detach() if tree == "torch" else model(src)) for _ in range(2))
    np.testing.assert_array_equal(first, second)
