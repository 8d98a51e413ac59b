"""Day 44: rotary position embeddings (RoPE) and ALiBi biases in three trees.

- ``ApplyRotary`` (both layouts) through the full protocol, outputs and the gradients of ``q`` and
  ``k``, against Hugging Face's Llama ``apply_rotary_pos_emb`` (halves) and GPT-J's
  ``apply_rotary_pos_emb`` (interleaved), fed the same ``q``, ``k``, ``cos``, ``sin``; the NumPy
  backward (the rotation's transpose) against finite differences and against autograd when the
  module is used twice;
- ``RotaryEmbedding`` against Hugging Face's ``LlamaRotaryEmbedding`` built offline from a small
  ``LlamaConfig`` (float32: Hugging Face forms the angles in float32 whatever the input) and against
  the closed form with Python's ``math`` (float64, both layouts);
- the two layouts are one rotation up to a permutation of the head dimension, and q·k after
  rotation depends only on the offset between the positions;
- ``alibi_slopes`` against BLOOM's slopes for 1..12 heads, ``alibi_key_bias`` against BLOOM's
  ``build_alibi_tensor`` with a padded attention mask, ``alibi_bias`` against BLOOM's form (one
  constant per query row apart, so the same softmax).
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig
from transformers.models.bloom.modeling_bloom import _get_alibi_slopes, build_alibi_tensor
from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb as gptj_apply_rotary_pos_emb
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_apply_rotary_pos_emb

from ml100.backends import get_module
from ml100.positions import alibi_slopes, rotary_cos_sin
from parity_tests.harness import (TREES, Case, Result, assert_no_failures, assert_raises_exactly, check_parity, compare_tensors,
                                  gradcheck_numpy, run_tree, to_tree, torch_functional_reference)

MODULE = "modern.rope"
BATCH, HEADS, KV_HEADS, STEPS, HEAD_DIM = 2, 3, 1, 4, 6
BASE = 10000.0
#: Positions start past 0, as after a KV cache of this many tokens.
OFFSET = 5
LLAMA = "transformers.llama.apply_rotary_pos_emb"
GPTJ = "transformers.gptj.apply_rotary_pos_emb"
LLAMA_ROTARY = "transformers.LlamaRotaryEmbedding"
MATH = "closed form (math.cos/sin)"


def numpy_of(tensor) -> np.ndarray:
    return tensor.detach().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)


def llama_reference(q, k, cos, sin):
    """Hugging Face Llama's function on ``(B, H, T, d)`` with ``(B, T, d)`` tables (its default ``unsqueeze_dim=1``)."""
    return llama_apply_rotary_pos_emb(q, k, cos, sin)


def gptj_reference(q, k, cos, sin):
    """GPT-J's function takes ``(B, T, H, d)`` and ``(B, T, d/2)`` tables, which it repeats per pair."""
    def rotate(x):
        return gptj_apply_rotary_pos_emb(x.transpose(1, 2), sin[..., ::2], cos[..., ::2]).transpose(1, 2)
    return rotate(q), rotate(k)


def rotary_inputs(interleaved: bool, batch: int = BATCH):
    def inputs(dtype, rng):
        positions = OFFSET + rng.permutation(STEPS * 2)[:STEPS] + np.zeros((batch, 1), dtype=np.int64)  # (B, T)
        cos, sin = rotary_cos_sin(positions, HEAD_DIM, BASE, interleaved)
        return {"q": rng.standard_normal((batch, HEADS, STEPS, HEAD_DIM)).astype(dtype),
                "k": rng.standard_normal((batch, KV_HEADS, STEPS, HEAD_DIM)).astype(dtype),
                "cos": cos.astype(dtype), "sin": sin.astype(dtype)}
    return inputs


