"""Day 63: COCO mean average precision, written once in ``ml100.detection_metrics`` (a neutral topic:
sorting and counting, no tensors to differentiate, so no trees and no gradients).

Reference: ``torchmetrics.detection.MeanAveragePrecision(iou_type="bbox")`` with its default
``pycocotools`` backend (``faster_coco_eval`` is not installed). torchmetrics returns its summaries
as float32 tensors, so those are compared at the float32 tolerance; the float64 comparison is of
the table they are averaged from, ``extended_summary=True``'s ``precision`` (T, R, K, A, M) and
``recall`` (T, K, A, M) at M = the last detection cap. torchmetrics' default thresholds are a
float32 ``torch.linspace``, not pycocotools' float64 ones: the tests pass pycocotools' explicitly,
and ``test_torchmetrics_default_thresholds_are_float32`` shows where the difference matters.
"""
import numpy as np
import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools.cocoeval import Params
from torchmetrics.detection import MeanAveragePrecision

from ml100.detection_metrics import (COCO_AREA_RANGES, COCO_IOU_THRESHOLDS, COCO_RECALL_THRESHOLDS,
                                     all_point_average_precision, box_iou, interpolated_precision,
                                     mean_average_precision, precision_recall_curve, evaluate_image,
                                     voc_average_precision)
from parity_tests.harness import assert_no_failures, assert_raises_exactly, compare_exact, compare_tensors

#: Summaries torchmetrics returns as one float32 each.
SUMMARIES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100", "mar_small", "mar_medium",
             "mar_large")
#: 51 of the 101 recall points lie at or below recall 0.5: the AP of a class that stops at half recall.
HALF = 51 / 101


def to_torchmetrics(items: list[dict]) -> list[dict]:
    """Our per-image dicts of NumPy arrays -> torchmetrics' dicts of tensors (same keys, same
    dtypes: float64 boxes stay float64 through its ``box_convert`` to xywh)."""
    return [{key: torch.as_tensor(value) for key, value in item.items()} for item in items]


def torchmetrics_map(preds, targets, max_detections: int = 100, coco_thresholds: bool = True) -> dict:
    """torchmetrics' result with per-class metrics and the extended (precision, recall) table;
    ``coco_thresholds`` passes pycocotools' float64 thresholds instead of torchmetrics' float32 ones.
    Its three detection caps are all ``max_detections`` (it wants three and sorts them), so its
    table's last slice and its ``mar_{max_detections}`` are at our cap."""
    thresholds = {"iou_thresholds": COCO_IOU_THRESHOLDS.tolist(), "rec_thresholds": COCO_RECALL_THRESHOLDS.tolist()}
    metric = MeanAveragePrecision(iou_type="bbox", class_metrics=True, extended_summary=True,
                                  max_detection_thresholds=[max_detections] * 3,
                                  **(thresholds if coco_thresholds else {}))
    # The caps are exercised on purpose: no warning that they drop detections.
    metric.warn_on_many_detections = False
    metric.update(to_torchmetrics(preds), to_torchmetrics(targets))
    return metric.compute()


def assert_matches_torchmetrics(ours: dict, theirs: dict, summaries: bool = True) -> None:
    """The (precision, recall) table in float64, the summaries and per-class values in float32
    (torchmetrics' dtype), the classes exactly."""
    failures = []
    if "precision" in theirs:
        compare_tensors("precision", "ours vs torchmetrics", ours["precision"], theirs["precision"].numpy()[..., -1],
                        "float64", failures)
        compare_tensors("recall", "ours vs torchmetrics", ours["recall"], theirs["recall"].numpy()[..., -1],
                        "float64", failures)
    compare_exact("classes", "ours vs torchmetrics", ours["classes"], theirs["classes"].numpy().reshape(-1).astype(np.int64), failures)
    if summaries:
        for key in SUMMARIES + ("map_per_class", "mar_100_per_class"):
            theirs_value = theirs[key].numpy().reshape(-1)
            # No classes at all (no GT, no detections): both give empty per-class arrays.
            ours_value = np.asarray(ours[key], dtype=np.float32).reshape(-1)
            compare_tensors(key, "ours vs torchmetrics", ours_value, theirs_value, "float32", failures)
    assert_no_failures(failures, "mean_average_precision vs torchmetrics")


