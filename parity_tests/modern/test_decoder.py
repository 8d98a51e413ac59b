"""Day 46: the Transformer decoder layer in three trees.

Reference: ``torch.nn.TransformerDecoderLayer`` (post-LN and pre-LN, ReLU and GELU, both
``batch_first`` layouts, causal ``tgt_mask``, key padding on target and memory) loaded with the
canonical state unchanged — the trees use torch's own names, so no conversion is needed. No
reference takes dropout masks: the dropout case is the trees' own parity plus the finite-difference
check.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from ml100.checks import DECODER_DROPOUT_SITES
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  gradcheck_numpy, run_numpy, run_torch)

MODULE = "modern.decoder"
B, T, S, E, H, F = 2, 3, 4, 4, 2, 5
#: The forward arguments a case may pass as inputs (the masks prefixed ``mask_`` go into ``dropout_masks``).
MASK_PREFIX = "mask_"


class Called:
    """A tree's layer as a case calls it: the harness passes the inputs positionally, this passes them
    by name; the ``mask_*`` inputs become the ``dropout_masks`` dict; ``flags`` are fixed keywords."""

    def __init__(self, model, names, **flags):
        self.model, self.names, self.flags = model, tuple(names), flags

    def arguments(self, tensors) -> dict:
        named = dict(zip(self.names, tensors))
        masks = {name[len(MASK_PREFIX):]: named.pop(name) for name in list(named) if name.startswith(MASK_PREFIX)}
        if masks:
            named["dropout_masks"] = masks
        return {**named, **self.flags}

    def __call__(self, *tensors):
        return self.model(**self.arguments(tensors))

    def forward(self, *tensors):
        return self.model.forward(**self.arguments(tensors))

    def backward(self, grad_output):
        return self.model.backward(grad_output)

    def __getattr__(self, name):
        return getattr(self.model, name)


def causal_mask(steps: int) -> np.ndarray:
    """``(T, T)`` bool, True above the diagonal: position ``t`` ignores every later one (torch's meaning
    for ``tgt_mask``: True = ignore)."""
    return np.triu(np.ones((steps, steps), dtype=bool), k=1)


def decoder_inputs(batch_first: bool, causal=True, key_padding=False, dropout=False):
    """The named inputs: ``tgt``, ``memory``, and the masks asked for (every row keeps a key)."""
    def layout(length):
        return (B, length, E) if batch_first else (length, B, E)

    def draw(dtype, rng):
        inputs = {"tgt": rng.standard_normal(layout(T)).astype(dtype),
                  "memory": rng.standard_normal(layout(S)).astype(dtype)}
        if causal:
            inputs["tgt_mask"] = causal_mask(T)
        if key_padding:
            for name, length in (("tgt_key_padding_mask", T), ("memory_key_padding_mask", S)):
                padding = rng.random((B, length)) < 0.4  # (B, L), True = ignore
                padding[:, 0] = False
                inputs[name] = padding
        if dropout:
            # Attention-weight masks are (B, H, T, .) in either layout; the others are shaped like tgt.
            shapes = {"self_attn": (B, H, T, T), "multihead_attn": (B, H, T, S), "dropout": layout(T)[:2] + (F,)}
            for site in DECODER_DROPOUT_SITES:
                inputs[MASK_PREFIX + site] = rng.random(shapes.get(site, layout(T))) < 0.8  # True = keep
        return inputs
    return draw


def torch_reference(batch_first: bool, norm_first: bool, activation: str, flags: dict):
    """``nn.TransformerDecoderLayer`` loaded with the canonical state unchanged."""
    def run(state, inputs, cotangents, dtype):
        module = torch.nn.TransformerDecoderLayer(E, H, F, dropout=0.0, activation=activation, batch_first=batch_first,
                                                  norm_first=norm_first, dtype=getattr(torch, dtype))
        module.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
        return run_torch(Called(module, inputs, **flags), inputs, ("tgt", "memory"), cotangents)
    return run


def decoder_case(batch_first=False, norm_first=False, activation="relu", causal=True, key_padding=False, dropout=0.0):
    draw = decoder_inputs(batch_first, causal, key_padding, bool(dropout))
    names = tuple(draw("float64", np.random.default_rng(0)))
    flags = {"tgt_is_causal": True} if causal else {}
    references = {} if dropout else {
        "torch nn.TransformerDecoderLayer": torch_reference(batch_first, norm_first, activation, flags)}
    sequence_axis = 0 if batch_first else 1
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: Called(m.TransformerDecoderLayer(
            E, H, F, dropout=dropout, activation=activation, batch_first=batch_first, norm_first=norm_first,
            dtype=dtype, rng=rng), names, **flags),
        inputs=draw,
        differentiable=("tgt", "memory"),
        references=references,
        output_names=("output",),
        batch_axes={"tgt": sequence_axis, "memory": sequence_axis, "tgt_mask": None},
        # The dropout masks are drawn for a batch of B (the residual sites in tgt's layout).
        **({"empty_batch_opt_out": "the dropout masks are drawn for a batch of B; the empty batch runs without dropout"}
           if dropout else {}),
    )


CASES = {
    "post-LN, relu, causal": lambda: decoder_case(),
    "pre-LN, relu, causal": lambda: decoder_case(norm_first=True),
    "post-LN, gelu, batch first": lambda: decoder_case(batch_first=True, activation="gelu"),
    "pre-LN, gelu, batch first, key padding": lambda: decoder_case(batch_first=True, norm_first=True, activation="gelu",
                                                                   key_padding=True),
    "post-LN, no mask": lambda: decoder_case(causal=False),
    "post-LN, dropout masks": lambda: decoder_case(dropout=0.25),
    "pre-LN, dropout masks": lambda: decoder_case(norm_first=True, dropout=0.25),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_decoder_parity(name, dtype):
    check_parity(CASES[name](), dtype)


@pytest.mark.parametrize("name", ["post-LN, relu, causal", "pre-LN, gelu, batch first, key padding",
                                  "post-LN, dropout masks", "pre-LN, dropout masks"])
def test_decoder_gradcheck(name):
    gradcheck_numpy(CASES[name]())


def build(tree: str, *args, **kwargs):
    return getattr(get_module(tree, MODULE), "TransformerDecoderLayer")(*args, dtype="float64",
                                                                         rng=np.random.default_rng(0), **kwargs)


def tree_tensor(tree: str, array):
    import tensorflow as tf
    return {"numpy": lambda a: a, "torch": torch.from_numpy, "tf": tf.constant}[tree](array)


def as_numpy(tree: str, tensor) -> np.ndarray:
    return np.asarray(tensor.detach() if tree == "torch" else tensor)


@pytest.mark.parametrize("tree", TREES)
def test_state_dict_is_torchs(tree):
    """Names, order and shapes of the canonical state are ``nn.TransformerDecoderLayer``'s."""
    state = build(tree, 8, 2, 16).canonical_state_dict()
    reference = torch.nn.TransformerDecoderLayer(8, 2, 16).state_dict()
    assert list(state) == list(reference)
    assert all(state[name].shape == tuple(reference[name].shape) for name in state)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("tree", TREES)
