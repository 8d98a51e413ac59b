r"""Days 60-62: a tiny YOLO — the network, its loss, and decoding with per-class NMS.

Redmon & Farhadi, "YOLO9000" (YOLOv2, 2016) and "YOLOv3" (2018): one convolutional pass predicts,
for every cell of an :math:`S \times S` grid and each of its :math:`A` anchors, an objectness logit
:math:`\hat o`, box offsets :math:`(\hat t_x, \hat t_y, \hat t_w, \hat t_h)` and :math:`C` class
logits. The targets (which cell and anchor each true box belongs to) are framework-free
bookkeeping in :mod:`ml100.scenes`.

.. code-block:: text

    x (N, 3, 64, 64) → [conv 3×3 → bn → LeakyReLU(0.1) → max-pool 2] × 3 → conv 3×3 → bn → LeakyReLU
                     → head: conv 1×1 → (N, A·(5+C), 8, 8),  channel a·(5+C) + k = anchor a, field k

Field order per anchor: :math:`(\hat o, \hat t_x, \hat t_y, \hat t_w, \hat t_h, \hat c_1 \dots \hat c_C)`.

**Loss** (:class:`YOLOLoss`), with :math:`\mathbb 1` the object cells of the targets and
:math:`N` the batch size:

.. math::  L = \frac1N\Big[\sum_{\text{all}} w\,\text{BCE}(\hat o, \mathbb 1)
            + \lambda_\text{coord}\sum_{\mathbb 1}\big\|(\sigma(\hat t_x), \sigma(\hat t_y), \hat t_w, \hat t_h)
              - (t_x, t_y, t_w, t_h)\big\|^2 + \sum_{\mathbb 1} \text{CE}(\hat c, c)\Big],

:math:`w = 1` on object cells and :math:`\lambda_\text{noobj}` elsewhere (most cells are empty).
Backward, per term: :math:`\partial/\partial\hat o = w(\sigma(\hat o) - \mathbb 1)/N`;
:math:`\partial/\partial\hat t_x = 2\lambda_\text{coord}(\sigma(\hat t_x) - t_x)\,\sigma'(\hat t_x)/N`
(likewise :math:`y`), :math:`\partial/\partial\hat t_w = 2\lambda_\text{coord}(\hat t_w - t_w)/N`;
:math:`\partial/\partial\hat c = (\operatorname{softmax}(\hat c) - \text{onehot}(c))/N`; zero for the
box and class fields of empty cells. Each term is an earlier day's loss module (days 3, 4, 8)
whose backward is chained.

**Decoding** (:func:`decode`): :math:`b_x = (j + \sigma(\hat t_x))\,s`, :math:`b_y = (i + \sigma(\hat t_y))\,s`,
:math:`b_w = p_w e^{\hat t_w}`, :math:`b_h = p_h e^{\hat t_h}` give ``xyxy`` pixels; the score is
:math:`\sigma(\hat o)\max_k \operatorname{softmax}(\hat c)_k` with that class as the label; boxes
scoring above ``score_threshold`` go through day 59's ``batched_nms``, per image and class.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import check_input, check_nonnegative, check_yolo_targets
from ml100.configs import YOLOConfig, check_config

from ..foundations.activations import LeakyReLU, Sigmoid, sigmoid
from ..foundations.batchnorm import BatchNorm2d
from ..foundations.conv import Conv2d
from ..foundations.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from ..foundations.pooling import MaxPool2d
from ..foundations.softmax_regression import softmax
from ..module import Module, Sequential
from .nms import batched_nms

#: Darknet's LeakyReLU slope.
NEGATIVE_SLOPE = 0.1
#: Fields per anchor before the class logits: objectness, tx, ty, tw, th.
BOX_FIELDS = 5


class YOLO(Module):
    """Conv blocks and a 1×1 head, sized by a :class:`ml100.configs.YOLOConfig`; ``forward`` maps
    ``(N, C_in, H, W)`` images to raw predictions ``(N, A·(5+C), S, S)``."""

    def __init__(self, config: YOLOConfig, dtype="float32", rng: np.random.Generator | None = None):
        check_config("YOLO", config, YOLOConfig)
        super().__init__(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.config = config
        layers, in_channels = [], config.in_channels
        for index, out_channels in enumerate(config.channels):
            # Batch norm subtracts the per-channel mean, cancelling a bias before it: none then.
            layers.append(Conv2d(in_channels, out_channels, 3, padding=1, bias=not config.batch_norm, dtype=dtype, rng=rng))
            if config.batch_norm:
                layers.append(BatchNorm2d(out_channels, dtype=dtype))
            layers.append(LeakyReLU(NEGATIVE_SLOPE, dtype=dtype))
            if index < len(config.channels) - 1:
                layers.append(MaxPool2d(2, dtype=dtype))
            in_channels = out_channels
        self.features = Sequential(layers)
        self.head = Conv2d(in_channels, config.num_anchors * (BOX_FIELDS + config.num_classes), 1, dtype=dtype, rng=rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("YOLO", "x", x.shape, x.dtype, expected_dtype=self.dtype,
                    shape_like=(x.shape[0], self.config.in_channels, self.config.image_size, self.config.image_size))
        return self.head(self.features(x))  # (N, A*(5+C), S, S)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return self.features.backward(self.head.backward(grad_out))  # (N, C_in, H, W)


def per_anchor(predictions: np.ndarray, config: YOLOConfig) -> np.ndarray:
    """``(N, A·(5+C), S, S)`` -> ``(N, S, S, A, 5+C)``: one row of fields per cell and anchor."""
    n, _, s, _ = predictions.shape
    fields = predictions.reshape(n, config.num_anchors, BOX_FIELDS + config.num_classes, s, s)  # (N, A, 5+C, S, S)
    return fields.transpose(0, 3, 4, 1, 2)  # (N, S, S, A, 5+C)


def _from_per_anchor(fields: np.ndarray) -> np.ndarray:
    """The inverse of :func:`per_anchor`: ``(N, S, S, A, 5+C)`` -> ``(N, A·(5+C), S, S)``."""
    n, s, _, a, k = fields.shape
    return fields.transpose(0, 3, 4, 1, 2).reshape(n, a * k, s, s)  # (N, A*(5+C), S, S)


class YOLOLoss(Module):
    """The YOLOv2/v3 loss of raw predictions given the packed targets of :class:`ml100.scenes.Targets`
    ``(N, S, S, A, 6)``, summed over cells and averaged over images (see the module docstring)."""

    def __init__(self, config: YOLOConfig, lambda_coord: float = 5.0, lambda_noobj: float = 0.5, dtype="float32"):
        check_config("YOLOLoss", config, YOLOConfig)
        super().__init__(dtype)
        self.config = config
        self.lambda_coord = check_nonnegative("YOLOLoss", "lambda_coord", lambda_coord)
        self.lambda_noobj = check_nonnegative("YOLOLoss", "lambda_noobj", lambda_noobj)
        self.objectness_loss = BCEWithLogitsLoss(reduction="none", dtype=dtype)
        self.sigmoid = Sigmoid(dtype=dtype)
        self.box_loss = MSELoss(reduction="sum", dtype=dtype)
        self.class_loss = CrossEntropyLoss(reduction="sum", dtype=dtype)

    def forward(self, predictions: np.ndarray, target: np.ndarray) -> np.ndarray:
        check_yolo_targets("YOLOLoss", self.dtype, self.config, predictions, target, channels_last=False)
        fields = per_anchor(predictions, self.config)  # (N, S, S, A, 5+C)
        n = fields.shape[0]
        is_object = target[..., 0] == 1  # (N, S, S, A)
        # Empty cells weigh lambda_noobj: there are many more of them than objects.
        weight = np.where(is_object, 1.0, self.lambda_noobj).astype(self.dtype)  # (N, S, S, A)
        objectness = (self.objectness_loss(fields[..., 0], target[..., 0]) * weight).sum()
        chosen, chosen_target = fields[is_object], target[is_object]  # (K, 5+C), (K, 6)
        # The centre offsets are compared in sigmoid space, the log sizes as they are.
        box = np.concatenate([self.sigmoid(chosen[:, 1:3]), chosen[:, 3:BOX_FIELDS]], axis=1)  # (K, 4)
        boxes = self.box_loss(box, chosen_target[:, 1:5])
        classes = self.class_loss(chosen[:, BOX_FIELDS:], chosen_target[:, 5].astype(np.int64))
        self.save_for_backward(predictions.shape, is_object, weight)
        # An empty batch divides 0 by 0: NaN, as torch.
        with np.errstate(invalid="ignore", divide="ignore"):
            return (objectness + self.lambda_coord * boxes + classes) / np.asarray(n, dtype=self.dtype)

    def backward(self, grad_out=1.0) -> np.ndarray:
        shape, is_object, weight = self.saved_for_backward()
        with np.errstate(invalid="ignore", divide="ignore"):
            grad_loss = np.asarray(grad_out, dtype=self.dtype) / np.asarray(shape[0], dtype=self.dtype)  # dL/d(sum)
        grad_classes = self.class_loss.backward(grad_loss)  # (K, C)
        grad_box = self.box_loss.backward(self.lambda_coord * grad_loss)  # (K, 4)
        grad_xy = self.sigmoid.backward(grad_box[:, :2])  # (K, 2)
        grad_objectness = self.objectness_loss.backward(grad_loss * weight)  # (N, S, S, A)
        grad_chosen = np.concatenate([np.zeros_like(grad_xy[:, :1]), grad_xy, grad_box[:, 2:], grad_classes], axis=1)  # (K, 5+C)
        grad_fields = np.zeros((shape[0], *is_object.shape[1:], grad_chosen.shape[1]), dtype=self.dtype)  # (N, S, S, A, 5+C)
        # Box and class fields of empty cells get no gradient; objectness gets one everywhere.
        grad_fields[is_object] = grad_chosen
        grad_fields[..., 0] = grad_objectness
        return _from_per_anchor(grad_fields)  # (N, A*(5+C), S, S)


def decode(predictions: np.ndarray, config: YOLOConfig, score_threshold: float = 0.25, iou_threshold: float = 0.45):
    """Raw predictions ``(N, A·(5+C), S, S)`` -> the detections kept by per-image, per-class NMS:
    ``boxes`` ``(K, 4)`` xyxy pixels, ``scores`` ``(K,)``, ``labels`` ``(K,)`` and ``images`` ``(K,)``
    (the image each belongs to), both int64, in decreasing score order."""
    check_config("decode", config, YOLOConfig)
    check_input("decode", "predictions", predictions.shape, predictions.dtype, ndim=4)
    fields = per_anchor(predictions, config)  # (N, S, S, A, 5+C)
    n, s = fields.shape[:2]
    rows = np.arange(s, dtype=fields.dtype)[:, None, None]  # (S, 1, 1)
    cols = np.arange(s, dtype=fields.dtype)[None, :, None]  # (1, S, 1)
    anchors = np.array(config.anchor_sizes(), dtype=fields.dtype)  # (A, 2)
    centre_x = (cols + sigmoid(fields[..., 1])) * config.stride  # (N, S, S, A)
    centre_y = (rows + sigmoid(fields[..., 2])) * config.stride  # (N, S, S, A)
    half_w = anchors[:, 0] * np.exp(fields[..., 3]) / 2  # (N, S, S, A)
    half_h = anchors[:, 1] * np.exp(fields[..., 4]) / 2  # (N, S, S, A)
    boxes = np.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], axis=-1).reshape(-1, 4)  # (N*S*S*A, 4)
    class_probs = softmax(fields[..., BOX_FIELDS:])  # (N, S, S, A, C)
    labels = class_probs.argmax(axis=-1).reshape(-1)  # (N*S*S*A,)
    scores = (sigmoid(fields[..., 0]) * class_probs.max(axis=-1)).reshape(-1)  # (N*S*S*A,)
    images = np.repeat(np.arange(n, dtype=np.int64), fields[0, ..., 0].size)  # (N*S*S*A,)
    candidates = np.flatnonzero(scores > score_threshold)  # (M,)
    # One NMS group per (image, class): boxes of different images or classes never suppress each other.
    groups = images[candidates] * config.num_classes + labels[candidates]  # (M,)
    kept = candidates[batched_nms(boxes[candidates], scores[candidates], groups, iou_threshold)]  # (K,)
    return boxes[kept], scores[kept], labels[kept], images[kept]
