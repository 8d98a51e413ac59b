"""Day 58: box formats, area, IoU, GIoU and the GIoU loss in three trees.

References: ``torchvision.ops`` (``box_convert``, ``box_area``, ``box_iou``, ``generalized_box_iou``,
``generalized_box_iou_loss``), values and autograd gradients, float64 and float32, special values
included; Keras 3's ``keras.utils.bounding_boxes`` (``convert_format``, ``compute_iou``) for values
— its IoU divides by ``union + 1e-7`` (``keras.backend.epsilon()``), so it is compared in float32
only, where that epsilon is below the tolerance (see ``test_keras_compute_iou_adds_epsilon``).
``keras_cv`` is not installed; Keras 3 carries these two functions from it.
"""
import numpy as np
import pytest
import torch
import torchvision.ops as tv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from ml100.checks import BOX_FORMATS
from parity_tests.harness import (FD_STEP, FD_TOLERANCE, TREES, Case, assert_no_failures, assert_raises_exactly,
                                  check_parity, compare_results, compare_special, gradcheck_numpy, run_all_trees, run_numpy,
                                  run_reference, torch_functional_reference)

MODULE = "modern.boxes"
PAIRS = ("boxes1", "boxes2")
#: Keras' names for torchvision's formats.
KERAS_FORMATS = {"xyxy": "xyxy", "xywh": "xywh", "cxcywh": "center_xywh"}


def random_boxes(rng, shape, fmt="xyxy", dtype="float64"):
    """Boxes ``shape + (4,)`` in ``fmt``: corners in [0, 4), sides in [0.5, 3), so some pairs overlap
    and some do not, with no ties (continuous draws)."""
    xy = rng.uniform(0.0, 4.0, shape + (2,))
    wh = rng.uniform(0.5, 3.0, shape + (2,))
    boxes = {"xyxy": (xy, xy + wh), "xywh": (xy, wh), "cxcywh": (xy + wh / 2, wh)}[fmt]
    return np.concatenate(boxes, axis=-1).astype(dtype)


def convert_case(in_fmt, out_fmt):
    def inputs(dtype, rng):
        return {"boxes": random_boxes(rng, (2, 3), in_fmt, dtype)}
    return Case(MODULE, lambda m, dtype, rng: m.BoxConvert(in_fmt, out_fmt, dtype), inputs, ("boxes",),
                references={"torchvision": torch_functional_reference(
                    lambda b: tv.box_convert(b, in_fmt, out_fmt), ("boxes",))})


def area_case(fmt):
    def inputs(dtype, rng):
        return {"boxes": random_boxes(rng, (5,), fmt, dtype)}
    return Case(MODULE, lambda m, dtype, rng: m.BoxArea(fmt, dtype), inputs, ("boxes",),
                references={"torchvision": torch_functional_reference(lambda b: tv.box_area(b, fmt=fmt), ("boxes",))})


def pair_case(build, reference, shapes=((3,), (4,)), fmt="xyxy"):
    """Two sets of boxes (``shapes`` without the 4), ``build(tree module, dtype)``, the torchvision ``reference``."""
    def inputs(dtype, rng):
        return {name: random_boxes(rng, shape, fmt, dtype) for name, shape in zip(PAIRS, shapes)}
    return Case(MODULE, lambda m, dtype, rng: build(m, dtype), inputs, PAIRS,
                references={"torchvision": torch_functional_reference(reference, PAIRS)})


def loss_case(reduction):
    return pair_case(lambda m, dtype: m.GeneralizedBoxIoULoss(reduction, 1e-7, dtype),
                     lambda a, b: tv.generalized_box_iou_loss(a, b, reduction), shapes=((5,), (5,)))


