"""Day 59: non-maximum suppression in three trees, kept indices compared exactly (int64).

References: ``torchvision.ops.nms`` and ``batched_nms``; ``tf.image.non_max_suppression`` (boxes
``[y1, x1, y2, x2]``, converted by :func:`xyxy_to_yxyx`; ``max_output_size`` = N; its int32 result
cast to int64). Where TF differs — NaN and -inf scores dropped, inverted boxes normalized, a
float32 threshold — the test says so and checks it. Every exact-threshold case uses dyadic
coordinates, so the IoU is exactly representable (0.5 = 8/16).
"""
import numpy as np
import pytest
import torch
import torchvision.ops as tv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_raises_exactly, check_parity, tf_functional_reference,
                                  torch_functional_reference)

MODULE = "modern.nms"
THRESHOLD = 0.5


def xyxy_to_yxyx(boxes):
    """Corner boxes ``(N, 4)`` as ``tf.image.non_max_suppression`` takes them: ``[y1, x1, y2, x2]``."""
    import tensorflow as tf
    return tf.gather(boxes, [1, 0, 3, 2], axis=-1)


def tf_nms(boxes, scores, iou_threshold, max_output_size=None):
    """``tf.image.non_max_suppression`` on corner boxes, its int32 indices as int64. Its kernel
    takes float32 (or half) only: the hand-built float64 boxes here are dyadic, exact in float32."""
    import tensorflow as tf
    size = int(boxes.shape[0]) if max_output_size is None else max_output_size
    boxes, scores = tf.cast(boxes, tf.float32), tf.cast(scores, tf.float32)
    return tf.cast(tf.image.non_max_suppression(xyxy_to_yxyx(boxes), scores, size, iou_threshold), tf.int64)


def clustered_boxes(rng, count, dtype):
    """``count`` corner boxes jittered around three centres, so that many overlap."""
    centres = np.array([[2.0, 2.0], [6.0, 3.0], [3.0, 7.0]])[rng.integers(0, 3, count)]
    half = rng.uniform(0.8, 1.6, (count, 2))
    jitter = rng.normal(0.0, 0.5, (count, 2))
    return np.concatenate((centres + jitter - half, centres + jitter + half), axis=1).astype(dtype)


def nms_case(inputs, tf_reference=False, threshold=THRESHOLD):
    """A forward-only case: ``inputs(dtype, rng)`` gives ``boxes``, ``scores``; torchvision (and TF) as references."""
    references = {"torchvision": torch_functional_reference(lambda b, s: tv.nms(b, s, threshold), (), forward_only=True)}
    if tf_reference:
        references["tf.image"] = tf_functional_reference(lambda b, s: tf_nms(b, s, threshold), (), forward_only=True)
    return Case(MODULE, lambda m, dtype, rng: lambda b, s: m.nms(b, s, threshold), inputs, (), references=references,
                forward_only=True, output_names=("keep",))


def batched_case(inputs):
    reference = torch_functional_reference(lambda b, s, i: tv.batched_nms(b, s, i, THRESHOLD), (), forward_only=True)
    return Case(MODULE, lambda m, dtype, rng: lambda b, s, i: m.batched_nms(b, s, i, THRESHOLD), inputs, (),
                references={"torchvision": reference}, forward_only=True, output_names=("keep",))


def random_inputs(count=30):
    def inputs(dtype, rng):
        return {"boxes": clustered_boxes(rng, count, dtype), "scores": rng.random(count).astype(dtype)}
    return inputs


def tied_inputs(dtype, rng):
    """Two clusters of identical boxes with equal scores, and disjoint boxes with equal scores: the
    stable order decides which index survives."""
    boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4], [8, 8, 9, 9], [10, 10, 11, 11], [0, 0, 4, 4]], dtype)
    return {"boxes": boxes, "scores": np.array([0.5, 0.75, 0.75, 0.5, 0.75, 0.5], dtype)}


def exact_threshold_inputs(dtype, rng):
    """Dyadic boxes: boxes 1 and 2 lie inside box 0 with half its area (IoU exactly 8/16 = 0.5;
    with each other 4/12), box 3 has IoU 10/16 = 0.625: at threshold 0.5 boxes 1 and 2 stay, box 3 goes."""
    boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 2], [1, 0, 3, 4], [0, 0, 4, 2.5]], dtype)
    return {"boxes": boxes, "scores": np.array([0.875, 0.75, 0.625, 0.5], dtype)}


def empty_inputs(dtype, rng):
    return {"boxes": np.zeros((0, 4), dtype), "scores": np.zeros((0,), dtype)}


def batched_inputs(dtype, rng):
    count = 30
    return {"boxes": clustered_boxes(rng, count, dtype), "scores": rng.random(count).astype(dtype),
            "idxs": rng.integers(0, 3, count).astype(np.int64)}


NMS_INPUTS = {"random": random_inputs(), "ties": tied_inputs, "exact_threshold": exact_threshold_inputs,
              "empty": empty_inputs}
