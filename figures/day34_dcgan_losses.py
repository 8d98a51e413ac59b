"""Day 34's figure: the DCGAN players' losses over a short seeded training, and their samples.

Day 33's figure code (``train``, ``draw`` in ``figures/day33_gan_losses.py``) with the PyTorch
tree's ``DCGANGenerator`` and ``DCGANDiscriminator`` (``DCGANConfig`` defaults) instead of the MLPs:
the same digits in [-1, 1], batches of 64, Adam (lr 1e-3, betas (0.5, 0.999)) for both players,
``GANStep`` rounds, one seeded NumPy generator for the batch order and the noise. The samples are
drawn in eval mode (batch norm with its running statistics). One torch thread: the tensors are tiny.

    python figures/day34_dcgan_losses.py [--out DIR]   # writes DIR/day34_dcgan_losses.png
"""
import sys

from make_all import start_figure

EPOCHS = 25


def main(argv=None) -> int:
    path = start_figure(__file__, argv)
    import torch

    from day33_gan_losses import draw, train
    from ml100.configs import DCGANConfig

    torch.set_num_threads(1)
    run = train("torch", "generative.dcgan", ("DCGANGenerator", "DCGANDiscriminator"), DCGANConfig(), EPOCHS)
    draw(path, f"DCGAN on 8x8 digits, PyTorch tree, {EPOCHS} epochs", "torch", *run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
