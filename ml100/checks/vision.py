"""Days 55-62's image models: box formats and pairs, NMS, YOLO targets, ViT and Mixer pixels."""
from __future__ import annotations

import numpy as np

from .core import FLOAT_DTYPES, check_input, check_real, dtype_name


def check_yolo_targets(owner: str, dtype: str, config, predictions, target, channels_last: bool,
                       check_values: bool = True) -> None:
    """Days 60-62: raw YOLO ``predictions`` ``(N, A(5+C), S, S)`` (``(N, S, S, A(5+C))`` channels-last)
    and ``ml100.scenes.Targets.packed()``: ``target`` ``(N, S, S, A, 6)`` in ``dtype``, fields
    objectness (0.0 or 1.0), tx, ty, tw, th, class index (a whole number in [0, C)).
    ``check_values`` is False where values are symbolic (tf.function)."""
    s, a, k = config.grid_size, config.num_anchors, config.num_anchors * (5 + config.num_classes)
    n = predictions.shape[0]
    layout = (n, s, s, k) if channels_last else (n, k, s, s)
    check_input(owner, "predictions", predictions.shape, predictions.dtype, expected_dtype=dtype, shape_like=layout)
    check_input(owner, "target", target.shape, target.dtype, expected_dtype=dtype, shape_like=(n, s, s, a, 6))
    if not check_values:
        return
    objectness, classes = np.asarray(target)[..., 0], np.asarray(target)[..., 5]
    if not np.all((objectness == 0) | (objectness == 1)):
        raise ValueError(f"{owner}: target objectness (field 0) must hold only 0.0 (no object) and 1.0 (object)")
    if not np.all((classes == np.round(classes)) & (classes >= 0) & (classes < config.num_classes)):
        raise ValueError(f"{owner}: target class (field 5) must hold whole numbers in [0, {config.num_classes})")


#: Day 58: torchvision's axis-aligned box formats (corners, corner and size, centre and size).
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
#: Day 58: the reductions of ``generalized_box_iou_loss``.
BOX_LOSS_REDUCTIONS = ("none", "mean", "sum")


def box_dtype(owner: str, name: str, boxes) -> str:
    """The dtype of ``boxes`` when it is float32 or float64: a box function computes in its input's dtype."""
    got = dtype_name(boxes.dtype)
    if got not in FLOAT_DTYPES:
        raise TypeError(f"{owner}: {name} must have dtype float32 or float64, got {got}")
    return got


def check_boxes(owner: str, name: str, boxes, dtype: str) -> None:
    """Boxes ``(..., 4)`` in the module's dtype."""
    check_input(owner, name, boxes.shape, boxes.dtype, expected_dtype=dtype, last_dim=4)


def check_box_pairs(owner: str, dtype: str, boxes1, boxes2, pairwise: bool) -> None:
    """Two sets of boxes: pairwise ``(..., N, 4)`` against ``(..., M, 4)`` with the same leading
    axes, or element by element, of one shape ``(..., 4)``; nothing is broadcast."""
    check_boxes(owner, "boxes1", boxes1, dtype)
    check_boxes(owner, "boxes2", boxes2, dtype)
    shape1, shape2 = tuple(map(int, boxes1.shape)), tuple(map(int, boxes2.shape))
    if pairwise and (len(shape1) < 2 or shape1[:-2] != shape2[:-2] or len(shape1) != len(shape2)):
        raise ValueError(f"{owner}: boxes1 and boxes2 must have shapes (..., N, 4) and (..., M, 4) with the same "
                         f"leading axes, got {shape1} and {shape2}")
    if not pairwise and shape1 != shape2:
        raise ValueError(f"{owner}: boxes1 and boxes2 are paired element by element and must have one shape (..., 4), "
                         f"got {shape1} and {shape2}")


def check_nms_inputs(owner: str, boxes, scores, iou_threshold, idxs=None) -> float:
    """Day 59: corner boxes ``(N, 4)`` (float32 or float64), their ``scores (N,)`` in the same dtype,
    a finite real ``iou_threshold`` (returned as a float) and, for batched NMS, integer class
    indices ``idxs (N,)``."""
    dtype = box_dtype(owner, "boxes", boxes)
    check_input(owner, "boxes", boxes.shape, boxes.dtype, ndim=2, last_dim=4)
    count = int(boxes.shape[0])
    check_input(owner, "scores", scores.shape, scores.dtype, expected_dtype=dtype, shape_like=(count,))
    if idxs is not None:
        if dtype_name(idxs.dtype) not in ("int32", "int64"):
            raise TypeError(f"{owner}: idxs must have an integer dtype (int32 or int64), got {dtype_name(idxs.dtype)}")
        check_input(owner, "idxs", idxs.shape, idxs.dtype, shape_like=(count,))
    return check_real(owner, "iou_threshold", iou_threshold)


# --- days 55-56: ViT ----------------------------------------------------------------------------------

def check_vit_pixels(owner: str, config, pixel_values, expected_dtype: str, channels_last: bool) -> None:
    """``pixel_values`` ``(B, C, H, W)`` (``(B, H, W, C)`` in the channels-last tree) of ``expected_dtype``
    with ``C = num_channels`` and ``H = W = image_size`` (the position table has one row per patch)."""
    check_input(owner, "pixel_values", pixel_values.shape, pixel_values.dtype, expected_dtype=expected_dtype, ndim=4)
    shape = tuple(None if size is None else int(size) for size in pixel_values.shape)
    layout = "(B, H, W, C)" if channels_last else "(B, C, H, W)"
    channels, height, width = (shape[3], shape[1], shape[2]) if channels_last else shape[1:]
    if channels != config.num_channels:
        raise ValueError(f"{owner}: pixel_values must have num_channels = {config.num_channels} channels {layout}, "
                         f"got shape {shape}")
    if (height, width) != (config.image_size, config.image_size):
        raise ValueError(f"{owner}: pixel_values must be {config.image_size}x{config.image_size} images (image_size), "
                         f"got {height}x{width}")


def check_mixer_pixels(owner: str, config, pixel_values, expected_dtype: str, channels_last: bool) -> None:
    """``pixel_values`` ``(B, C, H, W)`` (``(B, H, W, C)`` in the channels-last tree) of ``expected_dtype``
    with ``C = in_chans`` and ``H = W = img_size`` (the token MLPs are as wide as the patch count)."""
    check_input(owner, "pixel_values", pixel_values.shape, pixel_values.dtype, expected_dtype=expected_dtype, ndim=4)
    shape = tuple(None if size is None else int(size) for size in pixel_values.shape)
    layout = "(B, H, W, C)" if channels_last else "(B, C, H, W)"
    channels, height, width = (shape[3], shape[1], shape[2]) if channels_last else shape[1:]
    if channels != config.in_chans:
        raise ValueError(f"{owner}: pixel_values must have in_chans = {config.in_chans} channels {layout}, got shape {shape}")
    if (height, width) != (config.img_size, config.img_size):
        raise ValueError(f"{owner}: pixel_values must be {config.img_size}x{config.img_size} images (img_size), "
                         f"got {height}x{width}")