CASES = {
    **{f"convert_{a}_to_{b}": convert_case(a, b) for a in BOX_FORMATS for b in BOX_FORMATS},
    **{f"area_{fmt}": area_case(fmt) for fmt in BOX_FORMATS},
    **{f"iou_{fmt}": pair_case(lambda m, dtype, fmt=fmt: m.BoxIoU(fmt, dtype),
                               lambda a, b, fmt=fmt: tv.box_iou(a, b, fmt=fmt), fmt=fmt) for fmt in BOX_FORMATS},
    "iou_leading_axes": pair_case(lambda m, dtype: m.BoxIoU("xyxy", dtype), tv.box_iou, shapes=((2, 3), (2, 2))),
    "giou": pair_case(lambda m, dtype: m.GeneralizedBoxIoU(dtype), tv.generalized_box_iou),
    "giou_leading_axes": pair_case(lambda m, dtype: m.GeneralizedBoxIoU(dtype), tv.generalized_box_iou,
                                   shapes=((2, 2), (2, 3))),
    **{f"giou_loss_{reduction}": loss_case(reduction) for reduction in ("none", "mean", "sum")},
    "diou": pair_case(lambda m, dtype: m.DistanceBoxIoU(1e-7, dtype), tv.distance_box_iou),
    "ciou": pair_case(lambda m, dtype: m.CompleteBoxIoU(1e-7, dtype), tv.complete_box_iou),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    check_parity(CASES[name], dtype)


@pytest.mark.parametrize("name", ["convert_xywh_to_cxcywh", "area_xyxy", "area_cxcywh", "iou_xywh", "iou_cxcywh",
                                  "giou", "giou_loss_none", "giou_loss_mean", "diou"])
def test_gradcheck(name):
    gradcheck_numpy(CASES[name])


def test_ciou_gradcheck_with_alpha_frozen():
    """torchvision computes CIoU's alpha under ``no_grad``, so CIoU's gradient is not the derivative
    of CIoU (``gradcheck_numpy`` would fail by design): it is the derivative of
    ``DIoU - alpha0 * v`` with ``alpha0`` frozen at the point, which finite differences check here."""
    rng = np.random.default_rng(9)
    boxes = {"a": random_boxes(rng, (2,)), "b": random_boxes(rng, (3,))}
    numpy_boxes = get_module("numpy", MODULE)
    ciou = numpy_boxes.CompleteBoxIoU(1e-7, "float64")
    cotangent = rng.standard_normal(ciou(boxes["a"], boxes["b"]).shape)
    grads = dict(zip(boxes, ciou.backward(cotangent)))

    def aspect_gap_squared(a, b):
        angle = lambda x: np.arctan((x[:, 2] - x[:, 0]) / (x[:, 3] - x[:, 1]))  # noqa: E731 - the formula, once
        return 4 / np.pi ** 2 * (angle(a)[:, None] - angle(b)[None, :]) ** 2

    v0 = aspect_gap_squared(boxes["a"], boxes["b"])
    alpha0 = v0 / (1 - numpy_boxes.box_iou(boxes["a"], boxes["b"]) + v0 + 1e-7)

    def frozen(a, b):
        return float(np.sum(cotangent * (numpy_boxes.distance_box_iou(a, b) - alpha0 * aspect_gap_squared(a, b))))

    for name, array in boxes.items():
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus, minus = {k: v.copy() for k, v in boxes.items()}, {k: v.copy() for k, v in boxes.items()}
            plus[name][index] += FD_STEP
            minus[name][index] -= FD_STEP
            numeric[index] = (frozen(plus["a"], plus["b"]) - frozen(minus["a"], minus["b"])) / (2 * FD_STEP)
        np.testing.assert_allclose(grads[name], numeric, rtol=FD_TOLERANCE, atol=FD_TOLERANCE * np.abs(numeric).max())


#: Degenerate pairs, row by row (boxes1[i] against boxes2[i] for the loss; pairwise for IoU and GIoU):
#: identical boxes (every max/min a tie), one touching the other along an edge, one inside the
#: other, disjoint, a zero-area box (a point) against a box, two identical zero-area boxes (0/0),
#: an inverted box (x2 < x1) against a normal one.
DEGENERATE = {
    "identical": ([0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]),
    "touching": ([0.0, 0.0, 2.0, 2.0], [2.0, 0.5, 3.0, 1.5]),
    "inside": ([0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 2.0, 3.0]),
    "disjoint": ([0.0, 0.0, 1.0, 1.0], [2.0, 3.0, 4.0, 5.0]),
    "point": ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]),
    "two_points": ([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]),
    "inverted": ([2.0, 2.0, 0.0, 0.0], [0.5, 0.5, 1.5, 1.5]),
}