CASES = {
    **{name: nms_case(inputs) for name, inputs in NMS_INPUTS.items()},
    "batched": batched_case(batched_inputs),
    "batched_empty": batched_case(lambda dtype, rng: {**empty_inputs(dtype, rng), "idxs": np.zeros((0,), np.int64)}),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    """Kept indices equal, exactly and as int64, in the three trees and torchvision."""
    check_parity(CASES[name], dtype)


@pytest.mark.parametrize("name", list(NMS_INPUTS))
def test_parity_with_tf_image_float32(name):
    """``tf.image.non_max_suppression`` (float32 and half only) keeps the same indices too."""
    check_parity(nms_case(NMS_INPUTS[name], tf_reference=True), "float32")


def tree_tensor(tree, array):
    import tensorflow as tf
    return {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}[tree](array)


def run_trees(function, *arrays, threshold=THRESHOLD):
    """``function`` of every tree on the same arrays, as NumPy int64 arrays."""
    return {tree: np.asarray(getattr(get_module(tree, MODULE), function)(*(tree_tensor(tree, a) for a in arrays), threshold))
            for tree in TREES}


def assert_trees_keep(expected, function, *arrays, threshold=THRESHOLD):
    for tree, keep in run_trees(function, *arrays, threshold=threshold).items():
        assert keep.dtype == np.int64 and keep.tolist() == expected, f"{tree}: {keep.tolist()} != {expected}"


def test_exact_threshold_is_not_suppressed():
    """IoU equal to the threshold stays (torchvision's ``>``, and TF's too); the threshold is a
    double: 0.5 - 1e-12 rounds to 0.5 in float32, yet float32 boxes with IoU 0.5 are suppressed by
    it in torchvision and the trees (compared in float64), while TF takes the threshold as float32
    and keeps them."""
    arrays = exact_threshold_inputs("float32", None)
    boxes, scores = arrays["boxes"], arrays["scores"]
    assert_trees_keep([0, 1, 2], "nms", boxes, scores)
    assert tv.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).tolist() == [0, 1, 2]
    assert tf_nms(boxes, scores, 0.5).numpy().tolist() == [0, 1, 2]
    below = 0.5 - 1e-12
    assert np.float32(below) == np.float32(0.5)
    assert_trees_keep([0], "nms", boxes, scores, threshold=below)
    assert tv.nms(torch.from_numpy(boxes), torch.from_numpy(scores), below).tolist() == [0]
    assert tf_nms(boxes, scores, below).numpy().tolist() == [0, 1, 2], "TF: a float32 threshold"


def test_score_ties_keep_index_order():
    """Equal scores are visited in index order (torchvision's stable sort; TF agrees here), so of
    identical boxes 0, 1, 2, 5 the first of the two scored 0.75, index 1, survives."""
    arrays = tied_inputs("float64", None)
    expected = [1, 4, 3]
    assert_trees_keep(expected, "nms", arrays["boxes"], arrays["scores"])
    assert tv.nms(torch.from_numpy(arrays["boxes"]), torch.from_numpy(arrays["scores"]), THRESHOLD).tolist() == expected
    assert tf_nms(arrays["boxes"], arrays["scores"], THRESHOLD).numpy().tolist() == expected


def test_nan_and_infinite_scores():
    """torchvision visits NaN scores first (torch's sort puts NaN above +inf), then +inf, ..., -inf;
    TF drops NaN and -inf scores (its ``score_threshold`` is -inf, compared with ``>``)."""
    boxes = np.array([[3.0 * i, 0, 3.0 * i + 2, 2] for i in range(6)])
    scores = np.array([np.nan, 0.9, np.inf, -np.inf, np.nan, 0.1])
    expected = [0, 4, 2, 1, 5, 3]
    assert_trees_keep(expected, "nms", boxes, scores)
    assert tv.nms(torch.from_numpy(boxes), torch.from_numpy(scores), THRESHOLD).tolist() == expected
    assert tf_nms(boxes, scores, THRESHOLD).numpy().tolist() == [2, 1, 5]


def test_nan_coordinates_and_zero_area_boxes_suppress_nothing():
    """A NaN IoU compares False: a box with a NaN coordinate, and two identical points (0/0),
    neither suppress nor are suppressed — in torchvision and in the trees. TF returns IoU 0 for a
    zero-area box: the same kept set."""
    boxes = np.array([[0, 0, 4, 4], [0, 0, np.nan, 4], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 4, 3.5]])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    expected = [0, 1, 2, 3]
    assert_trees_keep(expected, "nms", boxes, scores)
    assert tv.nms(torch.from_numpy(boxes), torch.from_numpy(scores), THRESHOLD).tolist() == expected


def test_inverted_boxes_as_torchvision_not_tf():
    """An inverted box (x2 < x1) has a negative area in torchvision and the trees, so its IoU with
    its mirror image is not > 0.3; TF sorts each box's corners first and suppresses it."""
    boxes, scores = np.array([[4.0, 4, 0, 0], [0, 0, 4, 2]]), np.array([0.9, 0.8])
    assert_trees_keep([0, 1], "nms", boxes, scores, threshold=0.3)
    assert tv.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.3).tolist() == [0, 1]
    assert tf_nms(boxes, scores, 0.3).numpy().tolist() == [0]


