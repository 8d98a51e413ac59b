"""Days 60-62: the generated scenes and the grid/anchor targets (neutral, ``ml100.scenes``); the tiny
YOLO and its loss in three trees against a ``torch.nn`` network and a loss written with
``torch.nn.functional``, fed the same weights; decoding with per-class NMS across the trees."""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ml100.backends import get_module
from ml100.configs import ConfigError, YOLOConfig
from ml100.scenes import SHAPE_NAMES, assign_targets, make_scenes, shape_iou
from parity_tests.harness import (NCHW_TO_NHWC, Case, assert_raises_exactly, check_parity, gradcheck_numpy,
                                  torch_functional_reference, torch_module_reference, to_tree)
from parity_tests.scripts import load_script, refusal

MODULE = "modern.yolo"
#: Tiny: a 16-pixel image, grid 4x4 (stride 4), two anchors, three classes -> 16 head channels.
CONFIG = YOLOConfig(channels=(3, 4, 5), image_size=16, anchors=(3, 3, 6, 5))
FIELDS = 5 + CONFIG.num_classes


class TorchNNYOLO(nn.Module):
    """The same network from torch.nn's layers, under the same state-dict names."""

    def __init__(self, config: YOLOConfig):
        super().__init__()
        layers, in_channels = [], config.in_channels
        for index, out_channels in enumerate(config.channels):
            layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not config.batch_norm))
            if config.batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.LeakyReLU(0.1))
            if index < len(config.channels) - 1:
                layers.append(nn.MaxPool2d(2))
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(in_channels, config.num_anchors * FIELDS, 1)

    def forward(self, x):
        return self.head(self.features(x))


def model_case(batch_norm=True, train=True, batch=2, image_size=16):
    config = replace(CONFIG, batch_norm=batch_norm, image_size=image_size)
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.YOLO(config, dtype=dtype, rng=rng).train(train),
        inputs=lambda dtype, rng: {"x": rng.uniform(0, 1, (batch, 3, image_size, image_size)).astype(dtype)},
        references={"torch.nn": torch_module_reference(lambda dtype: TorchNNYOLO(config).train(train))},
        tf_layouts={"x": NCHW_TO_NHWC},
        tf_output_layouts={0: NCHW_TO_NHWC},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_norm,train", [(True, True), (True, False), (False, True)])
def test_yolo_parity(batch_norm, train, dtype):
    check_parity(model_case(batch_norm, train), dtype)


def test_yolo_gradcheck():
    # Eval mode: train-mode batch norm has its own gradcheck (test_batchnorm.py).
    gradcheck_numpy(model_case(batch_norm=True, train=False, batch=1, image_size=8))


# ---- loss --------------------------------------------------------------------------------------
def random_targets(batch: int, dtype: str, rng: np.random.Generator):
    """Targets of 1-3 random boxes per image (two of image 0 share a cell, exercising both anchors)."""
    boxes, labels = [], []
    for image in range(batch):
        k = 3 if image == 0 else int(rng.integers(1, 4))
        corner = rng.uniform(0, 8, (k, 2))
        size = rng.uniform(2, 8, (k, 2))
        if image == 0:
            corner[1], size[:2] = corner[0] + 0.25, ((3, 3), (6, 5))
        boxes.append(np.concatenate([corner, np.minimum(corner + size, 16)], axis=1))
        labels.append(rng.integers(0, CONFIG.num_classes, k))
    return assign_targets(boxes, labels, CONFIG, dtype)


def loss_inputs(batch=2):
    def inputs(dtype, rng):
        targets = random_targets(batch, dtype, rng)
        predictions = rng.standard_normal((batch, CONFIG.num_anchors * FIELDS, 4, 4)).astype(dtype)
        return {"predictions": predictions, "target": targets.packed()}
    return inputs


