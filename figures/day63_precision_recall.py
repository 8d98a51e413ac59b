"""Day 63: one class's precision/recall curve and the two ways to turn it into AP.

Ten GTs of one class in three images and about as many detections (a fixed seed; jittered copies
of most GTs, some too far off, and one stray box per image), evaluated by ``ml100.detection_metrics`` at IoU 0.5: the raw
precision after each detection (dots), its monotone envelope (the step line), COCO's 101 sampled
recall points (ticks on the envelope; their mean is AP) and the area VOC's all-point AP integrates
(shaded). Nothing random beyond the seed.

    python figures/day63_precision_recall.py [--out DIR]   # writes DIR/day63_precision_recall.png
"""
import numpy as np

from make_all import start_figure

SEED, IMAGES, GT_PER_IMAGE = 4, 3, (4, 3, 3)


def scene(rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    """Per image: GT boxes, and detections that are jittered GTs (some too far off) or strays."""
    preds, targets = [], []
    for count in GT_PER_IMAGE:
        corner = rng.uniform(0, 80, (count, 2))  # (G, 2)
        gt = np.concatenate([corner, corner + rng.uniform(10, 30, (count, 2))], axis=1)  # (G, 4)
        found = gt[rng.random(count) < 0.85]  # (F, 4): the GTs a detector finds
        jitter = rng.normal(0, 3, found.shape)  # (F, 4)
        strays = rng.uniform(0, 100, (1, 2))  # (1, 2)
        stray = np.concatenate([strays, strays + 15], axis=1)  # (1, 4)
        boxes = np.sort(np.concatenate([found + jitter, stray]).reshape(-1, 2, 2), axis=1).reshape(-1, 4)  # (D, 4)
        preds.append({"boxes": boxes, "scores": rng.uniform(0.3, 1.0, len(boxes)),
                      "labels": np.zeros(len(boxes), dtype=np.int64)})
        targets.append({"boxes": gt, "labels": np.zeros(count, dtype=np.int64)})
    return preds, targets


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    from ml100.detection_metrics import (COCO_AREA_RANGES, COCO_RECALL_THRESHOLDS, all_point_average_precision,
                                         evaluate_image, interpolated_precision, precision_envelope,
                                         precision_recall_curve)

    preds, targets = scene(np.random.default_rng(SEED))
    threshold = np.array([0.5])
    evaluations = [evaluate_image(p, t, 0, COCO_AREA_RANGES["all"], threshold, 100) for p, t in zip(preds, targets)]
    recall, precision, _ = precision_recall_curve(evaluations, 1)
    recall, precision = recall[:1], precision[:1]  # (1, D)
    sampled = interpolated_precision(recall, precision, COCO_RECALL_THRESHOLDS)[0]  # (R,)
    envelope = precision_envelope(precision)[0]  # (D,)
    voc = all_point_average_precision(recall, precision)[0]

    figure, ax = plt.subplots(figsize=(7, 4.5))
    steps_r = np.concatenate([[0.0], recall[0]])  # (D + 1,)
    steps_p = np.concatenate([envelope[:1], envelope])  # (D + 1,)
    ax.fill_between(steps_r, steps_p, step="pre", alpha=0.2, color="tab:orange",
                    label=f"all-point area (VOC): AP = {voc:.4f}")
    ax.step(steps_r, steps_p, where="pre", color="tab:orange", label="envelope: max precision at recall ≥ r")
    ax.plot(COCO_RECALL_THRESHOLDS, sampled, "|", color="tab:blue", markersize=8,
            label=f"101 recall points (COCO): AP = {sampled.mean():.4f}")
    ax.plot(recall[0], precision[0], "o", color="black", markersize=4, label="precision after each detection")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"one class, IoU ≥ 0.5: {sum(len(t['labels']) for t in targets)} GTs, "
                 f"{sum(len(p['labels']) for p in preds)} detections in {IMAGES} images", fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