def degenerate_case(build, reference):
    def inputs(dtype, rng):
        first, second = zip(*DEGENERATE.values())
        return {"boxes1": np.array(first, dtype), "boxes2": np.array(second, dtype)}
    return Case(MODULE, lambda m, dtype, rng: build(m, dtype), inputs, PAIRS,
                references={"torchvision": torch_functional_reference(reference, PAIRS)})


DEGENERATE_CASES = {
    "iou": degenerate_case(lambda m, dtype: m.BoxIoU("xyxy", dtype), tv.box_iou),
    "giou": degenerate_case(lambda m, dtype: m.GeneralizedBoxIoU(dtype), tv.generalized_box_iou),
    "giou_loss": degenerate_case(lambda m, dtype: m.GeneralizedBoxIoULoss("none", 1e-7, dtype),
                                 tv.generalized_box_iou_loss),
    "diou": degenerate_case(lambda m, dtype: m.DistanceBoxIoU(1e-7, dtype), tv.distance_box_iou),
    "ciou": degenerate_case(lambda m, dtype: m.CompleteBoxIoU(1e-7, dtype), tv.complete_box_iou),
}


@pytest.mark.parametrize("name", list(DEGENERATE_CASES))
def test_degenerate_boxes_as_torchvision(name):
    """Ties (half the gradient to each side), touching edges (torch 2.14's clamp passes no gradient at 0),
    zero-area and inverted boxes: every tree gives torchvision's values, NaN positions and
    gradients (two identical points: IoU and GIoU 0/0 = NaN; the loss's eps makes it 1)."""
    case = DEGENERATE_CASES[name]
    inputs = case.inputs("float64", np.random.default_rng(0))
    results = run_all_trees(case, "float64", inputs, draw_by_shape(7))
    results["torchvision"] = run_reference(case, "torchvision", {}, inputs, draw_by_shape(7), "float64")
    assert_no_failures(compare_results(results, "float64", compare_special), f"degenerate {name}")
    outputs = results["torchvision"].outputs[0]
    if name == "giou_loss":
        assert outputs[5] == 1.0, "two identical points: loss 1 - (0/eps - 0/eps)"
    else:
        assert np.isnan(outputs[5, 5]) and outputs[0, 0] == 1.0, "identical points: 0/0; identical boxes: 1"


def draw_by_shape(seed):
    """Cotangents from the outputs' shapes, the same for every implementation."""
    def draw(float_outputs):
        rng = np.random.default_rng(seed)
        return [rng.standard_normal(np.shape(out)) for out in float_outputs]
    return draw


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 4), m=st.integers(0, 4), seed=st.integers(0, 2**16),
       which=st.sampled_from(["iou", "giou", "giou_loss", "diou", "ciou"]))
def test_fuzz_integer_boxes_against_torchvision(n, m, seed, which):
    """Integer corners in [0, 3]: ties, touching edges, zero-area and inverted boxes are frequent.
    The NumPy tree's values and hand-written gradients equal torchvision's autograd, NaN included."""
    rng = np.random.default_rng(seed)
    m = n if which == "giou_loss" else m
    inputs = {"boxes1": rng.integers(0, 4, (n, 4)).astype(np.float64),
              "boxes2": rng.integers(0, 4, (m, 4)).astype(np.float64)}
    case = DEGENERATE_CASES[which]
    cotangents = draw_by_shape(seed)
    ours = run_numpy(case.build(get_module("numpy", MODULE), "float64", rng), inputs, PAIRS, cotangents)
    theirs = case.references["torchvision"]({}, inputs, cotangents, "float64")
    assert_no_failures(compare_results({"numpy": ours, "torchvision": theirs}, "float64", compare_special), f"fuzz {which}")