def functional_yolo_loss(predictions, target, lambda_coord=5.0, lambda_noobj=0.5):
    """The loss from torch.nn.functional's ready-made pieces (the reference)."""
    n = predictions.shape[0]
    objectness, boxes, classes = target[..., 0], target[..., 1:5], target[..., 5].long()
    fields = predictions.reshape(n, CONFIG.num_anchors, FIELDS, 4, 4).permute(0, 3, 4, 1, 2)  # (N, S, S, A, 5+C)
    is_object = objectness == 1
    weight = torch.where(is_object, 1.0, lambda_noobj).to(predictions.dtype)
    obj = F.binary_cross_entropy_with_logits(fields[..., 0], objectness, weight=weight, reduction="sum")
    chosen = fields[is_object]
    box = F.mse_loss(torch.cat([torch.sigmoid(chosen[:, 1:3]), chosen[:, 3:5]], 1), boxes[is_object], reduction="sum")
    cls = F.cross_entropy(chosen[:, 5:], classes[is_object], reduction="sum")
    return (obj + lambda_coord * box + cls) / n


TARGET_FINITE = ("ml100.scenes.assign_targets' output: 0/1 objectness, offsets of real boxes, class indices; finite by "
                 "construction (the loss refuses anything else)")


def loss_case(batch=2):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.YOLOLoss(CONFIG, dtype=dtype),
        inputs=loss_inputs(batch),
        differentiable=("predictions",),
        references={"torch.nn.functional": torch_functional_reference(functional_yolo_loss, differentiable=("predictions",))},
        tf_layouts={"predictions": NCHW_TO_NHWC},
        special_finite_inputs={"target": TARGET_FINITE},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_yolo_loss_parity(dtype):
    check_parity(loss_case(), dtype)


def test_yolo_loss_gradcheck():
    gradcheck_numpy(loss_case(batch=1))


def test_numpy_loss_used_twice_sums_gradients_like_autograd():
    """Two calls, then two backwards (last in, first out): the NumPy input gradients match autograd's."""
    rng = np.random.default_rng(5)
    first, second = loss_inputs()("float64", rng), loss_inputs()("float64", rng)
    loss = get_module("numpy", MODULE).YOLOLoss(CONFIG, dtype="float64")
    values = [loss(*first.values()), loss(*second.values())]
    grads = [loss.backward(3.0), loss.backward(-2.0)][::-1]
    for inputs, value, grad, scale in zip((first, second), values, grads, (-2.0, 3.0)):
        tensors = [torch.tensor(v, requires_grad=name == "predictions") for name, v in inputs.items()]
        reference = functional_yolo_loss(*tensors)
        (scale * reference).backward()
        np.testing.assert_allclose(value, reference.item(), rtol=1e-12)
        np.testing.assert_allclose(grad, tensors[0].grad.numpy(), rtol=1e-10, atol=1e-13)


# ---- decoding ----------------------------------------------------------------------------------
def torchvision_decode(predictions, score_threshold, iou_threshold):
    """The decoding written with torch ops and ``torchvision.ops.batched_nms`` (the reference)."""
    import torchvision

    n = predictions.shape[0]
    fields = predictions.reshape(n, CONFIG.num_anchors, FIELDS, 4, 4).permute(0, 3, 4, 1, 2)  # (N, S, S, A, 5+C)
    rows, cols = torch.meshgrid(torch.arange(4, dtype=fields.dtype), torch.arange(4, dtype=fields.dtype), indexing="ij")
    anchors = torch.tensor(CONFIG.anchor_sizes(), dtype=fields.dtype)
    centre = torch.stack([cols[..., None] + fields[..., 1].sigmoid(), rows[..., None] + fields[..., 2].sigmoid()], -1) * CONFIG.stride
    size = anchors * fields[..., 3:5].exp()
    boxes = torch.cat([centre - size / 2, centre + size / 2], -1).reshape(-1, 4)
    probs, labels = fields[..., 5:].softmax(-1).max(-1)
    scores = (fields[..., 0].sigmoid() * probs).reshape(-1)
    labels, images = labels.reshape(-1), torch.arange(n).repeat_interleave(4 * 4 * CONFIG.num_anchors)
    candidates = torch.nonzero(scores > score_threshold)[:, 0]
    kept = candidates[torchvision.ops.batched_nms(boxes[candidates], scores[candidates],
                                                  images[candidates] * CONFIG.num_classes + labels[candidates], iou_threshold)]
    return boxes[kept], scores[kept], labels[kept], images[kept]