def test_causal_outputs_before_t_ignore_tgt_at_t(tree, norm_first):
    """With the causal ``tgt_mask``, changing ``tgt`` at position ``t`` leaves every output before ``t``
    unchanged (bit for bit: the earlier rows never read the changed one) and changes the output at ``t``."""
    rng = np.random.default_rng(3)
    model = build(tree, E, H, F, norm_first=norm_first)
    tgt, memory = rng.standard_normal((T, B, E)), rng.standard_normal((S, B, E))
    changed = tgt.copy()
    changed[1] += rng.standard_normal((B, E))
    run = lambda x: as_numpy(tree, model(tree_tensor(tree, x), tree_tensor(tree, memory),
                                         tgt_mask=tree_tensor(tree, causal_mask(T)), tgt_is_causal=True))
    before, after = run(tgt), run(changed)
    np.testing.assert_array_equal(after[:1], before[:1])
    assert np.abs(after[1:] - before[1:]).min() > 0


def test_numpy_module_used_twice_matches_torch_autograd():
    """Two decoder calls sharing one layer (the second on the first's output), backpropagated in
    reverse: the NumPy layer's gradients are both uses' sum, as torch autograd's."""
    numpy_m, torch_m = build("numpy", E, H, F), build("torch", E, H, F)
    torch_m.load_canonical_state_dict(numpy_m.canonical_state_dict())
    rng = np.random.default_rng(6)
    tgt, memory, cotangent = rng.standard_normal((T, B, E)), rng.standard_normal((S, B, E)), rng.standard_normal((T, B, E))
    mask = causal_mask(T)
    numpy_m(numpy_m(tgt, memory, tgt_mask=mask), memory, tgt_mask=mask)
    grad_middle, grad_memory_second = numpy_m.backward(cotangent)
    grad_tgt, grad_memory_first = numpy_m.backward(grad_middle)
    tensors = [torch.tensor(a, requires_grad=True) for a in (tgt, memory)]
    once = torch_m(*tensors, tgt_mask=torch.from_numpy(mask))
    (torch_m(once, tensors[1], tgt_mask=torch.from_numpy(mask)) * torch.from_numpy(cotangent)).sum().backward()
    np.testing.assert_allclose(grad_tgt, tensors[0].grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_memory_first + grad_memory_second, tensors[1].grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, grad in torch_m.canonical_grads().items():
        np.testing.assert_allclose(numpy_m.canonical_grads()[name], grad, rtol=1e-10, atol=1e-12, err_msg=name)



@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 2), target=st.integers(1, 3), source=st.integers(1, 3), heads=st.sampled_from([1, 2, 4]),
       norm_first=st.booleans(), activation=st.sampled_from(["relu", "gelu"]), batch_first=st.booleans(),
       seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_torch_module(batch, target, source, heads, norm_first, activation, batch_first, seed):
    """Random small shapes (an empty batch included), both norms and activations, a causal ``tgt_mask``
    and memory padding keeping position 0 (not with an empty batch, where torch raises): the NumPy
    tree's outputs and gradients equal ``nn.TransformerDecoderLayer``'s."""
    rng = np.random.default_rng(seed)
    model = get_module("numpy", MODULE).TransformerDecoderLayer(
        4, heads, 3, activation=activation, batch_first=batch_first, norm_first=norm_first, dtype="float64", rng=rng)
    layout = (lambda n: (batch, n, 4)) if batch_first else (lambda n: (n, batch, 4))
    padding = rng.random((batch, source)) < 0.5
    padding[:, 0] = False
    inputs = {"tgt": rng.standard_normal(layout(target)), "memory": rng.standard_normal(layout(source)),
              "tgt_mask": causal_mask(target)}
    # torch 2.14's need_weights=False path reshapes a (0, S) key padding mask with a -1 and raises on
    # an empty batch; the trees take it, so the padding is left out only there.
    if batch:
        inputs["memory_key_padding_mask"] = padding
    cotangents = [rng.standard_normal(layout(target))]
    names = tuple(inputs)
    ours = run_numpy(Called(model, names), inputs, ("tgt", "memory"), cotangents)
    module = torch.nn.TransformerDecoderLayer(4, heads, 3, dropout=0.0, activation=activation, batch_first=batch_first,
                                              norm_first=norm_first, dtype=torch.float64)
    module.load_state_dict({n: torch.from_numpy(v) for n, v in model.canonical_state_dict().items()})
    theirs = run_torch(Called(module, names), inputs, ("tgt", "memory"), cotangents)
    assert_no_failures(compare_results({"numpy": ours, "torch nn.TransformerDecoderLayer": theirs}, "float64"), "fuzz")

