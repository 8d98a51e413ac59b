"""Day 59: boxes before and after non-maximum suppression on a drawn scene. Three shapes (a
circle, a square, a triangle; seed 0); around each, twelve jittered proposals scored by their IoU
with the shape's true box plus noise, as a detector would score them. Left: all 36 proposals,
darker for a higher score; right: what the NumPy tree's ``nms`` keeps at IoU threshold 0.5, and
what ``batched_nms`` keeps when each proposal carries its shape's class (the same here: the
clusters do not overlap).

    python figures/day59_nms_scene.py [--out DIR]   # writes DIR/day59_nms_scene.png
"""
import numpy as np

from make_all import start_figure

SEED, PER_SHAPE, THRESHOLD = 0, 12, 0.5
#: True boxes (x1, y1, x2, y2) of the circle, the square and the triangle.
TRUE_BOXES = np.array([[1.0, 1.0, 4.0, 4.0], [5.5, 4.5, 8.5, 7.5], [1.5, 5.5, 5.0, 9.0]])


def proposals():
    """Jittered boxes ``(36, 4)``, their scores ``(36,)`` and classes ``(36,)``."""
    from numpy_impl.modern.boxes import box_iou

    rng = np.random.default_rng(SEED)
    base = np.repeat(TRUE_BOXES, PER_SHAPE, axis=0)  # (36, 4)
    boxes = base + rng.normal(0.0, 0.35, base.shape)  # (36, 4)
    truth = np.diag(box_iou(boxes, base))  # (36,)
    scores = np.clip(truth + rng.normal(0.0, 0.05, truth.shape), 0.0, 1.0)  # (36,)
    classes = np.repeat(np.arange(len(TRUE_BOXES)), PER_SHAPE)  # (36,)
    return boxes, scores, classes


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Polygon, Rectangle

    from numpy_impl.modern.nms import batched_nms, nms

    boxes, scores, classes = proposals()
    keep = nms(boxes, scores, THRESHOLD)
    assert np.array_equal(np.sort(keep), np.sort(batched_nms(boxes, scores, classes, THRESHOLD)))
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, shown, title in ((axes[0], np.arange(len(boxes)), f"{len(boxes)} proposals"),
                             (axes[1], keep, f"after nms (IoU > {THRESHOLD} suppressed): {len(keep)} kept")):
        ax.add_patch(Circle((2.5, 2.5), 1.5, color="tab:red", alpha=0.4))
        ax.add_patch(Rectangle((5.5, 4.5), 3, 3, color="tab:blue", alpha=0.4))
        ax.add_patch(Polygon([[1.5, 5.5], [5.0, 5.5], [3.25, 9.0]], color="tab:green", alpha=0.4))
        for index in shown:
            x1, y1, x2, y2 = boxes[index]
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2,
                                   color=plt.cm.Greys(0.3 + 0.7 * scores[index])))
            if len(shown) < len(boxes):
                ax.text(x1, y2 + 0.1, f"{scores[index]:.2f}", fontsize=8)
        ax.set(xlim=(0, 10), ylim=(0, 10), aspect="equal", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