def decode_case(score_threshold=0.3, iou_threshold=0.4):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: (lambda p: m.decode(p, CONFIG, score_threshold, iou_threshold)),
        inputs=lambda dtype, rng: {"predictions": (2.0 * rng.standard_normal((3, CONFIG.num_anchors * FIELDS, 4, 4))).astype(dtype)},
        tf_layouts={"predictions": NCHW_TO_NHWC},
        output_names=("boxes", "scores", "labels", "images"),
        references={"torchvision.ops": torch_functional_reference(
            lambda p: torchvision_decode(p, score_threshold, iou_threshold), differentiable=(), forward_only=True)},
        forward_only=True,
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_decode_parity_keeps_the_same_detections(dtype):
    results = check_parity(decode_case(), dtype)
    _, scores, labels, images = results["numpy"].outputs
    assert 5 < len(scores) < 3 * 16 * 2, "the case should keep some detections and suppress others"
    assert labels.dtype == images.dtype == np.int64 and set(images.tolist()) == {0, 1, 2}


def test_decode_inverts_the_targets():
    """Logits built from the targets (large objectness where there is an object) decode to the true boxes."""
    scenes = make_scenes(4, seed=3, image_size=16 * 4, dtype="float64")
    config = replace(CONFIG, image_size=64, channels=(3, 4, 5, 6, 7), anchors=(12, 12, 22, 22))
    targets = assign_targets(scenes.boxes, scenes.labels, config, "float64")
    fields = np.zeros(targets.objectness.shape + (FIELDS,))  # (N, S, S, A, 5+C)
    fields[..., 0] = np.where(targets.objectness == 1, 10.0, -10.0)
    offsets = np.clip(targets.boxes[..., :2], 1e-9, 1 - 1e-9)
    fields[..., 1:3] = np.log(offsets / (1 - offsets))  # the sigmoid's inverse
    fields[..., 3:5] = targets.boxes[..., 2:]
    fields[..., 5:] = 10.0 * (targets.classes[..., None] == np.arange(3))
    n, s, _, a, k = fields.shape
    predictions = fields.transpose(0, 3, 4, 1, 2).reshape(n, a * k, s, s)
    boxes, scores, labels, images = get_module("numpy", MODULE).decode(predictions, config, 0.5, 0.5)
    for image in range(n):
        order = np.lexsort(boxes[images == image].T[::-1])
        truth = np.lexsort(scenes.boxes[image].T[::-1])
        np.testing.assert_allclose(boxes[images == image][order], scenes.boxes[image][truth], atol=1e-6)
        np.testing.assert_array_equal(labels[images == image][order], scenes.labels[image][truth])
    assert np.all(scores > 0.99)


# ---- scenes and targets ------------------------------------------------------------------------
def test_scenes_are_deterministic_per_seed_and_layout():
    a, b, c = make_scenes(6, seed=7), make_scenes(6, seed=7), make_scenes(6, seed=8)
    np.testing.assert_array_equal(a.images, b.images)
    assert all(np.array_equal(x, y) for x, y in zip(a.boxes, b.boxes))
    assert not np.array_equal(a.images, c.images)
    nchw = make_scenes(6, seed=7, layout="NCHW", dtype="float64")
    np.testing.assert_allclose(nchw.images.transpose(NCHW_TO_NHWC), a.images, rtol=1e-6)
    assert a.images.dtype == np.float32 and nchw.images.dtype == np.float64


def test_scene_boxes_lie_inside_the_image_and_frame_the_shape():
    scenes = make_scenes(40, seed=0)
    assert scenes.images.shape == (40, 64, 64, 3) and 0.0 <= scenes.images.min() and scenes.images.max() <= 1.0
    counts = [len(b) for b in scenes.boxes]
    assert min(counts) >= 1 and max(counts) <= 4
    for boxes, labels in zip(scenes.boxes, scenes.labels):
        assert boxes.shape == (len(labels), 4) and labels.dtype == np.int64
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 64) and np.all(boxes[:, 2:] > boxes[:, :2])
        assert set(labels.tolist()) <= set(range(len(SHAPE_NAMES)))
    assert {int(l) for labels in scenes.labels for l in labels} == {0, 1, 2}
    # A square fills its box exactly (one colour): the box is read from the painted pixels.
    for image, boxes, labels in zip(scenes.images, scenes.boxes, scenes.labels):
        for x0, y0, x1, y1 in boxes[labels == 1].astype(int):
            assert np.all(image[y0:y1, x0:x1] == image[y0, x0])
    sizes = np.concatenate([b[:, 2:] - b[:, :2] for b in scenes.boxes])
    assert 10 <= sizes.min() and sizes.max() <= 27


