r"""Mean average precision for object detection (day 63): COCO's evaluation, written once.

mAP is bookkeeping over boxes (sort, match, count), with no tensors to differentiate, so it lives
once in the neutral package, in NumPy, instead of three times in the trees. It follows
``pycocotools.cocoeval.COCOeval`` (``iouType="bbox"``), the code behind torchmetrics'
``MeanAveragePrecision``, rule by rule:

1. **Per image and class**, detections are sorted by score, descending, with a *stable* sort
   (``argsort(-score, kind="mergesort")``: equal scores keep their input order), and only the
   first ``max_detections`` are kept (COCO's cap is per image *and class*).
2. **Greedy matching** at each IoU threshold :math:`t`: in that order, each detection takes the
   still-unmatched ground truth (GT) of highest IoU with :math:`\mathrm{IoU}\ge t` (``>=``: a
   detection at exactly IoU 0.5 counts at AP@0.5); on equal IoUs the *last* GT wins. Regular GTs
   come first; only a detection that matches none of them may match an *ignored* GT (a crowd
   region, or a GT outside the area range), and such a detection is ignored — neither true nor
   false positive. A crowd GT can absorb any number of detections, and its IoU is
   :math:`|D\cap G|/|D|`.
3. **Per class**, the detections of all images are merged and sorted by score again (stable, so
   ties keep image order); with :math:`n` the number of regular GTs, the cumulative true and
   false positives give :math:`r_i = TP_i/n` and :math:`p_i = TP_i/(TP_i+FP_i+\epsilon)`
   (:math:`\epsilon` = machine epsilon, so a prefix of ignored detections has precision 0).
4. **Interpolation**: the envelope :math:`\hat p_i=\max_{j\ge i}p_j` is sampled at 101 recall
   points :math:`\rho\in\{0, 0.01, \dots, 1\}` at the first :math:`i` with :math:`r_i\ge\rho`
   (0 if recall never reaches :math:`\rho`); AP is their mean,
   :math:`\mathrm{AP}_t=\frac1{101}\sum_\rho \hat p(\rho)`.
5. **Averages**: ``map`` is the mean over the IoU thresholds 0.50:0.05:0.95 and over the classes
   that have at least one regular GT (a class without GT has AP -1, "absent", and is left out:
   false positives of a class nobody annotated cost nothing); with no such class at all, -1.

:func:`all_point_average_precision` integrates the same envelope exactly (PASCAL VOC 2010+), for
comparison; the 101-point mean is its Riemann sum on a fixed grid.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ml100.checks import check_input, check_int

#: pycocotools' ``Params.iouThrs`` (float64 ``linspace``; torchmetrics' default is a float32
#: ``torch.linspace``, a few 1e-8 off, which changes AP when a recall or IoU lands exactly on one).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: pycocotools' ``Params.recThrs``: 0, 0.01, ..., 1.
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
#: COCO's area ranges in pixels² (both ends included, so an area of exactly 32² is small and medium).
COCO_AREA_RANGES = {"all": (0.0, 1e5 ** 2), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
                    "large": (96.0 ** 2, 1e5 ** 2)}
#: pycocotools caps a threshold of 1 just below it, so a perfect box still matches at t = 1.
MAX_THRESHOLD = 1 - 1e-10
OWNER = "mean_average_precision"


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas :math:`(x_2-x_1)(y_2-y_1)` of ``(n, 4)`` xyxy boxes, ``(n,)``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (n,)


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray, iscrowd: np.ndarray | None = None) -> np.ndarray:
    r"""Pairwise IoU of xyxy boxes ``(n, 4)`` and ``(m, 4)``, ``(n, m)``:
    :math:`|A\cap B| / (|A|+|B|-|A\cap B|)`, continuous coordinates (no +1 pixel).

    Equals ``torchvision.ops.box_iou``, except that boxes with no overlap give 0 even when the
    union is 0 (two identical zero-area boxes), where torchvision returns 0/0 = NaN — COCO's
    rule. Where ``iscrowd[j]`` is true the union is replaced by the area of ``boxes1[i]`` (the
    detection): how much of the detection lies inside the crowd region.
    """
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (n, m, 2)
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (n, m, 2)
    # Disjoint boxes have a negative extent on some axis: no intersection.
    sides = np.clip(bottom_right - top_left, 0.0, None)  # (n, m, 2)
    inter = sides[..., 0] * sides[..., 1]  # (n, m)
    area1 = box_area(boxes1)[:, None]  # (n, 1)
    union = area1 + box_area(boxes2)[None, :] - inter  # (n, m)
    if iscrowd is not None:
        union = np.where(iscrowd[None, :], area1, union)  # (n, m)
    # A positive intersection implies a positive union; elsewhere COCO's IoU is 0, never 0/0.
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)  # (n, m)


#: What each field may hold: NumPy dtype kinds, and the word an error uses for them.
FIELD_KINDS = {"real": ("iuf", "real numbers"), "integer": ("iu", "integer numbers"), "flag": ("biu", "0/1 flags")}


def _check_array(where: str, value, ndim: int, last_dim: int | None, length: int | None, kind: str) -> np.ndarray:
    """One field of one image's dict: a NumPy array of the right rank, size and kind (``FIELD_KINDS``),
    converted to float64 (real), int64 (integer) or bool (flag)."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{OWNER}: {where} must be a numpy.ndarray, got {type(value).__name__}")
    check_input(OWNER, where, value.shape, value.dtype, ndim=ndim, last_dim=last_dim)
    if length is not None and len(value) != length:
        raise ValueError(f"{OWNER}: {where} must have {length} rows (one per box), got {len(value)}")
    dtype_kinds, wanted = FIELD_KINDS[kind]
    if value.dtype.kind not in dtype_kinds:
        raise TypeError(f"{OWNER}: {where} must hold {wanted}, got dtype {value.dtype}")
    if kind == "real" and not np.all(np.isfinite(value)):
        raise ValueError(f"{OWNER}: {where} must be finite, got NaN or inf")
    # A crowd flag of 2 is a bug in the caller's data, not a "yes".
    if kind == "flag" and not np.all((value == 0) | (value == 1)):
        raise ValueError(f"{OWNER}: {where} must hold 0/1 flags, got values {np.unique(value).tolist()}")
    return value.astype({"real": np.float64, "integer": np.int64, "flag": bool}[kind])


