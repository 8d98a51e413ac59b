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

Forward only: NMS selects indices, it has no gradient. Eager only: the greedy loop reads tensor
values in Python (call it outside ``tf.function``, on the decoded boxes).
"""
from __future__ import annotations

import tensorflow as tf

from ml100.checks import check_nms_inputs

from .boxes import box_iou


def descending_order(scores: tf.Tensor) -> tf.Tensor:
    """Indices ``(N,)`` that sort ``scores`` as torch's stable descending sort: NaN first, then by
    decreasing value, equal scores in index order."""
    # Two stable sorts: by value (NaN set aside as 0), then NaN to the front, keeping that order.
    is_nan = tf.math.is_nan(scores)  # (N,)
    by_value = tf.argsort(tf.where(is_nan, tf.zeros_like(scores), scores), direction="DESCENDING", stable=True)  # (N,)
    nan_last = tf.cast(~tf.gather(is_nan, by_value), tf.int32)  # (N,)
    return tf.gather(by_value, tf.argsort(nan_last, stable=True))  # (N,)


def greedy_keep(overlaps: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
    """The greedy walk: ``overlaps (N, N)`` says which pairs suppress each other; take the first
    remaining box of ``order``, drop the remaining boxes it overlaps, repeat. Kept indices, int64."""
    keep = []
    remaining = order  # (R,)
    while len(remaining):
        best, rest = int(remaining[0]), remaining[1:]
        keep.append(best)
        remaining = tf.boolean_mask(rest, ~tf.gather(overlaps[best], rest))  # (R',)
    return tf.constant(keep, dtype=tf.int64)  # (K,)


def nms(boxes: tf.Tensor, scores: tf.Tensor, iou_threshold: float) -> tf.Tensor:
    """``torchvision.ops.nms``: corner boxes ``(N, 4)``, ``scores (N,)`` -> kept indices ``(K,)``
    int64, by decreasing score."""
    threshold = check_nms_inputs("nms", boxes, scores, iou_threshold)
    # float64, as torchvision compares its float IoU with a double threshold (NaN compares False).
    overlaps = tf.cast(box_iou(boxes, boxes), tf.float64) > threshold  # (N, N)
    return greedy_keep(overlaps, descending_order(scores))  # (K,)


def batched_nms(boxes: tf.Tensor, scores: tf.Tensor, idxs: tf.Tensor, iou_threshold: float) -> tf.Tensor:
    """``torchvision.ops.batched_nms``: NMS within each class ``idxs (N,)``; kept indices ``(K,)``
    int64, by decreasing score over all classes."""
    threshold = check_nms_inputs("batched_nms", boxes, scores, iou_threshold, idxs)
    same_class = tf.equal(idxs[:, None], idxs[None, :])  # (N, N)
    overlaps = (tf.cast(box_iou(boxes, boxes), tf.float64) > threshold) & same_class  # (N, N)
    return greedy_keep(overlaps, descending_order(scores))  # (K,)
