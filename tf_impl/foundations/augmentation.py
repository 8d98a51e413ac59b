r"""Day 20: data augmentation — flips, pad-and-crop, cutout, mixup, CutMix.

Augmentation makes new training examples from old ones by transformations that should not change
the label, so the model learns the invariance instead of memorizing pixels.

**Horizontal flip** and **pad-and-crop** (random translation by up to ``padding`` pixels) are the
classic CIFAR recipe (Krizhevsky, Sutskever & Hinton, 2012; He et al., 2016). Zero-pad by
:math:`p`, then crop back to :math:`H\times W` at offset :math:`(t, l)\in[0, 2p]^2`:

.. math::  y_{c,i,j} = x_{c,\,i+t-p,\,j+l-p} \quad (0 \text{ outside } x)

**Cutout** (DeVries & Taylor, 2017, *Improved Regularization of Convolutional Neural Networks with
Cutout*): zero a :math:`s\times s` square centred at :math:`(c_y, c_x)`, clipped at the borders,
so the model cannot rely on any one region.

**Mixup** (Zhang, Cisse, Dauphin & Lopez-Paz, 2018, *mixup: Beyond Empirical Risk Minimization*):
convex combinations of pairs of examples *and* their one-hot labels, :math:`\lambda\sim
\mathrm{Beta}(\alpha,\alpha)`, the partner chosen by a permutation :math:`\pi` of the batch:

.. math::  x'_n = \lambda_n x_n + (1-\lambda_n)\,x_{\pi(n)}, \qquad
           y'_n = \lambda_n y_n + (1-\lambda_n)\,y_{\pi(n)}

**CutMix** (Yun et al., 2019, *CutMix: Regularization Strategy to Train Strong Classifiers with
Localizable Features*): paste the box :math:`B_n` of :math:`x_{\pi(n)}` into :math:`x_n`; the
labels mix by area, :math:`\lambda_n = 1 - |B_n| / (HW)` (the box *after* clipping):

.. math::  x'_n = (1-M_n)\odot x_n + M_n\odot x_{\pi(n)}, \qquad
           y'_n = \lambda_n y_n + (1-\lambda_n)\,y_{\pi(n)}

Every op is **linear in the images** (and the labels), so the backward pass is the adjoint of a
copy: a flip's adjoint is the same flip; a crop at offset :math:`o` is adjoint to the crop at
:math:`2p-o`; a mask multiplies the gradient by the same mask; reading :math:`x_{\pi(n)}` sends
the gradient back through the inverse permutation :math:`\pi^{-1}`.

Randomness is an *input*: every op takes its parameters (flip flags, offsets, centres, λ, boxes,
permutation) as arrays, and the ``draw_*`` helpers (:mod:`ml100.augment`, shared by all three
trees) draw them from a NumPy ``Generator`` — one seed, one augmentation, everywhere. Images are NHWC here (as TF
on CPU requires); the parameters keep their meaning: ``(top, left)`` = ``(row, col)``.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ml100.augment import check_labels_onehot, check_lam, check_params, check_perm, check_values_in
from ml100.checks import check_input, dtype_name

from ..module import Module


def check_images(owner: str, images, expected_dtype: str | None = None) -> tuple[int, int, int]:
    """A float image batch; returns ``(N, H, W)``. NHWC here."""
    check_input(owner, "images", images.shape, images.dtype, expected_dtype=expected_dtype, ndim=4)
    if dtype_name(images.dtype) not in ("float32", "float64"):
        raise TypeError(f"{owner}: images must have dtype float32 or float64, got {dtype_name(images.dtype)}")
    n, h, w, _ = images.shape
    return n, h, w


# --- the ops ------------------------------------------------------------------------------------

def horizontal_flip(images: tf.Tensor, flip) -> tf.Tensor:
    """Mirror left-right the images whose ``flip`` flag (bool ``(N,)``) is set."""
    n, _, _ = check_images("horizontal_flip", images)
    flip = tf.constant(check_params("horizontal_flip", "flip", flip, (n,), "bool"))  # (N,)
    # A per-image choice between the image and its mirror: one where, no loop over the batch.
    # NHWC: the width axis is 2.
    return tf.where(flip[:, None, None, None], tf.reverse(images, [2]), images)  # (N, H, W, C)


def pad_and_crop(images: tf.Tensor, padding: int, offsets) -> tf.Tensor:
    """Zero-pad every side by ``padding``, crop back to ``H x W`` at per-image ``offsets`` ``(N, 2)`` (top, left)."""
    n, h, w = check_images("pad_and_crop", images)
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"pad_and_crop: padding must be an int >= 0, got {padding!r}")
    offsets = check_params("pad_and_crop", "offsets", offsets, (n, 2), "int")  # (N, 2)
    check_values_in("pad_and_crop", "offsets", offsets, 0, 2 * padding)
    offsets = tf.constant(offsets, tf.int64)  # (N, 2)
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])  # (N, H+2p, W+2p, C)
    rows = offsets[:, :1] + tf.range(h, dtype=tf.int64)  # (N, H)
    cols = offsets[:, 1:] + tf.range(w, dtype=tf.int64)  # (N, W)
    # batch_dims=1: image n gathers its own rows[n], then its own cols[n] (no fancy indexing in TF).
    cropped_rows = tf.gather(padded, rows, axis=1, batch_dims=1)  # (N, H, W+2p, C)
    return tf.gather(cropped_rows, cols, axis=2, batch_dims=1)  # (N, H, W, C)


def cutout_mask(n: int, h: int, w: int, centers, size: int) -> tf.Tensor:
    """``True`` inside each image's ``size x size`` square (top-left at ``center - size // 2``): ``(N, H, W)``."""
    top_left = tf.constant(centers, tf.int64) - size // 2  # (N, 2)
    rows = tf.range(h, dtype=tf.int64) - top_left[:, :1]  # (N, H)
    cols = tf.range(w, dtype=tf.int64) - top_left[:, 1:]  # (N, W)
    # Clipping at the borders is free: rows/cols outside the image simply do not exist.
    return ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]  # (N, H, W)


