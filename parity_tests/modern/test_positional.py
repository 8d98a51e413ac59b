"""Day 43: sinusoidal and learned positional encodings in three trees.

References: the learned table against ``torch.nn.Embedding`` read at the positions; the sinusoidal
table against two independent tables in the other layout — sines in the first half, cosines in
the second — the day-38 ``timestep_embedding`` (diffusers' ``get_timestep_embedding``) and
Hugging Face Marian's ``MarianSinusoidalPositionalEmbedding``, each after the permutation that
interleaves the halves (:func:`halves_to_interleaved`).
"""
import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_tensors,
                                  gradcheck_numpy, run_torch, torch_functional_reference)

MODULE = "modern.positional"
B, T, C, MAX_LEN = 2, 5, 6, 8
TENSOR = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}


def to_numpy(value) -> np.ndarray:
    """Any tree's tensor as a NumPy array (a torch output that requires grad detached first)."""
    return value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def halves_to_interleaved(table: np.ndarray) -> np.ndarray:
    """Columns ``[sin_0 .. sin_{s-1} | cos_0 .. cos_{c-1}]`` (``s = ceil(C/2)`` sines) reordered to
    ``sin_0, cos_0, sin_1, cos_1, ...``: the permutation between the two layouts, written once."""
    width = table.shape[1]
    sines = (width + 1) // 2
    order = np.empty(width, dtype=np.int64)
    # Even columns take the sines in order, odd columns the cosines.
    order[0::2] = np.arange(sines)
    order[1::2] = sines + np.arange(width - sines)
    return table[:, order]


def diffusers_table(max_len: int, embed_dim: int, dtype: str) -> np.ndarray:
    """The day-38 ``timestep_embedding`` of the positions 0..max_len-1, with the paper's frequencies
    (``downscale_freq_shift=0``: exponent ``-ln(10000) i / (C/2)``), in its ``[sin | cos]`` layout."""
    unet = get_module("numpy", "generative.unet")
    return unet.timestep_embedding(np.arange(max_len, dtype=np.int64), embed_dim, flip_sin_to_cos=False,
                                   downscale_freq_shift=0.0, dtype=dtype)


def sinusoidal_reference(embed_dim: int, max_len: int):
    """``x + table[:T]`` in torch, the table the diffusers layout interleaved (an even ``embed_dim``)."""
    def run(state, inputs, cotangents, dtype):
        table = torch.from_numpy(halves_to_interleaved(diffusers_table(max_len, embed_dim, dtype)))
        call = lambda x: x + table[:x.shape[1]]
        return torch_functional_reference(call)(state, inputs, cotangents, dtype)
    return run


def torch_embedding_positions_reference(max_len: int, embed_dim: int, offset: int = 0):
    """``x + nn.Embedding(max_len, embed_dim)(arange(offset, offset + T))``, the canonical ``weight`` loaded unchanged."""
    def run(state, inputs, cotangents, dtype):
        table = torch.nn.Embedding(max_len, embed_dim, dtype=getattr(torch, dtype))
        table.load_state_dict({"weight": torch.from_numpy(state["weight"])})
        call = lambda x: x + table(torch.arange(offset, offset + x.shape[1]))
        return run_torch(call, inputs, ("x",), cotangents, params={"weight": table.weight})
    return run


def draw_x(shape=(B, T, C)):
    return lambda dtype, rng: {"x": rng.standard_normal(shape).astype(dtype)}


def sinusoidal_case(shape=(B, T, C)):
    """The diffusers table is the reference for an even width; an odd one (a zero column there, a
    sine here) is compared between the trees, and to Marian's table in the table test below."""
    embed_dim = shape[2]
    references = {"diffusers layout, interleaved": sinusoidal_reference(embed_dim, MAX_LEN)} if embed_dim % 2 == 0 else {}
    return Case(module=MODULE,
                build=lambda m, dtype, rng: m.SinusoidalPositionalEncoding(embed_dim, max_len=MAX_LEN, dtype=dtype),
                inputs=draw_x(shape),
                references=references)


