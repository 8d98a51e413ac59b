r"""Day 58: boxes — formats, area, IoU, generalized IoU and the GIoU loss (``torchvision.ops``).

A box is four numbers on the last axis, in one of torchvision's formats: ``xyxy``
:math:`(x_1, y_1, x_2, y_2)` (corners), ``xywh`` :math:`(x_1, y_1, w, h)`, ``cxcywh``
:math:`(c_x, c_y, w, h)`. Every conversion goes through corners, as ``box_convert`` does:

.. math::  \text{xywh} \to \text{xyxy}: (x, y, x + w, y + h), \qquad
           \text{cxcywh} \to \text{xyxy}: (c_x - \tfrac12 w,\ c_y - \tfrac12 h,\ c_x + \tfrac12 w,\ c_y + \tfrac12 h),

and back: :math:`w = x_2 - x_1`, :math:`c_x = (x_1 + x_2)/2`. The area of a box is
:math:`A = (x_2 - x_1)(y_2 - y_1)` (:math:`wh` in the other formats). For two boxes :math:`a, b`:

.. math::  I = [\min(x_2^a, x_2^b) - \max(x_1^a, x_1^b)]_+ \, [\min(y_2^a, y_2^b) - \max(y_1^a, y_1^b)]_+ ,
           \qquad U = A_a + A_b - I, \qquad \mathrm{IoU} = I / U,

with :math:`[t]_+ = \max(t, 0)`. The smallest enclosing box :math:`C` (corners :math:`\min` of the
first, :math:`\max` of the second) gives ``generalized_box_iou``
:math:`\mathrm{GIoU} = \mathrm{IoU} - (C - U)/C`, in :math:`(-1, 1]`, and the GIoU loss of a pair
:math:`1 - \mathrm{GIoU}_\epsilon` with :math:`\epsilon` (``eps``) added to both denominators:
:math:`\mathrm{IoU}_\epsilon = I/(U + \epsilon)`, :math:`\mathrm{GIoU}_\epsilon = \mathrm{IoU}_\epsilon
- (C - U)/(C + \epsilon)`. ``box_iou`` and ``generalized_box_iou`` are pairwise (``(..., N, 4)``
against ``(..., M, 4)`` gives ``(..., N, M)``); the loss takes pairs element by element.

``tf.GradientTape`` derives what the NumPy tree writes by hand, except where TF's rules are not
torch's: ``tf.maximum``'s gradient goes whole to the first argument on a tie (and to the second
when one is NaN), so :func:`_maximum`, :func:`_minimum` and :func:`_clamp_min` carry torch's
gradients — half to each argument on a tie (identical boxes), all to both at a NaN, and
``clamp(min=0)``'s gradient passed only where its input is :math:`> 0`.

Degenerate boxes behave as torchvision's: two zero-area boxes have :math:`I = U = 0`, an IoU of
NaN (0/0) that the loss's :math:`\epsilon` turns into 0; an inverted box (:math:`x_2 < x_1`) has a
negative area, used as it is; NaN and :math:`\pm\infty` propagate as torch's ops propagate them.
The loss counts an intersection only where it is strictly positive on both axes (``fvcore``'s
form, which torchvision keeps), and its ``mean`` over no pairs is 0, not NaN.

Each differentiable op is a parameter-free module; the functions of torchvision's names
(``box_convert``, ``box_iou``, …) build the module and call it, so autograd sees every op.
"""
from __future__ import annotations

import math

import tensorflow as tf

from ml100.checks import (BOX_FORMATS, BOX_LOSS_REDUCTIONS, box_dtype, check_box_pairs, check_boxes, check_choice,
                          check_positive)

from ..module import Module


def unbind(boxes: tf.Tensor) -> list[tf.Tensor]:
    """The four coordinates of ``(..., 4)`` boxes, each ``(...)``."""
    return tf.unstack(boxes, axis=-1)


