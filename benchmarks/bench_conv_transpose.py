"""Time ConvTranspose2d forward + backward in every backend, side by side (day 30).

    python benchmarks/bench_conv_transpose.py [--batch 32] [--channels 64] [--size 16] [--repeats 5]

N=32, C=64->64, 16x16 -> 32x32, 4x4 kernel, stride 2, padding 1 (DCGAN's upsampling block), float32
by default. Timed in one process on the same input and weights, round-robin (each repeat times every
method once, so a load change on a shared machine hits them all alike), the best of ``--repeats``
each, printed as ratios to torch's own ``F.conv_transpose2d`` (oneDNN): the NumPy tree (one GEMM ``W^T x`` over the
images side by side, then col2im by k*k strided adds; backward im2col of the output gradient and two GEMMs), the torch tree
(the same method with autograd), the TF tree under ``tf.function``, and ``tf.nn.conv2d_transpose``
under ``tf.function`` ("SAME" at stride 2 with a 4x4 kernel pads (1, 1): torch's ``padding=1``).
Goal: NumPy <= 2x torch.

The line "numpy GEMMs alone" is the floor of the NumPy tree's method: its three matrix products
(forward ``W^T @ x``, weight gradient ``x @ cols(G_y)^T``, input gradient ``W @ cols(G_y)``) on
ready-made operands of the same shapes, without col2im, im2col, padding or anything else.
"""
from __future__ import annotations

import os
import time

# CPU timings: TF and torch must not pick up a GPU (set before either is imported).
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np

from ml100.backends import get_module, load_framework
from ml100.cli_args import OneLineErrorParser, positive_int


#: DCGAN's upsampling block: the output is exactly twice the input.
KERNEL, STRIDE, PADDING = 4, 2, 1


def gemm_floor(n: int, c: int, s: int, rng: np.random.Generator):
    """The NumPy tree's three products for a 4x4, stride-2, C -> C transposed conv on (N, C, s, s),
    operands ready, the images side by side as the tree lays them out."""
    k, p = KERNEL * KERNEL * c, n * s * s
    weight = rng.standard_normal((1, c, k)).astype(np.float32)  # (G, C, O*k*k)
    x_cols = rng.standard_normal((1, c, p)).astype(np.float32)  # (G, C, N*H*W)
    cols = rng.standard_normal((1, k, p)).astype(np.float32)  # (G, O*k*k, N*H*W): cols of G_y

    def gemms():
        weight.transpose(0, 2, 1) @ x_cols  # forward
        x_cols @ cols.transpose(0, 2, 1)  # weight gradient
        weight @ cols  # input gradient

    return gemms


def interleaved_best_seconds(steps: dict, repeats: int) -> dict[str, float]:
    """The fastest of ``repeats`` timed calls of every step, timed in turn (one warm-up call each
    first, which also traces the ``tf.function`` ones)."""
    for step in steps.values():
        step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(argv=None) -> None:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--channels", type=positive_int, default=64)
    parser.add_argument("--size", type=positive_int, default=16)
    parser.add_argument("--repeats", type=positive_int, default=5)
    # Parsed before the frameworks load, so --help and a bad value answer at once.
    args = parser.parse_args(argv)
    tf, torch = load_framework("tf"), load_framework("torch")
    F = torch.nn.functional
    n, c, s = args.batch, args.channels, args.size

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, s, s)).astype(np.float32)  # (N, C, H, W)
    layers = {tree: get_module(tree, "generative.conv_transpose").ConvTranspose2d(
        c, c, KERNEL, stride=STRIDE, padding=PADDING, rng=np.random.default_rng(1)) for tree in ("numpy", "torch", "tf")}
    grad_out = rng.standard_normal((n, c, 2 * s, 2 * s)).astype(np.float32)  # (N, O, 2H, 2W)

    def numpy_step():
        layers["numpy"].forward(x)
        layers["numpy"].backward(grad_out)

    numpy_gemms = gemm_floor(n, c, s, rng)

    x_t, g_t = torch.from_numpy(x).requires_grad_(), torch.from_numpy(grad_out)
    weight_t = torch.from_numpy(layers["numpy"].params["weight"]).requires_grad_()
    bias_t = torch.from_numpy(layers["numpy"].params["bias"]).requires_grad_()

    def torch_native_step():
        F.conv_transpose2d(x_t, weight_t, bias_t, stride=STRIDE, padding=PADDING).backward(g_t)

    def torch_tree_step():
        layers["torch"](x_t).backward(g_t)

    x_tf, g_tf = tf.constant(x.transpose(0, 2, 3, 1)), tf.constant(grad_out.transpose(0, 2, 3, 1))
    tf_layer = layers["tf"]

    @tf.function
    def tf_tree_step():
        with tf.GradientTape() as tape:
            tape.watch(x_tf)
            y = tf_layer(x_tf)
        return tape.gradient(y, [x_tf, tf_layer.kernel, tf_layer.bias], output_gradients=g_tf)

    @tf.function
    def tf_native_step():
        with tf.GradientTape() as tape:
            tape.watch(x_tf)
            y = tf.nn.conv2d_transpose(x_tf, tf_layer.kernel, (n, 2 * s, 2 * s, c), STRIDE, "SAME") + tf_layer.bias
        return tape.gradient(y, [x_tf, tf_layer.kernel, tf_layer.bias], output_gradients=g_tf)

    steps = {"torch F.conv_transpose2d": torch_native_step, "numpy tree": numpy_step, "numpy GEMMs alone": numpy_gemms,
             "torch tree": torch_tree_step,
             "tf tree (tf.function)": tf_tree_step, "tf.nn.conv2d_transpose (tf.function)": tf_native_step}
    print(f"ConvTranspose2d forward+backward, N={n}, C={c}->{c}, {s}x{s} -> {2 * s}x{2 * s}, {KERNEL}x{KERNEL}, "
          f"stride {STRIDE}, padding {PADDING}, float32 (torch {torch.__version__}, TF {tf.__version__}, "
          f"NumPy {np.__version__}; torch threads {torch.get_num_threads()})")
    times = interleaved_best_seconds(steps, args.repeats)
    for name, seconds in times.items():
        print(f"  {name:38s} {seconds * 1e3:8.1f} ms   {seconds / times['torch F.conv_transpose2d']:5.2f}x torch")


if __name__ == "__main__":
    main()