def image(gt_boxes=(), gt_labels=(), det_boxes=(), det_scores=(), det_labels=(), iscrowd=None) -> tuple[dict, dict]:
    """One image's (pred, target) from plain lists."""
    pred = {"boxes": np.array(det_boxes, dtype=np.float64).reshape(-1, 4),
            "scores": np.array(det_scores, dtype=np.float64), "labels": np.array(det_labels, dtype=np.int64)}
    target = {"boxes": np.array(gt_boxes, dtype=np.float64).reshape(-1, 4), "labels": np.array(gt_labels, dtype=np.int64)}
    if iscrowd is not None:
        target["iscrowd"] = np.array(iscrowd, dtype=np.int64)
    return pred, target


def images(*pairs) -> tuple[list[dict], list[dict]]:
    return [pred for pred, _ in pairs], [target for _, target in pairs]


A, B, FAR = [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]
#: Boxes of one detection with equal IoU 80/130 to two GTs (both 8 wide inside), and one that only fits the first.
LEFT, RIGHT, BETWEEN, INSIDE_LEFT = [0, 0, 10, 10], [5, 0, 15, 10], [2, 0, 13, 10], [0, 0, 9, 10]
CROWD, IN_CROWD_1, IN_CROWD_2 = [20, 20, 40, 40], [20, 20, 30, 30], [30, 30, 40, 40]

#: name -> (preds, targets, keyword arguments, the values computed by hand).
HAND_CASES = {
    "one perfect detection": (*images(image([A], [0], [A], [0.9], [0])), {}, {"map": 1.0, "map_50": 1.0, "map_75": 1.0}),
    # Precision 1/2 at the only recall point, 1: the envelope is 1/2 at all 101 points.
    "false positive ranked first": (*images(image([A], [0], [FAR, A], [0.9, 0.8], [0, 0])), {},
                                    {"map": 0.5, "map_50": 0.5}),
    "two classes, one missed": (*images(image([A, B], [0, 1], [A], [0.9], [0])), {},
                                {"map": 0.5, "map_per_class": [1.0, 0.0]}),
    # Recall 1/2, 1/2, 1 with precision 1, 1/2, 2/3: the envelope is 1 up to recall 0.5, then 2/3.
    "duplicate detections": (*images(image([A, B], [0, 0], [A, A, B], [0.9, 0.8, 0.7], [0, 0, 0])), {},
                             {"map": HALF + (1 - HALF) * 2 / 3}),
    # Class 1 has a detection and no GT: AP -1 (absent), left out of the mean.
    "class with detections but no GT": (*images(image([A], [0], [A, FAR], [0.9, 0.95], [0, 1])), {},
                                        {"map": 1.0, "map_per_class": [1.0, -1.0]}),
    # IoU 50/100 = 0.5 exactly: a match at t = 0.5 (>=), at no other threshold.
    "IoU exactly 0.5": (*images(image([A], [0], [[0, 0, 10, 5]], [0.9], [0])), {},
                        {"map": 0.1, "map_50": 1.0, "map_75": 0.0}),
    # IoU 75/100 = 0.75 exactly: matches at 0.50 ... 0.75, six thresholds.
    "IoU exactly 0.75": (*images(image([A], [0], [[0, 0, 10, 7.5]], [0.9], [0])), {},
                         {"map": 0.6, "map_50": 1.0, "map_75": 1.0}),
    "empty images": (*images(image(), image([A], [0], [A], [0.9], [0]), image()), {}, {"map": 1.0}),
    "false positive in another image, ranked first": (
        *images(image([A], [0], [A], [0.8], [0]), image([], [], [A], [0.9], [0])), {}, {"map": 0.5}),
    "no predictions at all": (*images(image([A, B], [0, 1]), image([FAR], [0])), {},
                              {"map": 0.0, "map_50": 0.0, "map_per_class": [0.0, 0.0]}),
    # Images with no box at all: no classes, so empty per-class arrays (torchmetrics' too) and -1.
    "no box in any image": (*images(image(), image()), {}, {"map": -1.0, "map_per_class": [], "mar_100_per_class": []}),
    "no ground truth at all": (*images(image([], [], [A], [0.9], [3])), {},
                               {"map": -1.0, "map_50": -1.0, "map_per_class": [-1.0]}),
    # Two detections inside a crowd region are ignored (IoU with a crowd = overlap / detection area = 1).
    "crowd region absorbs detections": (
        *images(image([A, CROWD], [0, 0], [IN_CROWD_1, IN_CROWD_2, A], [0.95, 0.9, 0.8], [0, 0, 0], iscrowd=[0, 1])), {},
        {"map": 1.0}),
    # The same boxes with the region a regular GT: two false positives first (IoU 1/4), recall 1/2 at precision 1/3.
    "the same region as a regular GT": (
        *images(image([A, CROWD], [0, 0], [IN_CROWD_1, IN_CROWD_2, A], [0.95, 0.9, 0.8], [0, 0, 0])), {},
        {"map": HALF / 3}),
    # Equal scores keep their input order (a stable sort): the false positive first ...
    "equal scores, false positive listed first": (*images(image([A], [0], [FAR, A], [0.5, 0.5], [0, 0])), {},
                                                  {"map": 0.5}),
    # ... or the true positive first.
    "equal scores, true positive listed first": (*images(image([A], [0], [A, FAR], [0.5, 0.5], [0, 0])), {},
                                                 {"map": 1.0}),
    # Equal IoU with two GTs: the first detection takes the last GT listed (RIGHT), so the second finds LEFT.
    "equal IoU, the last GT wins": (
        *images(image([LEFT, RIGHT], [0, 0], [BETWEEN, INSIDE_LEFT], [0.9, 0.8], [0, 0])), {},
        {"map_50": 1.0, "map_75": HALF / 2}),
    # Listed the other way, the first detection takes LEFT and the second, which fits only LEFT, is a false positive.
    "equal IoU, listed the other way": (
        *images(image([RIGHT, LEFT], [0, 0], [BETWEEN, INSIDE_LEFT], [0.9, 0.8], [0, 0])), {},
        {"map_50": HALF, "map_75": HALF / 2}),
    # One detection per image and class: the second GT is never found.
    "max_detections=1": (*images(image([A, B], [0, 0], [A, B], [0.9, 0.8], [0, 0])), {"max_detections": 1},
                         {"map": HALF}),
}