def to_xyxy(boxes: tf.Tensor, fmt: str) -> tf.Tensor:
    """Boxes of format ``fmt`` as corners ``(x1, y1, x2, y2)``."""
    a, b, c, d = unbind(boxes)
    if fmt == "xywh":
        return tf.stack((a, b, a + c, b + d), axis=-1)  # (..., 4)
    if fmt == "cxcywh":
        return tf.stack((a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d), axis=-1)  # (..., 4)
    return boxes


def from_xyxy(boxes: tf.Tensor, fmt: str) -> tf.Tensor:
    """Corners ``(x1, y1, x2, y2)`` as boxes of format ``fmt``."""
    x1, y1, x2, y2 = unbind(boxes)
    if fmt == "xywh":
        return tf.stack((x1, y1, x2 - x1, y2 - y1), axis=-1)  # (..., 4)
    if fmt == "cxcywh":
        return tf.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), axis=-1)  # (..., 4)
    return boxes


@tf.custom_gradient
def _maximum(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``tf.maximum`` of two tensors of one shape (NaN propagates), with torch's gradient: all to
    the larger, half to each on a tie, all to both when the pair is unordered (a NaN)."""
    def grad(upstream):
        shared = tf.where(a == b, upstream / 2, upstream)  # (...)
        zeros = tf.zeros_like(upstream)  # (...)
        return tf.where(a < b, zeros, shared), tf.where(a > b, zeros, shared)
    return tf.maximum(a, b), grad


def _minimum(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``tf.minimum`` with torch's gradient: min(a, b) = -max(-a, -b), exactly, NaN included."""
    return -_maximum(-a, -b)


@tf.custom_gradient
def _clamp_min(t: tf.Tensor) -> tf.Tensor:
    """torch's ``clamp(t, min=0)``: NaN stays NaN; the gradient passes only where ``t > 0`` (not at
    0: boxes that just touch get none) and is 0 elsewhere and at NaN."""
    def grad(upstream):
        return tf.where(t > 0, upstream, tf.zeros_like(upstream))
    return tf.maximum(t, tf.zeros_like(t)), grad


def broadcast_pairs(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Every pair side by side: ``(..., N, 4)`` and ``(..., M, 4)`` as two ``(..., N, M, 4)``
    (``tf.broadcast_to``'s gradient sums the copies back)."""
    shape = tf.concat([tf.shape(boxes1)[:-1], tf.shape(boxes2)[-2:]], axis=0)  # (..., N, M, 4)
    return tf.broadcast_to(boxes1[..., :, None, :], shape), tf.broadcast_to(boxes2[..., None, :, :], shape)


def enclosing_sides(first: tf.Tensor, second: tf.Tensor) -> tf.Tensor:
    """Width and height ``(..., 2)`` of the smallest box enclosing each pair of corner boxes,
    clamped at 0 as torchvision clamps them."""
    lt = _minimum(first[..., :2], second[..., :2])  # (..., 2)
    rb = _maximum(first[..., 2:], second[..., 2:])  # (..., 2)
    return _clamp_min(rb - lt)  # (..., 2)


class BoxConvert(Module):
    """``box_convert(boxes, in_fmt, out_fmt)`` as a module: ``(..., 4)`` in, ``(..., 4)`` out."""

    def __init__(self, in_fmt: str, out_fmt: str, dtype="float32"):
        super().__init__(dtype)
        check_choice("BoxConvert", "in_fmt", in_fmt, BOX_FORMATS)
        check_choice("BoxConvert", "out_fmt", out_fmt, BOX_FORMATS)
        self.in_fmt, self.out_fmt = in_fmt, out_fmt

    def forward(self, boxes: tf.Tensor) -> tf.Tensor:
        check_boxes("BoxConvert", "boxes", boxes, self.dtype)
        if self.in_fmt == self.out_fmt:
            return tf.identity(boxes)  # (..., 4)
        return from_xyxy(to_xyxy(boxes, self.in_fmt), self.out_fmt)  # (..., 4)


class BoxArea(Module):
    """``box_area(boxes, fmt)`` as a module: ``(..., 4)`` in, ``(...)`` out."""

    def __init__(self, fmt: str = "xyxy", dtype="float32"):
        super().__init__(dtype)
        check_choice("BoxArea", "fmt", fmt, BOX_FORMATS)
        self.fmt = fmt

    def forward(self, boxes: tf.Tensor) -> tf.Tensor:
        check_boxes("BoxArea", "boxes", boxes, self.dtype)
        x1, y1, x2, y2 = unbind(boxes)
        # Corners give the sides as differences; the other formats hold them as w, h.
        width, height = (x2 - x1, y2 - y1) if self.fmt == "xyxy" else (x2, y2)  # (...), (...)
        return width * height  # (...)


class BoxInterUnion(Module):
    """Pairwise intersection and union areas (torchvision's ``_box_inter_union``): boxes
    ``(..., N, 4)`` and ``(..., M, 4)`` in format ``fmt`` give ``inter, union`` ``(..., N, M)``."""

    def __init__(self, fmt: str = "xyxy", dtype="float32"):
        super().__init__(dtype)
        check_choice("BoxInterUnion", "fmt", fmt, BOX_FORMATS)
        self.fmt = fmt
        # Each used twice per call (once per set of boxes).
        self.corners = BoxConvert(fmt, "xyxy", dtype)
        self.area = BoxArea(fmt, dtype)

    def forward(self, boxes1: tf.Tensor, boxes2: tf.Tensor):
        check_box_pairs("BoxInterUnion", self.dtype, boxes1, boxes2, pairwise=True)
        area1, area2 = self.area(boxes1), self.area(boxes2)  # (..., N), (..., M)
        first, second = broadcast_pairs(self.corners(boxes1), self.corners(boxes2))  # (..., N, M, 4) each
        lt = _maximum(first[..., :2], second[..., :2])  # (..., N, M, 2)
        rb = _minimum(first[..., 2:], second[..., 2:])  # (..., N, M, 2)
        sides = rb - lt  # (..., N, M, 2)
        wh = _clamp_min(sides)  # (..., N, M, 2)
        inter = wh[..., 0] * wh[..., 1]  # (..., N, M)
        union = area1[..., :, None] + area2[..., None, :] - inter  # (..., N, M)
        return inter, union


class BoxIoU(Module):
    """``box_iou(boxes1, boxes2, fmt)`` as a module: ``(..., N, 4)``, ``(..., M, 4)`` -> ``(..., N, M)``."""

    def __init__(self, fmt: str = "xyxy", dtype="float32"):
        super().__init__(dtype)
        self.inter_union = BoxInterUnion(fmt, dtype)

    def forward(self, boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
        inter, union = self.inter_union(boxes1, boxes2)  # (..., N, M) each
        iou = inter / union  # (..., N, M)
        return iou


class GeneralizedBoxIoU(Module):
    """``generalized_box_iou(boxes1, boxes2)`` as a module, corners only (as torchvision):
    ``(..., N, 4)``, ``(..., M, 4)`` -> ``(..., N, M)``."""

    def __init__(self, dtype="float32"):
        super().__init__(dtype)
        self.inter_union = BoxInterUnion("xyxy", dtype)

    def forward(self, boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
        inter, union = self.inter_union(boxes1, boxes2)  # (..., N, M) each
        iou = inter / union  # (..., N, M)
        first, second = broadcast_pairs(boxes1, boxes2)  # (..., N, M, 4) each
        wh = enclosing_sides(first, second)  # (..., N, M, 2)
        enclosing = wh[..., 0] * wh[..., 1]  # (..., N, M)
        penalty = (enclosing - union) / enclosing  # (..., N, M)
        return iou - penalty


class GeneralizedBoxIoULoss(Module):
    """``generalized_box_iou_loss(boxes1, boxes2, reduction, eps)`` as a module: corner boxes of one
    shape ``(..., 4)``, paired element by element, give ``1 - GIoU_eps`` of shape ``(...)``
    (``reduction="none"``) or its mean or sum (a scalar; the mean of no pairs is 0)."""

    def __init__(self, reduction: str = "none", eps: float = 1e-7, dtype="float32"):
        super().__init__(dtype)
        check_choice("GeneralizedBoxIoULoss", "reduction", reduction, BOX_LOSS_REDUCTIONS)
        self.reduction = reduction
        self.eps = check_positive("GeneralizedBoxIoULoss", "eps", eps)
        # Used twice per call, once per set of boxes, for the union.
        self.area = BoxArea("xyxy", dtype)

    def forward(self, boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
        check_box_pairs("GeneralizedBoxIoULoss", self.dtype, boxes1, boxes2, pairwise=False)
        first, second = boxes1[..., :2], boxes2[..., :2]  # (..., 2) each
        lt, rb = _maximum(first, second), _minimum(boxes1[..., 2:], boxes2[..., 2:])  # (..., 2) each
        # fvcore's form: an intersection counts only where it is positive on both axes.
        overlaps = tf.reduce_all(rb > lt, axis=-1, keepdims=True)  # (..., 1)
        sides = tf.where(overlaps, rb - lt, tf.zeros_like(rb))  # (..., 2)
        inter = sides[..., 0] * sides[..., 1]  # (...)
        union = self.area(boxes1) + self.area(boxes2) - inter  # (...)
        iou = inter / (union + self.eps)  # (...)
        enclosing_sides = _maximum(boxes1[..., 2:], boxes2[..., 2:]) - _minimum(first, second)  # (..., 2)
        enclosing = enclosing_sides[..., 0] * enclosing_sides[..., 1]  # (...)
        penalty = (enclosing - union) / (enclosing + self.eps)  # (...)
        loss = 1.0 - (iou - penalty)  # (...)
        if self.reduction == "sum":
            return tf.reduce_sum(loss)  # ()
        if self.reduction == "mean":
            # torchvision: the mean of no pairs is 0 (0 * an empty sum), not NaN.
            return tf.reduce_mean(loss) if loss.shape.num_elements() else 0.0 * tf.reduce_sum(loss)  # ()
        return loss


class DistanceBoxIoU(Module):
    """``distance_box_iou(boxes1, boxes2, eps)`` as a module: IoU minus the squared distance of the
    centres over the squared diagonal of the enclosing box (plus ``eps``), ``(..., N, M)``."""

    def __init__(self, eps: float = 1e-7, dtype="float32"):
        super().__init__(dtype)
        self.eps = check_positive("DistanceBoxIoU", "eps", eps)
        self.iou = BoxIoU("xyxy", dtype)

    def forward(self, boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
        iou = self.iou(boxes1, boxes2)  # (..., N, M)
        first, second = broadcast_pairs(boxes1, boxes2)  # (..., N, M, 4) each
        wh = enclosing_sides(first, second)  # (..., N, M, 2)
        diagonal = wh[..., 0] ** 2 + wh[..., 1] ** 2 + self.eps  # (..., N, M)
        offsets = (first[..., :2] + first[..., 2:]) / 2 - (second[..., :2] + second[..., 2:]) / 2  # (..., N, M, 2)
        distance = offsets[..., 0] ** 2 + offsets[..., 1] ** 2  # (..., N, M)
        ratio = distance / diagonal  # (..., N, M)
        return iou - ratio


class CompleteBoxIoU(Module):
    """``complete_box_iou(boxes1, boxes2, eps)`` as a module: the distance IoU minus
    :math:`\\alpha v`, with :math:`v` the squared gap of the boxes' aspect angles
    (:math:`\\arctan(w/h)`, scaled by :math:`4/\\pi^2`) and :math:`\\alpha = v/(1 - \\mathrm{IoU} + v +
    \\epsilon)` a constant (no gradient, as torchvision computes it under ``no_grad``), ``(..., N, M)``."""

    def __init__(self, eps: float = 1e-7, dtype="float32"):
        super().__init__(dtype)
        self.eps = check_positive("CompleteBoxIoU", "eps", eps)
        self.diou = DistanceBoxIoU(eps, dtype)

    def forward(self, boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
        diou = self.diou(boxes1, boxes2)  # (..., N, M)
        # Per box, as torchvision: each aspect angle once, then every pair's gap.
        first_sides = boxes1[..., 2:] - boxes1[..., :2]  # (..., N, 2)
        second_sides = boxes2[..., 2:] - boxes2[..., :2]  # (..., M, 2)
        first_ratio = first_sides[..., 0] / first_sides[..., 1]  # (..., N)
        second_ratio = second_sides[..., 0] / second_sides[..., 1]  # (..., M)
        gap = tf.atan(first_ratio)[..., :, None] - tf.atan(second_ratio)[..., None, :]  # (..., N, M)
        v = (4 / math.pi ** 2) * gap ** 2  # (..., N, M)
        # alpha is a constant weight: no gradient flows through it (torchvision's no_grad).
        alpha = tf.stop_gradient(v / (1 - box_iou(boxes1, boxes2) + v + self.eps))  # (..., N, M)
        return diou - alpha * v


def box_convert(boxes: tf.Tensor, in_fmt: str, out_fmt: str) -> tf.Tensor:
    """``torchvision.ops.box_convert``: ``(..., 4)`` boxes from ``in_fmt`` to ``out_fmt``."""
    return BoxConvert(in_fmt, out_fmt, box_dtype("box_convert", "boxes", boxes))(boxes)


def box_area(boxes: tf.Tensor, fmt: str = "xyxy") -> tf.Tensor:
    """``torchvision.ops.box_area``: the area ``(...)`` of ``(..., 4)`` boxes."""
    return BoxArea(fmt, box_dtype("box_area", "boxes", boxes))(boxes)


def box_iou(boxes1: tf.Tensor, boxes2: tf.Tensor, fmt: str = "xyxy") -> tf.Tensor:
    """``torchvision.ops.box_iou``: pairwise IoU ``(..., N, M)``."""
    return BoxIoU(fmt, box_dtype("box_iou", "boxes1", boxes1))(boxes1, boxes2)


def generalized_box_iou(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
    """``torchvision.ops.generalized_box_iou``: pairwise GIoU ``(..., N, M)`` of corner boxes."""
    return GeneralizedBoxIoU(box_dtype("generalized_box_iou", "boxes1", boxes1))(boxes1, boxes2)


def generalized_box_iou_loss(boxes1: tf.Tensor, boxes2: tf.Tensor, reduction: str = "none",
                             eps: float = 1e-7) -> tf.Tensor:
    """``torchvision.ops.generalized_box_iou_loss``: ``1 - GIoU`` of corner boxes paired element by element."""
    dtype = box_dtype("generalized_box_iou_loss", "boxes1", boxes1)
    return GeneralizedBoxIoULoss(reduction, eps, dtype)(boxes1, boxes2)


def distance_box_iou(boxes1: tf.Tensor, boxes2: tf.Tensor, eps: float = 1e-7) -> tf.Tensor:
    """``torchvision.ops.distance_box_iou``: pairwise DIoU ``(..., N, M)`` of corner boxes."""
    return DistanceBoxIoU(eps, box_dtype("distance_box_iou", "boxes1", boxes1))(boxes1, boxes2)


def complete_box_iou(boxes1: tf.Tensor, boxes2: tf.Tensor, eps: float = 1e-7) -> tf.Tensor:
    """``torchvision.ops.complete_box_iou``: pairwise CIoU ``(..., N, M)`` of corner boxes."""
    return CompleteBoxIoU(eps, box_dtype("complete_box_iou", "boxes1", boxes1))(boxes1, boxes2)
