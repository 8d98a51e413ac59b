r"""Days 60-62, the framework-free half of a tiny YOLO: generated scenes and grid/anchor targets.

**Scenes.** :func:`make_scenes` draws small RGB images with OpenCV, each holding 1 to
``max_shapes`` filled shapes — circle, square, triangle (the classes 0, 1, 2 of
:data:`SHAPE_NAMES`) — of varied size, colour and position on a noisy background whose colour
ramps across the image. Boxes are ``xyxy`` in pixels, read from the pixels each shape actually
painted (``x0 = `` its first column, ``x1 = `` its last column + 1), so a box is exactly the
shape's extent; shapes never overlap (a placement whose box, grown by one pixel, meets an earlier
one is drawn again). One seed gives the same scenes on every run and machine.

**Targets** (YOLOv2/v3). The image is an :math:`S \times S` grid of cells of ``stride`` pixels,
each with :math:`A` anchor boxes (sizes :math:`(p_w, p_h)` from :class:`~ml100.configs.YOLOConfig`).
A true box with centre :math:`(c_x, c_y)` and size :math:`(w, h)` is assigned to the cell
holding its centre, :math:`(i, j) = (\lfloor c_y/s\rfloor, \lfloor c_x/s\rfloor)`, and to the
anchor whose shape fits it best — the largest IoU of the two boxes put on one centre,
:math:`\frac{\min(w,p_w)\min(h,p_h)}{wh + p_wp_h - \min(w,p_w)\min(h,p_h)}` (ties: the first
anchor). Its targets there are

.. math::  t_x = c_x/s - j,\quad t_y = c_y/s - i \in [0, 1),\qquad
           t_w = \log(w/p_w),\quad t_h = \log(h/p_h),

objectness 1 and its class; every other (cell, anchor) has objectness 0. The network predicts
:math:`\hat t` with :math:`\sigma(\hat t_x), \sigma(\hat t_y)` in "sigmoid space", so the
decoded centre can never leave its cell.

**Collisions.** Boxes are assigned largest first. A box whose best anchor in its cell is already
taken takes its next-best free anchor of that cell; if every anchor of the cell is taken it is
dropped from the targets and counted in :attr:`Targets.dropped` (the generator's non-overlapping
shapes make this rare: none in the example's data, measured in the tests).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import check_int, resolve_dtype
from .data import LAYOUTS

#: The classes, by index.
SHAPE_NAMES = ("circle", "square", "triangle")
#: Bounding-box sides drawn, in pixels (inclusive range), at the default 64-pixel size; scaled with the image.
SIZE_RANGE = (10, 26)
#: The smallest image: its shapes are 5 to 13 pixels across, still recognisable.
MIN_IMAGE_SIZE = 32
#: How many random placements a shape gets before the scene keeps the shapes it has.
PLACEMENT_TRIES = 50
#: The fields of a packed target (:meth:`Targets.packed`), per image, cell and anchor.
TARGET_FIELDS = ("objectness", "tx", "ty", "tw", "th", "class")
#: Smallest per-channel distance (0..255) between a shape's colour and the background at its centre.
MIN_CONTRAST = 90


@dataclass(frozen=True)
class Scenes:
    """Images ``(N, H, W, 3)`` (or NCHW) float in [0, 1]; per image, ``boxes[n]`` ``(k, 4)`` xyxy
    pixels (float, in ``dtype``) and ``labels[n]`` ``(k,)`` int64 indices into :data:`SHAPE_NAMES`."""

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]


@dataclass(frozen=True)
class Targets:
    """What the loss compares the head with, per image, cell and anchor: ``objectness``
    ``(N, S, S, A)`` (1.0 or 0.0), ``boxes`` ``(N, S, S, A, 4)`` :math:`(t_x, t_y, t_w, t_h)` (0
    where there is no object), ``classes`` ``(N, S, S, A)`` int64 (0 where there is no object);
    ``dropped`` counts true boxes that found no free anchor."""

    objectness: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    dropped: int

    def packed(self) -> np.ndarray:
        """The three arrays as the loss takes them, one ``(N, S, S, A, 6)`` array in their dtype: fields
        :data:`TARGET_FIELDS` (the class index as a float, exact for any class count)."""
        classes = self.classes.astype(self.boxes.dtype)[..., None]  # (N, S, S, A, 1)
        return np.concatenate([self.objectness[..., None], self.boxes, classes], axis=-1)  # (N, S, S, A, 6)


def make_scenes(n: int, seed: int = 0, image_size: int = 64, max_shapes: int = 4, layout: str = "NHWC",
                dtype="float32") -> Scenes:
    """``n`` scenes drawn from ``np.random.default_rng(seed)``; ``layout`` ``"NHWC"`` (TF, OpenCV) or
    ``"NCHW"`` (NumPy, torch)."""
    import cv2

    check_int("make_scenes", "n", n, 0)
    check_int("make_scenes", "image_size", image_size, MIN_IMAGE_SIZE)
    check_int("make_scenes", "max_shapes", max_shapes, 1)
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"make_scenes: layout must be one of {LAYOUTS[1:]}, got {layout!r}")
    dtype = resolve_dtype(dtype)
    rng = np.random.default_rng(seed)
    images, boxes, labels = [], [], []
    for _ in range(n):
        image, image_boxes, image_labels = _draw_scene(cv2, rng, image_size, max_shapes)
        images.append(image)
        boxes.append(np.array(image_boxes, dtype=dtype).reshape(-1, 4))
        labels.append(np.array(image_labels, dtype=np.int64))
    stacked = np.array(images, dtype=dtype).reshape(n, image_size, image_size, 3) / 255.0  # (N, H, W, 3)
    if layout == "NCHW":
        stacked = stacked.transpose(0, 3, 1, 2)  # (N, 3, H, W)
    return Scenes(np.ascontiguousarray(stacked, dtype=dtype), boxes, labels)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A colour ramp between two random colours along a random direction, plus Gaussian noise: ``(H, W, 3)`` uint8."""
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)  # (3,), (3,)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:size, 0:size] / (size - 1)  # (H, W) each
    # Where each pixel lies along the direction, in [0, 1].
    ramp = (xs * np.cos(angle) + ys * np.sin(angle) + 1.0) / 2.0  # (H, W)
    image = start + ramp[..., None] * (end - start)  # (H, W, 3)
    image = image + rng.normal(0.0, 12.0, image.shape)  # (H, W, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_mask(cv2, kind: int, size: int, side: int, x0: int, y0: int, rng: np.random.Generator) -> np.ndarray:
    """The ``(H, W)`` uint8 mask of one filled shape fitting the ``side``-pixel square at ``(x0, y0)``."""
    mask = np.zeros((size, size), np.uint8)
    if kind == 0:
        radius = side // 2
        cv2.circle(mask, (x0 + radius, y0 + radius), radius, 1, thickness=-1)
    elif kind == 1:
        cv2.rectangle(mask, (x0, y0), (x0 + side - 1, y0 + side - 1), 1, thickness=-1)
    else:
        # Apex somewhere along the top edge, so triangles vary in shape as well as size.
        apex = x0 + int(rng.integers(0, side))
        points = np.array([[apex, y0], [x0, y0 + side - 1], [x0 + side - 1, y0 + side - 1]], np.int32)
        cv2.fillPoly(mask, [points], 1)
    return mask