@pytest.mark.parametrize("name", HAND_CASES)
def test_hand_computed_cases_and_torchmetrics(name):
    """Each case's summaries equal the hand computation (float64) and torchmetrics (float32, plus its
    float64 precision/recall table); with a detection cap other than 100 only the table is compared
    (see ``test_torchmetrics_summaries_need_a_cap_of_100``)."""
    preds, targets, kwargs, expected = HAND_CASES[name]
    ours = mean_average_precision(preds, targets, **kwargs)
    failures = []
    for key, value in expected.items():
        compare_tensors(key, "ours vs by hand", np.asarray(ours[key], dtype=np.float64), np.asarray(value, dtype=np.float64),
                        "float64", failures)
    assert_no_failures(failures, name)
    max_detections = kwargs.get("max_detections", 100)
    theirs = torchmetrics_map(preds, targets, max_detections)
    assert_matches_torchmetrics(ours, theirs, summaries=max_detections == 100)


def test_no_images_at_all_is_minus_one_everywhere():
    """torchmetrics returns -1 for every summary when it was given no image; so do we."""
    ours, theirs = mean_average_precision([], []), torchmetrics_map([], [])
    assert all(ours[key] == -1.0 and float(theirs[key]) == -1.0 for key in SUMMARIES)
    # torchmetrics has no per-class entries then; ours are empty.
    assert "map_per_class" not in theirs and ours["map_per_class"].shape == (0,) and ours["classes"].shape == (0,)


def test_default_thresholds_and_areas_are_pycocotools_params():
    params = Params(iouType="bbox")
    np.testing.assert_array_equal(COCO_IOU_THRESHOLDS, params.iouThrs)
    np.testing.assert_array_equal(COCO_RECALL_THRESHOLDS, params.recThrs)
    assert [list(r) for r in COCO_AREA_RANGES.values()] == params.areaRng
    assert list(COCO_AREA_RANGES) == params.areaRngLbl


