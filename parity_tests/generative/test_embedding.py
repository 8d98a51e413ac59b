"""Day 21: the embedding layer in three trees, against ``torch.nn.Embedding`` and ``keras.layers.Embedding``.

The only input, the ids, is an int64 tensor: it is never perturbed and has no gradient
(``differentiable=()``), so the harness's special-values pass reduces to the empty batch; NaN and
±inf *weights* get their own test below.
"""
import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  compare_special, compare_tensors, gradcheck_numpy, run_all_trees, run_reference, run_tf,
                                  torch_module_reference)

MODULE = "generative.embedding"
V, D = 7, 4
IDS_SHAPE = (3, 5)


def torch_embedding_reference(num_embeddings: int, embedding_dim: int, **options):
    """``torch.nn.Embedding`` with the same options, strictly loaded with the canonical state (the
    same ``weight`` ``(V, D)``: no conversion)."""
    return torch_module_reference(lambda dtype: torch.nn.Embedding(num_embeddings, embedding_dim, **options), differentiable=())


def keras_embedding_reference(num_embeddings: int, embedding_dim: int):
    """``keras.layers.Embedding`` fed the canonical ``weight`` as its ``embeddings`` (the same
    ``(V, D)`` layout); its gradient comes back as ``tf.IndexedSlices`` and is made dense."""
    import keras

    def run(state, inputs, cotangents, dtype):
        layer = keras.layers.Embedding(num_embeddings, embedding_dim, dtype=dtype)
        layer.build((None,))
        layer.embeddings.assign(state["weight"])
        to_canonical = lambda grads: {"weight": tf.convert_to_tensor(grads["weight"]).numpy()}
        return run_tf(layer, inputs, (), cotangents, {"weight": layer.embeddings}, to_canonical)

    return run


def draw_ids(rng, shape, num_embeddings=V, padding_idx=None) -> np.ndarray:
    """Random ids with repeats (more positions than rows), the padding id planted at the first position."""
    ids = rng.integers(0, num_embeddings, size=shape).astype(np.int64)
    if padding_idx is not None and ids.size:
        ids.reshape(-1)[0] = padding_idx % num_embeddings
    return ids


def embedding_case(shape=IDS_SHAPE, **options):
    references = {"torch.nn.Embedding": torch_embedding_reference(V, D, **options)}
    # Keras has no padding_idx, max_norm or scale_grad_by_freq (test_keras_mask_zero_is_not_padding_idx):
    # it is a reference of the plain lookup only.
    if not options:
        references["keras.layers.Embedding"] = keras_embedding_reference(V, D)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.Embedding(V, D, **options, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"ids": draw_ids(rng, shape, padding_idx=options.get("padding_idx"))},
        differentiable=(),
        references=references,
    )


