"""Day 15: (left) im2col — a 6x6 image with TF "SAME" padding, a 3x3 kernel at stride 2, one output
pixel's window copied into one column of ``cols`` (the NumPy tree's ``im2col``); (right) TF's
"SAME" padding for that kernel and stride: (0, 1) on a 6x6 image, (1, 1) on 7x7
(``ml100.geometry.conv_padding``)."""
import numpy as np

from make_all import start_figure

KERNEL, STRIDE = 3, 2
#: The output pixel whose window is highlighted, (row, column).
PIXEL = (1, 1)


def padded_index_image(size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pixel numbers 0..size^2 - 1 with TF "SAME" padding cells set to -1, and the (top, bottom) pads."""
    from ml100.geometry import conv_padding

    pads, _ = conv_padding("same", (size, size), (KERNEL, KERNEL), (STRIDE, STRIDE), (1, 1))
    image = np.arange(size * size, dtype=np.float64).reshape(size, size)  # (H, W)
    return np.pad(image, (pads, pads), constant_values=-1.0), pads  # (Hp, Wp)


def columns(padded: np.ndarray) -> np.ndarray:
    """im2col of the padded index image: (kh*kw, Ho*Wo), one column per output pixel."""
    from numpy_impl.foundations.conv import im2col

    out = (padded.shape[0] - KERNEL) // STRIDE + 1
    return im2col(padded[None, None], (KERNEL, KERNEL), (STRIDE, STRIDE), (1, 1), (out, out), 1)[0, 0]


def show_grid(ax, padded: np.ndarray, pads: tuple[int, int], window_starts, title: str) -> None:
    """The padded image: pixels numbered, padding hatched grey, the given windows outlined."""
    import matplotlib.patches as patches

    size = padded.shape[0]
    ax.imshow(np.where(padded < 0, 0.8, 1.0), cmap="gray", vmin=0, vmax=1)
    for (row, col), value in np.ndenumerate(padded):
        ax.text(col, row, "pad" if value < 0 else f"{value:g}", ha="center", va="center", fontsize=7)
    for index, (row, col) in enumerate(window_starts):
        ax.add_patch(patches.Rectangle((col - 0.5, row - 0.5), KERNEL, KERNEL, fill=False, linewidth=2.5,
                                       edgecolor=f"C{index}"))
    ax.set(title=f"{title}\npadding (top, bottom) = {pads}", xticks=np.arange(size), yticks=np.arange(size))
    ax.tick_params(labelsize=7)


def draw(path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1, 0.9, 1, 1.1]})
    padded, pads = padded_index_image(6)
    start = (PIXEL[0] * STRIDE, PIXEL[1] * STRIDE)
    show_grid(axes[0], padded, pads, [start], f"window of output pixel {PIXEL}")
    cols = columns(padded)  # (9, 9)
    which = PIXEL[0] * cols.shape[1] // 3 + PIXEL[1]
    axes[1].imshow(np.where(np.arange(cols.shape[1]) == which, 0.6, 1.0)[None, :].repeat(cols.shape[0], 0),
                   cmap="Blues_r", vmin=0, vmax=1)
    for (row, col), value in np.ndenumerate(cols):
        axes[1].text(col, row, "pad" if value < 0 else f"{value:g}", ha="center", va="center", fontsize=7)
    axes[1].set(title=f"cols (kh*kw, Ho*Wo): column {which}\nis that window", xlabel="output pixel (row-major)",
                ylabel="kernel entry (u, v)", xticks=range(cols.shape[1]), yticks=range(cols.shape[0]))
    axes[1].tick_params(labelsize=7)
    for ax, size in zip(axes[2:], (6, 7)):
        padded, pads = padded_index_image(size)
        out = (padded.shape[0] - KERNEL) // STRIDE + 1
        show_grid(ax, padded, pads, [(0, 0), ((out - 1) * STRIDE, (out - 1) * STRIDE)],
                  f'TF "SAME" {size}x{size}: first, last window')
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    draw(start_figure(__file__))