OWNER = "TransformerDecoderLayer"
BAD_ARGUMENTS = {
    "d_model 0": ((0, 1), {}, ValueError, f"{OWNER}: d_model must be an int >= 1, got 0"),
    "nhead not dividing": ((6, 4), {}, ValueError, "MultiheadAttention: embed_dim (6) must be divisible by num_heads (4)"),
    "dim_feedforward 0": ((4, 2, 0), {}, ValueError, f"{OWNER}: dim_feedforward must be an int >= 1, got 0"),
    "dropout 1": ((4, 2), {"dropout": 1.0}, ValueError, f"{OWNER}: dropout must be in [0.0, 1.0), got 1.0"),
    "activation tanh": ((4, 2), {"activation": "tanh"}, ValueError,
                        f"{OWNER}: activation must be one of ('relu', 'gelu'), got 'tanh'"),
    "layer_norm_eps 0": ((4, 2), {"layer_norm_eps": 0.0}, ValueError, f"{OWNER}: layer_norm_eps must be > 0, got 0.0"),
    "norm_first int": ((4, 2), {"norm_first": 1}, TypeError, f"{OWNER}: norm_first must be a bool (True or False), got 1"),
    "rng seed": ((4, 2), {"rng": 0}, TypeError,
                 f"{OWNER}: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: get_module(tree, MODULE).TransformerDecoderLayer(*args, **kwargs))


def bad_inputs():
    """What -> (tgt, memory, keyword inputs, error, message), for ``TransformerDecoderLayer(4, 2, 5)``."""
    rng = np.random.default_rng(8)
    tgt, memory = rng.standard_normal((T, B, E)), rng.standard_normal((S, B, E))
    return {
        "tgt 2-d": (tgt[:, 0], memory, {}, ValueError, f"{OWNER}: tgt must have 3 dimensions, got shape (3, 4)"),
        "tgt float32": (tgt.astype("float32"), memory, {}, TypeError,
                        f"{OWNER}: tgt must have dtype float64, got float32 (cast it explicitly)"),
        "memory width": (tgt, memory[..., :2], {}, ValueError, f"{OWNER}: memory must have shape (..., 4), got (4, 2, 2)"),
        "memory batch": (tgt, memory[:, :1], {}, ValueError, f"{OWNER}: memory must have shape (4, 2, 4), got (4, 1, 4)"),
        "tgt_is_causal without mask": (tgt, memory, {"tgt_is_causal": True}, ValueError,
                                       "MultiheadAttention: is_causal is only a hint that attn_mask is the causal mask "
                                       "(torch's rule): pass the (T, S) causal attn_mask too"),
        "dropout_masks without dropout": (tgt, memory, {"dropout_masks": {}}, ValueError,
                                          f"{OWNER}: dropout_masks was given but dropout is off (dropout == 0 or eval mode)"),
    }


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(bad_inputs()))
def test_bad_inputs_raise_one_clear_error(what, tree):
    tgt, memory, kwargs, error, message = bad_inputs()[what]
    model = build(tree, E, H, F)
    assert_raises_exactly(error, message, lambda: model(tree_tensor(tree, tgt), tree_tensor(tree, memory), **kwargs))


@pytest.mark.parametrize("tree", TREES)
def test_dropout_in_training_needs_its_masks(tree):
    """Training with ``dropout > 0`` needs the six masks (randomness is an input); ``eval()`` needs none."""
    rng = np.random.default_rng(9)
    tgt, memory = (tree_tensor(tree, rng.standard_normal(shape)) for shape in ((T, B, E), (S, B, E)))
    model = build(tree, E, H, F, dropout=0.5)
    assert_raises_exactly(ValueError, f"{OWNER}: dropout is on (training, dropout > 0), so dropout_masks (a dict with "
                          f"keys {', '.join(DECODER_DROPOUT_SITES)}) must be given, got None", lambda: model(tgt, memory))
    model.eval()
    model(tgt, memory)
