"""Day 57: what an MLP-Mixer's token MLP learns. A small Mixer (8x8 digits, 2x2 patches: N = 16 tokens,
embed_dim 32, 2 blocks) is trained for a few epochs by the torch tree (Adam, seeded). Each row of the
first block's ``mlp_tokens.fc1.weight`` ``(tokens_dim, N)`` weighs the 16 patch positions: drawn on the
4x4 patch grid, it is a spatial filter shared by every channel. Top: those rows at random init;
bottom: after training.

    python figures/day57_token_mixing.py [--out DIR]   # writes DIR/day57_token_mixing.png
"""
import numpy as np

from make_all import start_figure

CONFIG_ARGS = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, num_blocks=2, embed_dim=32)
STEPS, BATCH, LR = 200, 64, 3e-3
SHOWN = 8


def token_filters(model) -> np.ndarray:
    """The first block's token-MLP ``fc1`` rows as ``(tokens_dim, grid, grid)`` images."""
    # A copy: .numpy() shares the parameter's memory, which the optimizer updates in place.
    weight = model.blocks[0].mlp_tokens.fc1.weight.detach().numpy().copy()  # (tokens_dim, N)
    grid = int(round(np.sqrt(weight.shape[1])))
    return weight.reshape(weight.shape[0], grid, grid)


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    from ml100.backends import get_module
    from ml100.configs import MixerConfig
    from ml100.data import load_digits_split
    import torch

    torch.manual_seed(0)
    # Deterministic and fair to the other processes on a small machine.
    torch.set_num_threads(1)
    data = load_digits_split(layout="NCHW", dtype="float32")
    model = get_module("torch", "modern.mlp_mixer").MlpMixer(MixerConfig(**CONFIG_ARGS), rng=np.random.default_rng(0))
    before = token_filters(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train.astype(np.int64))
    order_rng = np.random.default_rng(1)
    for _ in range(STEPS):
        # A fresh random minibatch each step (seeded): no epoch bookkeeping needed for a picture.
        rows = torch.from_numpy(order_rng.choice(len(x), BATCH, replace=False))
        loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.x_test)).argmax(dim=1).numpy()
    accuracy = float((predicted == data.y_test).mean())
    after = token_filters(model)
    figure, axes = plt.subplots(2, SHOWN, figsize=(1.4 * SHOWN, 3.4), constrained_layout=True)
    for row, (filters, label) in enumerate([(before, "init"), (after, f"trained (test acc {accuracy:.3f})")]):
        for col in range(SHOWN):
            limit = np.abs(filters[col]).max()
            axes[row, col].imshow(filters[col], cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes[row, col].set(xticks=[], yticks=[])
        axes[row, 0].set_ylabel(label, fontsize=8)
    figure.suptitle("block 0 token-mixing weights (mlp_tokens.fc1 rows) on the 4x4 patch grid")
    figure.savefig(path, dpi=100)
    print(f"test accuracy {accuracy:.4f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
