"""Day 31's figure: ten test digits and the convolutional autoencoder's reconstructions of them.

A short seeded training of the NumPy tree's ``Autoencoder`` (default ``AutoencoderConfig``: channels
8, 16, an 8-number code; float32) with its own ``Adam`` on the digits' train split, BCE-with-logits
of each image given its reconstruction; then the first ten test digits (top row) and
``sigmoid(logits)`` of them (bottom row), with the test loss before and after training in the title.

    python figures/day31_reconstructions.py [--out DIR]   # writes DIR/day31_reconstructions.png
"""
from make_all import start_figure

EPOCHS, BATCH, LR, SEED = 30, 64, 1e-2, 0


def train(x_train, x_test):
    """The trained model and the test BCE before and after ``EPOCHS`` epochs of shuffled mini-batches."""
    import numpy as np

    from ml100.configs import AutoencoderConfig
    from ml100.data import batch_indices
    from numpy_impl.foundations.logistic_regression import BCEWithLogitsLoss
    from numpy_impl.foundations.optim import Adam
    from numpy_impl.generative.autoencoder import Autoencoder
    from numpy_impl.module import no_grad

    rng = np.random.default_rng(SEED)
    model = Autoencoder(AutoencoderConfig(), rng=rng)
    loss_fn, optimizer = BCEWithLogitsLoss(), Adam(dict(model.named_parameters()), lr=LR)

    def test_loss() -> float:
        with no_grad():
            return float(loss_fn(model(x_test)[0], x_test))

    before = test_loss()
    for _ in range(EPOCHS):
        for index in batch_indices(len(x_train), BATCH, rng):
            x = x_train[index]  # (B, 1, 8, 8)
            model.zero_grad()
            loss_fn(model(x)[0], x)
            # The image is its own target; only the logits' path is differentiated.
            model.backward(loss_fn.backward())
            optimizer.step(dict(model.named_grads()))
    return model, before, test_loss()


def draw(out) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    from ml100.data import load_digits_split
    from numpy_impl.module import no_grad

    split = load_digits_split("NCHW", dtype="float32")
    model, before, after = train(split.x_train, split.x_test)
    shown = split.x_test[:10]  # (10, 1, 8, 8)
    with no_grad():
        logits, _ = model(shown)  # (10, 1, 8, 8)
    reconstructions = 1.0 / (1.0 + np.exp(-logits))  # (10, 1, 8, 8)

    figure, axes = plt.subplots(2, 10, figsize=(10, 2.4))
    for column in range(10):
        for row, images in enumerate((shown, reconstructions)):
            axes[row, column].imshow(images[column, 0], cmap="gray_r", vmin=0, vmax=1)
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("recon.")
    figure.suptitle(f"Autoencoder, 8-number code: test BCE {before:.3f} before, {after:.3f} after {EPOCHS} epochs", fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    print(f"test BCE {before:.4f} -> {after:.4f}; wrote {out}")


if __name__ == "__main__":
    draw(start_figure(__file__))
