r"""Day 59: non-maximum suppression, ``torchvision.ops.nms`` and ``batched_nms``.

A detector proposes many overlapping boxes for one object. NMS keeps the best of each cluster:
visit the boxes by decreasing score; keep the first one still standing and suppress every later
box whose IoU with it is **strictly greater** than ``iou_threshold``; repeat.

.. math::  \text{keep } b_{(1)};\quad \text{drop } b_j \text{ if } \mathrm{IoU}(b_{(1)}, b_j) > \tau;
           \quad \text{keep the best remaining}, \dots

The loop is sequential by nature: whether box :math:`j` survives depends on whether the box that
would suppress it was itself suppressed earlier. So the pairwise IoU matrix ``(N, N)`` is computed
at once (day 58's ``box_iou``), and only the greedy walk is a Python loop — one iteration per
**kept** box, each removing that box's overlaps from the remaining candidates in one vector step.

Rules, as torchvision's CPU kernel (``test_nms.py`` checks each):

- order: scores sorted descending by a **stable** sort (equal scores keep index order), NaN
  scores first (torch's sort puts NaN above every number);
- threshold: suppressed when IoU :math:`> \tau`, not at equality; the IoU is compared in float64
  against the Python float :math:`\tau` (torchvision's C++ compares the float IoU with a ``double``);
- a NaN IoU (NaN coordinates, two zero-area boxes' :math:`0/0`) suppresses nothing; an inverted box
  (:math:`x_2 < x_1`) has a negative area, used as it is;
- the result: int64 indices of the kept boxes, by decreasing score.

``batched_nms`` suppresses only within a class (``idxs``): the overlaps of boxes of different
classes are ignored, one greedy walk over all boxes. torchvision instead shifts each class's
boxes by ``idx * (max coordinate + 1)`` (for up to 1000 boxes) — the same result while every
coordinate is :math:`\ge 0`, but with negative coordinates the shifted classes can still overlap.

Forward only: NMS selects indices, it has no gradient.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_nms_inputs

from .boxes import box_iou


def descending_order(scores: np.ndarray) -> np.ndarray:
    """Indices ``(N,)`` that sort ``scores`` as torch's stable descending sort: NaN first, then by
    decreasing value, equal scores in index order."""
    # Two stable sorts: by value (NaN set aside as 0), then NaN to the front, keeping that order.
    by_value = np.argsort(-np.where(np.isnan(scores), 0.0, scores), kind="stable")  # (N,)
    nan_last = ~np.isnan(scores[by_value])  # (N,)
    return by_value[np.argsort(nan_last, kind="stable")]  # (N,)


def greedy_keep(overlaps: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The greedy walk: ``overlaps (N, N)`` says which pairs suppress each other; take the first
    remaining box of ``order``, drop the remaining boxes it overlaps, repeat. Kept indices, int64."""
    keep = []
    remaining = order  # (R,)
    while len(remaining):
        best, rest = remaining[0], remaining[1:]
        keep.append(int(best))
        remaining = rest[~overlaps[best, rest]]  # (R',)
    return np.array(keep, dtype=np.int64)  # (K,)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """``torchvision.ops.nms``: corner boxes ``(N, 4)``, ``scores (N,)`` -> kept indices ``(K,)``
    int64, by decreasing score."""
    threshold = check_nms_inputs("nms", boxes, scores, iou_threshold)
    # float64, as torchvision compares its float IoU with a double threshold (NaN compares False).
    overlaps = box_iou(boxes, boxes).astype(np.float64) > threshold  # (N, N)
    return greedy_keep(overlaps, descending_order(scores))  # (K,)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, iou_threshold: float) -> np.ndarray:
    """``torchvision.ops.batched_nms``: NMS within each class ``idxs (N,)``; kept indices ``(K,)``
    int64, by decreasing score over all classes."""
    threshold = check_nms_inputs("batched_nms", boxes, scores, iou_threshold, idxs)
    same_class = idxs[:, None] == idxs[None, :]  # (N, N)
    overlaps = (box_iou(boxes, boxes).astype(np.float64) > threshold) & same_class  # (N, N)
    return greedy_keep(overlaps, descending_order(scores))  # (K,)