def rotary_case(interleaved: bool) -> Case:
    reference = {GPTJ: gptj_reference} if interleaved else {LLAMA: llama_reference}
    return Case(
        module=MODULE,
        build=lambda module, dtype, rng: module.ApplyRotary(interleaved, dtype=dtype),
        inputs=rotary_inputs(interleaved),
        differentiable=("q", "k"),
        output_names=("q_embed", "k_embed"),
        references={name: torch_functional_reference(fn, differentiable=("q", "k")) for name, fn in reference.items()},
        special_excluded_references={
            GPTJ: "it reads only the even entries of cos/sin and repeats them per pair, so a special value "
                  "written at an odd entry reaches the trees but not it"} if interleaved else {},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("interleaved", [False, True], ids=["halves", "interleaved"])
def test_apply_rotary_parity(interleaved, dtype):
    check_parity(rotary_case(interleaved), dtype)


@pytest.mark.parametrize("interleaved", [False, True], ids=["halves", "interleaved"])
def test_apply_rotary_gradcheck(interleaved):
    gradcheck_numpy(rotary_case(interleaved))


def math_cos_sin(positions, interleaved: bool):
    """The float64 reference: every angle with Python's ``math``, channel by channel."""
    half = HEAD_DIM // 2
    channel = [i // 2 for i in range(HEAD_DIM)] if interleaved else [i % half for i in range(HEAD_DIM)]
    angles = [[[p * BASE ** (-2 * channel[c] / HEAD_DIM) for c in range(HEAD_DIM)] for p in row] for row in positions]
    return (np.array([[[math.cos(a) for a in row] for row in batch] for batch in angles]),
            np.array([[[math.sin(a) for a in row] for row in batch] for batch in angles]))


def llama_rotary(positions):
    """``LlamaRotaryEmbedding`` from a small config, offline; its ``rope_parameters`` hold ``rope_theta``."""
    config = LlamaConfig(hidden_size=HEAD_DIM * 2, num_attention_heads=2, max_position_embeddings=64,
                         rope_parameters={"rope_type": "default", "rope_theta": BASE})
    cos, sin = LlamaRotaryEmbedding(config)(torch.zeros(1, dtype=torch.float32), torch.from_numpy(positions))
    return cos.numpy(), sin.numpy()


def rotary_embedding_case(interleaved: bool, dtype: str) -> Case:
    def math_reference(state, inputs, cotangents, dtype):
        cos, sin = math_cos_sin(inputs["positions"], interleaved)
        return Result([cos.astype(dtype), sin.astype(dtype)], {}, {})

    def hf_reference(state, inputs, cotangents, dtype):
        return Result(list(llama_rotary(inputs["positions"])), {}, {})

    references = {MATH: math_reference}
    # Hugging Face forms the angles in float32 whatever the input: a float32 reference only.
    if dtype == "float32" and not interleaved:
        references[LLAMA_ROTARY] = hf_reference
    return Case(
        module=MODULE,
        build=lambda module, dtype, rng: module.RotaryEmbedding(HEAD_DIM, 64, BASE, interleaved, dtype=dtype),
        inputs=lambda dtype, rng: {"positions": rng.integers(0, 64, size=(BATCH, STEPS)).astype(np.int64)},
        differentiable=(),
        output_names=("cos", "sin"),
        forward_only=True,
        references=references,
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("interleaved", [False, True], ids=["halves", "interleaved"])
def test_rotary_embedding_parity(interleaved, dtype):
    check_parity(rotary_embedding_case(interleaved, dtype), dtype)


def interleave_permutation(head_dim: int) -> np.ndarray:
    """Channel ``perm[j]`` of the halves layout sits at ``j`` in the interleaved one: ``(i, i + d/2) -> (2i, 2i+1)``."""
    half = head_dim // 2
    return np.stack([np.arange(half), np.arange(half) + half], axis=-1).reshape(-1)


@pytest.mark.parametrize("tree", TREES)
def test_layouts_are_one_rotation_up_to_a_permutation(tree):
    """Interleaved RoPE of the permuted q equals the permuted halves RoPE of q (and the tables permute alike)."""
    module = get_module(tree, MODULE)
    rng = np.random.default_rng(0)
    halves, interleaved = rotary_inputs(False)("float64", rng), rotary_inputs(True)("float64", np.random.default_rng(0))
    perm = interleave_permutation(HEAD_DIM)
    failures = []
    compare_tensors("cos permuted", "halves/interleaved", halves["cos"][..., perm], interleaved["cos"], "float64", failures)
    q, k = halves["q"], halves["k"]
    rotated = module.apply_rotary(*(to_tree(tree, a) for a in (q, k, halves["cos"], halves["sin"])))
    rotated_perm = module.apply_rotary(*(to_tree(tree, a) for a in (q[..., perm], k[..., perm], interleaved["cos"],
                                                                  interleaved["sin"])), interleaved=True)
    for name, a, b in zip(("q", "k"), rotated, rotated_perm):
        compare_tensors(f"{name} rotated", "halves[perm]/interleaved", numpy_of(a)[..., perm], numpy_of(b), "float64",
                        failures)
    assert_no_failures(failures, f"{tree}: layouts")
    assert not np.allclose(numpy_of(rotated[0]), numpy_of(rotated_perm[0])), "the layouts differ without the permutation"


@pytest.mark.parametrize("interleaved", [False, True], ids=["halves", "interleaved"])
@pytest.mark.parametrize("tree", TREES)
def test_scores_depend_only_on_relative_position(tree, interleaved):
    """q·k of q at m and k at n equals q·k at m + s and n + s (shift s = 7); unequal for another offset."""
    module = get_module(tree, MODULE)
    rope = module.RotaryEmbedding(HEAD_DIM, 64, BASE, interleaved, dtype="float64")
    rng = np.random.default_rng(1)
    q = rng.standard_normal((1, 1, 3, HEAD_DIM))
    k = rng.standard_normal((1, 1, 3, HEAD_DIM))

    def scores(q_positions, k_positions):
        q_tables = rope(to_tree(tree, np.array([q_positions], dtype=np.int64)))
        k_tables = rope(to_tree(tree, np.array([k_positions], dtype=np.int64)))
        q_rot, _ = module.apply_rotary(to_tree(tree, q), to_tree(tree, q), *q_tables, interleaved=interleaved)
        k_rot, _ = module.apply_rotary(to_tree(tree, k), to_tree(tree, k), *k_tables, interleaved=interleaved)
        return np.sum(numpy_of(q_rot) * numpy_of(k_rot), axis=-1)  # (1, 1, 3)

    failures = []
    compare_tensors("q.k", "positions / positions + 7", scores([0, 3, 9], [2, 1, 9]), scores([7, 10, 16], [9, 8, 16]),
                    "float64", failures)
    assert_no_failures(failures, f"{tree}: relative positions")
    assert not np.allclose(scores([0, 3, 9], [2, 1, 9]), scores([0, 3, 9], [3, 2, 10]))


def test_numpy_module_used_twice_matches_autograd():
    """Two rotations by the same ApplyRotary (LIFO caches) backpropagate as torch's autograd does."""
    rng = np.random.default_rng(2)
    first, second = rotary_inputs(False)("float64", rng), rotary_inputs(False)("float64", rng)
    grads_out = [rng.standard_normal(first[name].shape) for name in ("q", "k")]
    numpy_rope = get_module("numpy", MODULE).ApplyRotary(dtype="float64")
    twice = numpy_rope(*numpy_rope(first["q"], first["k"], first["cos"], first["sin"]), second["cos"], second["sin"])
    numpy_grads = numpy_rope.backward(*numpy_rope.backward(*grads_out))
    torch_rope = get_module("torch", MODULE).ApplyRotary(dtype="float64")
    leaves = [torch.tensor(first[name], requires_grad=True) for name in ("q", "k")]
    tables = [torch.from_numpy(second[name]) for name in ("cos", "sin")]
    torch_twice = torch_rope(*torch_rope(*leaves, torch.from_numpy(first["cos"]), torch.from_numpy(first["sin"])), *tables)
    sum((out * torch.from_numpy(g)).sum() for out, g in zip(torch_twice, grads_out)).backward()
    failures = []
    for name, a, b in zip(("q_embed", "k_embed"), twice, torch_twice):
        compare_tensors(name, "numpy/torch", a, b.detach().numpy(), "float64", failures)
    for name, a, leaf in zip(("q", "k"), numpy_grads, leaves):
        compare_tensors(f"grad {name}", "numpy/torch", a, leaf.grad.numpy(), "float64", failures)
    assert_no_failures(failures, "ApplyRotary used twice")


@pytest.mark.parametrize("tree", TREES)
def test_positions_with_an_offset_read_the_longer_table(tree):
    """Positions ``offset + arange(T)`` (after a KV cache) give the rows ``offset ..`` of the table for ``arange``."""
    rope = get_module(tree, MODULE).RotaryEmbedding(HEAD_DIM, 32, BASE, dtype="float64")
    full = rope(to_tree(tree, np.arange(12, dtype=np.int64)[None]))
    shifted = rope(to_tree(tree, (OFFSET + np.arange(4, dtype=np.int64))[None]))
    for a, b in zip(full, shifted):
        np.testing.assert_array_equal(numpy_of(a)[:, OFFSET:OFFSET + 4], numpy_of(b))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 2), heads=st.integers(1, 3), kv_heads=st.integers(1, 2), steps=st.integers(1, 4),
       half=st.integers(1, 4), start=st.integers(0, 20), interleaved=st.booleans())
def test_fuzz_shapes(batch, heads, kv_heads, steps, half, start, interleaved):
    """Random small shapes and position offsets, empty batches included: the three trees' outputs and
    input gradients agree with the layout's Hugging Face function (float64)."""
    head_dim = 2 * half
    rng = np.random.default_rng([batch, heads, kv_heads, steps, half, start])
    positions = start + np.arange(steps, dtype=np.int64) + np.zeros((batch, 1), dtype=np.int64)  # (B, T)
    q = rng.standard_normal((batch, heads, steps, head_dim))
    k = rng.standard_normal((batch, kv_heads, steps, head_dim))
    grads_out = [rng.standard_normal(q.shape), rng.standard_normal(k.shape)]
    leaves = [torch.tensor(q, requires_grad=True), torch.tensor(k, requires_grad=True)]
    cos, sin = (torch.from_numpy(t) for t in rotary_cos_sin(positions, head_dim, BASE, interleaved))
    expected = (gptj_reference if interleaved else llama_reference)(*leaves, cos, sin)
    sum((out * torch.from_numpy(g)).sum() for out, g in zip(expected, grads_out)).backward()
    failures = []
    for tree in TREES:
        module = get_module(tree, MODULE)
        tables = module.RotaryEmbedding(head_dim, 32, BASE, interleaved, dtype="float64")(to_tree(tree, positions))
        inputs = {"q": q, "k": k, "cos": numpy_of(tables[0]), "sin": numpy_of(tables[1])}
        result = run_tree(tree, module.ApplyRotary(interleaved, dtype="float64"), inputs, ("q", "k"), grads_out)
        for name, out, ref in zip(("q_embed", "k_embed"), result.outputs, expected):
            compare_tensors(name, f"{tree}/hf", out, ref.detach().numpy(), "float64", failures)
        for name, leaf in zip(("q", "k"), leaves):
            compare_tensors(f"grad {name}", f"{tree}/hf", result.input_grads[name], leaf.grad.numpy(), "float64", failures)
    assert_no_failures(failures, f"fuzz B={batch} H={heads} H_k={kv_heads} T={steps} d={head_dim} from {start}")


# ---- ALiBi ------------------------------------------------------------------------------------

HEAD_COUNTS = range(1, 13)


@pytest.mark.parametrize("num_heads", HEAD_COUNTS)
def test_alibi_slopes_match_bloom_and_the_closed_form(num_heads):
    """float32: BLOOM's slopes (it computes them in float32); float64: the paper's rule with ``math``."""
    closest = 2 ** int(math.log2(num_heads))
    expected = [2 ** (-8 * (h + 1) / closest) for h in range(closest)]
    expected += [2 ** (-8 * (2 * h + 1) / (2 * closest)) for h in range(num_heads - closest)]
    failures = []
    compare_tensors("slopes", "ml100/math", alibi_slopes(num_heads), np.array(expected), "float64", failures)
    compare_tensors("slopes", "ml100/bloom", alibi_slopes(num_heads).astype(np.float32),
                    _get_alibi_slopes(num_heads, "cpu").numpy(), "float32", failures)
    assert_no_failures(failures, f"alibi slopes, {num_heads} heads")


#: Right and left padding and a gap: BLOOM counts only the real tokens.
MASK = np.array([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 0, 1, 1, 0, 1]], dtype=np.int64)