def _check_image(where: str, item, keys: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, np.ndarray]:
    """One image's dict: the required keys, no unknown ones, valid xyxy boxes, one row per box."""
    if not isinstance(item, dict):
        raise TypeError(f"{OWNER}: {where} must be a dict with keys {keys}, got {type(item).__name__}")
    missing = [key for key in keys if key not in item]
    unknown = sorted(set(item) - set(keys) - set(optional))
    if missing or unknown:
        raise ValueError(f"{OWNER}: {where} must have keys {keys} (optional {optional}), missing {missing}, "
                         f"unknown {unknown}")
    boxes = _check_array(f"{where}['boxes']", item["boxes"], 2, 4, None, "real")
    if np.any(boxes[:, 2:] < boxes[:, :2]):
        raise ValueError(f"{OWNER}: {where}['boxes'] must be xyxy with x2 >= x1 and y2 >= y1")
    n = len(boxes)
    checked = {"boxes": boxes, "labels": _check_array(f"{where}['labels']", item["labels"], 1, None, n, "integer")}
    for key, kind in (("scores", "real"), ("area", "real"), ("iscrowd", "flag")):
        if key in item:
            checked[key] = _check_array(f"{where}['{key}']", item[key], 1, None, n, kind)
    return checked


def check_detections(preds, targets) -> tuple[list[dict], list[dict]]:
    """The inputs of :func:`mean_average_precision`, checked and converted (boxes and scores to
    float64, labels to int64, ``iscrowd`` to bool): one pred and one target dict per image."""
    for name, value in (("preds", preds), ("targets", targets)):
        if not isinstance(value, Sequence) or isinstance(value, (str, dict)):
            raise TypeError(f"{OWNER}: {name} must be a list with one dict per image, got {type(value).__name__}")
    if len(preds) != len(targets):
        raise ValueError(f"{OWNER}: preds and targets must describe the same images, got {len(preds)} preds and "
                         f"{len(targets)} targets")
    checked_preds = [_check_image(f"preds[{i}]", p, ("boxes", "scores", "labels"), ()) for i, p in enumerate(preds)]
    checked_targets = [_check_image(f"targets[{i}]", t, ("boxes", "labels"), ("iscrowd", "area"))
                       for i, t in enumerate(targets)]
    return checked_preds, checked_targets


def check_thresholds(name: str, values, default: np.ndarray) -> np.ndarray:
    """IoU or recall thresholds: a non-empty 1-D list of numbers in [0, 1]; ``None`` = COCO's."""
    if values is None:
        return default
    array = np.asarray(values, dtype=np.float64)  # (T,)
    if array.ndim != 1 or array.size == 0 or not np.all((array >= 0) & (array <= 1)):
        raise ValueError(f"{OWNER}: {name} must be a non-empty 1-D list of numbers in [0, 1], got {values!r}")
    return array


