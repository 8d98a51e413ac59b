"""Day 45: post-LN vs pre-LN at initialization. Six NumPy-tree ``TransformerEncoderLayer(64, 4,
256)`` stacked (torch's default init, seed 0), run on a batch of 8 random sequences of 16 tokens
(unit variance); left, the RMS of the residual stream after each layer; right, the RMS of the
gradient reaching each layer's input when the top output is pulled by a fixed random cotangent.
Post-LN renormalizes after every sum, so its stream stays at RMS 1.000 and the gradient near 1
(0.98-1.03) at every depth; pre-LN leaves the stream un-normalized, so each layer adds its branch
to it: the stream's RMS grows (1.00 to 1.20 after six layers), and so does the gradient on the way
down (1.01 at the top, 1.23 at the input), the identity path plus every branch's share.

    python figures/day45_encoder_norms.py [--out DIR]   # writes DIR/day45_encoder_norms.png
"""
import numpy as np

from make_all import start_figure

D_MODEL, NHEAD, FEEDFORWARD, LAYERS, BATCH, STEPS, SEED = 64, 4, 256, 6, 8, 16, 0


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)))


def norms(norm_first: bool) -> tuple[list[float], list[float]]:
    """RMS of the stream at the input and after each layer, and of the gradient at the same places."""
    from numpy_impl.modern.encoder import TransformerEncoderLayer

    rng = np.random.default_rng(SEED)
    layers = [TransformerEncoderLayer(D_MODEL, NHEAD, FEEDFORWARD, batch_first=True, norm_first=norm_first,
                                      dtype="float64", rng=rng) for _ in range(LAYERS)]
    x = rng.standard_normal((BATCH, STEPS, D_MODEL))  # (B, T, E)
    streams = [rms(x)]
    for layer in layers:
        x = layer(x)  # (B, T, E)
        streams.append(rms(x))
    grad = rng.standard_normal(x.shape)  # (B, T, E)
    grads = [rms(grad)]
    for layer in reversed(layers):
        grad = layer.backward(grad)  # (B, T, E)
        grads.append(rms(grad))
    return streams, grads[::-1]


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    depth = np.arange(LAYERS + 1)
    for norm_first, label in ((False, "post-LN (norm_first=False)"), (True, "pre-LN (norm_first=True)")):
        streams, grads = norms(norm_first)
        left.plot(depth, streams, marker="o", label=label)
        right.plot(depth, grads, marker="o", label=label)
        print(f"{label}: stream RMS {np.round(streams, 3).tolist()}, gradient RMS {np.round(grads, 3).tolist()}")
    left.set(title="residual stream RMS", xlabel="layers applied", ylabel="RMS")
    right.set(title="gradient RMS at each layer's input", xlabel="layer index (0 = input, 6 = top)", ylabel="RMS")
    left.legend()
    figure.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
