"""Day 30: why a stride-2 transposed convolution with a 3x3 kernel paints a checkerboard and a 4x4
one does not, and what fixed upsampling does instead. Top: the NumPy tree's ``ConvTranspose2d``
(stride 2, no padding, no bias, every weight 1) applied to a 4x4 image of ones, so each output
pixel counts the kernel copies that overlap it: k = 3 (not a multiple of the stride) alternates
1, 2, 4 copies; k = 4 covers the interior evenly with 4. Bottom: one test digit upsampled 4x by
the tree's ``Upsample``: nearest, and bilinear with ``align_corners`` False and True.

    python figures/day30_checkerboard.py [--out DIR]   # writes DIR/day30_checkerboard.png
"""
import numpy as np

from make_all import start_figure

SIDE, STRIDE, KERNELS, SCALE, DIGIT = 4, 2, (3, 4), 4, 0


def overlap_counts(kernel: int) -> np.ndarray:
    """How many kernel copies reach each output pixel: the transposed convolution of ones with a
    kernel of ones, ``((SIDE - 1) * STRIDE + kernel,) * 2``."""
    from numpy_impl.generative.conv_transpose import ConvTranspose2d
    from numpy_impl.module import no_grad

    layer = ConvTranspose2d(1, 1, kernel, stride=STRIDE, bias=False, dtype="float64", rng=np.random.default_rng(0))
    layer.params["weight"][...] = 1.0
    with no_grad():
        return layer(np.ones((1, 1, SIDE, SIDE)))[0, 0]  # (Ho, Wo)


def upsampled(image: np.ndarray, mode: str, align_corners) -> np.ndarray:
    """``image`` ``(1, 1, 8, 8)`` upsampled ``SCALE`` times by the tree's ``Upsample``, ``(8 SCALE, 8 SCALE)``."""
    from numpy_impl.generative.conv_transpose import Upsample
    from numpy_impl.module import no_grad

    with no_grad():
        return Upsample(scale_factor=SCALE, mode=mode, align_corners=align_corners)(image)[0, 0]


def draw(path) -> None:
    import matplotlib.pyplot as plt

    from ml100.data import load_digits_split

    fig, axes = plt.subplots(2, 4, figsize=(13, 6.6))
    axes[0, 0].imshow(np.ones((SIDE, SIDE)), cmap="Greys", vmin=0, vmax=2)
    axes[0, 0].set_title(f"input: {SIDE}x{SIDE} ones", fontsize=10)
    for ax, kernel in zip(axes[0, 1:3], KERNELS):
        counts = overlap_counts(kernel)  # (Ho, Wo)
        ax.imshow(counts, cmap="viridis", vmin=0, vmax=4)
        for (row, col), value in np.ndenumerate(counts):
            ax.text(col, row, f"{value:g}", ha="center", va="center", fontsize=7, color="w" if value < 3 else "k")
        ax.set_title(f"k = {kernel}, stride {STRIDE}: copies per pixel", fontsize=10)
        middle = counts[counts.shape[0] // 2]  # (Wo,)
        axes[0, 3].plot(middle, marker="o", label=f"k = {kernel}")
        print(f"k={kernel}: output {counts.shape}, counts of the middle row {middle.astype(int).tolist()}")
    axes[0, 3].set(title="the middle row of each", xlabel="column", ylabel="copies", ylim=(0, 4.5))
    axes[0, 3].legend()

    digit = load_digits_split("NCHW", dtype="float32").x_test[DIGIT:DIGIT + 1]  # (1, 1, 8, 8)
    panels = [(digit[0, 0], "test digit, 8x8"), (upsampled(digit, "nearest", None), f"nearest, x{SCALE}"),
              (upsampled(digit, "bilinear", False), "bilinear, align_corners=False"),
              (upsampled(digit, "bilinear", True), "bilinear, align_corners=True")]
    gap = float(np.abs(panels[2][0] - panels[3][0]).max())
    print(f"largest difference between the two bilinear images: {gap:.3f}")
    panels[3] = (panels[3][0], f"bilinear, align_corners=True\n(differs by up to {gap:.2f})")
    for ax, (image, title) in zip(axes[1], panels):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
    for ax in [*axes[0, :3], *axes[1]]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
