"""Day 20: data augmentation (flip, pad-and-crop, cutout, mixup, CutMix) in three trees.

All randomness is an input, drawn once by the ``draw_*`` helpers, so the three trees are compared
number for number through the harness (outputs and the gradients of images and labels; the TF
tree works in NHWC and the harness transposes at its edge). The geometric ops are copies, so they
must also equal the ready-made ones *exactly*: ``torchvision.transforms.v2.functional``
(``horizontal_flip``, ``pad`` + ``crop``, ``erase``), ``tf.image`` (``flip_left_right``,
``pad_to_bounding_box`` + ``crop_to_bounding_box``) and OpenCV (``cv2.flip``,
``cv2.copyMakeBorder`` + slicing). The torchvision and ``tf.image`` versions also run as extra
"trees" in the parity protocol, so their autograd gradients are compared too. Mixup and CutMix
are checked against a per-image loop written from the papers' definitions, and against
torchvision's ``v2.MixUp``/``v2.CutMix``, which draw their own parameters: re-seeding torch
recovers them, and fed those our ops reproduce torchvision's output.
"""
import cv2
import numpy as np
import pytest
import tensorflow as tf
import torch
import torchvision.transforms.v2.functional as TVF

from ml100 import augment
from ml100.backends import get_module
from parity_tests.harness import (NCHW_TO_NHWC, TREES, Case, check_parity, gradcheck_numpy, nchw_to_nhwc, nhwc_to_nchw,
                                  run_tf, run_torch, tf_layout_call, to_canonical, to_native, to_tree)

MODULE = "foundations.augmentation"
N, C, H, W, K = 4, 3, 5, 6, 5
PADDING, SIZE, ALPHA = 2, 3, 1.0
np_mod = get_module("numpy", MODULE)


def onehot(labels, dtype):
    return np.eye(K, dtype=dtype)[labels]


def images_and_labels(dtype, rng, n=N):
    return rng.standard_normal((n, C, H, W)).astype(dtype), onehot(rng.integers(0, K, n), dtype)


# Parameters that exercise every path: some images flip, some not; crops at both extremes; a
# cutout square clipped at a corner; a box touching the border and an empty one.
FLIP = np.array([True, False, True, False])
OFFSETS = np.array([[0, 0], [2 * PADDING, 2 * PADDING], [1, 3], [4, 0]])
CENTERS = np.array([[0, 0], [4, 5], [2, 3], [1, 4]])
LAM = np.array([0.0, 0.3, 0.75, 1.0])
PERM = np.array([2, 0, 3, 1])
BOXES = np.array([[0, 0, 5, 6], [1, 2, 4, 6], [2, 2, 2, 4], [0, 3, 2, 5]])


# --- cases --------------------------------------------------------------------------------------

def case(op, params, **build_kwargs):
    """A parity case for one module; ``params`` is the name -> array of its random parameters."""
    mixing = op in ("Mixup", "CutMix")

    # The batch size is the parameters' (λ may be a scalar; perm never is).
    n = len(params["perm"] if "perm" in params else next(iter(params.values())))

    def inputs(dtype, rng):
        images, labels = images_and_labels(dtype, rng, n)
        return {"images": images, **({"labels_onehot": labels} if mixing else {}), **params}

    return Case(module=MODULE, build=lambda m, dtype, rng: getattr(m, op)(dtype=dtype, **build_kwargs),
                inputs=inputs, differentiable=("images", "labels_onehot") if mixing else ("images",),
                references=REFERENCES.get(op, {}), tf_layouts={"images": NCHW_TO_NHWC}, tf_output_layouts={0: NCHW_TO_NHWC})


def torch_reference(per_image):
    """A runner: ``per_image(image CHW, *its params)`` from torchvision, looped over the batch."""
    def run(state, inputs, cotangents, dtype):
        def call(images, *params):
            return torch.stack([per_image(img, *(p[i].tolist() for p in params)) for i, img in enumerate(images)])
        return run_torch(call, inputs, ("images",), cotangents, params={})
    return run


def tf_reference(per_image):
    """A runner: ``per_image(image HWC, *its params)`` from ``tf.image``, looped over the batch."""
    def run(state, inputs, cotangents, dtype):
        def call(images, *params):
            return tf.stack([per_image(img, *(p.numpy()[i].tolist() for p in params)) for i, img in enumerate(images)])
        wrapped = tf_layout_call(call, list(inputs), {"images": NCHW_TO_NHWC}, {0: NCHW_TO_NHWC})
        return run_tf(wrapped, inputs, ("images",), cotangents, {}, lambda grads: {})
    return run


