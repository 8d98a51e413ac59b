r"""Days 60-62: a tiny YOLO — the network, its loss, and decoding with per-class NMS.

Redmon & Farhadi, "YOLO9000" (YOLOv2, 2016) and "YOLOv3" (2018): one convolutional pass predicts,
for every cell of an :math:`S \times S` grid and each of its :math:`A` anchors, an objectness logit
:math:`\hat o`, box offsets :math:`(\hat t_x, \hat t_y, \hat t_w, \hat t_h)` and :math:`C` class
logits. The targets (which cell and anchor each true box belongs to) are framework-free
bookkeeping in :mod:`ml100.scenes`.

.. code-block:: text

    x (N, 64, 64, 3) → [conv 3×3 → bn → LeakyReLU(0.1) → max-pool 2] × 3 → conv 3×3 → bn → LeakyReLU
                     → head: conv 1×1 → (N, 8, 8, A·(5+C)),  channel a·(5+C) + k = anchor a, field k

Channels-last (NHWC) as TF on CPU requires; the head's channel order is the canonical one, so the
same ``head.weight`` means the same anchor and field in every tree. Field order per anchor: :math:`(\hat o, \hat t_x, \hat t_y, \hat t_w, \hat t_h, \hat c_1 \dots \hat c_C)`.

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
import tensorflow as tf

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
    ``(N, H, W, C_in)`` images to raw predictions ``(N, S, S, A·(5+C))``."""

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

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        check_input("YOLO", "x", x.shape, x.dtype, expected_dtype=self.dtype,
                    shape_like=(x.shape[0], self.config.image_size, self.config.image_size, self.config.in_channels))
        return self.head(self.features(x))  # (N, S, S, A*(5+C))


def per_anchor(predictions: tf.Tensor, config: YOLOConfig) -> tf.Tensor:
    """``(N, S, S, A·(5+C))`` -> ``(N, S, S, A, 5+C)``: one row of fields per cell and anchor
    (channels-last already has the cell axes first: a reshape, no transpose)."""
    s = predictions.shape[1]
    # The batch as -1: a tf.function traced with an unknown batch serves every size.
    return tf.reshape(predictions, (-1, s, s, config.num_anchors, BOX_FIELDS + config.num_classes))  # (N, S, S, A, 5+C)


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

    def forward(self, predictions: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        check_yolo_targets("YOLOLoss", self.dtype, self.config, predictions, target, channels_last=True, check_values=tf.executing_eagerly())
        fields = per_anchor(predictions, self.config)  # (N, S, S, A, 5+C)
        n = tf.cast(tf.shape(fields)[0], fields.dtype)
        is_object = tf.equal(target[..., 0], 1)  # (N, S, S, A)
        # Empty cells weigh lambda_noobj: there are many more of them than objects.
        weight = tf.where(is_object, tf.ones_like(target[..., 0]), self.lambda_noobj * tf.ones_like(target[..., 0]))  # (N, S, S, A)
        objectness = tf.reduce_sum(self.objectness_loss(fields[..., 0], target[..., 0]) * weight)
        chosen, chosen_target = tf.boolean_mask(fields, is_object), tf.boolean_mask(target, is_object)  # (K, 5+C), (K, 6)
        # The centre offsets are compared in sigmoid space, the log sizes as they are.
        box = tf.concat([self.sigmoid(chosen[:, 1:3]), chosen[:, 3:BOX_FIELDS]], axis=1)  # (K, 4)
        boxes = self.box_loss(box, chosen_target[:, 1:5])
        classes = self.class_loss(chosen[:, BOX_FIELDS:], tf.cast(chosen_target[:, 5], tf.int64))
        # An empty batch divides 0 by 0: NaN, as torch.
        return (objectness + self.lambda_coord * boxes + classes) / n


def decode(predictions: tf.Tensor, config: YOLOConfig, score_threshold: float = 0.25, iou_threshold: float = 0.45):
    """Raw predictions ``(N, S, S, A·(5+C))`` -> the detections kept by per-image, per-class NMS:
    ``boxes`` ``(K, 4)`` xyxy pixels, ``scores`` ``(K,)``, ``labels`` ``(K,)`` and ``images`` ``(K,)``
    (the image each belongs to), both int64, in decreasing score order."""
    check_config("decode", config, YOLOConfig)
    check_input("decode", "predictions", predictions.shape, predictions.dtype, ndim=4)
    fields = per_anchor(predictions, config)  # (N, S, S, A, 5+C)
    s = fields.shape[1]
    rows = tf.range(s, dtype=fields.dtype)[:, None, None]  # (S, 1, 1)
    cols = tf.range(s, dtype=fields.dtype)[None, :, None]  # (1, S, 1)
    anchors = tf.constant(config.anchor_sizes(), dtype=fields.dtype)  # (A, 2)
    centre_x = (cols + sigmoid(fields[..., 1])) * config.stride  # (N, S, S, A)
    centre_y = (rows + sigmoid(fields[..., 2])) * config.stride  # (N, S, S, A)
    half_w = anchors[:, 0] * tf.exp(fields[..., 3]) / 2  # (N, S, S, A)
    half_h = anchors[:, 1] * tf.exp(fields[..., 4]) / 2  # (N, S, S, A)
    boxes = tf.reshape(tf.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], axis=-1), (-1, 4))  # (N*S*S*A, 4)
    class_probs = softmax(fields[..., BOX_FIELDS:])  # (N, S, S, A, C)
    labels = tf.reshape(tf.argmax(class_probs, axis=-1), (-1,))  # (N*S*S*A,)
    scores = tf.reshape(sigmoid(fields[..., 0]) * tf.reduce_max(class_probs, axis=-1), (-1,))  # (N*S*S*A,)
    images = tf.repeat(tf.range(tf.shape(fields)[0], dtype=tf.int64), s * s * config.num_anchors)  # (N*S*S*A,)
    candidates = tf.where(scores > score_threshold)[:, 0]  # (M,)
    # One NMS group per (image, class): boxes of different images or classes never suppress each other.
    groups = tf.gather(images, candidates) * config.num_classes + tf.gather(labels, candidates)  # (M,)
    kept = tf.gather(candidates, batched_nms(tf.gather(boxes, candidates), tf.gather(scores, candidates), groups, iou_threshold))  # (K,)
    return tf.gather(boxes, kept), tf.gather(scores, kept), tf.gather(labels, kept), tf.gather(images, kept)
