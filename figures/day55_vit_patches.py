"""Day 55: how the ViT reads a digit. Left: the first test digit of the seeded split (8x8) with the
4x4 grid of 2x2 patches (``patch_size`` 2, N = 16). Right: the 17 x 4 matrix of tokens before
embedding — the class token's row (no pixels: a learned vector) and one row of 4 pixels per patch,
in the order the patch convolution's output map is read (row by row). The patch convolution
multiplies each row by the same (4 -> hidden_size) matrix.

    python figures/day55_vit_patches.py [--out DIR]   # writes DIR/day55_vit_patches.png
"""
import numpy as np

from make_all import start_figure

PATCH = 2


def patch_rows(image: np.ndarray, patch: int) -> np.ndarray:
    """``(H, W)`` -> ``(N, patch*patch)``: each patch's pixels, patches row by row (the conv's reading order)."""
    size = image.shape[0]
    grid = size // patch
    return image.reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3).reshape(grid * grid, patch * patch)


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    from ml100.data import load_digits_split

    data = load_digits_split(layout="NCHW", dtype="float64")
    image = data.x_test[0, 0]  # (8, 8)
    rows = patch_rows(image, PATCH)  # (16, 4)
    tokens = np.vstack([np.full((1, PATCH * PATCH), np.nan), rows])  # (17, 4), the class token has no pixels
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 4.2), constrained_layout=True,
                                         gridspec_kw={"width_ratios": [2, 1]})
    left.imshow(image, cmap="gray_r")
    grid = image.shape[0] // PATCH
    for k in range(1, grid):
        left.axhline(k * PATCH - 0.5, color="tab:red", lw=1.5)
        left.axvline(k * PATCH - 0.5, color="tab:red", lw=1.5)
    for index in range(grid * grid):
        row, col = divmod(index, grid)
        left.text(col * PATCH, row * PATCH - 0.15, str(index + 1), color="tab:blue", fontsize=9)
    left.set(title=f"digit {data.y_test[0]}: {grid * grid} patches of {PATCH}x{PATCH}", xticks=[], yticks=[])
    right.imshow(np.ma.masked_invalid(tokens), cmap="gray_r", aspect="auto")
    right.set(title="tokens: [cls; patches]", xlabel="pixel in patch", ylabel="token",
              yticks=range(0, grid * grid + 1, 2), xticks=range(PATCH * PATCH))
    right.text(PATCH * PATCH / 2 - 0.5, 0, "cls (learned)", ha="center", va="center", fontsize=8, color="tab:red")
    figure.savefig(path, dpi=100)
    print(f"digit {data.y_test[0]}, {grid * grid} patches, tokens {tokens.shape}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