@pytest.mark.parametrize("num_heads", HEAD_COUNTS)
def test_alibi_key_bias_matches_bloom(num_heads):
    failures = []
    bloom = build_alibi_tensor(torch.from_numpy(MASK), num_heads, torch.float32).numpy()
    float64 = {tree: numpy_of(get_module(tree, MODULE).alibi_key_bias(to_tree(tree, MASK), num_heads, dtype="float64"))
               for tree in TREES}
    for tree in TREES:
        ours = numpy_of(get_module(tree, MODULE).alibi_key_bias(to_tree(tree, MASK), num_heads))
        compare_tensors("alibi (B*H, 1, S)", f"{tree}/bloom", ours, bloom, "float32", failures)
        compare_tensors("alibi (B*H, 1, S) float64", f"{tree}/numpy", float64[tree], float64["numpy"], "float64", failures)
    assert_no_failures(failures, f"alibi_key_bias, {num_heads} heads")


@pytest.mark.parametrize("num_heads", HEAD_COUNTS)
def test_alibi_bias_is_bloom_up_to_a_constant_per_row(num_heads):
    """``(H, L, S)`` minus BLOOM's ``(H, 1, S)`` (no padding) is ``-m_h * i`` on row ``i``: the same softmax."""
    steps = 5
    mask = np.ones((1, steps), dtype=np.int64)
    bloom = build_alibi_tensor(torch.from_numpy(mask), num_heads, torch.float64).numpy()  # (H, 1, S)
    slopes = alibi_slopes(num_heads)
    row_constant = -slopes[:, None, None] * np.arange(steps, dtype=np.float64)[None, :, None]  # (H, L, 1)
    logits = np.random.default_rng(3).standard_normal((num_heads, steps, steps))
    failures = []
    for tree in TREES:
        ours = {dtype: numpy_of(get_module(tree, MODULE).alibi_bias(num_heads, steps, steps, dtype=dtype))
                for dtype in ("float64", "float32")}
        # BLOOM's slopes are float32 numbers even in a float64 tensor: compared at float32's tolerance.
        compare_tensors("bias - row constant", f"{tree}/bloom", ours["float64"] - row_constant,
                        np.broadcast_to(bloom, ours["float64"].shape), "float32", failures)
        compare_tensors("softmax(logits + bias)", f"{tree}/bloom", softmax(logits + ours["float32"]),
                        softmax(logits + bloom), "float32", failures)
        compare_tensors("bias float32", f"{tree}/float64", ours["float32"], ours["float64"], "float32", failures)
    assert_no_failures(failures, f"alibi_bias, {num_heads} heads")


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("tree", TREES)
def test_alibi_bias_with_an_offset_is_a_slice_of_the_square_one(tree):
    """Queries after ``OFFSET`` cached keys see the last rows of the square bias over all keys."""
    module = get_module(tree, MODULE)
    square = numpy_of(module.alibi_bias(4, OFFSET + 2, OFFSET + 2, dtype="float64"))
    np.testing.assert_array_equal(numpy_of(module.alibi_bias(4, 2, OFFSET + 2, offset=OFFSET, dtype="float64")),
                                  square[:, OFFSET:])
    assert np.all(np.diagonal(square, axis1=1, axis2=2) == 0) and np.all(square[:, 0, 1:] > 0)


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tree", TREES)
def test_errors(tree):
    module = get_module(tree, MODULE)
    assert_raises_exactly(ValueError, "RotaryEmbedding: head_dim must be an even int >= 2 (channels rotate in pairs), got 7",
                          lambda: module.RotaryEmbedding(7))
    assert_raises_exactly(ValueError, "RotaryEmbedding: base must be a finite number > 1 (the frequencies base ** (-2i/d) "
                          "must fall), got 1.0", lambda: module.RotaryEmbedding(4, base=1.0))
    assert_raises_exactly(TypeError, "RotaryEmbedding: interleaved must be a bool (True or False), got 1",
                          lambda: module.RotaryEmbedding(4, interleaved=1))
    rope = module.RotaryEmbedding(4, max_position_embeddings=8)
    assert_raises_exactly(ValueError, "RotaryEmbedding: positions must lie in [0, 8), got out-of-range values [-1, 8]",
                          lambda: rope(to_tree(tree, np.array([[-1, 0, 8]], dtype=np.int64))))
    assert_raises_exactly(TypeError, "RotaryEmbedding: positions must have dtype int64, got int32 (cast it explicitly)",
                          lambda: rope(to_tree(tree, np.array([[0, 1]], dtype=np.int32))))
    q = np.zeros((1, 2, 3, 4), dtype=np.float32)
    tables = np.zeros((1, 3, 4), dtype=np.float32)
    apply = module.ApplyRotary()
    assert_raises_exactly(TypeError, "ApplyRotary: q must have dtype float32, got float64 (cast it explicitly)",
                          lambda: apply(*(to_tree(tree, a) for a in (q.astype(np.float64), q, tables, tables))))
    assert_raises_exactly(ValueError, "ApplyRotary: k must have shape (1, H_k, 3, 4) like q (1, 2, 3, 4), got (1, 2, 2, 4)",
                          lambda: apply(*(to_tree(tree, a) for a in (q, q[:, :, :2], tables, tables))))
    assert_raises_exactly(ValueError, "ApplyRotary: the head dimension must be even (channels rotate in pairs), got 3",
                          lambda: apply(*(to_tree(tree, a) for a in (q[..., :3], q[..., :3], tables[..., :3], tables[..., :3]))))
    assert_raises_exactly(ValueError, "ApplyRotary: sin must have shape (1, 3, 4), got (3, 4)",
                          lambda: apply(*(to_tree(tree, a) for a in (q, q, tables, tables[0]))))
    assert_raises_exactly(ValueError, "alibi_bias: num_heads must be an int >= 1, got 0", lambda: module.alibi_bias(0, 2, 2))
    assert_raises_exactly(ValueError, "alibi_key_bias: attention_mask must hold 0 (padding) or 1 (token), got values [2]",
                          lambda: module.alibi_key_bias(to_tree(tree, np.array([[1, 2]], dtype=np.int64)), 2))
    assert_raises_exactly(TypeError, "alibi_key_bias: attention_mask must have dtype int64, got bool (cast it explicitly)",
                          lambda: module.alibi_key_bias(to_tree(tree, np.array([[True]])), 2))