def test_tf_max_output_size_is_a_prefix():
    """TF stops after ``max_output_size`` boxes: the first k of the full result."""
    rng = np.random.default_rng(3)
    boxes, scores = clustered_boxes(rng, 20, "float32"), rng.random(20).astype(np.float32)
    full = run_trees("nms", boxes, scores)["numpy"]
    assert tf_nms(boxes, scores, THRESHOLD, max_output_size=2).numpy().tolist() == full[:2].tolist()


def test_batched_nms_with_negative_coordinates():
    """Two boxes of different classes that overlap: per-class NMS keeps both (the trees, and
    torchvision's per-class path used above 1000 boxes); torchvision's coordinate-offset trick,
    used for small inputs, shifts class 1 by max coordinate + 1 = 1, which is not enough when
    coordinates are negative, and suppresses a box of another class."""
    boxes, scores, idxs = np.array([[-10.0, -10, 0, 0], [-9, -10, 0, 0]]), np.array([0.9, 0.8]), np.array([0, 1])
    assert_trees_keep([0, 1], "batched_nms", boxes, scores, idxs)
    tensors = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(idxs)
    assert tv.batched_nms(*tensors, THRESHOLD).tolist() == [0]
    from torchvision.ops.boxes import _batched_nms_vanilla
    assert _batched_nms_vanilla(*tensors, THRESHOLD).tolist() == [0, 1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count=st.integers(0, 12), seed=st.integers(0, 2**16), integer=st.booleans(),
       threshold=st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 0.7, 1.0]))
def test_fuzz_same_kept_indices_as_torchvision(count, seed, integer, threshold):
    """Random boxes (integer corners: ties, exact thresholds, zero-area and inverted boxes; or
    clustered floats), scores with ties, three classes: every tree keeps torchvision's indices, for
    ``nms`` and ``batched_nms``."""
    rng = np.random.default_rng(seed)
    if integer:
        boxes = rng.integers(0, 6, (count, 4)).astype(np.float64)
    else:
        boxes = clustered_boxes(rng, count, "float64")
    scores = rng.integers(0, 4, count) / 4.0
    idxs = rng.integers(0, 3, count)
    tensors = torch.from_numpy(boxes), torch.from_numpy(scores)
    with np.errstate(all="ignore"):
        assert_trees_keep(tv.nms(*tensors, threshold).tolist(), "nms", boxes, scores, threshold=threshold)
        if boxes.size == 0 or boxes.min() >= 0:
            # torchvision's offset trick is per-class NMS for non-negative coordinates.
            expected = tv.batched_nms(*tensors, torch.from_numpy(idxs), threshold).tolist()
            assert_trees_keep(expected, "batched_nms", boxes, scores, idxs, threshold=threshold)


BAD_INPUTS = [
    ("one box", "nms", (np.zeros(4), np.zeros(1)), ValueError, "nms: boxes must have 2 dimensions, got shape (4,)"),
    ("five numbers", "nms", (np.zeros((3, 5)), np.zeros(3)), ValueError, "nms: boxes must have shape (..., 4), got (3, 5)"),
    ("score count", "nms", (np.zeros((3, 4)), np.zeros(2)), ValueError, "nms: scores must have shape (3,), got (2,)"),
    ("score dtype", "nms", (np.zeros((3, 4)), np.zeros(3, np.float32)), TypeError,
     "nms: scores must have dtype float64, got float32 (cast it explicitly)"),
    ("integer boxes", "nms", (np.zeros((3, 4), np.int64), np.zeros(3)), TypeError,
     "nms: boxes must have dtype float32 or float64, got int64"),
    ("float classes", "batched_nms", (np.zeros((3, 4)), np.zeros(3), np.zeros(3)), TypeError,
     "batched_nms: idxs must have an integer dtype (int32 or int64), got float64"),
    ("class count", "batched_nms", (np.zeros((3, 4)), np.zeros(3), np.zeros(4, np.int64)), ValueError,
     "batched_nms: idxs must have shape (3,), got (4,)"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, function, arrays, error, message", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_inputs(tree, what, function, arrays, error, message):
    tensors = [tree_tensor(tree, a) for a in arrays]
    assert_raises_exactly(error, message, lambda: getattr(get_module(tree, MODULE), function)(*tensors, THRESHOLD))


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("threshold, error, message", [
    (float("nan"), ValueError, "nms: iou_threshold must be finite, got nan"),
    ("0.5", TypeError, "nms: iou_threshold must be a real number, got '0.5'"),
])
def test_bad_threshold(tree, threshold, error, message):
    boxes, scores = tree_tensor(tree, np.zeros((2, 4))), tree_tensor(tree, np.zeros(2))
    assert_raises_exactly(error, message, lambda: get_module(tree, MODULE).nms(boxes, scores, threshold))