OPTIONS = {
    "padding_idx": {"padding_idx": 2},
    "negative padding_idx": {"padding_idx": -2},
    "scale_grad_by_freq": {"scale_grad_by_freq": True},
    "scale_grad_by_freq with padding": {"scale_grad_by_freq": True, "padding_idx": 0},
    "max_norm": {"max_norm": 1.0},
    "max_norm, 1-norm": {"max_norm": 1.5, "norm_type": 1.0},
    "max_norm, inf-norm, padding": {"max_norm": 0.5, "norm_type": float("inf"), "padding_idx": 3},
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_embedding_parity(dtype):
    check_parity(embedding_case(), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("what", list(OPTIONS))
def test_embedding_options_parity(what, dtype):
    """Every option against torch.nn.Embedding: the padding row gets no gradient, scaled gradients
    divide by each id's count in the call, max_norm renormalizes before the lookup."""
    check_parity(embedding_case(**OPTIONS[what]), dtype)


@pytest.mark.parametrize("shape", [(), (6,), (2, 3, 4)])
def test_embedding_parity_for_any_ids_shape(shape):
    """ids of shape ``(*)`` give ``(*, D)``, a 0-d id included."""
    results = check_parity(embedding_case(shape=shape, padding_idx=1), "float64")
    assert results["numpy"].outputs[0].shape == (*shape, D)


def test_embedding_gradcheck():
    """Finite differences of the hand-written scatter-add. Only the plain lookup has its true
    derivative as gradient: torch defines the padding row's gradient as 0 and
    scale_grad_by_freq's as the derivative divided by the id's count, neither a derivative (both
    are checked against torch.nn.Embedding above), and max_norm's forward rewrites the weight it
    is differentiated against, outside the gradient."""
    gradcheck_numpy(embedding_case())


def special_weights(name, shape, dtype, rng):
    """A table with NaN, +inf, -inf and -0.0 in rows 1, 3 and 5 (row 3 is the padding row below)."""
    weight = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    weight[1, 0], weight[3, 1], weight[5, 2], weight[5, 3] = np.nan, np.inf, -np.inf, -0.0
    return weight


@pytest.mark.parametrize("options", [{"padding_idx": 3}, {"padding_idx": 3, "max_norm": 1.0}])
def test_nan_and_inf_weights_propagate_as_in_torch(options):
    """NaN and ±inf in the table reach exactly the positions that look those rows up; a row with
    NaN norm is not renormalized, an infinite one becomes NaN (inf / inf), as torch's renorm does;
    the padding row still gets an exact 0 gradient."""
    case = embedding_case(**options)
    models = {tree: case.build(get_module(tree, MODULE), "float64", np.random.default_rng(0)) for tree in TREES}
    state = {"weight": special_weights("weight", (V, D), "float64", np.random.default_rng(1))}
    for model in models.values():
        model.load_canonical_state_dict(state)
    ids = np.array([[1, 3, 5, 0], [3, 3, 6, 1]], dtype=np.int64)
    cotangents = [np.random.default_rng(2).standard_normal((2, 4, D))]
    # inf * 0 (an infinite row renormalized) is the NaN torch gives too: no warning wanted.
    with np.errstate(all="ignore"):
        results = run_all_trees(case, "float64", {"ids": ids}, cotangents, models)
        results["torch.nn.Embedding"] = run_reference(case, "torch.nn.Embedding", state, {"ids": ids}, cotangents, "float64")
        assert_no_failures(compare_results(results, "float64", compare_special), "NaN/inf weights")
    assert np.isnan(results["numpy"].outputs[0][0, 0, 0]) and not np.any(results["numpy"].param_grads["weight"][3])


@pytest.mark.parametrize("options", [{"max_norm": 1.0}, {"max_norm": 0.7, "norm_type": 3.0, "padding_idx": 4}])
def test_max_norm_renormalizes_the_weight_in_place_as_torch(options):
    """After forwards on two id tensors, every tree's weight equals torch.nn.Embedding's: only the
    looked-up rows whose norm exceeded max_norm changed, each to ``row * max_norm / (norm + 1e-7)``."""
    state = {"weight": np.random.default_rng(1).uniform(-1.0, 1.0, size=(V, D))}
    first, second = np.array([[0, 1, 1], [4, 5, 0]]), np.array([2, 5, 4])
    reference = torch.nn.Embedding(V, D, **options, dtype=torch.float64)
    reference.load_state_dict({"weight": torch.from_numpy(state["weight"])})
    with torch.no_grad():
        reference(torch.from_numpy(first))
        reference(torch.from_numpy(second))
    expected = reference.weight.detach().numpy()
    tensor = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}
    failures = []
    for tree in TREES:
        model = get_module(tree, MODULE).Embedding(V, D, **options, dtype="float64", rng=np.random.default_rng(0))
        model.load_canonical_state_dict(state)
        with get_module(tree, "module").no_grad():
            model(tensor[tree](first))
            model(tensor[tree](second))
        compare_tensors("weight after two forwards", f"{tree} vs torch.nn", model.canonical_state_dict()["weight"], expected,
                        "float64", failures)
    assert_no_failures(failures, "max_norm renorm")
    untouched = ~np.isin(np.arange(V), np.r_[first.ravel(), second])
    assert np.array_equal(expected[untouched], state["weight"][untouched]) and not np.array_equal(expected, state["weight"])


@pytest.mark.parametrize("options", [{}, {"padding_idx": 0, "scale_grad_by_freq": True}])
def test_tied_embedding_sums_both_uses_gradients_as_torch(options):
    """One NumPy Embedding looked up with two id tensors (a tied table: encoder and decoder, or
    input and output), backpropagated in reverse order: its gradient is the sum of both uses',
    as torch autograd gives for one torch.nn.Embedding used twice — scale_grad_by_freq counting
    each call's ids separately."""
    state = {"weight": np.random.default_rng(1).uniform(-1.0, 1.0, size=(V, D))}
    rng = np.random.default_rng(2)
    ids_a, ids_b = draw_ids(rng, (3, 4), padding_idx=0), draw_ids(rng, (5,), padding_idx=0)
    g_a, g_b = rng.standard_normal((3, 4, D)), rng.standard_normal((5, D))

    layer = get_module("numpy", MODULE).Embedding(V, D, **options, dtype="float64", rng=np.random.default_rng(0))
    layer.load_canonical_state_dict(state)
    layer.zero_grad()
    y_a, y_b = layer(ids_a), layer(ids_b)
    layer.backward(g_b)
    layer.backward(g_a)

    reference = torch.nn.Embedding(V, D, **options, dtype=torch.float64)
    reference.load_state_dict({"weight": torch.from_numpy(state["weight"])})
    r_a, r_b = reference(torch.from_numpy(ids_a)), reference(torch.from_numpy(ids_b))
    ((r_a * torch.from_numpy(g_a)).sum() + (r_b * torch.from_numpy(g_b)).sum()).backward()

    # A lookup copies rows: the outputs are exact; the gradients are sums, compared to tolerance.
    np.testing.assert_array_equal(y_a, r_a.detach().numpy())
    np.testing.assert_array_equal(y_b, r_b.detach().numpy())
    failures = []
    compare_tensors("grad of weight", "numpy used twice vs torch.nn autograd", layer.grads["weight"],
                    reference.weight.grad.numpy(), "float64", failures)
    assert_no_failures(failures, "tied embedding")
    one_use = get_module("numpy", MODULE).Embedding(V, D, **options, dtype="float64", rng=np.random.default_rng(0))
    one_use.load_canonical_state_dict(state)
    one_use(ids_a)
    one_use.backward(g_a)
    assert not np.allclose(layer.grads["weight"], one_use.grads["weight"])


def test_default_init_is_standard_normal_with_the_padding_row_zeroed():
    """torch's init: N(0, 1) drawn from the rng (the same numbers in every tree), then the
    padding row (here -1, i.e. the last) set to 0."""
    expected = np.random.default_rng(5).standard_normal((V, D))
    expected[-1] = 0.0
    for tree in TREES:
        layer = get_module(tree, MODULE).Embedding(V, D, padding_idx=-1, dtype="float64", rng=np.random.default_rng(5))
        np.testing.assert_array_equal(layer.canonical_state_dict()["weight"], expected, err_msg=tree)
        assert layer.padding_idx == V - 1


def test_keras_mask_zero_is_not_padding_idx():
    """Keras' ``mask_zero=True`` only attaches a mask for downstream layers: row 0 is still looked
    up as it is AND still gets a gradient. torch's ``padding_idx=0`` gives it none."""
    import keras

    weight = np.random.default_rng(1).uniform(-1.0, 1.0, size=(V, D))
    ids = np.array([[0, 2, 0], [1, 0, 3]], dtype=np.int64)
    layer = keras.layers.Embedding(V, D, mask_zero=True, dtype="float64")
    layer.build((None,))
    layer.embeddings.assign(weight)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(tf.constant(ids)))
    keras_grad = tf.convert_to_tensor(tape.gradient(loss, layer.embeddings)).numpy()
    ours = get_module("numpy", MODULE).Embedding(V, D, padding_idx=0, dtype="float64", rng=np.random.default_rng(0))
    ours.load_canonical_state_dict({"weight": weight})
    ours.zero_grad()
    ours(ids)
    ours.backward(np.ones((2, 3, D)))
    np.testing.assert_array_equal(keras_grad[0], np.full(D, 3.0))
    np.testing.assert_array_equal(ours.grads["weight"][0], np.zeros(D))
    np.testing.assert_array_equal(keras_grad[1:], ours.grads["weight"][1:])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(num_embeddings=st.integers(1, 6), embedding_dim=st.integers(0, 4),
       shape=st.lists(st.integers(0, 4), min_size=1, max_size=3), padding=st.booleans(), scale=st.booleans())
