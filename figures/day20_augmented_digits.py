"""Day 20: eight training digits and what each augmentation of the NumPy tree makes of them, with
parameters drawn by ``ml100.augment`` from one seeded generator (flip, 1-pixel pad-and-crop as
``examples/train_cnn.py --augment`` uses, 2x2 cutout, mixup and CutMix with alpha = 1)."""
import numpy as np

from make_all import start_figure

COUNT = 8


def rows() -> list[tuple[str, np.ndarray]]:
    """(name, images (COUNT, 1, 8, 8)) for the originals and each augmentation."""
    from ml100 import augment
    from ml100.data import load_digits_split
    from numpy_impl.foundations import augmentation as aug

    data = load_digits_split(layout="NCHW", dtype="float64")
    images, labels = data.x_train[:COUNT], data.y_train[:COUNT]  # (8, 1, 8, 8), (8,)
    onehot = np.eye(10)[labels]  # (8, 10)
    rng = np.random.default_rng(0)
    lam, perm = augment.draw_mixup(COUNT, 1.0, rng)
    boxes, cut_perm = augment.draw_cutmix(COUNT, 8, 8, 1.0, rng)
    return [
        ("original", images),
        ("horizontal_flip", aug.horizontal_flip(images, np.ones(COUNT, dtype=bool))),
        ("pad_and_crop (1 px)", aug.pad_and_crop(images, 1, augment.draw_crop_offsets(COUNT, 1, rng))),
        ("cutout 2x2", aug.cutout(images, augment.draw_cutout_centers(COUNT, 8, 8, rng), 2)),
        ("mixup", aug.mixup(images, onehot, lam, perm)[0]),
        ("CutMix", aug.cutmix(images, onehot, boxes, cut_perm)[0]),
    ]


def draw(path) -> None:
    import matplotlib.pyplot as plt

    grid = rows()
    fig, axes = plt.subplots(len(grid), COUNT, figsize=(COUNT * 0.9, len(grid) * 0.95))
    for (name, images), row_axes in zip(grid, axes):
        for ax, image in zip(row_axes, images):
            ax.imshow(image[0], cmap="gray_r", vmin=0, vmax=1)
            ax.set(xticks=[], yticks=[])
        row_axes[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    draw(start_figure(__file__))