def cutout(images: tf.Tensor, centers, size: int) -> tf.Tensor:
    """Zero a ``size x size`` square (clipped at the borders) centred at each image's ``centers`` ``(N, 2)``."""
    n, h, w = check_images("cutout", images)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"cutout: size must be an int >= 1, got {size!r}")
    centers = check_params("cutout", "centers", centers, (n, 2), "int")  # (N, 2)
    check_values_in("cutout", "centers[:, 0] (rows)", centers[:, 0], 0, h - 1)
    check_values_in("cutout", "centers[:, 1] (columns)", centers[:, 1], 0, w - 1)
    inside = cutout_mask(n, h, w, centers, size)  # (N, H, W)
    # where, not a multiply by 0/1: no -0.0 for negative pixels, exactly like an erase.
    return tf.where(inside[..., None], tf.zeros((), images.dtype), images)  # (N, H, W, C)


def mixup(images: tf.Tensor, labels_onehot: tf.Tensor, lam, perm) -> tuple[tf.Tensor, tf.Tensor]:
    """``lam x + (1 - lam) x[perm]`` for images and labels; ``lam`` a scalar or ``(N,)`` in ``[0, 1]``."""
    n, _, _ = check_images("mixup", images)
    check_labels_onehot("mixup", labels_onehot, n, images.dtype)
    lam = check_lam("mixup", lam, n)
    perm = tf.constant(check_perm("mixup", perm, n))  # (N,)
    # λ in the images' dtype, one per image (a scalar is broadcast to all N explicitly).
    lam = tf.constant(np.broadcast_to(lam, (n,)).astype(dtype_name(images.dtype)))  # (N,)
    mixed = lam[:, None, None, None] * images + (1 - lam)[:, None, None, None] * tf.gather(images, perm)  # (N, H, W, C)
    return mixed, lam[:, None] * labels_onehot + (1 - lam)[:, None] * tf.gather(labels_onehot, perm)  # (N, K)