def test_module_used_twice_sums_gradients():
    """One BoxIoU against two sets of boxes, backwards in reverse order: torch autograd's sums."""
    rng = np.random.default_rng(5)
    a, b, c = (random_boxes(rng, (k,)) for k in (3, 2, 4))
    g1, g2 = rng.standard_normal((3, 2)), rng.standard_normal((3, 4))
    iou = get_module("numpy", MODULE).BoxIoU("cxcywh", "float64")
    iou(a, b), iou(a, c)
    grad_a2, grad_c = iou.backward(g2)
    grad_a1, grad_b = iou.backward(g1)
    ta, tb, tc = (torch.tensor(x, requires_grad=True) for x in (a, b, c))
    ((tv.box_iou(ta, tb, fmt="cxcywh") * torch.from_numpy(g1)).sum()
     + (tv.box_iou(ta, tc, fmt="cxcywh") * torch.from_numpy(g2)).sum()).backward()
    for ours, theirs in ((grad_a1 + grad_a2, ta), (grad_b, tb), (grad_c, tc)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-12, atol=1e-14)


def tree_tensor(tree, array):
    import tensorflow as tf
    return {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}[tree](array)


@pytest.mark.parametrize("tree", TREES)
def test_functions_match_torchvision(tree):
    """torchvision's function names and signatures in every tree, forward values equal."""
    m = get_module(tree, MODULE)
    rng = np.random.default_rng(6)
    a, b = random_boxes(rng, (3,)), random_boxes(rng, (4,))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    pairs = [
        (m.box_convert(tree_tensor(tree, a), "xyxy", "cxcywh"), tv.box_convert(ta, "xyxy", "cxcywh")),
        (m.box_area(tree_tensor(tree, a), "xywh"), tv.box_area(ta, fmt="xywh")),
        (m.box_iou(tree_tensor(tree, a), tree_tensor(tree, b)), tv.box_iou(ta, tb)),
        (m.generalized_box_iou(tree_tensor(tree, a), tree_tensor(tree, b)), tv.generalized_box_iou(ta, tb)),
        (m.generalized_box_iou_loss(tree_tensor(tree, a), tree_tensor(tree, b[:3]), "mean"),
         tv.generalized_box_iou_loss(ta, tb[:3], "mean")),
        (m.distance_box_iou(tree_tensor(tree, a), tree_tensor(tree, b), 1e-3), tv.distance_box_iou(ta, tb, 1e-3)),
        (m.complete_box_iou(tree_tensor(tree, a), tree_tensor(tree, b), 1e-3), tv.complete_box_iou(ta, tb, 1e-3)),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("in_fmt", BOX_FORMATS)
@pytest.mark.parametrize("out_fmt", BOX_FORMATS)
def test_keras_convert_format(in_fmt, out_fmt):
    """Keras 3's ``convert_format`` (``center_xywh`` is ``cxcywh``; it casts to its ``dtype``
    argument, float32 unless told) gives the TF tree's conversions."""
    from keras.utils import bounding_boxes
    boxes = random_boxes(np.random.default_rng(7), (2, 3), in_fmt)
    theirs = bounding_boxes.convert_format(boxes, KERAS_FORMATS[in_fmt], KERAS_FORMATS[out_fmt], dtype="float64")
    ours = get_module("tf", MODULE).box_convert(tree_tensor("tf", boxes), in_fmt, out_fmt)
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), rtol=1e-9, atol=1e-12)


