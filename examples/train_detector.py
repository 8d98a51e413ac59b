"""Train the tiny YOLO of days 60-62 on generated shape scenes with any backend, and measure AP@0.5.

    python examples/train_detector.py --backend numpy|torch|tf [--detections scenes.png]
    python examples/train_detector.py --compare --epochs 2 --train-size 256

Scenes (circles, squares, triangles on noisy backgrounds, ``ml100.scenes``) are drawn from
``--seed``: the first ``--test-size`` are held out, the rest train. Each training box is assigned
to its grid cell and best anchor (``ml100.scenes.assign_targets``); the day-61 ``YOLOLoss`` is
minimized with Adam through each tree's ``Trainer``. Every backend starts from the same canonical
weights and sees the same batches (NumPy and torch NCHW, TF NHWC). The held-out scenes are
decoded (day 62: scores, threshold, per-class NMS) and scored with day 63's COCO-style AP at IoU
0.5. ``--detections`` saves a grid of held-out scenes with true boxes (white, dashed) and
predicted ones (class colour, score). The last line is ``AP@0.5: X`` (with ``--compare``, the
lowest of the three).
"""
from __future__ import annotations

import sys

import numpy as np

from ml100.backends import BACKENDS, get_module
from ml100.cli_args import (OneLineErrorParser, add_training_arguments, check_batch_size, check_training_arguments,
                            plot_file, positive_float, positive_int)
from ml100.configs import YOLOConfig, add_config_arguments, config_from_args
from ml100.data import batch_indices
from ml100.runs import report_comparison, shared_initial_weights, to_backend, to_numpy, training_progress
from ml100.scenes import MIN_IMAGE_SIZE, SHAPE_NAMES, assign_targets, make_scenes

NCHW_TO_NHWC = (0, 2, 3, 1)
#: The YOLOConfig fields the scenes fix (RGB images, three shape classes): not options.
SCENES = {"in_channels": 3, "num_classes": len(SHAPE_NAMES)}
#: Held-out images scored per forward (bounds memory; the NumPy conv keeps its im2col columns).
EVAL_BATCH = 64
#: Held-out scenes drawn in --detections.
SHOWN = 8


def build_parser():
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    # Measured on 2 cores (docs/days/day62.md): these reach AP@0.5 >= 0.8 in every tree.
    parser.set_defaults(epochs=6, batch_size=32, lr=3e-3)
    # --image-size, --channels, --anchors, --batch-norm/--no-batch-norm.
    add_config_arguments(parser, YOLOConfig, skip=tuple(SCENES))
    parser.add_argument("--train-size", type=positive_int, default=1500, help="training scenes")
    parser.add_argument("--test-size", type=positive_int, default=200, help="held-out scenes (never trained on)")
    parser.add_argument("--score-threshold", type=positive_float, default=0.05, help="decoding: keep boxes scoring above this")
    parser.add_argument("--iou-threshold", type=positive_float, default=0.45, help="decoding: NMS suppresses overlaps above this")
    parser.add_argument("--detections", type=plot_file, help="save held-out scenes with true and predicted boxes to this image")
    return parser


def check_arguments(parser, args):
    args = check_training_arguments(parser, args)
    for name in ("score_threshold", "iou_threshold"):
        if getattr(args, name) >= 1:
            parser.error(f"argument --{name.replace('_', '-')}: expected a number in (0, 1), got {getattr(args, name)}")
    args.config = config_from_args(parser, YOLOConfig, args, **SCENES)
    if args.config.image_size < MIN_IMAGE_SIZE:
        parser.error(f"argument --image-size: the scenes need at least {MIN_IMAGE_SIZE} pixels, got {args.config.image_size}")
    check_batch_size(parser, args.batch_size, args.train_size)
    return args


def make_data(args) -> dict:
    """Scenes from --seed (held-out first), NCHW, and the training targets packed for the loss."""
    scenes = make_scenes(args.test_size + args.train_size, seed=args.seed, image_size=args.config.image_size,
                         layout="NCHW", dtype=args.dtype)
    test = slice(0, args.test_size)
    train = slice(args.test_size, None)
    targets = assign_targets(scenes.boxes[train], scenes.labels[train], args.config, args.dtype)
    return {"x": scenes.images[train], "y": targets.packed(), "test_x": scenes.images[test],
            "test_boxes": scenes.boxes[test], "test_labels": scenes.labels[test]}


def build_yolo(backend: str, args, rng=None):
    return get_module(backend, "modern.yolo").YOLO(args.config, dtype=args.dtype, rng=rng)


