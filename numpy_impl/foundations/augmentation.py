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
trees) draw them from a NumPy ``Generator`` — one seed, one augmentation, everywhere. Images are NCHW here.
"""
from __future__ import annotations

import numpy as np

from ml100.augment import check_labels_onehot, check_lam, check_params, check_perm, check_values_in
from ml100.checks import check_input, dtype_name

from ..module import Module


def check_images(owner: str, images, expected_dtype: str | None = None) -> tuple[int, int, int]:
    """A float image batch; returns ``(N, H, W)``. NCHW here."""
    check_input(owner, "images", images.shape, images.dtype, expected_dtype=expected_dtype, ndim=4)
    if dtype_name(images.dtype) not in ("float32", "float64"):
        raise TypeError(f"{owner}: images must have dtype float32 or float64, got {dtype_name(images.dtype)}")
    n, _, h, w = images.shape
    return n, h, w


# --- the ops ------------------------------------------------------------------------------------

def horizontal_flip(images: np.ndarray, flip) -> np.ndarray:
    """Mirror left-right the images whose ``flip`` flag (bool ``(N,)``) is set."""
    n, _, _ = check_images("horizontal_flip", images)
    flip = check_params("horizontal_flip", "flip", flip, (n,), "bool")  # (N,)
    # A per-image choice between the image and its mirror: one where, no loop over the batch.
    return np.where(flip[:, None, None, None], images[..., ::-1], images)  # (N, C, H, W)


def pad_and_crop(images: np.ndarray, padding: int, offsets) -> np.ndarray:
    """Zero-pad every side by ``padding``, crop back to ``H x W`` at per-image ``offsets`` ``(N, 2)`` (top, left)."""
    n, h, w = check_images("pad_and_crop", images)
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"pad_and_crop: padding must be an int >= 0, got {padding!r}")
    offsets = check_params("pad_and_crop", "offsets", offsets, (n, 2), "int")  # (N, 2)
    check_values_in("pad_and_crop", "offsets", offsets, 0, 2 * padding)
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))  # (N, C, H+2p, W+2p)
    rows = offsets[:, :1] + np.arange(h)  # (N, H)
    cols = offsets[:, 1:] + np.arange(w)  # (N, W)
    # Fancy indices broadcast to (N, C, H, W): image n reads rows[n] x cols[n] of its own padded copy.
    batch = np.arange(n)[:, None, None, None]  # (N, 1, 1, 1)
    channel = np.arange(images.shape[1])[None, :, None, None]  # (1, C, 1, 1)
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, H, W)


def cutout_mask(n: int, h: int, w: int, centers, size: int) -> np.ndarray:
    """``True`` inside each image's ``size x size`` square (top-left at ``center - size // 2``): ``(N, H, W)``."""
    top_left = centers - size // 2  # (N, 2)
    rows = np.arange(h) - top_left[:, :1]  # (N, H)
    cols = np.arange(w) - top_left[:, 1:]  # (N, W)
    # Clipping at the borders is free: rows/cols outside the image simply do not exist.
    return ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]  # (N, H, W)


def cutout(images: np.ndarray, centers, size: int) -> np.ndarray:
    """Zero a ``size x size`` square (clipped at the borders) centred at each image's ``centers`` ``(N, 2)``."""
    n, h, w = check_images("cutout", images)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"cutout: size must be an int >= 1, got {size!r}")
    centers = check_params("cutout", "centers", centers, (n, 2), "int")  # (N, 2)
    check_values_in("cutout", "centers[:, 0] (rows)", centers[:, 0], 0, h - 1)
    check_values_in("cutout", "centers[:, 1] (columns)", centers[:, 1], 0, w - 1)
    inside = cutout_mask(n, h, w, centers, size)  # (N, H, W)
    # where, not a multiply by 0/1: no -0.0 for negative pixels, exactly like an erase.
    return np.where(inside[:, None], np.zeros((), images.dtype), images)  # (N, C, H, W)