def test_assign_targets_by_hand():
    """A 6x5 box centred at (9, 6.5): cell (row 1, col 2) of the 4-pixel grid, anchor 1 (6x5 is its exact
    shape), offsets (0.25, 0.625) and log sizes 0; a 3x3 box in the same cell takes anchor 0."""
    boxes = [np.array([[6.0, 4.0, 12.0, 9.0], [8.0, 5.0, 11.0, 8.0]])]
    targets = assign_targets(boxes, [np.array([2, 1])], CONFIG, "float64")
    assert targets.objectness.shape == (1, 4, 4, 2) and targets.objectness.sum() == 2 and targets.dropped == 0
    np.testing.assert_allclose(targets.boxes[0, 1, 2, 1], [0.25, 0.625, 0.0, 0.0])
    np.testing.assert_allclose(targets.boxes[0, 1, 2, 0], [0.375, 0.625, 0.0, 0.0])
    assert targets.classes[0, 1, 2].tolist() == [1, 2]
    np.testing.assert_allclose(shape_iou(np.array([[6.0, 5.0]]), np.array([[3.0, 3.0], [6.0, 5.0]])), [[9 / 30, 1.0]])


def test_assign_targets_collision_rule():
    """Three boxes whose centres share one cell with two anchors: largest first; the second takes the
    other anchor; the third finds none and is counted as dropped."""
    boxes = [np.array([[8.0, 4.0, 11.0, 7.0], [7.0, 3.0, 12.0, 8.0], [9.0, 5.0, 10.0, 6.0]])]
    targets = assign_targets(boxes, [np.array([0, 1, 2])], CONFIG, "float64")
    assert targets.dropped == 1 and targets.objectness.sum() == 2
    assert targets.classes[0, 1, 2].tolist() == [0, 1]


def test_generated_training_data_has_no_collisions():
    scenes = make_scenes(300, seed=0)
    assert assign_targets(scenes.boxes, scenes.labels, YOLOConfig()).dropped == 0


def test_scene_and_target_errors():
    with pytest.raises(ValueError, match=r"make_scenes: layout must be one of \('NCHW', 'NHWC'\), got 'CHW'"):
        make_scenes(1, layout="CHW")
    with pytest.raises(ValueError, match=r"assign_targets: image 0 has a box that is empty or outside the 16x16 image"):
        assign_targets([np.array([[0.0, 0.0, 17.0, 3.0]])], [np.array([0])], CONFIG)
    with pytest.raises(ValueError, match=r"assign_targets: image 0 labels must be integers in \[0, 3\), got \[3\]"):
        assign_targets([np.array([[0.0, 0.0, 4.0, 3.0]])], [np.array([3])], CONFIG)
    with pytest.raises(ConfigError, match=r"YOLOConfig: anchors must hold \(width, height\) pairs"):
        YOLOConfig(anchors=(3, 3, 6))
    with pytest.raises(ConfigError, match=r"YOLOConfig: image_size must be divisible by the grid stride 8"):
        YOLOConfig(image_size=60)