def match_image(ious: np.ndarray, gt_ignored: np.ndarray, gt_crowd: np.ndarray,
                thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO's greedy matching in one image for one class, at every IoU threshold at once.

    ``ious`` is ``(D, G)`` with the detections sorted by score and the GTs sorted regular first.
    Returns ``matched`` ``(T, D)`` and ``ignored`` ``(T, D)``: whether each detection found a GT,
    and whether that GT was an ignored one. The loop over detections is the greedy order itself.
    """
    num_det, num_gt = ious.shape
    cut = np.minimum(thresholds, MAX_THRESHOLD)[:, None]  # (T, 1)
    taken = np.zeros((len(thresholds), num_gt), dtype=bool)  # (T, G)
    matched = np.zeros((len(thresholds), num_det), dtype=bool)  # (T, D)
    ignored = np.zeros((len(thresholds), num_det), dtype=bool)  # (T, D)
    if num_gt == 0:
        return matched, ignored
    for d in range(num_det):
        # A crowd region can take any number of detections; a regular or area-ignored GT one.
        candidate = (~taken | gt_crowd) & (ious[d] >= cut)  # (T, G)
        regular = candidate & ~gt_ignored  # (T, G)
        # An ignored GT is considered only when no regular GT qualifies (pycocotools' break).
        pool = np.where(regular.any(axis=1, keepdims=True), regular, candidate)  # (T, G)
        scored = np.where(pool, ious[d], -np.inf)  # (T, G)
        # pycocotools replaces its best on >=, so the last GT of the highest IoU wins.
        best = num_gt - 1 - np.argmax(scored[:, ::-1], axis=1)  # (T,)
        found = pool.any(axis=1)  # (T,)
        taken[found, best[found]] = True
        matched[:, d] = found
        ignored[:, d] = found & gt_ignored[best]
    return matched, ignored


def evaluate_image(pred: dict, target: dict, label: int, area_range: tuple[float, float], thresholds: np.ndarray,
                   max_detections: int | None) -> dict[str, np.ndarray]:
    """One image, one class, one area range (pycocotools' ``evaluateImg``): the kept detections'
    scores ``(D,)``, ``matched`` and ``ignored`` ``(T, D)``, and the GTs' ``ignored`` ``(G,)``.
    ``max_detections=None`` keeps every detection (VOC has no cap)."""
    in_class = pred["labels"] == label  # (n,)
    # Stable sort: equal scores keep their input order, as pycocotools' mergesort.
    order = np.argsort(-pred["scores"][in_class], kind="mergesort")[:max_detections]  # (D,)
    det_boxes = pred["boxes"][in_class][order]  # (D, 4)
    is_gt = target["labels"] == label  # (m,)
    gt_boxes = target["boxes"][is_gt]  # (G, 4)
    gt_crowd = target.get("iscrowd", np.zeros(len(is_gt), dtype=bool))[is_gt]  # (G,)
    # torchmetrics uses a target's "area" when it is positive, else the box's.
    given_area = target.get("area", np.zeros(len(is_gt)))[is_gt]  # (G,)
    gt_area = np.where(given_area > 0, given_area, box_area(gt_boxes))  # (G,)
    low, high = area_range
    outside = (gt_area < low) | (gt_area > high)  # (G,)
    # Ignored GTs (crowds, outside the range) go last, stably: the matching scans regular ones first.
    gt_order = np.argsort(gt_crowd | outside, kind="mergesort")  # (G,)
    gt_ignored = (gt_crowd | outside)[gt_order]  # (G,)
    ious = box_iou(det_boxes, gt_boxes[gt_order], gt_crowd[gt_order])  # (D, G)
    matched, ignored = match_image(ious, gt_ignored, gt_crowd[gt_order], thresholds)
    det_area = box_area(det_boxes)  # (D,)
    # An unmatched detection outside the area range is not a false positive of this range.
    ignored |= ~matched & ((det_area < low) | (det_area > high))[None, :]  # (T, D)
    return {"scores": pred["scores"][in_class][order], "matched": matched, "ignored": ignored,
            "gt_ignored": gt_ignored}


def precision_recall_curve(evaluations: list[dict[str, np.ndarray]],
                           num_thresholds: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One class's curve over all images (pycocotools' ``accumulate``): ``recall`` and
    ``precision`` ``(T, D)`` after each detection in score order, and the number of regular GTs
    (0: the class has no GT, its AP is undefined)."""
    # An empty evaluation first, so that a list of no images concatenates too.
    evaluations = [{"scores": np.zeros(0), "matched": np.zeros((num_thresholds, 0), dtype=bool),
                    "ignored": np.zeros((num_thresholds, 0), dtype=bool), "gt_ignored": np.zeros(0, dtype=bool)},
                   *evaluations]
    scores = np.concatenate([e["scores"] for e in evaluations])  # (D,)
    # Stable again: equal scores keep image order, then score order within an image.
    order = np.argsort(-scores, kind="mergesort")  # (D,)
    matched = np.concatenate([e["matched"] for e in evaluations], axis=1)[:, order]  # (T, D)
    ignored = np.concatenate([e["ignored"] for e in evaluations], axis=1)[:, order]  # (T, D)
    num_gt = int(sum(np.count_nonzero(~e["gt_ignored"]) for e in evaluations))
    tp = np.cumsum(matched & ~ignored, axis=1, dtype=np.float64)  # (T, D)
    fp = np.cumsum(~matched & ~ignored, axis=1, dtype=np.float64)  # (T, D)
    recall = tp / max(num_gt, 1)  # (T, D)
    # pycocotools' +eps: a prefix of ignored detections (tp = fp = 0) has precision 0, not 0/0.
    precision = tp / (tp + fp + np.spacing(1))  # (T, D)
    return recall, precision, num_gt


def precision_envelope(precision: np.ndarray) -> np.ndarray:
    r"""The monotone envelope :math:`\hat p_i = \max_{j\ge i} p_j` along the last axis."""
    return np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]  # (T, D)


def interpolated_precision(recall: np.ndarray, precision: np.ndarray, recall_thresholds: np.ndarray) -> np.ndarray:
    r"""COCO's sampled envelope ``(T, R)``: at each :math:`\rho`, :math:`\hat p` at the first
    detection with recall :math:`\ge\rho`, or 0 where recall never reaches :math:`\rho`."""
    num_det = recall.shape[1]
    if num_det == 0:
        return np.zeros((len(recall), len(recall_thresholds)))  # (T, R)
    # Recall is non-decreasing, so counting the points below rho is searchsorted(side="left").
    first = np.sum(recall[:, :, None] < recall_thresholds[None, None, :], axis=1)  # (T, R)
    sampled = np.take_along_axis(precision_envelope(precision), np.minimum(first, num_det - 1), axis=1)  # (T, R)
    return np.where(first < num_det, sampled, 0.0)  # (T, R)


def all_point_average_precision(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    r"""PASCAL VOC's (2010+) all-point AP ``(T,)``: the exact area under the envelope,
    :math:`\sum_i (r_i - r_{i-1})\,\hat p_i` with :math:`r_0 = 0`."""
    steps = np.diff(recall, axis=1, prepend=0.0)  # (T, D)
    return np.sum(steps * precision_envelope(precision), axis=1)  # (T,)


def _mean_present(values: np.ndarray) -> float:
    """pycocotools' summary: the mean of the entries that are not -1 (absent), or -1 if none."""
    present = values[values > -1]
    return float(np.mean(present)) if present.size else -1.0


def _at_threshold(values: np.ndarray, thresholds: np.ndarray, threshold: float) -> float:
    """The summary at one IoU threshold (exact equality, as pycocotools); -1 if it was not evaluated."""
    return _mean_present(values[thresholds == threshold])


def _class_ids(preds: list[dict], targets: list[dict], class_ids) -> np.ndarray:
    """The classes to evaluate, sorted: ``class_ids`` or every label seen in preds and targets."""
    if class_ids is None:
        labels = [item["labels"] for item in preds + targets]
        return np.unique(np.concatenate(labels)) if labels else np.zeros(0, dtype=np.int64)
    ids = np.asarray(class_ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"{OWNER}: class_ids must be a 1-D list of integers, got {class_ids!r}")
    return np.unique(ids).astype(np.int64)


def evaluate(preds: list[dict], targets: list[dict], classes: np.ndarray, thresholds: np.ndarray,
             recall_thresholds: np.ndarray, max_detections: int | None) -> tuple[np.ndarray, np.ndarray, list]:
    """COCO's table: ``precision`` ``(T, R, K, A)`` and ``recall`` ``(T, K, A)`` (-1 where a class
    has no regular GT), and the ``(recall, precision)`` curves of area range "all", one per class."""
    shape = (len(thresholds), len(classes), len(COCO_AREA_RANGES))
    precision = -np.ones((shape[0], len(recall_thresholds)) + shape[1:])  # (T, R, K, A)
    recall = -np.ones(shape)  # (T, K, A)
    curves = []
    for k, label in enumerate(classes):
        for a, area_range in enumerate(COCO_AREA_RANGES.values()):
            evaluations = [evaluate_image(p, t, label, area_range, thresholds, max_detections)
                           for p, t in zip(preds, targets)]
            rc, pr, num_gt = precision_recall_curve(evaluations, len(thresholds))
            if a == 0:
                curves.append((rc, pr, num_gt))
            if num_gt == 0:
                continue
            precision[:, :, k, a] = interpolated_precision(rc, pr, recall_thresholds)
            recall[:, k, a] = rc[:, -1] if rc.shape[1] else 0.0
    return precision, recall, curves


def mean_average_precision(preds: list[dict], targets: list[dict], iou_thresholds=None, class_ids=None,
                           recall_thresholds=None, max_detections: int = 100) -> dict[str, np.ndarray | float]:
    """COCO's box mAP, as ``torchmetrics.detection.MeanAveragePrecision(iou_type="bbox")`` with
    the pycocotools backend computes it (the metric's keys are its keys).

    ``preds``: one dict per image, ``{"boxes": (n, 4) xyxy, "scores": (n,), "labels": (n,) int}``;
    ``targets``: ``{"boxes": (m, 4), "labels": (m,)}`` plus optional ``"iscrowd"`` (m,) 0/1 and
    ``"area"`` (m,) (used where positive, as torchmetrics). NumPy arrays, the structure
    torchmetrics' ``update`` takes. ``iou_thresholds`` and ``recall_thresholds`` default to
    pycocotools' (float64); ``class_ids`` to every label seen; ``max_detections`` caps the
    detections per image and class.

    Returns floats ``map`` (AP@[.5:.95]), ``map_50``, ``map_75`` (-1 if that threshold is not
    among ``iou_thresholds``), ``map_small``, ``map_medium``, ``map_large``, ``mar_{max_detections}``
    and ``mar_small/medium/large`` (recall at the last detection, averaged likewise), and arrays
    ``map_per_class``, ``mar_{max_detections}_per_class``, ``classes`` (int64), ``precision``
    ``(T, R, K, 4)`` and ``recall`` ``(T, K, 4)`` (area ranges all, small, medium, large; -1 where a
    class has no GT). -1 means "nothing to average".
    """
    preds, targets = check_detections(preds, targets)
    thresholds = check_thresholds("iou_thresholds", iou_thresholds, COCO_IOU_THRESHOLDS)
    recall_thresholds = check_thresholds("recall_thresholds", recall_thresholds, COCO_RECALL_THRESHOLDS)
    max_detections = check_int(OWNER, "max_detections", max_detections, 1)
    classes = _class_ids(preds, targets, class_ids)
    precision, recall, _ = evaluate(preds, targets, classes, thresholds, recall_thresholds, max_detections)
    mar = f"mar_{max_detections}"
    result = {"map": _mean_present(precision[..., 0]),
              "map_50": _at_threshold(precision[..., 0], thresholds, 0.5),
              "map_75": _at_threshold(precision[..., 0], thresholds, 0.75)}
    for a, name in enumerate(COCO_AREA_RANGES):
        if a:
            result[f"map_{name}"] = _mean_present(precision[..., a])
    result[mar] = _mean_present(recall[..., 0])
    for a, name in enumerate(COCO_AREA_RANGES):
        if a:
            result[f"mar_{name}"] = _mean_present(recall[..., a])
    result["map_per_class"] = np.array([_mean_present(precision[:, :, k, 0]) for k in range(len(classes))])
    result[f"{mar}_per_class"] = np.array([_mean_present(recall[:, k, 0]) for k in range(len(classes))])
    result.update(classes=classes, precision=precision, recall=recall)
    return result


def voc_average_precision(preds: list[dict], targets: list[dict], iou_threshold: float = 0.5,
                          class_ids=None) -> dict[str, np.ndarray | float]:
    """PASCAL VOC-style (2010+) all-point AP at one IoU threshold, on COCO's matching (same
    sorting, greedy rule, crowds ignored; VOC's own devkit marks "difficult" GTs instead and adds
    one pixel to widths). Returns ``map`` (the mean over classes with GT, -1 if none),
    ``ap_per_class`` (-1 for a class without GT) and ``classes``."""
    preds, targets = check_detections(preds, targets)
    thresholds = check_thresholds("iou_threshold", [iou_threshold], COCO_IOU_THRESHOLDS)
    classes = _class_ids(preds, targets, class_ids)
    _, _, curves = evaluate(preds, targets, classes, thresholds, COCO_RECALL_THRESHOLDS, max_detections=None)
    per_class = np.array([all_point_average_precision(rc, pr)[0] if num_gt else -1.0 for rc, pr, num_gt in curves])
    return {"map": _mean_present(per_class), "ap_per_class": per_class, "classes": classes}
