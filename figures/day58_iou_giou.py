"""Day 58: IoU against GIoU for a box sliding past another. A 2 x 2 box slides along x across a
fixed 2 x 2 box (offsets -5 to 5); the NumPy tree's ``box_iou`` and ``generalized_box_iou`` give the
two curves, and ``GeneralizedBoxIoULoss``'s hand-written backward the slope of the loss in the
sliding box's x1. IoU is 0, with zero gradient, as soon as the boxes part; GIoU keeps falling
towards -1 and its loss keeps pulling the box back.

    python figures/day58_iou_giou.py [--out DIR]   # writes DIR/day58_iou_giou.png
"""
import numpy as np

from make_all import start_figure

OFFSETS = np.linspace(-5.0, 5.0, 401)
FIXED = np.array([[0.0, 0.0, 2.0, 2.0]])
SHOWN = (-4.0, -1.0, 0.5, 3.0)


def curves():
    """IoU, GIoU and d(1 - GIoU)/dx1 of the sliding box, one value per offset."""
    from numpy_impl.modern.boxes import GeneralizedBoxIoULoss, box_iou, generalized_box_iou

    sliding = FIXED + OFFSETS[:, None] * np.array([1.0, 0.0, 1.0, 0.0])  # (K, 4)
    iou = box_iou(sliding, FIXED)[:, 0]  # (K,)
    giou = generalized_box_iou(sliding, FIXED)[:, 0]  # (K,)
    loss = GeneralizedBoxIoULoss("sum", 1e-7, "float64")
    loss(sliding, np.repeat(FIXED, len(OFFSETS), axis=0))
    grad_sliding, _ = loss.backward(np.array(1.0))  # (K, 4)
    return iou, giou, grad_sliding[:, 0]


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    iou, giou, slope = curves()
    fig, (scene, values) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.6]})
    scene.add_patch(Rectangle((0, 0), 2, 2, fill=False, lw=2, color="black", label="fixed box"))
    for offset, color in zip(SHOWN, plt.cm.viridis(np.linspace(0, 0.9, len(SHOWN)))):
        scene.add_patch(Rectangle((offset, 0.1), 2, 1.8, fill=False, lw=1.5, ls="--", color=color))
        scene.text(offset + 1, 2.15, f"{offset:g}", ha="center", color=color)
    scene.set(xlim=(-5, 6), ylim=(-0.5, 2.8), aspect="equal", title="a 2 x 2 box sliding along x (offsets)")
    values.plot(OFFSETS, iou, label="IoU")
    values.plot(OFFSETS, giou, label="GIoU")
    values.plot(OFFSETS, slope, label=r"$\partial(1-\mathrm{GIoU})/\partial x_1$", ls=":")
    values.axhline(0.0, color="grey", lw=0.5)
    values.set(xlabel="offset of the sliding box", title="IoU is flat (gradient 0) once the boxes part; GIoU is not")
    values.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