def mixup(images: np.ndarray, labels_onehot: np.ndarray, lam, perm) -> tuple[np.ndarray, np.ndarray]:
    """``lam x + (1 - lam) x[perm]`` for images and labels; ``lam`` a scalar or ``(N,)`` in ``[0, 1]``."""
    n, _, _ = check_images("mixup", images)
    check_labels_onehot("mixup", labels_onehot, n, images.dtype)
    lam = check_lam("mixup", lam, n)
    perm = check_perm("mixup", perm, n)  # (N,)
    # λ in the images' dtype, one per image (a scalar is broadcast to all N explicitly).
    lam = np.broadcast_to(lam, (n,)).astype(images.dtype)  # (N,)
    mixed = lam[:, None, None, None] * images + (1 - lam)[:, None, None, None] * images[perm]  # (N, C, H, W)
    return mixed, lam[:, None] * labels_onehot + (1 - lam)[:, None] * labels_onehot[perm]  # (N, K)


def cutmix(images: np.ndarray, labels_onehot: np.ndarray, boxes, perm) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``boxes`` ``(N, 4)`` = (top, left, bottom, right), half-open, of ``x[perm]`` into ``x``;
    labels mix by the pasted area fraction."""
    n, h, w = check_images("cutmix", images)
    check_labels_onehot("cutmix", labels_onehot, n, images.dtype)
    inside, lam = cutmix_mask(n, h, w, boxes)  # (N, H, W), (N,)
    perm = check_perm("cutmix", perm, n)  # (N,)
    mixed = np.where(inside[:, None], images[perm], images)  # (N, C, H, W)
    lam = lam.astype(images.dtype)  # (N,)
    return mixed, lam[:, None] * labels_onehot + (1 - lam)[:, None] * labels_onehot[perm]  # (N, K)


def cutmix_mask(n: int, h: int, w: int, boxes) -> tuple[np.ndarray, np.ndarray]:
    """The paste mask ``(N, H, W)`` of ``boxes`` and ``lam = 1 - area / (H W)`` (float64 ``(N,)``)."""
    boxes = check_params("cutmix", "boxes", boxes, (n, 4), "int")
    # 0 <= top <= bottom <= H and 0 <= left <= right <= W: an empty box (top == bottom) is allowed.
    check_values_in("cutmix", "boxes[:, (0, 2)] (rows)", boxes[:, [0, 2]], 0, h)
    check_values_in("cutmix", "boxes[:, (1, 3)] (columns)", boxes[:, [1, 3]], 0, w)
    if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
        raise ValueError("cutmix: boxes must have top <= bottom and left <= right")
    rows, cols = np.arange(h), np.arange(w)  # (H,), (W,)
    in_rows = (rows >= boxes[:, :1]) & (rows < boxes[:, 2:3])  # (N, H)
    in_cols = (cols >= boxes[:, 1:2]) & (cols < boxes[:, 3:4])  # (N, W)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (N,)
    return in_rows[:, :, None] & in_cols[:, None, :], 1.0 - area / (h * w)  # (N, H, W), (N,)


# --- the same ops as modules (the NumPy tree adds their backward passes) --------------------------

class HorizontalFlip(Module):
    """:func:`horizontal_flip` as a layer."""

    def forward(self, images: np.ndarray, flip) -> np.ndarray:
        check_images("HorizontalFlip", images, self.dtype)
        self.save_for_backward(np.asarray(flip))
        return horizontal_flip(images, flip)  # (N, C, H, W)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        flip = self.saved_for_backward()  # (N,)
        # A mirror is its own inverse and its own transpose: flip the gradient back.
        return horizontal_flip(grad_out, flip)  # (N, C, H, W)


class PadAndCrop(Module):
    """:func:`pad_and_crop` with a fixed ``padding``."""

    def __init__(self, padding: int = 4, dtype="float32"):
        super().__init__(dtype)
        self.padding = padding

    def forward(self, images: np.ndarray, offsets) -> np.ndarray:
        check_images("PadAndCrop", images, self.dtype)
        self.save_for_backward(np.asarray(offsets))
        return pad_and_crop(images, self.padding, offsets)  # (N, C, H, W)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        offsets = self.saved_for_backward()  # (N, 2)
        # y[i] = x[i + o - p]: the adjoint reads g[k - o + p] = g[k + (2p - o) - p], the crop at the
        # mirrored offset 2p - o (pixels shifted out of the window get no gradient, as they should).
        return pad_and_crop(grad_out, self.padding, 2 * self.padding - offsets)  # (N, C, H, W)


class Cutout(Module):
    """:func:`cutout` with a fixed square ``size``."""

    def __init__(self, size: int = 8, dtype="float32"):
        super().__init__(dtype)
        self.size = size

    def forward(self, images: np.ndarray, centers) -> np.ndarray:
        check_images("Cutout", images, self.dtype)
        self.save_for_backward(np.asarray(centers))
        return cutout(images, centers, self.size)  # (N, C, H, W)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        centers = self.saved_for_backward()  # (N, 2)
        # Zeroed pixels do not depend on x: the gradient is masked by the same square.
        return cutout(grad_out, centers, self.size)  # (N, C, H, W)


class Mixup(Module):
    """:func:`mixup` as a layer: returns ``(images, labels)``; backward returns both gradients."""

    def forward(self, images: np.ndarray, labels_onehot: np.ndarray, lam, perm) -> tuple[np.ndarray, np.ndarray]:
        check_images("Mixup", images, self.dtype)
        out = mixup(images, labels_onehot, lam, perm)  # (N, C, H, W), (N, K)
        lam = np.broadcast_to(np.asarray(lam), (images.shape[0],)).astype(images.dtype)  # (N,)
        self.save_for_backward(lam, np.asarray(perm))
        return out

    def backward(self, grad_images: np.ndarray, grad_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # x'[n] = λ_n x[n] + (1-λ_n) x[π(n)]: x[m] receives λ_m g[m] directly and (1-λ_n) g[n] from
        # the n with π(n) = m, i.e. n = π⁻¹(m) — a gather by the inverse permutation.
        lam, perm = self.saved_for_backward()  # (N,), (N,)
        inverse = np.argsort(perm)  # (N,)
        return tuple(_mix_adjoint(g, lam, 1 - lam, inverse) for g in (grad_images, grad_labels))


def _mix_adjoint(grad: np.ndarray, keep: np.ndarray, take: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Adjoint of ``keep * x + take * x[perm]`` (``keep``/``take`` per image or per element): ``grad``'s shape."""
    keep = keep.reshape(keep.shape + (1,) * (grad.ndim - keep.ndim))  # broadcastable to grad
    take = take.reshape(take.shape + (1,) * (grad.ndim - take.ndim))  # broadcastable to grad
    return keep * grad + (take * grad)[inverse]  # grad.shape


