"""Day 60: grid and anchor target assignment on three generated scenes. Each scene (``ml100.scenes``,
seed 4) is drawn with its 8x8 grid of 8-pixel cells; every true box (white) marks the cell holding
its centre (filled), and the anchor it was assigned (dashed, centred on the box, orange for the
12x12 anchor, cyan for the 22x22 one), with the targets (tx, ty, tw, th) written beside it.

    python figures/day60_targets.py [--out DIR]   # writes DIR/day60_targets.png
"""
import numpy as np

from make_all import start_figure

SCENES = 3
ANCHOR_COLOURS = ("tab:orange", "tab:cyan")


def main():
    path = start_figure(__file__)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from ml100.configs import YOLOConfig
    from ml100.scenes import SHAPE_NAMES, assign_targets, make_scenes

    config = YOLOConfig()
    scenes = make_scenes(SCENES, seed=4, dtype="float64")
    targets = assign_targets(scenes.boxes, scenes.labels, config, "float64")
    stride, anchors = config.stride, config.anchor_sizes()
    fig, axes = plt.subplots(1, SCENES, figsize=(4.0 * SCENES, 4.4))
    for n, ax in enumerate(axes):
        ax.imshow(scenes.images[n], extent=(0, config.image_size, config.image_size, 0))
        for line in range(0, config.image_size + 1, stride):
            ax.axhline(line, color="black", lw=0.4, alpha=0.5)
            ax.axvline(line, color="black", lw=0.4, alpha=0.5)
        for row, col, a in zip(*np.nonzero(targets.objectness[n])):
            tx, ty, tw, th = targets.boxes[n, row, col, a]
            ax.add_patch(Rectangle((col * stride, row * stride), stride, stride, color=ANCHOR_COLOURS[a], alpha=0.45))
            cx, cy = (col + tx) * stride, (row + ty) * stride
            pw, ph = anchors[a]
            ax.add_patch(Rectangle((cx - pw / 2, cy - ph / 2), pw, ph, fill=False, ec=ANCHOR_COLOURS[a], ls="--", lw=1.5))
            ax.text(cx, cy + 1.5, f"{SHAPE_NAMES[targets.classes[n, row, col, a]]}\n"
                    f"({tx:.2f}, {ty:.2f}, {tw:+.2f}, {th:+.2f})", fontsize=6.5, ha="center", va="top", color="black",
                    bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.8, "lw": 0})
        for x0, y0, x1, y1 in scenes.boxes[n]:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=1.2))
        ax.set(xlim=(0, config.image_size), ylim=(config.image_size, 0), xticks=range(0, 65, 16), yticks=range(0, 65, 16))
        ax.set_title(f"scene {n}: {len(scenes.boxes[n])} shapes", fontsize=9)
    fig.suptitle("YOLO targets: centre cell (filled), best-shape anchor (dashed), (tx, ty, tw, th)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