def test_keras_compute_iou_adds_epsilon():
    """Keras' ``compute_iou`` is ``inter / (union + 1e-7)`` computed in float32 whatever its input
    (it calls ``convert_format`` with the default dtype): within the float32 tolerance of the
    trees for boxes of ordinary size, but two identical boxes of side 1e-3 get 1e-6 / 1.1e-6 = 0.909
    instead of 1."""
    from keras.utils import bounding_boxes
    rng = np.random.default_rng(8)
    a, b = random_boxes(rng, (3,), dtype="float32"), random_boxes(rng, (4,), dtype="float32")
    ours = get_module("tf", MODULE).box_iou(tree_tensor("tf", a), tree_tensor("tf", b))
    np.testing.assert_allclose(np.asarray(bounding_boxes.compute_iou(a, b, "xyxy")), ours.numpy(), rtol=1e-4, atol=1e-6)
    tiny = np.array([[0.0, 0.0, 1e-3, 1e-3]], np.float32)
    assert get_module("tf", MODULE).box_iou(tree_tensor("tf", tiny), tree_tensor("tf", tiny)).numpy()[0, 0] == 1.0
    np.testing.assert_allclose(np.asarray(bounding_boxes.compute_iou(tiny, tiny, "xyxy"))[0, 0], 1e-6 / 1.1e-6, rtol=1e-4)


OWNER_ERRORS = [
    ("format", lambda m: m.BoxConvert("xyxy", "yxyx", "float64"), ValueError,
     "BoxConvert: out_fmt must be one of ('xyxy', 'xywh', 'cxcywh'), got 'yxyx'"),
    ("area format", lambda m: m.BoxArea("corners", "float64"), ValueError,
     "BoxArea: fmt must be one of ('xyxy', 'xywh', 'cxcywh'), got 'corners'"),
    ("reduction", lambda m: m.GeneralizedBoxIoULoss("max", 1e-7, "float64"), ValueError,
     "GeneralizedBoxIoULoss: reduction must be one of ('none', 'mean', 'sum'), got 'max'"),
    ("eps", lambda m: m.CompleteBoxIoU(-1e-7, "float64"), ValueError, "CompleteBoxIoU: eps must be > 0, got -1e-07"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, make, error, message", OWNER_ERRORS, ids=[row[0] for row in OWNER_ERRORS])
def test_bad_arguments(tree, what, make, error, message):
    assert_raises_exactly(error, message, lambda: make(get_module(tree, MODULE)))


BAD_INPUTS = [
    ("last axis", "box_iou", ((3, 5), (2, 4)), np.float64, ValueError,
     "BoxInterUnion: boxes1 must have shape (..., 4), got (3, 5)"),
    ("one box", "box_iou", ((4,), (2, 4)), np.float64, ValueError,
     "BoxInterUnion: boxes1 and boxes2 must have shapes (..., N, 4) and (..., M, 4) with the same leading axes, "
     "got (4,) and (2, 4)"),
    ("leading axes", "generalized_box_iou", ((2, 3, 4), (3, 2, 4)), np.float64, ValueError,
     "BoxInterUnion: boxes1 and boxes2 must have shapes (..., N, 4) and (..., M, 4) with the same leading axes, "
     "got (2, 3, 4) and (3, 2, 4)"),
    ("loss shapes", "generalized_box_iou_loss", ((3, 4), (1, 4)), np.float64, ValueError,
     "GeneralizedBoxIoULoss: boxes1 and boxes2 are paired element by element and must have one shape (..., 4), "
     "got (3, 4) and (1, 4)"),
    ("integers", "box_iou", ((3, 4), (2, 4)), np.int64, TypeError,
     "box_iou: boxes1 must have dtype float32 or float64, got int64"),
    ("area shape", "box_area", ((3, 2),), np.float32, ValueError, "BoxArea: boxes must have shape (..., 4), got (3, 2)"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, function, shapes, dtype, error, message", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_inputs(tree, what, function, shapes, dtype, error, message):
    arrays = [tree_tensor(tree, np.zeros(shape, dtype)) for shape in shapes]
    assert_raises_exactly(error, message, lambda: getattr(get_module(tree, MODULE), function)(*arrays))


@pytest.mark.parametrize("tree", TREES)
def test_module_refuses_other_dtype(tree):
    module = get_module(tree, MODULE).BoxIoU("xyxy", "float64")
    boxes = tree_tensor(tree, np.zeros((2, 4), np.float32))
    assert_raises_exactly(TypeError, "BoxInterUnion: boxes1 must have dtype float64, got float32 (cast it explicitly)",
                          lambda: module(boxes, boxes))