def make_trainer(backend: str, args, state: dict[str, np.ndarray]):
    """The same four objects in every tree: model, loss, optimizer, trainer."""
    model = build_yolo(backend, args)
    model.load_canonical_state_dict(state)
    loss_fn = get_module(backend, "modern.yolo").YOLOLoss(args.config, dtype=args.dtype)
    optimizer = get_module(backend, "foundations.optim").Adam(dict(model.named_parameters()), lr=args.lr)
    return get_module(backend, "foundations.trainer").Trainer(model, loss_fn, optimizer)


def detect(backend: str, model, images: np.ndarray, args) -> list[dict[str, np.ndarray]]:
    """Decoded detections per image (NumPy dicts, as the mAP takes them), in eval mode without gradients."""
    yolo = get_module(backend, "modern.yolo")
    model.eval()
    found = []
    with get_module(backend, "module").no_grad():
        for start in range(0, len(images), EVAL_BATCH):
            batch = images[start:start + EVAL_BATCH]  # (B, 3, H, W)
            batch = batch.transpose(NCHW_TO_NHWC).copy() if backend == "tf" else batch
            decoded = yolo.decode(model(to_backend(backend, batch)), args.config, args.score_threshold, args.iou_threshold)
            boxes, scores, labels, owners = (to_numpy(t) for t in decoded)
            found += [{"boxes": boxes[owners == i], "scores": scores[owners == i], "labels": labels[owners == i]}
                      for i in range(len(batch))]
    return found


def average_precision(found: list[dict], data: dict) -> float:
    """COCO-style AP at IoU 0.5 (day 63), averaged over the three classes."""
    from ml100.detection_metrics import mean_average_precision

    truth = [{"boxes": b, "labels": l} for b, l in zip(data["test_boxes"], data["test_labels"])]
    return float(mean_average_precision(found, truth, iou_thresholds=[0.5])["map_50"])


def train(backend: str, args, state, data, progress):
    """Train one backend; returns its per-step losses, its held-out AP@0.5 and its detections."""
    trainer = make_trainer(backend, args, state)
    rng = np.random.default_rng(args.seed)
    steps = args.epochs * (len(data["x"]) // args.batch_size)
    task = progress.add_task(f"{backend:5s}", total=steps, loss=float("nan"))
    losses = []
    for _ in range(args.epochs):
        for index in batch_indices(len(data["x"]), args.batch_size, rng):
            images = data["x"][index]  # (B, 3, H, W)
            images = images.transpose(NCHW_TO_NHWC).copy() if backend == "tf" else images
            losses.append(trainer.train_step(images, data["y"][index]))
            progress.update(task, completed=len(losses), loss=losses[-1])
    found = detect(backend, trainer.model, data["test_x"], args)
    return losses, average_precision(found, data), found


def save_detections(path, data: dict, found: list[dict], title: str) -> None:
    """The first held-out scenes: true boxes white and dashed, predictions in their class colour with the score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    colours = ("tab:orange", "tab:cyan", "tab:pink")
    shown = min(SHOWN, len(found))
    fig, axes = plt.subplots(2, (shown + 1) // 2, figsize=(2.2 * ((shown + 1) // 2), 4.8), squeeze=False)
    for ax, image, boxes, det in zip(axes.flat, data["test_x"], data["test_boxes"], found):
        ax.imshow(image.transpose(1, 2, 0))
        for x0, y0, x1, y1 in boxes:
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="white", ls="--", lw=1))
        for (x0, y0, x1, y1), score, label in zip(det["boxes"], det["scores"], det["labels"]):
            if score >= 0.5:
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=colours[label], lw=1.5))
                ax.text(x0, y0 - 1, f"{SHAPE_NAMES[label]} {score:.2f}", color=colours[label], fontsize=6)
        ax.axis("off")
    for ax in list(axes.flat)[shown:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before any scene is drawn or a framework imported.
    args = check_arguments(parser, parser.parse_args(argv))
    data = make_data(args)
    state = shared_initial_weights(build_yolo("numpy", args, np.random.default_rng(args.seed)), args.weights, parser)
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        results = {backend: train(backend, args, state, data, progress) for backend in backends}
    if args.compare:
        report_comparison({b: (losses, ap) for b, (losses, ap, _) in results.items()}, args.dtype, args.plot,
                          f"tiny YOLO on shape scenes, Adam, {args.dtype}: three backends", metric="AP@0.5")
    first = backends[0]
    if args.detections:
        save_detections(args.detections, data, results[first][2],
                        f"{first}: held-out scenes, true (dashed) and predicted boxes (score >= 0.5)")
        print(f"detections saved to {args.detections}")
    print(f"AP@0.5: {min(ap for _, ap, _ in results.values()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