@pytest.mark.parametrize("tree", ["numpy", "torch", "tf"])
def test_errors_are_the_same_in_every_tree(tree):
    m = get_module(tree, MODULE)
    native = (lambda a: to_tree(tree, a.transpose(NCHW_TO_NHWC))) if tree == "tf" else (lambda a: to_tree(tree, a))
    inputs = loss_inputs(1)("float64", np.random.default_rng(0))
    loss = m.YOLOLoss(CONFIG, dtype="float64")
    predictions, target = native(inputs["predictions"]), to_tree(tree, inputs["target"])
    layout = "(1, 4, 4, 16)" if tree == "tf" else "(1, 16, 4, 4)"
    with pytest.raises(TypeError, match=r"YOLOLoss: config must be an ml100.configs.YOLOConfig, got dict .*YOLOConfig.from_dict"):
        m.YOLOLoss(CONFIG.to_dict())
    assert_raises_exactly(ValueError, "YOLOLoss: lambda_noobj must be a real number >= 0, got -1.0",
                          lambda: m.YOLOLoss(CONFIG, lambda_noobj=-1.0))
    wrong, got = (inputs["predictions"], "(1, 16, 4, 4)") if tree == "tf" else (inputs["predictions"].transpose(NCHW_TO_NHWC), "(1, 4, 4, 16)")
    assert_raises_exactly(ValueError, f"YOLOLoss: predictions must have shape {layout}, got {got}",
                          lambda: loss(to_tree(tree, np.ascontiguousarray(wrong)), target))
    assert_raises_exactly(ValueError, "YOLOLoss: target must have shape (1, 4, 4, 2, 6), got (1, 4, 4, 2, 5)",
                          lambda: loss(predictions, to_tree(tree, inputs["target"][..., :5].copy())))
    for field, value, message in ((0, 0.5, "target objectness (field 0) must hold only 0.0 (no object) and 1.0 (object)"),
                                  (5, 3.0, "target class (field 5) must hold whole numbers in [0, 3)"),
                                  (5, 1.5, "target class (field 5) must hold whole numbers in [0, 3)")):
        bad = inputs["target"].copy()
        bad[0, 0, 0, 0, field] = value
        assert_raises_exactly(ValueError, f"YOLOLoss: {message}", lambda: loss(predictions, to_tree(tree, bad)))
    assert_raises_exactly(TypeError, "YOLOLoss: target must have dtype float64, got float32 (cast it explicitly)",
                          lambda: loss(predictions, to_tree(tree, inputs["target"].astype(np.float32))))
    image = np.zeros((1, 3, 8, 8), np.float32)
    shape = "(1, 16, 16, 3), got (1, 8, 8, 3)" if tree == "tf" else "(1, 3, 16, 16), got (1, 3, 8, 8)"
    assert_raises_exactly(ValueError, f"YOLO: x must have shape {shape}",
                          lambda: m.YOLO(CONFIG)(native(image) if tree == "tf" else to_tree(tree, image)))


# ---- the example -------------------------------------------------------------------------------
#: Two Adam steps per backend on 2-channel blocks: the loop, the decoding and the report, not the detector.
TINY = ["--train-size", "16", "--test-size", "2", "--epochs", "2", "--batch-size", "16", "--channels", "2", "2", "2", "2"]


def test_example_trains_every_backend_on_one_loss_curve(capsys, tmp_path):
    image = tmp_path / "detections.png"
    main = load_script("examples/train_detector.py").main
    assert main(["--compare", "--dtype", "float64", "--detections", str(image), *TINY]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    difference = next(line for line in lines if line.startswith("largest loss difference"))
    assert float(difference.split(": ")[1].split()[0]) <= 1e-9, difference
    assert sum(line.split()[0] in ("numpy", "torch", "tf") and "AP@0.5" in line for line in lines) == 3, lines
    assert image.stat().st_size > 0
    assert lines[-1].startswith("AP@0.5: ") and 0.0 <= float(lines[-1].split(": ")[1]) <= 1.0, lines[-1]


@pytest.mark.parametrize("argv, message", [
    (["--score-threshold", "1.5"], "argument --score-threshold: expected a number in (0, 1), got 1.5"),
    (["--image-size", "24"], "argument --image-size: the scenes need at least 32 pixels, got 24"),
    (["--anchors", "12", "12", "22"], "argument --anchors: YOLOConfig: anchors must hold (width, height) pairs"),
    (["--batch-size", "64", "--train-size", "32"], "argument --batch-size: 64 is more than the 32 training examples"),
])
def test_example_refuses_bad_arguments_before_any_work(argv, message, capsys):
    err = refusal(load_script("examples/train_detector.py").main, argv, capsys)
    assert message in err, err