class CutMix(Module):
    """:func:`cutmix` as a layer: returns ``(images, labels)``; backward returns both gradients."""

    def forward(self, images: np.ndarray, labels_onehot: np.ndarray, boxes, perm) -> tuple[np.ndarray, np.ndarray]:
        n, h, w = check_images("CutMix", images, self.dtype)
        out = cutmix(images, labels_onehot, boxes, perm)  # (N, C, H, W), (N, K)
        inside, lam = cutmix_mask(n, h, w, boxes)  # (N, H, W), (N,)
        self.save_for_backward(inside[:, None].astype(images.dtype), lam.astype(images.dtype), np.asarray(perm))
        return out

    def backward(self, grad_images: np.ndarray, grad_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside, lam, perm = self.saved_for_backward()  # (N, 1, H, W), (N,), (N,)
        inverse = np.argsort(perm)  # (N,)
        # Pixels: outside the box x[n] keeps its own gradient; inside, it goes to the pasted source
        # x[π(n)] — the same adjoint as mixup's, with a 0/1 mask in place of λ.
        grad_x = _mix_adjoint(grad_images, 1 - inside, inside, inverse)  # (N, C, H, W)
        return grad_x, _mix_adjoint(grad_labels, lam, 1 - lam, inverse)  # (N, K)