def test_embedding_fuzz(num_embeddings, embedding_dim, shape, padding, scale):
    """Random table sizes, ids shapes (empty ones too) and options: every tree and torch.nn.Embedding agree."""
    options = {"padding_idx": -1 if padding else None, "scale_grad_by_freq": scale}
    case = Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.Embedding(num_embeddings, embedding_dim, **options, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"ids": draw_ids(rng, tuple(shape), num_embeddings, options["padding_idx"])},
        differentiable=(),
        references={"torch.nn.Embedding": torch_embedding_reference(num_embeddings, embedding_dim, **options)},
    )
    check_parity(case, "float64")


#: (arguments, keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "negative num_embeddings": ((-1, D), {}, ValueError, "Embedding: num_embeddings must be an int >= 0, got -1"),
    "float embedding_dim": ((V, 2.0), {}, ValueError, "Embedding: embedding_dim must be an int >= 0, got 2.0"),
    "padding_idx too large": ((V, D), {"padding_idx": V}, ValueError,
                              "Embedding: padding_idx must be None or an int in [-7, 7), got 7"),
    "padding_idx too negative": ((V, D), {"padding_idx": -V - 1}, ValueError,
                                 "Embedding: padding_idx must be None or an int in [-7, 7), got -8"),
    "float padding_idx": ((V, D), {"padding_idx": 1.0}, ValueError,
                          "Embedding: padding_idx must be None or an int in [-7, 7), got 1.0"),
    "zero max_norm": ((V, D), {"max_norm": 0.0}, ValueError, "Embedding: max_norm must be > 0, got 0.0"),
    "string max_norm": ((V, D), {"max_norm": "1"}, TypeError, "Embedding: max_norm must be a real number, got '1'"),
    "negative norm_type": ((V, D), {"norm_type": -2.0}, ValueError, "Embedding: norm_type must be > 0, got -2.0"),
    "string scale_grad_by_freq": ((V, D), {"scale_grad_by_freq": "yes"}, TypeError,
                                  "Embedding: scale_grad_by_freq must be a bool (True or False), got 'yes'"),
    "sparse": ((V, D), {"sparse": True}, ValueError,
               "Embedding: sparse=True (a sparse gradient) is not supported; every tree returns the dense "
               "(num_embeddings, embedding_dim) gradient, as torch does with sparse=False"),
    "seed as rng": ((V, D), {"rng": 0}, TypeError,
                    "Embedding: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: get_module(tree, MODULE).Embedding(*args, **kwargs))


#: ids -> (exception, message): every tree raises exactly this in forward (torch.nn.Embedding
#: accepts int32 ids; the project takes int64 ids only).
BAD_IDS = {
    "int32 ids": (np.array([1, 2], np.int32), TypeError, "Embedding: ids must have dtype int64, got int32 (cast it explicitly)"),
    "float ids": (np.array([1.0, 2.0]), TypeError, "Embedding: ids must have dtype int64, got float64 (cast it explicitly)"),
    "id too large": (np.array([[1, 7], [9, 7]]), ValueError, "Embedding: ids must lie in [0, 7), got out-of-range values [7, 9]"),
    "negative id": (np.array([-1, 3]), ValueError, "Embedding: ids must lie in [0, 7), got out-of-range values [-1]"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_IDS))
def test_bad_ids_raise_one_clear_error(what, tree):
    ids, error, message = BAD_IDS[what]
    layer = get_module(tree, MODULE).Embedding(V, D, rng=np.random.default_rng(0))
    tensor = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}[tree](ids)
    assert_raises_exactly(error, message, lambda: layer(tensor))