def test_torchmetrics_default_thresholds_are_float32():
    """torchmetrics' default recall points are ``torch.linspace(0, 1, 101)`` in float32: 0.6 is
    0.6000000238 and 0.8 is 0.8000000119, so recalls of exactly 3/5 and 4/5 are "below" them there
    and not in pycocotools. Five GTs found as TP, TP, TP, FP, TP (precision 1 at recall 0.6, 0.8
    at 0.8): the recall point 0.6 reads 1 (pycocotools) or 0.8 (torchmetrics), 0.8 reads 0.8 or 0.
    Passing torchmetrics' float32 thresholds to us reproduces its number."""
    boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(5)]
    detections = boxes[:3] + [FAR, boxes[3]]
    preds, targets = images(image(boxes, [0] * 5, detections, [0.9, 0.8, 0.7, 0.6, 0.5], [0] * 5))
    ours = mean_average_precision(preds, targets)
    theirs = torchmetrics_map(preds, targets, coco_thresholds=False)
    # pycocotools: recall points 0 ... 0.6 (61 of them) at 1, 0.61 ... 0.8 (20) at 0.8, the rest 0.
    assert abs(ours["map"] - (61 + 20 * 0.8) / 101) < 1e-12
    # torchmetrics: 0 ... 0.59 (60) at 1, 0.6 ... 0.79 (20) at 0.8, from 0.8 on 0 (a float32 result).
    assert abs(float(theirs["map"]) - (60 + 20 * 0.8) / 101) < 1e-6
    float32_thresholds = {"iou_thresholds": torch.linspace(0.5, 0.95, 10).tolist(),
                          "recall_thresholds": torch.linspace(0.0, 1.0, 101).tolist()}
    assert_matches_torchmetrics(mean_average_precision(preds, targets, **float32_thresholds), theirs)


def test_torchmetrics_summaries_need_a_cap_of_100():
    """pycocotools' ``summarize`` reads its AP summaries at ``maxDets=100`` literally: with caps
    [1, 10, 2] torchmetrics' ``map`` is -1 though its precision table is filled. Ours summarizes at
    ``max_detections`` (our table equals its table, checked in the hand cases)."""
    preds, targets = HAND_CASES["max_detections=1"][:2]
    theirs = torchmetrics_map(preds, targets, max_detections=2)
    assert float(theirs["map"]) == -1.0 and float(theirs["precision"][0, 0, 0, 0, -1]) > 0
    assert mean_average_precision(preds, targets, max_detections=2)["map"] == pytest.approx(1.0, abs=1e-12)


def random_boxes(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """``(n, 4)`` xyxy boxes on a coarse grid, so equal IoUs, duplicates and touching boxes happen."""
    corner = rng.integers(0, 10, (n, 2))  # (n, 2)
    size = rng.integers(0, 7, (n, 2))  # (n, 2): zero-width boxes included
    return np.concatenate([corner, corner + size], axis=1) * scale  # (n, 4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1), num_images=st.integers(1, 3), scale=st.sampled_from([1.0, 7.0, 20.0]),
       max_detections=st.sampled_from([1, 2, 100]), crowd=st.booleans())
