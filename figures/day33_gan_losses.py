"""Day 33's figure: the two players' losses over a short seeded GAN training, and its samples.

The NumPy tree's MLP ``Generator`` and ``Discriminator`` (``GANConfig`` defaults) trained on the
digits' train split, scaled to [-1, 1], by day 33's ``GANStep`` with Adam (lr 1e-3, betas (0.5,
0.999)) for a few epochs of batches of 64; the noise ``z_d``, ``z_g`` and the batch order come
from one seeded NumPy generator. Left: both losses per round, with the value ``2 log 2`` the
discriminator loss takes at the game's equilibrium (``D = 1/2`` everywhere). Right: 64 samples.

    python figures/day33_gan_losses.py [--out DIR]   # writes DIR/day33_gan_losses.png
"""
import math
import sys

from make_all import start_figure

EPOCHS = 25
BATCH = 64
SEED = 0
#: Adam's step for both players: five times DCGAN's 2e-4, so that a short run already draws digit strokes.
LR = 1e-3


def train(tree: str = "numpy", module: str = "generative.gan", players: tuple[str, str] = ("Generator", "Discriminator"),
          config=None, epochs: int = EPOCHS, seed: int = SEED):
    """Seeded training of ``players`` of ``module`` in ``tree`` (``config`` None: ``GANConfig()``); the
    loss curves ``(d_losses, g_losses)``, the generator and the generator of the remaining randomness.
    Day 34's figure calls it with the DCGAN players."""
    import numpy as np

    from ml100.backends import get_module
    from ml100.configs import GANConfig
    from ml100.data import batch_indices, load_digits_split
    from ml100.runs import to_backend

    config = GANConfig() if config is None else config
    rng = np.random.default_rng(seed)
    # tanh's range: pixels in [0, 1] -> [-1, 1]; the TF tree takes NHWC.
    images = 2.0 * load_digits_split("NHWC" if tree == "tf" else "NCHW").x_train - 1.0  # (N, 1, 8, 8)
    topic, adam = get_module(tree, module), get_module(tree, "foundations.optim").Adam
    generator, discriminator = (getattr(topic, name)(config, rng=rng) for name in players)
    betas = (0.5, 0.999)
    gan_step = get_module(tree, "generative.gan").GANStep(
        generator, discriminator, adam(dict(generator.named_parameters()), lr=LR, betas=betas),
        adam(dict(discriminator.named_parameters()), lr=LR, betas=betas))
    d_losses, g_losses = [], []
    for _ in range(epochs):
        for index in batch_indices(len(images), BATCH, rng):
            z_d, z_g = (rng.standard_normal((BATCH, config.latent_dim)).astype(np.float32) for _ in range(2))
            d_loss, g_loss = gan_step(*(to_backend(tree, a) for a in (images[index], z_d, z_g)))
            d_losses.append(d_loss)
            g_losses.append(g_loss)
    return d_losses, g_losses, generator, rng


def draw(path, title: str, tree: str, d_losses: list[float], g_losses: list[float], generator, rng) -> None:
    """The figure: both loss curves (left) and 64 samples ``G(z)`` (right), written to ``path``."""
    import matplotlib.pyplot as plt
    import numpy as np

    from ml100.backends import get_module
    from ml100.runs import to_backend, to_numpy

    # Eval mode: a batch-norm generator samples with its running statistics.
    generator.eval()
    with get_module(tree, "module").no_grad():
        z = rng.standard_normal((64, generator.config.latent_dim)).astype(np.float32)  # (64, D)
        samples = to_numpy(generator(to_backend(tree, z)))  # (64, 1, 8, 8); TF (64, 8, 8, 1)
    pixels = samples.reshape(64, 8, 8)  # one channel: the same in either layout
    # 8x8 tiles of 8x8 pixels, one blank (-1) pixel between tiles.
    tiles = np.pad(pixels, ((0, 0), (0, 1), (0, 1)), constant_values=-1.0)  # (64, 9, 9)
    grid = tiles.reshape(8, 8, 9, 9).transpose(0, 2, 1, 3).reshape(72, 72)

    figure, (curves, images) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1.6, 1]})
    rounds = np.arange(1, len(d_losses) + 1)
    curves.plot(rounds, d_losses, lw=0.8, label="discriminator: BCE(D(x),1) + BCE(D(G(z)),0)")
    curves.plot(rounds, g_losses, lw=0.8, label="generator: BCE(D(G(z)),1) (non-saturating)")
    curves.axhline(2 * math.log(2), color="gray", ls="--", lw=0.8, label="2 log 2 (D = 1/2 everywhere)")
    curves.set_xlabel("round (one D step, then one G step)")
    curves.set_ylabel("loss")
    curves.set_title(title)
    curves.legend(fontsize=8)
    images.imshow(grid, cmap="gray_r", vmin=-1, vmax=1)
    images.set_axis_off()
    images.set_title("64 samples G(z), z ~ N(0, I)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"final losses: D {d_losses[-1]:.3f}, G {g_losses[-1]:.3f}; wrote {path}")


def main(argv=None) -> int:
    path = start_figure(__file__, argv)
    draw(path, f"MLP GAN on 8x8 digits, NumPy tree, {EPOCHS} epochs", "numpy", *train())
    return 0


if __name__ == "__main__":
    sys.exit(main())
