"""Time Conv2d forward + backward in every backend, side by side (day 15).

    python benchmarks/bench_conv.py [--batch 32] [--channels 64] [--size 32] [--repeats 5]

N=32, C=64->64, 32x32, 3x3, padding 1, float32 by default. Timed in one process on the same input
and weights, the best of ``--repeats``, printed as ratios to torch's own ``F.conv2d`` (oneDNN):
the NumPy tree (im2col + one GEMM per group, col2im by k*k strided adds), the torch tree
(``F.unfold`` + matmul, autograd), the TF tree under ``tf.function`` (``extract_patches`` + matmul),
and ``tf.nn.conv2d`` under ``tf.function``. Goal: NumPy <= 2x torch.

The line "numpy GEMMs alone" is the floor of the NumPy tree's method: its three matrix products
(forward ``W @ cols``, weight gradient ``G_y @ cols^T``, input gradient ``W_flipped @ cols(G_y)``) on
ready-made operands of the same shapes, without im2col, padding or anything else around them.
"""
from __future__ import annotations

import os

# CPU timings: TF and torch must not pick up a GPU (set before either is imported).
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np

from ml100.backends import get_module, load_framework
from ml100.cli_args import OneLineErrorParser, positive_int
from ml100.runs import best_seconds




def gemm_floor(n: int, c: int, s: int, rng: np.random.Generator):
    """The NumPy tree's three products for a 3x3, stride-1, C -> C conv on (N, C, s, s), operands ready."""
    k, p = 9 * c, s * s
    weight = rng.standard_normal((1, c, k)).astype(np.float32)  # (G, O, C*9): also the flipped kernel's shape
    cols = rng.standard_normal((n, 1, k, p)).astype(np.float32)  # (N, G, C*9, H*W): also cols of G_y
    cols_t = np.ascontiguousarray(cols.transpose(0, 1, 3, 2))  # (N, G, H*W, C*9)
    grad_rows = rng.standard_normal((n, 1, c, p)).astype(np.float32)  # (N, G, O, H*W)

    def gemms():
        weight @ cols  # forward
        (grad_rows @ cols_t).sum(axis=0)  # weight gradient
        weight @ cols  # input gradient: the flipped kernel times the columns of G_y

    return gemms


def main(argv=None) -> None:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--channels", type=positive_int, default=64)
    parser.add_argument("--size", type=positive_int, default=32)
    parser.add_argument("--repeats", type=positive_int, default=5)
    # Parsed before the frameworks load, so --help and a bad value answer at once.
    args = parser.parse_args(argv)
    tf, torch = load_framework("tf"), load_framework("torch")
    F = torch.nn.functional
    n, c, s = args.batch, args.channels, args.size

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, s, s)).astype(np.float32)  # (N, C, H, W)
    layers = {tree: get_module(tree, "foundations.conv").Conv2d(c, c, 3, padding=1, rng=np.random.default_rng(1))
              for tree in ("numpy", "torch", "tf")}
    grad_out = rng.standard_normal((n, c, s, s)).astype(np.float32)  # (N, O, H, W)

    def numpy_step():
        layers["numpy"].forward(x)
        layers["numpy"].backward(grad_out)

    numpy_gemms = gemm_floor(n, c, s, rng)

    x_t, g_t = torch.from_numpy(x).requires_grad_(), torch.from_numpy(grad_out)
    weight_t = torch.from_numpy(layers["numpy"].params["weight"]).requires_grad_()
    bias_t = torch.from_numpy(layers["numpy"].params["bias"]).requires_grad_()

    def torch_native_step():
        F.conv2d(x_t, weight_t, bias_t, padding=1).backward(g_t)

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
            y = tf.nn.conv2d(x_tf, tf_layer.kernel, 1, "SAME") + tf_layer.bias
        return tape.gradient(y, [x_tf, tf_layer.kernel, tf_layer.bias], output_gradients=g_tf)

    steps = {"torch F.conv2d": torch_native_step, "numpy tree": numpy_step, "numpy GEMMs alone": numpy_gemms,
             "torch tree": torch_tree_step,
             "tf tree (tf.function)": tf_tree_step, "tf.nn.conv2d (tf.function)": tf_native_step}
    print(f"Conv2d forward+backward, N={n}, C={c}->{c}, {s}x{s}, 3x3, padding 1, float32 "
          f"(torch {torch.__version__}, TF {tf.__version__}, NumPy {np.__version__}; torch threads {torch.get_num_threads()})")
    times = {name: best_seconds(step, args.repeats) for name, step in steps.items()}
    for name, seconds in times.items():
        print(f"  {name:28s} {seconds * 1e3:8.1f} ms   {seconds / times['torch F.conv2d']:5.2f}x torch")


if __name__ == "__main__":
    main()
