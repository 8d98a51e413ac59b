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

Backward, with :math:`g` the cotangent of the IoU: :math:`\bar I = g/U`,
:math:`\bar U = -g\,\mathrm{IoU}/U`, then :math:`\bar I \mathrel{-}= \bar U` and
:math:`\bar A_a = \bar A_b = \bar U`; a product :math:`I = w h` sends :math:`\bar w = \bar I h`,
:math:`\bar h = \bar I w`; :math:`[t]_+` passes :math:`\bar t` only where :math:`t > 0` (torch
2.14's ``clamp(min=0)``: boxes that just touch get none); :math:`\max(a, b)` sends the gradient to
the larger argument, **half to each on a tie** (identical boxes), and all of it to both when one
is NaN — torch's rule for ``maximum``/``minimum``, written out in :func:`_max_backward`.

Degenerate boxes behave as torchvision's: two zero-area boxes have :math:`I = U = 0`, an IoU of
NaN (0/0) that the loss's :math:`\epsilon` turns into 0; an inverted box (:math:`x_2 < x_1`) has a
negative area, used as it is; NaN and :math:`\pm\infty` propagate as torch's ops propagate them.
The loss counts an intersection only where it is strictly positive on both axes (``fvcore``'s
form, which torchvision keeps), and its ``mean`` over no pairs is 0, not NaN.

Each differentiable op is a parameter-free module with ``forward``/``backward``; the functions of
torchvision's names (``box_convert``, ``box_iou``, …) run the module forward under ``no_grad``.
"""
from __future__ import annotations

import math

import numpy as np

from ml100.checks import (BOX_FORMATS, BOX_LOSS_REDUCTIONS, box_dtype, check_box_pairs, check_boxes, check_choice,
                          check_positive)

from ..module import Module, no_grad


def unbind(boxes: np.ndarray) -> list[np.ndarray]:
    """The four coordinates of ``(..., 4)`` boxes, each ``(...)``."""
    return [boxes[..., k] for k in range(4)]


def to_xyxy(boxes: np.ndarray, fmt: str) -> np.ndarray:
    """Boxes of format ``fmt`` as corners ``(x1, y1, x2, y2)``."""
    a, b, c, d = unbind(boxes)
    if fmt == "xywh":
        return np.stack((a, b, a + c, b + d), axis=-1)  # (..., 4)
    if fmt == "cxcywh":
        return np.stack((a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d), axis=-1)  # (..., 4)
    return boxes


def from_xyxy(boxes: np.ndarray, fmt: str) -> np.ndarray:
    """Corners ``(x1, y1, x2, y2)`` as boxes of format ``fmt``."""
    x1, y1, x2, y2 = unbind(boxes)
    if fmt == "xywh":
        return np.stack((x1, y1, x2 - x1, y2 - y1), axis=-1)  # (..., 4)
    if fmt == "cxcywh":
        return np.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), axis=-1)  # (..., 4)
    return boxes


def _to_xyxy_backward(grad: np.ndarray, fmt: str) -> np.ndarray:
    """The transpose of :func:`to_xyxy`'s linear map: corner gradients as gradients of ``fmt``."""
    g1, g2, g3, g4 = unbind(grad)
    if fmt == "xywh":
        return np.stack((g1 + g3, g2 + g4, g3, g4), axis=-1)  # (..., 4)
    if fmt == "cxcywh":
        return np.stack((g1 + g3, g2 + g4, 0.5 * (g3 - g1), 0.5 * (g4 - g2)), axis=-1)  # (..., 4)
    return grad


def _from_xyxy_backward(grad: np.ndarray, fmt: str) -> np.ndarray:
    """The transpose of :func:`from_xyxy`'s linear map: gradients of ``fmt`` as corner gradients."""
    g1, g2, g3, g4 = unbind(grad)
    if fmt == "xywh":
        return np.stack((g1 - g3, g2 - g4, g3, g4), axis=-1)  # (..., 4)
    if fmt == "cxcywh":
        return np.stack((g1 / 2 - g3, g2 / 2 - g4, g1 / 2 + g3, g2 / 2 + g4), axis=-1)  # (..., 4)
    return grad


def _max_backward(grad: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torch's gradient of ``maximum(a, b)``: all to the larger, half to each on a tie, all to both
    when the pair is unordered (a NaN)."""
    shared = np.where(a == b, grad / 2, grad)  # (...)
    return np.where(a < b, 0.0, shared), np.where(a > b, 0.0, shared)


def _min_backward(grad: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torch's gradient of ``minimum(a, b)``: all to the smaller, half to each on a tie, all to both for a NaN."""
    # min(a, b) = -max(-a, -b): the two negations cancel in the gradient, the comparisons flip.
    return _max_backward(grad, -a, -b)


def _clamp_backward(grad: np.ndarray, t: np.ndarray) -> np.ndarray:
    """torch 2.14's gradient of ``clamp(t, min=0)``: passed only where ``t > 0`` (not at 0: boxes that
    just touch get none), 0 elsewhere and at NaN."""
    return np.where(t > 0, grad, 0.0)


def _iou_backward(grad_iou: np.ndarray, iou: np.ndarray, union: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gradients of ``inter`` and ``union`` from ``iou = inter / union`` (torch's division
    backward: ``-g * (iou / union)``, which stays finite where ``union ** 2`` would overflow)."""
    return grad_iou / union, -grad_iou * (iou / union)


def broadcast_pairs(boxes1: np.ndarray, boxes2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair side by side: ``(..., N, 4)`` and ``(..., M, 4)`` as two ``(..., N, M, 4)``."""
    return np.broadcast_arrays(boxes1[..., :, None, :], boxes2[..., None, :, :])


def enclosing_sides(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Width and height ``(..., 2)`` of the smallest box enclosing each pair of corner boxes,
    clamped at 0 as torchvision clamps them."""
    lt = np.minimum(first[..., :2], second[..., :2])  # (..., 2)
    rb = np.maximum(first[..., 2:], second[..., 2:])  # (..., 2)
    return np.maximum(rb - lt, 0.0)  # (..., 2)


def _enclosing_backward(grad_wh: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gradients ``(..., 4)`` of both boxes of each pair from that of :func:`enclosing_sides`."""
    sides = np.maximum(first[..., 2:], second[..., 2:]) - np.minimum(first[..., :2], second[..., :2])  # (..., 2)
    grad_sides = _clamp_backward(grad_wh, sides)  # (..., 2)
    grad_first_lt, grad_second_lt = _min_backward(-grad_sides, first[..., :2], second[..., :2])  # (..., 2) each
    grad_first_rb, grad_second_rb = _max_backward(grad_sides, first[..., 2:], second[..., 2:])  # (..., 2) each
    return (np.concatenate((grad_first_lt, grad_first_rb), axis=-1),
            np.concatenate((grad_second_lt, grad_second_rb), axis=-1))  # (..., 4) each


class BoxConvert(Module):
    """``box_convert(boxes, in_fmt, out_fmt)`` as a module: ``(..., 4)`` in, ``(..., 4)`` out."""

    def __init__(self, in_fmt: str, out_fmt: str, dtype="float32"):
        super().__init__(dtype)
        check_choice("BoxConvert", "in_fmt", in_fmt, BOX_FORMATS)
        check_choice("BoxConvert", "out_fmt", out_fmt, BOX_FORMATS)
        self.in_fmt, self.out_fmt = in_fmt, out_fmt

    def forward(self, boxes: np.ndarray) -> np.ndarray:
        check_boxes("BoxConvert", "boxes", boxes, self.dtype)
        # Nothing to keep (the map is linear), but one entry per call keeps calls and backwards paired.
        self.save_for_backward()
        if self.in_fmt == self.out_fmt:
            return boxes.copy()  # (..., 4)
        return from_xyxy(to_xyxy(boxes, self.in_fmt), self.out_fmt)  # (..., 4)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        self.saved_for_backward()
        if self.in_fmt == self.out_fmt:
            return grad_out
        grad_corners = _from_xyxy_backward(grad_out, self.out_fmt)  # (..., 4)
        return _to_xyxy_backward(grad_corners, self.in_fmt)  # (..., 4)


class BoxArea(Module):
    """``box_area(boxes, fmt)`` as a module: ``(..., 4)`` in, ``(...)`` out."""

    def __init__(self, fmt: str = "xyxy", dtype="float32"):
        super().__init__(dtype)
        check_choice("BoxArea", "fmt", fmt, BOX_FORMATS)
        self.fmt = fmt

    def forward(self, boxes: np.ndarray) -> np.ndarray:
        check_boxes("BoxArea", "boxes", boxes, self.dtype)
        x1, y1, x2, y2 = unbind(boxes)
        # Corners give the sides as differences; the other formats hold them as w, h.
        width, height = (x2 - x1, y2 - y1) if self.fmt == "xyxy" else (x2, y2)  # (...), (...)
        self.save_for_backward(width, height)
        return width * height  # (...)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        width, height = self.saved_for_backward()
        grad_width = grad_out * height  # (...)
        grad_height = grad_out * width  # (...)
        if self.fmt == "xyxy":
            return np.stack((-grad_width, -grad_height, grad_width, grad_height), axis=-1)  # (..., 4)
        zeros = np.zeros_like(grad_width)  # (...)
        return np.stack((zeros, zeros, grad_width, grad_height), axis=-1)  # (..., 4)


class BoxInterUnion(Module):
    """Pairwise intersection and union areas (torchvision's ``_box_inter_union``): boxes
    ``(..., N, 4)`` and ``(..., M, 4)`` in format ``fmt`` give ``inter, union`` ``(..., N, M)``."""

    def __init__(self, fmt: str = "xyxy", dtype="float32"):
        super().__init__(dtype)
        check_choice("BoxInterUnion", "fmt", fmt, BOX_FORMATS)
        self.fmt = fmt
        # Each used twice per call (once per set of boxes): their backwards pop in reverse order.
        self.corners = BoxConvert(fmt, "xyxy", dtype)
        self.area = BoxArea(fmt, dtype)

    def forward(self, boxes1: np.ndarray, boxes2: np.ndarray):
        check_box_pairs("BoxInterUnion", self.dtype, boxes1, boxes2, pairwise=True)
        area1, area2 = self.area(boxes1), self.area(boxes2)  # (..., N), (..., M)
        first, second = broadcast_pairs(self.corners(boxes1), self.corners(boxes2))  # (..., N, M, 4) each
        lt = np.maximum(first[..., :2], second[..., :2])  # (..., N, M, 2)
        rb = np.minimum(first[..., 2:], second[..., 2:])  # (..., N, M, 2)
        sides = rb - lt  # (..., N, M, 2)
        wh = np.maximum(sides, 0.0)  # (..., N, M, 2)
        inter = wh[..., 0] * wh[..., 1]  # (..., N, M)
        union = area1[..., :, None] + area2[..., None, :] - inter  # (..., N, M)
        self.save_for_backward(first, second, sides, wh)
        return inter, union

    def backward(self, grad_inter: np.ndarray, grad_union: np.ndarray):
        first, second, sides, wh = self.saved_for_backward()
        grad_area1 = grad_union.sum(axis=-1)  # (..., N)
        grad_area2 = grad_union.sum(axis=-2)  # (..., M)
        grad_inter = grad_inter - grad_union  # (..., N, M)
        grad_wh = np.stack((grad_inter * wh[..., 1], grad_inter * wh[..., 0]), axis=-1)  # (..., N, M, 2)
        grad_sides = _clamp_backward(grad_wh, sides)  # (..., N, M, 2)
        grad_first_lt, grad_second_lt = _max_backward(-grad_sides, first[..., :2], second[..., :2])  # (..., N, M, 2)
        grad_first_rb, grad_second_rb = _min_backward(grad_sides, first[..., 2:], second[..., 2:])  # (..., N, M, 2)
        grad_first = np.concatenate((grad_first_lt, grad_first_rb), axis=-1).sum(axis=-2)  # (..., N, 4)
        grad_second = np.concatenate((grad_second_lt, grad_second_rb), axis=-1).sum(axis=-3)  # (..., M, 4)
        # Reverse order of the forward's calls: corners of boxes2, of boxes1, then the areas likewise.
        grad_boxes2 = self.corners.backward(grad_second)  # (..., M, 4)
        grad_boxes1 = self.corners.backward(grad_first)  # (..., N, 4)
        grad_boxes2 = grad_boxes2 + self.area.backward(grad_area2)  # (..., M, 4)
        grad_boxes1 = grad_boxes1 + self.area.backward(grad_area1)  # (..., N, 4)
        return grad_boxes1, grad_boxes2


class BoxIoU(Module):
    """``box_iou(boxes1, boxes2, fmt)`` as a module: ``(..., N, 4)``, ``(..., M, 4)`` -> ``(..., N, M)``."""

    def __init__(self, fmt: str = "xyxy", dtype="float32"):
        super().__init__(dtype)
        self.inter_union = BoxInterUnion(fmt, dtype)

    def forward(self, boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
        inter, union = self.inter_union(boxes1, boxes2)  # (..., N, M) each
        iou = inter / union  # (..., N, M)
        self.save_for_backward(iou, union)
        return iou

    def backward(self, grad_out: np.ndarray):
        iou, union = self.saved_for_backward()
        grad_inter, grad_union = _iou_backward(grad_out, iou, union)  # (..., N, M) each
        return self.inter_union.backward(grad_inter, grad_union)


class GeneralizedBoxIoU(Module):
    """``generalized_box_iou(boxes1, boxes2)`` as a module, corners only (as torchvision):
    ``(..., N, 4)``, ``(..., M, 4)`` -> ``(..., N, M)``."""

    def __init__(self, dtype="float32"):
        super().__init__(dtype)
        self.inter_union = BoxInterUnion("xyxy", dtype)

    def forward(self, boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
        inter, union = self.inter_union(boxes1, boxes2)  # (..., N, M) each
        iou = inter / union  # (..., N, M)
        first, second = broadcast_pairs(boxes1, boxes2)  # (..., N, M, 4) each
        wh = enclosing_sides(first, second)  # (..., N, M, 2)
        enclosing = wh[..., 0] * wh[..., 1]  # (..., N, M)
        penalty = (enclosing - union) / enclosing  # (..., N, M)
        self.save_for_backward(iou, union, first, second, wh, enclosing, penalty)
        return iou - penalty

    def backward(self, grad_out: np.ndarray):
        iou, union, first, second, wh, enclosing, penalty = self.saved_for_backward()
        # penalty = (C - U) / C: the numerator's gradient, then the denominator's.
        grad_gap = -grad_out / enclosing  # (..., N, M)
        grad_enclosing = grad_out * (penalty / enclosing) + grad_gap  # (..., N, M)
        grad_inter, grad_union = _iou_backward(grad_out, iou, union)  # (..., N, M) each
        grad_union = grad_union - grad_gap  # (..., N, M)
        grad_wh = np.stack((grad_enclosing * wh[..., 1], grad_enclosing * wh[..., 0]), axis=-1)  # (..., N, M, 2)
        grad_first, grad_second = _enclosing_backward(grad_wh, first, second)  # (..., N, M, 4) each
        grad_boxes1, grad_boxes2 = grad_first.sum(axis=-2), grad_second.sum(axis=-3)  # (..., N, 4), (..., M, 4)
        grad_iou_boxes1, grad_iou_boxes2 = self.inter_union.backward(grad_inter, grad_union)  # (..., N, 4), (..., M, 4)
        return grad_boxes1 + grad_iou_boxes1, grad_boxes2 + grad_iou_boxes2


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

    def forward(self, boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
        check_box_pairs("GeneralizedBoxIoULoss", self.dtype, boxes1, boxes2, pairwise=False)
        first, second = boxes1[..., :2], boxes2[..., :2]  # (..., 2) each
        lt, rb = np.maximum(first, second), np.minimum(boxes1[..., 2:], boxes2[..., 2:])  # (..., 2) each
        # fvcore's form: an intersection counts only where it is positive on both axes.
        overlaps = np.all(rb > lt, axis=-1, keepdims=True)  # (..., 1)
        sides = np.where(overlaps, rb - lt, 0.0)  # (..., 2)
        inter = sides[..., 0] * sides[..., 1]  # (...)
        union = self.area(boxes1) + self.area(boxes2) - inter  # (...)
        iou = inter / (union + self.eps)  # (...)
        enclosing_sides = np.maximum(boxes1[..., 2:], boxes2[..., 2:]) - np.minimum(first, second)  # (..., 2)
        enclosing = enclosing_sides[..., 0] * enclosing_sides[..., 1]  # (...)
        penalty = (enclosing - union) / (enclosing + self.eps)  # (...)
        loss = 1.0 - (iou - penalty)  # (...)
        self.save_for_backward(boxes1, boxes2, overlaps, sides, union, iou, enclosing_sides, enclosing, penalty,
                               loss.size)
        if self.reduction == "sum":
            return loss.sum()  # ()
        if self.reduction == "mean":
            # torchvision: the mean of no pairs is 0 (0 * an empty sum), not NaN.
            return loss.mean() if loss.size else 0.0 * loss.sum()  # ()
        return loss

    def backward(self, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (boxes1, boxes2, overlaps, sides, union, iou, enclosing_sides, enclosing, penalty,
         count) = self.saved_for_backward()
        if self.reduction == "mean" and count:
            grad_out = grad_out / count  # ()
        grad_loss = np.broadcast_to(grad_out, union.shape)  # (...)
        # loss = 1 - iou + penalty.
        grad_iou = -grad_loss  # (...)
        grad_penalty = grad_loss  # (...)
        grad_gap = grad_penalty / (enclosing + self.eps)  # (...)
        grad_enclosing = grad_gap - grad_penalty * (penalty / (enclosing + self.eps))  # (...)
        grad_inter = grad_iou / (union + self.eps)  # (...)
        grad_union = -grad_iou * (iou / (union + self.eps)) - grad_gap  # (...)
        grad_inter = grad_inter - grad_union  # (...)
        grad_enclosing_sides = np.stack((grad_enclosing * enclosing_sides[..., 1],
                                         grad_enclosing * enclosing_sides[..., 0]), axis=-1)  # (..., 2)
        grad_sides = np.stack((grad_inter * sides[..., 1], grad_inter * sides[..., 0]), axis=-1)  # (..., 2)
        grad_sides = np.where(overlaps, grad_sides, 0.0)  # (..., 2)
        first, second = boxes1[..., :2], boxes2[..., :2]  # (..., 2) each
        grad_first_lt, grad_second_lt = _max_backward(-grad_sides, first, second)  # (..., 2) each
        grad_first_rb, grad_second_rb = _min_backward(grad_sides, boxes1[..., 2:], boxes2[..., 2:])  # (..., 2) each
        grad_first_outer_lt, grad_second_outer_lt = _min_backward(-grad_enclosing_sides, first, second)  # (..., 2) each
        grad_first_outer_rb, grad_second_outer_rb = _max_backward(grad_enclosing_sides, boxes1[..., 2:],
                                                                  boxes2[..., 2:])  # (..., 2) each
        grad_boxes1 = np.concatenate((grad_first_lt + grad_first_outer_lt, grad_first_rb + grad_first_outer_rb),
                                     axis=-1)  # (..., 4)
        grad_boxes2 = np.concatenate((grad_second_lt + grad_second_outer_lt, grad_second_rb + grad_second_outer_rb),
                                     axis=-1)  # (..., 4)
        # The areas' backwards pop in reverse order: boxes2's, then boxes1's.
        grad_boxes2 = grad_boxes2 + self.area.backward(grad_union)  # (..., 4)
        grad_boxes1 = grad_boxes1 + self.area.backward(grad_union)  # (..., 4)
        return grad_boxes1, grad_boxes2


class DistanceBoxIoU(Module):
    """``distance_box_iou(boxes1, boxes2, eps)`` as a module: IoU minus the squared distance of the
    centres over the squared diagonal of the enclosing box (plus ``eps``), ``(..., N, M)``."""

    def __init__(self, eps: float = 1e-7, dtype="float32"):
        super().__init__(dtype)
        self.eps = check_positive("DistanceBoxIoU", "eps", eps)
        self.iou = BoxIoU("xyxy", dtype)

    def forward(self, boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
        iou = self.iou(boxes1, boxes2)  # (..., N, M)
        first, second = broadcast_pairs(boxes1, boxes2)  # (..., N, M, 4) each
        wh = enclosing_sides(first, second)  # (..., N, M, 2)
        diagonal = wh[..., 0] ** 2 + wh[..., 1] ** 2 + self.eps  # (..., N, M)
        offsets = (first[..., :2] + first[..., 2:]) / 2 - (second[..., :2] + second[..., 2:]) / 2  # (..., N, M, 2)
        distance = offsets[..., 0] ** 2 + offsets[..., 1] ** 2  # (..., N, M)
        ratio = distance / diagonal  # (..., N, M)
        self.save_for_backward(first, second, wh, diagonal, offsets, ratio)
        return iou - ratio

    def backward(self, grad_out: np.ndarray):
        first, second, wh, diagonal, offsets, ratio = self.saved_for_backward()
        # ratio = distance / diagonal: the numerator's gradient, then the denominator's.
        grad_distance = -grad_out / diagonal  # (..., N, M)
        grad_diagonal = grad_out * (ratio / diagonal)  # (..., N, M)
        grad_offsets = grad_distance[..., None] * (2 * offsets)  # (..., N, M, 2)
        grad_wh = grad_diagonal[..., None] * (2 * wh)  # (..., N, M, 2)
        grad_first, grad_second = _enclosing_backward(grad_wh, first, second)  # (..., N, M, 4) each
        # A centre is the mean of its two corners: half the offset's gradient to each.
        grad_first = grad_first + np.concatenate((grad_offsets / 2, grad_offsets / 2), axis=-1)  # (..., N, M, 4)
        grad_second = grad_second - np.concatenate((grad_offsets / 2, grad_offsets / 2), axis=-1)  # (..., N, M, 4)
        grad_iou_boxes1, grad_iou_boxes2 = self.iou.backward(grad_out)  # (..., N, 4), (..., M, 4)
        return grad_first.sum(axis=-2) + grad_iou_boxes1, grad_second.sum(axis=-3) + grad_iou_boxes2


class CompleteBoxIoU(Module):
    """``complete_box_iou(boxes1, boxes2, eps)`` as a module: the distance IoU minus
    :math:`\\alpha v`, with :math:`v` the squared gap of the boxes' aspect angles
    (:math:`\\arctan(w/h)`, scaled by :math:`4/\\pi^2`) and :math:`\\alpha = v/(1 - \\mathrm{IoU} + v +
    \\epsilon)` a constant (no gradient, as torchvision computes it under ``no_grad``), ``(..., N, M)``."""

    def __init__(self, eps: float = 1e-7, dtype="float32"):
        super().__init__(dtype)
        self.eps = check_positive("CompleteBoxIoU", "eps", eps)
        self.diou = DistanceBoxIoU(eps, dtype)

    def forward(self, boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
        diou = self.diou(boxes1, boxes2)  # (..., N, M)
        # Per box, as torchvision: each aspect angle once, then every pair's gap.
        first_sides = boxes1[..., 2:] - boxes1[..., :2]  # (..., N, 2)
        second_sides = boxes2[..., 2:] - boxes2[..., :2]  # (..., M, 2)
        first_ratio = first_sides[..., 0] / first_sides[..., 1]  # (..., N)
        second_ratio = second_sides[..., 0] / second_sides[..., 1]  # (..., M)
        gap = np.arctan(first_ratio)[..., :, None] - np.arctan(second_ratio)[..., None, :]  # (..., N, M)
        v = (4 / math.pi ** 2) * gap ** 2  # (..., N, M)
        # alpha is a constant weight: the IoU it reads has no backward to run.
        alpha = v / (1 - box_iou(boxes1, boxes2) + v + self.eps)  # (..., N, M)
        self.save_for_backward(first_sides, second_sides, first_ratio, second_ratio, gap, alpha)
        return diou - alpha * v

    def backward(self, grad_out: np.ndarray):
        first_sides, second_sides, first_ratio, second_ratio, gap, alpha = self.saved_for_backward()
        grad_gap = (-grad_out * alpha) * (4 / math.pi ** 2) * (2 * gap)  # (..., N, M)
        # Each angle's gradient summed over its pairs, then d arctan(r) / dr = 1 / (1 + r^2), r = w / h.
        grad_first_ratio = grad_gap.sum(axis=-1) / (first_ratio * first_ratio + 1)  # (..., N)
        grad_second_ratio = -grad_gap.sum(axis=-2) / (second_ratio * second_ratio + 1)  # (..., M)
        grad_first_sides = np.stack((grad_first_ratio / first_sides[..., 1],
                                     -grad_first_ratio * (first_ratio / first_sides[..., 1])), axis=-1)  # (..., N, 2)
        grad_second_sides = np.stack((grad_second_ratio / second_sides[..., 1],
                                      -grad_second_ratio * (second_ratio / second_sides[..., 1])),
                                     axis=-1)  # (..., M, 2)
        # A side is x2 - x1 (y2 - y1): + to the far corner, - to the near one.
        grad_boxes1 = np.concatenate((-grad_first_sides, grad_first_sides), axis=-1)  # (..., N, 4)
        grad_boxes2 = np.concatenate((-grad_second_sides, grad_second_sides), axis=-1)  # (..., M, 4)
        grad_diou_boxes1, grad_diou_boxes2 = self.diou.backward(grad_out)  # (..., N, 4), (..., M, 4)
        return grad_boxes1 + grad_diou_boxes1, grad_boxes2 + grad_diou_boxes2


def box_convert(boxes: np.ndarray, in_fmt: str, out_fmt: str) -> np.ndarray:
    """``torchvision.ops.box_convert``: ``(..., 4)`` boxes from ``in_fmt`` to ``out_fmt``."""
    with no_grad():
        return BoxConvert(in_fmt, out_fmt, box_dtype("box_convert", "boxes", boxes))(boxes)


def box_area(boxes: np.ndarray, fmt: str = "xyxy") -> np.ndarray:
    """``torchvision.ops.box_area``: the area ``(...)`` of ``(..., 4)`` boxes."""
    with no_grad():
        return BoxArea(fmt, box_dtype("box_area", "boxes", boxes))(boxes)


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray, fmt: str = "xyxy") -> np.ndarray:
    """``torchvision.ops.box_iou``: pairwise IoU ``(..., N, M)``."""
    with no_grad():
        return BoxIoU(fmt, box_dtype("box_iou", "boxes1", boxes1))(boxes1, boxes2)


def generalized_box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """``torchvision.ops.generalized_box_iou``: pairwise GIoU ``(..., N, M)`` of corner boxes."""
    with no_grad():
        return GeneralizedBoxIoU(box_dtype("generalized_box_iou", "boxes1", boxes1))(boxes1, boxes2)


def generalized_box_iou_loss(boxes1: np.ndarray, boxes2: np.ndarray, reduction: str = "none",
                             eps: float = 1e-7) -> np.ndarray:
    """``torchvision.ops.generalized_box_iou_loss``: ``1 - GIoU`` of corner boxes paired element by element."""
    with no_grad():
        dtype = box_dtype("generalized_box_iou_loss", "boxes1", boxes1)
        return GeneralizedBoxIoULoss(reduction, eps, dtype)(boxes1, boxes2)


def distance_box_iou(boxes1: np.ndarray, boxes2: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """``torchvision.ops.distance_box_iou``: pairwise DIoU ``(..., N, M)`` of corner boxes."""
    with no_grad():
        return DistanceBoxIoU(eps, box_dtype("distance_box_iou", "boxes1", boxes1))(boxes1, boxes2)


def complete_box_iou(boxes1: np.ndarray, boxes2: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """``torchvision.ops.complete_box_iou``: pairwise CIoU ``(..., N, M)`` of corner boxes."""
    with no_grad():
        return CompleteBoxIoU(eps, box_dtype("complete_box_iou", "boxes1", boxes1))(boxes1, boxes2)