def _shape_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour at least :data:`MIN_CONTRAST` away from ``background`` in some channel."""
    while True:
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - background.astype(np.int64)).max() >= MIN_CONTRAST:
            return colour.astype(np.uint8)


def _draw_scene(cv2, rng: np.random.Generator, size: int, max_shapes: int):
    """One image ``(H, W, 3)`` uint8 with its boxes (lists of 4 ints) and labels."""
    image = _background(rng, size)
    low, high = (round(s * size / 64) for s in SIZE_RANGE)
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _ in range(PLACEMENT_TRIES):
            kind, side = int(rng.integers(0, len(SHAPE_NAMES))), int(rng.integers(low, high + 1))
            x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
            if all(_apart((x0, y0, x0 + side, y0 + side), box) for box in boxes):
                break
        else:
            continue
        mask = _shape_mask(cv2, kind, size, side, x0, y0, rng)
        ys, xs = np.nonzero(mask)  # (P,), (P,)
        image[mask.astype(bool)] = _shape_colour(rng, image[(ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2])
        boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        labels.append(kind)
    return image, boxes, labels


def _apart(a, b) -> bool:
    """Whether boxes ``a`` and ``b`` (xyxy) are separated by at least one pixel."""
    return a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def shape_iou(sizes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of boxes ``(K, 2)`` (w, h) with anchors ``(A, 2)``, both put on one centre: ``(K, A)``."""
    inter = np.minimum(sizes[:, None, 0], anchors[None, :, 0]) * np.minimum(sizes[:, None, 1], anchors[None, :, 1])  # (K, A)
    union = sizes.prod(axis=1)[:, None] + anchors.prod(axis=1)[None, :] - inter  # (K, A)
    return inter / union