def learned_case(shape=(B, T, C)):
    return Case(module=MODULE,
                build=lambda m, dtype, rng: m.LearnedPositionalEmbedding(MAX_LEN, shape[2], dtype=dtype, rng=rng),
                inputs=draw_x(shape),
                references={"torch.nn.Embedding": torch_embedding_positions_reference(MAX_LEN, shape[2])})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sinusoidal_parity(dtype):
    """Output and input gradient in every tree and against x + the diffusers table interleaved;
    float64 adds NaN/inf/huge inputs and the empty batch (B = 0)."""
    check_parity(sinusoidal_case(), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sinusoidal_parity_odd_width(dtype):
    """An odd width (7: four sines, three cosines) in every tree, special values and empty batch included."""
    check_parity(sinusoidal_case(shape=(B, T, 7)), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_learned_parity(dtype):
    """Output, input gradient and the table's gradient (summed over the batch into rows 0..T-1,
    rows T.. exactly 0) in every tree and against torch.nn.Embedding."""
    results = check_parity(learned_case(), dtype)
    assert not np.any(results["numpy"].param_grads["weight"][T:])


def test_gradchecks():
    """Finite differences of both hand-written backwards (the identity, and the batch sum into rows)."""
    gradcheck_numpy(sinusoidal_case(shape=(2, 3, 5)))
    gradcheck_numpy(learned_case(shape=(2, 3, 3)))


@pytest.mark.parametrize("embed_dim", [6, 8])
def test_sinusoidal_table_is_the_diffusers_table_interleaved(embed_dim):
    """The interleaved table of every tree equals the day-38 [sin | cos] table with its columns
    permuted (float64), and the two layouts are not the same arrays without the permutation."""
    expected = halves_to_interleaved(diffusers_table(MAX_LEN, embed_dim, "float64"))
    failures = []
    for tree in TREES:
        table = to_numpy(get_module(tree, MODULE).sinusoidal_table(MAX_LEN, embed_dim, "float64"))
        compare_tensors("pe", f"{tree} vs diffusers interleaved", table, expected, "float64", failures)
    assert_no_failures(failures, "sinusoidal table vs diffusers")
    assert not np.allclose(expected, diffusers_table(MAX_LEN, embed_dim, "float64"))


@pytest.mark.parametrize("embed_dim", [6, 7])
def test_sinusoidal_table_is_marians_table_interleaved(embed_dim):
    """Hugging Face Marian's table (sines first, ceil(C/2) of them, then cosines; computed in float64,
    stored float32) interleaved equals every tree's float32 ``pe``, an odd width included."""
    from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

    marian = MarianSinusoidalPositionalEmbedding(MAX_LEN, embed_dim).create_weight().numpy()
    failures = []
    for tree in TREES:
        layer = get_module(tree, MODULE).SinusoidalPositionalEncoding(embed_dim, max_len=MAX_LEN, dtype="float32")
        compare_tensors("pe", f"{tree} vs Marian interleaved", to_numpy(layer.pe), halves_to_interleaved(marian),
                        "float32", failures)
    assert_no_failures(failures, "sinusoidal table vs Marian")


def test_fsmt_table_has_other_frequencies():
    """FSMT (fairseq, tensor2tensor) divides by C/2 - 1, not C/2: its table is diffusers' with
    ``downscale_freq_shift=1`` (the day-38 default), not the paper's, even once interleaved."""
    from transformers.models.fsmt.modeling_fsmt import SinusoidalPositionalEmbedding

    fsmt = SinusoidalPositionalEmbedding.get_embedding(MAX_LEN, C, None).numpy()
    unet = get_module("numpy", "generative.unet")
    shifted = unet.timestep_embedding(np.arange(MAX_LEN, dtype=np.int64), C, downscale_freq_shift=1.0, dtype="float32")
    failures = []
    compare_tensors("table", "FSMT vs diffusers shift 1", fsmt, shifted, "float32", failures)
    assert_no_failures(failures, "FSMT table")
    paper = get_module("numpy", MODULE).sinusoidal_table(MAX_LEN, C, "float32")
    assert np.abs(halves_to_interleaved(fsmt) - paper).max() > 0.1


def test_dot_product_depends_only_on_the_offset():
    """PE[p] . PE[q] = sum_i cos((p - q) w_i): the Gram matrix is constant along every diagonal."""
    table = get_module("numpy", MODULE).sinusoidal_table(32, 16, "float64")
    gram = table @ table.T  # (L, L)
    for shift in range(-31, 32):
        diagonal = np.diagonal(gram, offset=shift)
        np.testing.assert_allclose(diagonal, diagonal[0], rtol=0, atol=1e-12)
    assert gram[0, 0] == pytest.approx(8.0) and gram[0, 5] != pytest.approx(gram[0, 6])


def test_offset_and_tree_parity_against_torch():
    """``forward(x, offset=3)`` reads rows 3..3+T-1 in every tree, as nn.Embedding at those positions;
    the table's gradient lands in exactly those rows."""
    rng = np.random.default_rng(5)
    x, g = rng.standard_normal((B, 4, C)), rng.standard_normal((B, 4, C))
    state = {"weight": rng.uniform(-1.0, 1.0, size=(MAX_LEN, C))}
    reference = torch_embedding_positions_reference(MAX_LEN, C, offset=3)(state, {"x": x}, [g], "float64")
    sinusoid = x + get_module("numpy", MODULE).sinusoidal_table(MAX_LEN, C, "float64")[3:7]
    failures = []
    for tree in TREES:
        module = get_module(tree, MODULE)
        learned = module.LearnedPositionalEmbedding(MAX_LEN, C, dtype="float64", rng=np.random.default_rng(0))
        learned.load_canonical_state_dict(state)
        compare_tensors("y", f"{tree} vs torch.nn, offset 3", to_numpy(learned(TENSOR[tree](x), offset=3)),
                        reference.outputs[0], "float64", failures)
        fixed = module.SinusoidalPositionalEncoding(C, max_len=MAX_LEN, dtype="float64")
        compare_tensors("y", f"{tree} sinusoid, offset 3", to_numpy(fixed(TENSOR[tree](x), offset=3)), sinusoid,
                        "float64", failures)
    assert_no_failures(failures, "offset")
    grad = reference.param_grads["weight"]
    assert not np.any(grad[:3]) and not np.any(grad[7:]) and np.all(grad[3:7])


def test_numpy_table_used_twice_sums_as_torch_autograd():
    """Incremental decoding: a prefix of 4 positions, then 2 more at offset 4 with the same NumPy
    table, backpropagated in reverse order: the gradient is the sum of both uses', as autograd gives."""
    rng = np.random.default_rng(6)
    x_a, x_b = rng.standard_normal((B, 4, C)), rng.standard_normal((B, 2, C))
    g_a, g_b = rng.standard_normal((B, 4, C)), rng.standard_normal((B, 2, C))
    state = {"weight": rng.uniform(-1.0, 1.0, size=(MAX_LEN, C))}
    layer = get_module("numpy", MODULE).LearnedPositionalEmbedding(MAX_LEN, C, dtype="float64",
                                                                   rng=np.random.default_rng(0))
    layer.load_canonical_state_dict(state)
    layer(x_a)
    layer(x_b, offset=4)
    grad_b, grad_a = layer.backward(g_b), layer.backward(g_a)

    table = torch.nn.Embedding(MAX_LEN, C, dtype=torch.float64)
    table.load_state_dict({"weight": torch.from_numpy(state["weight"])})
    t_a, t_b = torch.tensor(x_a, requires_grad=True), torch.tensor(x_b, requires_grad=True)
    y_a, y_b = t_a + table(torch.arange(4)), t_b + table(torch.arange(4, 6))
    ((y_a * torch.from_numpy(g_a)).sum() + (y_b * torch.from_numpy(g_b)).sum()).backward()
    failures = []
    compare_tensors("grad of weight", "numpy used twice vs autograd", layer.grads["weight"], table.weight.grad.numpy(),
                    "float64", failures)
    compare_tensors("grad of x_a", "numpy vs autograd", grad_a, t_a.grad.numpy(), "float64", failures)
    compare_tensors("grad of x_b", "numpy vs autograd", grad_b, t_b.grad.numpy(), "float64", failures)
    assert_no_failures(failures, "table used twice")
    assert np.all(layer.grads["weight"][:6]) and not np.any(layer.grads["weight"][6:])


def test_default_init_is_standard_normal_and_pe_is_not_in_the_state():
    """The learned table is nn.Embedding's N(0, 1), the same draw in every tree; the sinusoidal
    module has no canonical state (``pe`` is non-persistent, as ``persistent=False`` in torch)."""
    expected = np.random.default_rng(3).standard_normal((MAX_LEN, C)).astype("float32")
    for tree in TREES:
        module = get_module(tree, MODULE)
        learned = module.LearnedPositionalEmbedding(MAX_LEN, C, rng=np.random.default_rng(3))
        np.testing.assert_array_equal(learned.canonical_state_dict()["weight"], expected)
        assert module.SinusoidalPositionalEncoding(C, max_len=MAX_LEN).canonical_state_dict() == {}


ERRORS = [
    ("positions past max_len", lambda m: m(np.zeros((1, 9, C))), ValueError,
     "{owner}: positions 0..8 (offset 0 + sequence length 9) do not fit max_len=8; build it with max_len >= 9"),
    ("offset past max_len", lambda m: m(np.zeros((1, 3, C)), offset=6), ValueError,
     "{owner}: positions 6..8 (offset 6 + sequence length 3) do not fit max_len=8; build it with max_len >= 9"),
    ("negative offset", lambda m: m(np.zeros((1, 3, C)), offset=-1), ValueError,
     "{owner}: offset must be an int >= 0, got -1"),
    ("2-d input", lambda m: m(np.zeros((3, C))), ValueError,
     "{owner}: x must have 3 dimensions, got shape (3, 6)"),
    ("wrong width", lambda m: m(np.zeros((1, 3, C + 1))), ValueError,
     "{owner}: x must have shape (..., 6), got (1, 3, 7)"),
    ("wrong dtype", lambda m: m(np.zeros((1, 3, C), dtype=np.float32)), TypeError,
     "{owner}: x must have dtype float64, got float32 (cast it explicitly)"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", [row[0] for row in ERRORS])
def test_input_errors(what, tree):
    """One message per bad input, the same in every tree, for both modules."""
    _, call, error, message = next(row for row in ERRORS if row[0] == what)
    module = get_module(tree, MODULE)
    builds = {"SinusoidalPositionalEncoding": lambda: module.SinusoidalPositionalEncoding(C, MAX_LEN, dtype="float64"),
              "LearnedPositionalEmbedding": lambda: module.LearnedPositionalEmbedding(MAX_LEN, C, dtype="float64",
                                                                                      rng=np.random.default_rng(0))}
    for owner, build in builds.items():
        layer = build()
        convert = lambda x: TENSOR[tree](np.asarray(x))
        assert_raises_exactly(error, message.format(owner=owner),
                              lambda: call(lambda x, **kw: layer(convert(x), **kw)))


@pytest.mark.parametrize("tree", TREES)
def test_constructor_errors(tree):
    module = get_module(tree, MODULE)
    rng = np.random.default_rng(0)
    assert_raises_exactly(ValueError, "SinusoidalPositionalEncoding: embed_dim must be an int >= 1, got 0",
                          lambda: module.SinusoidalPositionalEncoding(0))
    assert_raises_exactly(ValueError, "SinusoidalPositionalEncoding: max_len must be an int >= 1, got 2.5",
                          lambda: module.SinusoidalPositionalEncoding(C, 2.5))
    assert_raises_exactly(ValueError, "LearnedPositionalEmbedding: max_len must be an int >= 1, got 0",
                          lambda: module.LearnedPositionalEmbedding(0, C, rng=rng))
    assert_raises_exactly(ValueError, "LearnedPositionalEmbedding: embed_dim must be an int >= 1, got True",
                          lambda: module.LearnedPositionalEmbedding(MAX_LEN, True, rng=rng))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 3), steps=st.integers(1, MAX_LEN), width=st.integers(1, 5))
def test_fuzz_shapes(batch, steps, width):
    """Random small shapes, odd widths included: every tree agrees, with torch.nn.Embedding for the
    learned table and the interleaved diffusers table for an even sinusoidal one (float64)."""
    check_parity(learned_case(shape=(batch, steps, width)), "float64")
    check_parity(sinusoidal_case(shape=(batch, steps, width)), "float64")