def cutmix(images: tf.Tensor, labels_onehot: tf.Tensor, boxes, perm) -> tuple[tf.Tensor, tf.Tensor]:
    """Paste ``boxes`` ``(N, 4)`` = (top, left, bottom, right), half-open, of ``x[perm]`` into ``x``;
    labels mix by the pasted area fraction."""
    n, h, w = check_images("cutmix", images)
    check_labels_onehot("cutmix", labels_onehot, n, images.dtype)
    inside, lam = cutmix_mask(n, h, w, boxes)  # (N, H, W), (N,)
    perm = tf.constant(check_perm("cutmix", perm, n))  # (N,)
    mixed = tf.where(inside[..., None], tf.gather(images, perm), images)  # (N, H, W, C)
    lam = tf.cast(lam, images.dtype)  # (N,)
    return mixed, lam[:, None] * labels_onehot + (1 - lam)[:, None] * tf.gather(labels_onehot, perm)  # (N, K)


def cutmix_mask(n: int, h: int, w: int, boxes) -> tuple[tf.Tensor, tf.Tensor]:
    """The paste mask ``(N, H, W)`` of ``boxes`` and ``lam = 1 - area / (H W)`` (float64 ``(N,)``)."""
    boxes = check_params("cutmix", "boxes", boxes, (n, 4), "int")
    # 0 <= top <= bottom <= H and 0 <= left <= right <= W: an empty box (top == bottom) is allowed.
    check_values_in("cutmix", "boxes[:, (0, 2)] (rows)", boxes[:, [0, 2]], 0, h)
    check_values_in("cutmix", "boxes[:, (1, 3)] (columns)", boxes[:, [1, 3]], 0, w)
    if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
        raise ValueError("cutmix: boxes must have top <= bottom and left <= right")
    boxes = tf.constant(boxes, tf.int64)  # (N, 4)
    rows, cols = tf.range(h, dtype=tf.int64), tf.range(w, dtype=tf.int64)  # (H,), (W,)
    in_rows = (rows >= boxes[:, :1]) & (rows < boxes[:, 2:3])  # (N, H)
    in_cols = (cols >= boxes[:, 1:2]) & (cols < boxes[:, 3:4])  # (N, W)
    # float64 before dividing, as NumPy does (TF refuses int64 / float).
    area = tf.cast((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), tf.float64)  # (N,)
    return in_rows[:, :, None] & in_cols[:, None, :], 1.0 - area / (h * w)  # (N, H, W), (N,)


# --- the same ops as modules (tf.GradientTape supplies the backward passes) -----------------------

class HorizontalFlip(Module):
    """:func:`horizontal_flip` as a layer."""

    def forward(self, images: tf.Tensor, flip) -> tf.Tensor:
        check_images("HorizontalFlip", images, self.dtype)
        return horizontal_flip(images, flip)  # (N, H, W, C)


class PadAndCrop(Module):
    """:func:`pad_and_crop` with a fixed ``padding``."""

    def __init__(self, padding: int = 4, dtype="float32"):
        super().__init__(dtype)
        self.padding = padding

    def forward(self, images: tf.Tensor, offsets) -> tf.Tensor:
        check_images("PadAndCrop", images, self.dtype)
        return pad_and_crop(images, self.padding, offsets)  # (N, H, W, C)


class Cutout(Module):
    """:func:`cutout` with a fixed square ``size``."""

    def __init__(self, size: int = 8, dtype="float32"):
        super().__init__(dtype)
        self.size = size

    def forward(self, images: tf.Tensor, centers) -> tf.Tensor:
        check_images("Cutout", images, self.dtype)
        return cutout(images, centers, self.size)  # (N, H, W, C)


class Mixup(Module):
    """:func:`mixup` as a layer: returns ``(images, labels)``."""

    def forward(self, images: tf.Tensor, labels_onehot: tf.Tensor, lam, perm) -> tuple[tf.Tensor, tf.Tensor]:
        check_images("Mixup", images, self.dtype)
        return mixup(images, labels_onehot, lam, perm)  # (N, H, W, C), (N, K)


class CutMix(Module):
    """:func:`cutmix` as a layer: returns ``(images, labels)``."""

    def forward(self, images: tf.Tensor, labels_onehot: tf.Tensor, boxes, perm) -> tuple[tf.Tensor, tf.Tensor]:
        check_images("CutMix", images, self.dtype)
        return cutmix(images, labels_onehot, boxes, perm)  # (N, H, W, C), (N, K)