def assign_targets(boxes: list[np.ndarray], labels: list[np.ndarray], config, dtype="float32") -> Targets:
    """The YOLO targets of each image's true ``boxes`` (xyxy pixels) and ``labels`` for a
    :class:`~ml100.configs.YOLOConfig` (its grid, stride and anchors)."""
    if len(boxes) != len(labels):
        raise ValueError(f"assign_targets: boxes and labels must have one entry per image, got {len(boxes)} and {len(labels)}")
    dtype = resolve_dtype(dtype)
    grid, stride, anchors = config.grid_size, config.stride, np.array(config.anchor_sizes(), dtype=np.float64)  # (A, 2)
    n, num_anchors = len(boxes), len(anchors)
    objectness = np.zeros((n, grid, grid, num_anchors), dtype)
    offsets = np.zeros((n, grid, grid, num_anchors, 4), dtype)
    classes = np.zeros((n, grid, grid, num_anchors), np.int64)
    dropped = 0
    for image, (image_boxes, image_labels) in enumerate(zip(boxes, labels)):
        image_boxes = _checked_boxes(image, image_boxes, image_labels, config)
        sizes = image_boxes[:, 2:] - image_boxes[:, :2]  # (K, 2)
        centres = (image_boxes[:, :2] + image_boxes[:, 2:]) / 2.0  # (K, 2)
        # Anchors by preference, best shape match first (a stable sort: ties keep the first anchor).
        preference = np.argsort(-shape_iou(sizes, anchors), axis=1, kind="stable")  # (K, A)
        for k in np.argsort(-sizes.prod(axis=1), kind="stable"):
            col, row = (int(v) for v in np.minimum(centres[k] // stride, grid - 1))
            free = [a for a in preference[k] if not objectness[image, row, col, a]]
            if not free:
                dropped += 1
                continue
            a = free[0]
            objectness[image, row, col, a] = 1.0
            offsets[image, row, col, a] = (*(centres[k] / stride - (col, row)), *np.log(sizes[k] / anchors[a]))
            classes[image, row, col, a] = image_labels[k]
    return Targets(objectness, offsets, classes, dropped)


def _checked_boxes(image: int, boxes, labels, config) -> np.ndarray:
    """One image's boxes as float64 ``(K, 4)``, refused unless each has positive size inside the image
    and a label in range."""
    boxes, labels = np.asarray(boxes, dtype=np.float64), np.asarray(labels)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.shape != (len(boxes),):
        raise ValueError(f"assign_targets: image {image} needs boxes (K, 4) and labels (K,), got shapes "
                         f"{boxes.shape} and {labels.shape}")
    size = config.image_size
    if not (np.all(boxes[:, 2:] > boxes[:, :2]) and np.all(boxes >= 0) and np.all(boxes <= size)):
        raise ValueError(f"assign_targets: image {image} has a box that is empty or outside the {size}x{size} image "
                         "(xyxy pixels with x0 < x1, y0 < y1 expected)")
    if labels.size and not (np.issubdtype(labels.dtype, np.integer) and 0 <= labels.min() and labels.max() < config.num_classes):
        raise ValueError(f"assign_targets: image {image} labels must be integers in [0, {config.num_classes}), got {labels}")
    return boxes