def test_fuzz_against_torchmetrics(seed, num_images, scale, max_detections, crowd):
    """Random scenes: 0-5 detections and 0-4 GTs per image over 3 classes, scores from 4 values
    (ties), a grid (equal IoUs), all area ranges (scale 20 reaches "large"), crowds, caps."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(num_images):
        num_det, num_gt = rng.integers(0, 6), rng.integers(0, 5)
        preds.append({"boxes": random_boxes(rng, num_det, scale), "scores": rng.integers(1, 5, num_det) / 4,
                      "labels": rng.integers(0, 3, num_det)})
        targets.append({"boxes": random_boxes(rng, num_gt, scale), "labels": rng.integers(0, 3, num_gt)})
        if crowd:
            targets[-1]["iscrowd"] = (rng.random(num_gt) < 0.3).astype(np.int64)
    ours = mean_average_precision(preds, targets, max_detections=max_detections)
    assert_matches_torchmetrics(ours, torchmetrics_map(preds, targets, max_detections), summaries=max_detections == 100)


def test_box_iou_equals_torchvision_box_iou():
    """Random boxes (disjoint, nested, touching) in float64; zero-area boxes: 0 where torchvision
    divides 0 by 0."""
    rng = np.random.default_rng(0)
    boxes1, boxes2 = random_boxes(rng, 7, 1.5), random_boxes(rng, 5, 1.5)
    boxes1 = boxes1[(boxes1[:, 2] > boxes1[:, 0]) & (boxes1[:, 3] > boxes1[:, 1])]
    failures = []
    reference = torchvision.ops.box_iou(torch.from_numpy(boxes1), torch.from_numpy(boxes2)).numpy()  # (n, m)
    compare_tensors("box_iou", "ours vs torchvision", box_iou(boxes1, boxes2), reference, "float64", failures)
    assert_no_failures(failures, "box_iou")
    point = np.array([[1.0, 1.0, 1.0, 1.0]])
    assert np.isnan(torchvision.ops.box_iou(torch.from_numpy(point), torch.from_numpy(point)).item())
    assert box_iou(point, point)[0, 0] == 0.0


def test_crowd_iou_is_the_overlap_over_the_detection():
    detection, crowd = np.array([IN_CROWD_1], dtype=np.float64), np.array([CROWD], dtype=np.float64)
    assert box_iou(detection, crowd)[0, 0] == 0.25
    assert box_iou(detection, crowd, iscrowd=np.array([True]))[0, 0] == 1.0


def test_all_point_ap_by_hand_and_as_the_limit_of_finer_recall_grids():
    """VOC's all-point AP of the duplicates case is 1/2 * 1 + 1/2 * 2/3 = 5/6 (COCO's 101 points:
    0.83498). Sampled at N + 1 evenly spaced recall points, COCO's mean tends to it: each recall
    step moves the sampled mean by at most 1/(N + 1) per step of the curve, plus the end point."""
    preds, targets = HAND_CASES["duplicate detections"][:2]
    voc = voc_average_precision(preds, targets)
    assert voc["map"] == pytest.approx(5 / 6, abs=1e-12)
    assert voc["ap_per_class"].tolist() == pytest.approx([5 / 6], abs=1e-12)
    rng = np.random.default_rng(3)
    preds = [{"boxes": random_boxes(rng, 40, 3.0), "scores": rng.random(40), "labels": np.zeros(40, dtype=np.int64)}]
    targets = [{"boxes": random_boxes(rng, 25, 3.0), "labels": np.zeros(25, dtype=np.int64)}]
    evaluation = evaluate_image(preds[0], targets[0], 0, COCO_AREA_RANGES["all"], COCO_IOU_THRESHOLDS, 100)
    recall, precision, _ = precision_recall_curve([evaluation], len(COCO_IOU_THRESHOLDS))
    exact = all_point_average_precision(recall, precision)  # (T,)
    grid = np.linspace(0.0, 1.0, 100_001)
    sampled = interpolated_precision(recall, precision, grid).mean(axis=1)  # (T,)
    bound = (recall.shape[1] + 2) / len(grid)
    assert np.all(np.abs(sampled - exact) <= bound), (sampled - exact, bound)


def test_refuses_bad_input():
    good_pred, good_target = image([A], [0], [A], [0.9], [0])
    cases = [
        (TypeError, "mean_average_precision: preds must be a list with one dict per image, got dict",
         lambda: mean_average_precision(good_pred, [good_target])),
        (ValueError, "mean_average_precision: preds and targets must describe the same images, got 1 preds and 2 targets",
         lambda: mean_average_precision([good_pred], [good_target, good_target])),
        (ValueError, "mean_average_precision: preds[0] must have keys ('boxes', 'scores', 'labels') (optional ()), "
                     "missing ['scores'], unknown []",
         lambda: mean_average_precision([{"boxes": good_pred["boxes"], "labels": good_pred["labels"]}], [good_target])),
        (ValueError, "mean_average_precision: preds[0]['boxes'] must have shape (..., 4), got (1, 5)",
         lambda: mean_average_precision([{**good_pred, "boxes": np.zeros((1, 5))}], [good_target])),
        (ValueError, "mean_average_precision: targets[0]['boxes'] must have 2 dimensions, got shape (0,)",
         lambda: mean_average_precision([good_pred], [{**good_target, "boxes": np.zeros(0)}])),
        (ValueError, "mean_average_precision: preds[0]['scores'] must have 1 rows (one per box), got 2",
         lambda: mean_average_precision([{**good_pred, "scores": np.array([0.9, 0.8])}], [good_target])),
        (TypeError, "mean_average_precision: targets[0]['labels'] must hold integer numbers, got dtype float64",
         lambda: mean_average_precision([good_pred], [{**good_target, "labels": np.array([0.0])}])),
        (TypeError, "mean_average_precision: preds[0]['labels'] must hold integer numbers, got dtype bool",
         lambda: mean_average_precision([{**good_pred, "labels": np.array([True])}], [good_target])),
        (ValueError, "mean_average_precision: targets[0]['iscrowd'] must hold 0/1 flags, got values [2]",
         lambda: mean_average_precision([good_pred], [{**good_target, "iscrowd": np.array([2])}])),
        (TypeError, "mean_average_precision: preds[0]['scores'] must be a numpy.ndarray, got list",
         lambda: mean_average_precision([{**good_pred, "scores": [0.9]}], [good_target])),
        (ValueError, "mean_average_precision: preds[0]['scores'] must be finite, got NaN or inf",
         lambda: mean_average_precision([{**good_pred, "scores": np.array([np.nan])}], [good_target])),
        (ValueError, "mean_average_precision: targets[0]['boxes'] must be xyxy with x2 >= x1 and y2 >= y1",
         lambda: mean_average_precision([good_pred], [{**good_target, "boxes": np.array([[10.0, 0, 0, 10]])}])),
        (ValueError, "mean_average_precision: iou_thresholds must be a non-empty 1-D list of numbers in [0, 1], got [0.5, 1.5]",
         lambda: mean_average_precision([good_pred], [good_target], iou_thresholds=[0.5, 1.5])),
        (ValueError, "mean_average_precision: max_detections must be an int >= 1, got 0",
         lambda: mean_average_precision([good_pred], [good_target], max_detections=0)),
        (ValueError, "mean_average_precision: class_ids must be a 1-D list of integers, got [0.5]",
         lambda: mean_average_precision([good_pred], [good_target], class_ids=[0.5])),
    ]
    for error, message, call in cases:
        assert_raises_exactly(error, message, call)


def test_class_ids_select_classes_as_coco_cat_ids():
    """``class_ids`` evaluates the listed classes only (pycocotools' ``params.catIds``), in sorted
    order; a listed class nobody mentions is absent (-1)."""
    preds, targets = HAND_CASES["two classes, one missed"][:2]
    result = mean_average_precision(preds, targets, class_ids=[7, 0])
    assert result["classes"].tolist() == [0, 7]
    assert result["map_per_class"].tolist() == pytest.approx([1.0, -1.0], abs=1e-12)
    assert result["map"] == pytest.approx(1.0, abs=1e-12)


def test_equals_torchmetrics_on_the_detectors_own_outputs():
    """Day 62's tiny YOLO (NumPy tree), trained for a few Adam steps on generated scenes, decoded with
    its per-class NMS at a low score threshold (many detections, ties and misses): its detections on
    held-out scenes score the same with ours as with torchmetrics, every summary and the whole table."""
    from ml100.runs import training_progress
    from parity_tests.scripts import load_script

    example = load_script("examples/train_detector.py")
    parser = example.build_parser()
    args = example.check_arguments(parser, parser.parse_args(
        ["--backend", "numpy", "--epochs", "2", "--train-size", "64", "--test-size", "12", "--batch-size", "16",
         "--score-threshold", "0.05"]))
    data = example.make_data(args)
    state = example.build_yolo("numpy", args, np.random.default_rng(0)).canonical_state_dict()
    with training_progress() as progress:
        _, _, found = example.train("numpy", args, state, data, progress)
    truth = [{"boxes": boxes, "labels": labels} for boxes, labels in zip(data["test_boxes"], data["test_labels"])]
    assert sum(len(item["scores"]) for item in found) > len(found), "expected several detections per scene"
    assert_matches_torchmetrics(mean_average_precision(found, truth), torchmetrics_map(found, truth))