def tv_erase(img, center):
    top, left = max(center[0] - SIZE // 2, 0), max(center[1] - SIZE // 2, 0)
    bottom, right = min(center[0] - SIZE // 2 + SIZE, H), min(center[1] - SIZE // 2 + SIZE, W)
    return TVF.erase(img, top, left, bottom - top, right - left, v=torch.zeros((), dtype=img.dtype))


REFERENCES = {
    "HorizontalFlip": {
        "torchvision": torch_reference(lambda img, f: TVF.horizontal_flip(img) if f else img),
        "tf.image": tf_reference(lambda img, f: tf.image.flip_left_right(img) if f else img),
    },
    "PadAndCrop": {
        "torchvision": torch_reference(lambda img, o: TVF.crop(TVF.pad(img, [PADDING]), o[0], o[1], H, W)),
        "tf.image": tf_reference(lambda img, o: tf.image.crop_to_bounding_box(
            tf.image.pad_to_bounding_box(img, PADDING, PADDING, H + 2 * PADDING, W + 2 * PADDING), o[0], o[1], H, W)),
    },
    "Cutout": {"torchvision": torch_reference(tv_erase)},
}

CASES = {
    "flip": lambda: case("HorizontalFlip", {"flip": FLIP}),
    "pad_and_crop": lambda: case("PadAndCrop", {"offsets": OFFSETS}, padding=PADDING),
    "cutout": lambda: case("Cutout", {"centers": CENTERS}, size=SIZE),
    "mixup": lambda: case("Mixup", {"lam": LAM, "perm": PERM}),
    "mixup_scalar_lam": lambda: case("Mixup", {"lam": np.float64(0.4), "perm": PERM}),
    "cutmix": lambda: case("CutMix", {"boxes": BOXES, "perm": PERM}),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    check_parity(CASES[name](), dtype)


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck(name):
    gradcheck_numpy(CASES[name]())


def test_parity_with_drawn_parameters():
    """Parameters from the draw helpers (not hand-picked) on a larger batch: still equal everywhere."""
    rng = np.random.default_rng(11)
    n = 16
    lam, perm = augment.draw_mixup(n, ALPHA, rng)
    boxes, perm2 = augment.draw_cutmix(n, H, W, ALPHA, rng)
    params = {"flip": augment.draw_flip(n, rng), "offsets": augment.draw_crop_offsets(n, PADDING, rng),
              "centers": augment.draw_cutout_centers(n, H, W, rng)}
    for c in (case("HorizontalFlip", {"flip": params["flip"]}),
              case("PadAndCrop", {"offsets": params["offsets"]}, padding=PADDING),
              case("Cutout", {"centers": params["centers"]}, size=SIZE),
              case("Mixup", {"lam": lam, "perm": perm}), case("CutMix", {"boxes": boxes, "perm": perm2})):
        check_parity(c, "float64")


# --- exact equality: these are copies ------------------------------------------------------------

def outputs_of(op, *params, dtype="float32"):
    """Every tree's functional ``op`` on the same images, back in NCHW."""
    images = np.random.default_rng(0).standard_normal((N, C, H, W)).astype(dtype)
    outs = {tree: to_canonical(tree, getattr(get_module(tree, MODULE), op)(to_native(tree, images), *params))
            for tree in TREES}
    return images, outs


def test_flip_equals_torchvision_tf_image_and_opencv_exactly():
    images, outs = outputs_of("horizontal_flip", FLIP)
    hwc = nchw_to_nhwc(images)
    refs = {
        "torchvision": np.stack([TVF.horizontal_flip(torch.from_numpy(x)).numpy() if f else x for x, f in zip(images, FLIP)]),
        "tf.image": nhwc_to_nchw(np.stack([tf.image.flip_left_right(x).numpy() if f else x for x, f in zip(hwc, FLIP)])),
        "cv2": nhwc_to_nchw(np.stack([cv2.flip(x, 1) if f else x for x, f in zip(hwc, FLIP)])),
    }
    for name, out in {**outs, **refs}.items():
        np.testing.assert_array_equal(out, refs["torchvision"], err_msg=name)


def test_pad_and_crop_equals_torchvision_tf_image_and_opencv_exactly():
    images, outs = outputs_of("pad_and_crop", PADDING, OFFSETS)
    p = PADDING
    hwc = nchw_to_nhwc(images)
    refs = {
        "torchvision": np.stack([TVF.crop(TVF.pad(torch.from_numpy(x), [p]), t, l, H, W).numpy()
                                 for x, (t, l) in zip(images, OFFSETS.tolist())]),
        "tf.image": nhwc_to_nchw(np.stack([tf.image.crop_to_bounding_box(tf.image.pad_to_bounding_box(x, p, p, H + 2 * p, W + 2 * p),
                                                                         t, l, H, W).numpy()
                                           for x, (t, l) in zip(hwc, OFFSETS.tolist())])),
        "cv2": nhwc_to_nchw(np.stack([cv2.copyMakeBorder(x, p, p, p, p, cv2.BORDER_CONSTANT, value=0)[t:t + H, l:l + W]
                                      for x, (t, l) in zip(hwc, OFFSETS.tolist())])),
    }
    for name, out in {**outs, **refs}.items():
        np.testing.assert_array_equal(out, refs["torchvision"], err_msg=name)
    # Offset (p, p) is the identity.
    np.testing.assert_array_equal(np_mod.pad_and_crop(images, p, np.full((N, 2), p)), images)


def test_cutout_equals_torchvision_erase_exactly():
    images, outs = outputs_of("cutout", CENTERS, SIZE)
    ref = np.stack([tv_erase(torch.from_numpy(x), c).numpy() for x, c in zip(images, CENTERS.tolist())])
    for name, out in outs.items():
        np.testing.assert_array_equal(out, ref, err_msg=name)
        # No -0.0 where a negative pixel was erased: where, not a multiply.
        assert not np.any(np.signbit(out) & (out == 0)), name
    # The corner square (centre (0, 0), size 3) is clipped to 2 x 2.
    assert np.count_nonzero(ref[0, 0] == 0) == 4


def loop_mixup(images, labels, lam, perm):
    lam = np.broadcast_to(lam, (len(images),)).astype(images.dtype)
    x = np.stack([lam[n] * images[n] + (1 - lam[n]) * images[perm[n]] for n in range(len(images))])
    y = np.stack([lam[n] * labels[n] + (1 - lam[n]) * labels[perm[n]] for n in range(len(images))])
    return x, y


def loop_cutmix(images, labels, boxes, perm):
    x, y = images.copy(), labels.copy()
    for n, (t, l, b, r) in enumerate(boxes):
        x[n, :, t:b, l:r] = images[perm[n], :, t:b, l:r]
        lam = images.dtype.type(1 - (b - t) * (r - l) / (H * W))
        y[n] = lam * labels[n] + (1 - lam) * labels[perm[n]]
    return x, y


@pytest.mark.parametrize("op,params,loop", [("mixup", (LAM, PERM), loop_mixup), ("cutmix", (BOXES, PERM), loop_cutmix)])
def test_mixing_equals_the_per_image_definition(op, params, loop):
    images, labels = images_and_labels("float32", np.random.default_rng(1))
    expected = loop(images, labels, *params)
    for tree in TREES:
        x, y = getattr(get_module(tree, MODULE), op)(to_native(tree, images), to_tree(tree, labels), *params)
        np.testing.assert_array_equal(to_canonical(tree, x), expected[0], err_msg=tree)
        np.testing.assert_array_equal(np.asarray(y), expected[1], err_msg=tree)


@pytest.mark.parametrize("op", ["mixup", "cutmix"])
def test_mixed_labels_sum_to_one(op):
    rng = np.random.default_rng(2)
    n = 32
    images = rng.standard_normal((n, C, H, W))
    labels = onehot(rng.integers(0, K, n), "float64")
    params = augment.draw_mixup(n, ALPHA, rng) if op == "mixup" else augment.draw_cutmix(n, H, W, ALPHA, rng)
    for tree in TREES:
        native = to_native(tree, images)
        _, y = getattr(get_module(tree, MODULE), op)(native, to_tree(tree, labels), *params)
        np.testing.assert_allclose(np.asarray(y).sum(axis=1), 1.0, rtol=0, atol=1e-15, err_msg=tree)
        assert np.all(np.asarray(y) >= 0), tree


def test_cutmix_label_weight_is_the_clipped_pasted_area():
    """λ = 1 - (pasted pixels)/(H W): count the pixels that changed (images are all distinct)."""
    images = np.arange(N * C * H * W, dtype="float64").reshape(N, C, H, W)
    labels = onehot(np.arange(N) % K, "float64")
    x, y = np_mod.cutmix(images, labels, BOXES, PERM)
    pasted = (x != images)[:, 0].sum(axis=(1, 2))
    np.testing.assert_array_equal(y[np.arange(N), np.arange(N) % K], 1 - pasted / (H * W))


# --- the draw helpers ----------------------------------------------------------------------------

DRAWS = {
    "draw_flip": (N, ),
    "draw_crop_offsets": (N, PADDING),
    "draw_cutout_centers": (N, H, W),
    "draw_mixup": (N, ALPHA),
    "draw_cutmix": (N, H, W, ALPHA),
}


@pytest.mark.parametrize("name", list(DRAWS))
def test_one_seed_one_draw(name):
    """The draw helpers live once, in ml100.augment, for every tree: the same seed gives the same
    arrays (values and dtypes), and another seed gives other ones."""
    draw = getattr(augment, name)
    first, again, other = (draw(*DRAWS[name], np.random.default_rng(seed)) for seed in (5, 5, 6))
    as_list = lambda d: list(d) if isinstance(d, tuple) else [d]  # mixup/cutmix: (weights or boxes, perm)
    for a, b, c in zip(as_list(first), as_list(again), as_list(other)):
        assert type(a) is np.ndarray and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(as_list(first), as_list(other)))


def test_draws_are_in_range_and_valid():
    rng = np.random.default_rng(6)
    n = 2000
    flip = augment.draw_flip(n, rng, p=0.25)
    assert flip.dtype == bool and 0.2 < flip.mean() < 0.3
    offsets = augment.draw_crop_offsets(n, PADDING, rng)
    assert offsets.min() == 0 and offsets.max() == 2 * PADDING
    centers = augment.draw_cutout_centers(n, H, W, rng)
    assert centers[:, 0].max() == H - 1 and centers[:, 1].max() == W - 1 and centers.min() == 0
    lam, perm = augment.draw_mixup(n, ALPHA, rng)
    assert np.all((lam >= 0) & (lam <= 1)) and np.array_equal(np.sort(perm), np.arange(n))
    boxes, perm = augment.draw_cutmix(n, H, W, ALPHA, rng)
    assert np.all(boxes[:, 2] >= boxes[:, 0]) and np.all(boxes[:, 3] >= boxes[:, 1])
    assert boxes.min() >= 0 and boxes[:, [0, 2]].max() <= H and boxes[:, [1, 3]].max() <= W
    # The whole pipeline accepts what the helpers draw.
    images = rng.standard_normal((n, 1, H, W))
    np_mod.cutmix(images, onehot(rng.integers(0, K, n), "float64"), boxes, perm)


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("tree", TREES)
def test_bad_input(tree):
    m = get_module(tree, MODULE)
    images, labels = images_and_labels("float32", np.random.default_rng(3))
    x, y = to_native(tree, images), to_tree(tree, labels)
    with pytest.raises(ValueError, match=r"horizontal_flip: images must have 4 dimensions, got shape \(\d+, \d+, \d+\)"):
        m.horizontal_flip(x[0], FLIP)
    with pytest.raises(TypeError, match="horizontal_flip: flip must have a bool dtype, got int64"):
        m.horizontal_flip(x, FLIP.astype(np.int64))
    with pytest.raises(ValueError, match=r"horizontal_flip: flip must have shape \(4,\), got \(3,\)"):
        m.horizontal_flip(x, FLIP[:3])
    with pytest.raises(TypeError, match="horizontal_flip: images must have dtype float32 or float64, got int64"):
        m.horizontal_flip(to_native(tree, images.astype(np.int64)), FLIP)
    with pytest.raises(ValueError, match=r"pad_and_crop: offsets must lie in \[0, 4\], got values in \[-1, 4\]"):
        m.pad_and_crop(x, PADDING, OFFSETS - (OFFSETS == 0) * 1)
    with pytest.raises(ValueError, match=r"pad_and_crop: offsets must lie in \[0, 4\], got values in \[1, 5\]"):
        m.pad_and_crop(x, PADDING, OFFSETS + 1)
    with pytest.raises(ValueError, match="pad_and_crop: padding must be an int >= 0, got -1"):
        m.pad_and_crop(x, -1, OFFSETS)
    with pytest.raises(ValueError, match=r"cutout: centers\[:, 1\] \(columns\) must lie in \[0, 5\], got values in \[1, 6\]"):
        m.cutout(x, CENTERS + np.array([0, 1]), SIZE)
    with pytest.raises(ValueError, match="cutout: size must be an int >= 1, got 0"):
        m.cutout(x, CENTERS, 0)
    with pytest.raises(ValueError, match=r"mixup: perm must be a permutation of 0..3, got \[0, 0, 1, 2\]"):
        m.mixup(x, y, LAM, np.array([0, 0, 1, 2]))
    with pytest.raises(ValueError, match=r"mixup: lam must lie in \[0.0, 1.0\], got values in \[0.0, 1.5\]"):
        m.mixup(x, y, np.array([0.0, 0.3, 1.5, 1.0]), PERM)
    with pytest.raises(ValueError, match=r"mixup: lam must lie in \[0.0, 1.0\], got values in \[-0.1, -0.1\]"):
        m.mixup(x, y, -0.1, PERM)
    with pytest.raises(TypeError, match="mixup: lam must have a float dtype, got int64"):
        m.mixup(x, y, np.array([0, 1, 0, 1]), PERM)
    with pytest.raises(TypeError, match="mixup: labels_onehot must have dtype float32, got float64"):
        m.mixup(x, to_tree(tree, labels.astype(np.float64)), LAM, PERM)
    with pytest.raises(ValueError, match=r"mixup: labels_onehot must have shape \(4,\), got \(3,\)"):
        m.mixup(x, y[:3], LAM, PERM)
    with pytest.raises(ValueError, match="cutmix: boxes must have top <= bottom and left <= right"):
        m.cutmix(x, y, BOXES[:, [2, 1, 0, 3]], PERM)
    with pytest.raises(ValueError, match=r"cutmix: boxes\[:, \(0, 2\)\] \(rows\) must lie in \[0, 5\], got values in \[1, 6\]"):
        m.cutmix(x, y, BOXES + 1, PERM)
    with pytest.raises(ValueError, match=r"cutmix: perm must be a permutation"):
        m.cutmix(x, y, BOXES, PERM + 1)
    with pytest.raises(TypeError, match="Mixup: images must have dtype float64, got float32"):
        m.Mixup(dtype="float64")(x, y, LAM, PERM)
    with pytest.raises(TypeError, match="PadAndCrop: images must have dtype float64, got float32"):
        m.PadAndCrop(PADDING, dtype="float64")(x, OFFSETS)


@pytest.mark.parametrize("name", ["MixUp", "CutMix"])
def test_torchvision_mixup_and_cutmix_are_our_ops_with_a_rolled_permutation(name):
    """torchvision's ``v2.MixUp``/``v2.CutMix`` draw their own parameters: one λ (or box) per batch
    and the partner ``labels.roll(1, 0)``, i.e. ``perm[n] = n - 1``. Re-seeding torch recovers the
    parameters it drew (``make_params``); fed those, our ops give its images bit for bit (float64)
    and its labels (torchvision makes them float32 and multiplies by a Python-float λ, so to float32
    rounding)."""
    import torchvision.transforms.v2 as T

    rng = np.random.default_rng(4)
    n = 8
    images = rng.standard_normal((n, C, H, W))
    labels = rng.integers(0, K, n)
    transform = getattr(T, name)(alpha=ALPHA, num_classes=K)
    # Seed 4 draws a non-empty CutMix box touching the border: (x1, y1, x2, y2) = (2, 0, 6, 4).
    torch.manual_seed(4)
    params = transform.make_params([torch.from_numpy(images)])
    assert 0 < params.get("lam", params.get("lam_adjusted")) < 1
    torch.manual_seed(4)
    tv_images, tv_labels = transform(torch.from_numpy(images), torch.from_numpy(labels))
    perm = (np.arange(n) - 1) % n
    for tree in TREES:
        m = get_module(tree, MODULE)
        if name == "MixUp":
            x, _ = m.mixup(to_native(tree, images), to_tree(tree, onehot(labels, "float64")), np.float64(params["lam"]), perm)
            _, y = m.mixup(to_native(tree, images.astype("float32")), to_tree(tree, onehot(labels, "float32")),
                           np.float64(params["lam"]), perm)
        else:
            x1, y1, x2, y2 = params["box"]
            boxes = np.tile([y1, x1, y2, x2], (n, 1))
            x, _ = m.cutmix(to_native(tree, images), to_tree(tree, onehot(labels, "float64")), boxes, perm)
            _, y = m.cutmix(to_native(tree, images.astype("float32")), to_tree(tree, onehot(labels, "float32")), boxes, perm)
            assert np.isclose(1 - (y2 - y1) * (x2 - x1) / (H * W), params["lam_adjusted"], rtol=0, atol=1e-15)
        np.testing.assert_array_equal(to_canonical(tree, x), tv_images.numpy(), err_msg=tree)
        np.testing.assert_allclose(np.asarray(y), tv_labels.numpy(), rtol=2e-7, atol=0, err_msg=tree)
