"""Time LSTM forward + backward in every backend, side by side (day 24).

    python benchmarks/bench_lstm.py [--batch 32] [--steps 64] [--size 256] [--repeats 10] [--threads 1]

One layer, input = hidden = ``--size``, a time-major ``(T, N, F)`` float32 sequence, the cotangent
of the output sequence backpropagated. Timed in one process on the same input and weights, the
best of ``--repeats``, printed as ratios to ``torch.nn.LSTM`` (ATen's LSTM on CPU): the NumPy tree
(one input-projection GEMM per direction, a Python loop over time, BPTT written out, weight
gradients as GEMMs over all steps), the torch tree (autograd through the same loop) and the TF
tree under ``tf.function`` (the Python loop over a static T is unrolled while tracing).
Goal: NumPy <= 1.5x ``torch.nn.LSTM``. The line "numpy GEMMs alone" is the floor of the NumPy
tree's method: its matrix products (see :func:`gemm_floor`) on ready operands, nothing around them.

Every framework gets ``--threads`` threads (BLAS for NumPy, intra-op for torch and TF; see
``ml100.runs.set_threads``): torch's OpenMP threads spin, so oversubscribed cores distort it.
"""
from __future__ import annotations

import os

from ml100.cli_args import OneLineErrorParser, positive_int
from ml100.runs import best_seconds, set_threads




def gemm_floor(np, n: int, t: int, size: int, rng):
    """The NumPy tree's matrix products alone, operands ready: the input projection of all steps,
    one recurrent product per step forward and one per step backward, then the weight gradients
    and the input gradient over all ``T * N`` rows."""
    w = rng.standard_normal((4 * size, size)).astype(np.float32)  # (4H, in) and (4H, H)
    rows = rng.standard_normal((t * n, size)).astype(np.float32)  # (T*N, in)
    grad_rows = rng.standard_normal((t * n, 4 * size)).astype(np.float32)  # (T*N, 4H)

    def gemms():
        rows @ w.T  # x_proj
        for step in range(t):
            rows[step * n:(step + 1) * n] @ w.T  # h_{t-1} W_hh^T
            grad_rows[step * n:(step + 1) * n] @ w  # grad a_t W_hh
        grad_rows.T @ rows  # grad W_ih
        grad_rows.T @ rows  # grad W_hh
        grad_rows @ w  # grad x

    return gemms


def main(argv=None) -> None:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--steps", type=positive_int, default=64)
    parser.add_argument("--size", type=positive_int, default=256)
    parser.add_argument("--repeats", type=positive_int, default=10)
    parser.add_argument("--threads", type=positive_int, default=1)
    # Parsed before the frameworks load, so --help and a bad value answer at once.
    args = parser.parse_args(argv)
    # CPU timings must not pick up a GPU.
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import numpy as np

    from ml100.backends import get_module, load_framework

    threads = set_threads(args.threads)
    tf, torch = load_framework("tf"), load_framework("torch")
    n, t, size = args.batch, args.steps, args.size

    rng = np.random.default_rng(0)
    x = rng.standard_normal((t, n, size)).astype(np.float32)  # (T, N, F)
    grad_out = rng.standard_normal((t, n, size)).astype(np.float32)  # (T, N, H)
    layers = {tree: get_module(tree, "generative.lstm").LSTM(size, size, rng=np.random.default_rng(1))
              for tree in ("numpy", "torch", "tf")}
    state = layers["numpy"].canonical_state_dict()

    def numpy_step():
        layers["numpy"].forward(x)
        layers["numpy"].backward(grad_out)

    numpy_gemms = gemm_floor(np, n, t, size, rng)

    x_t, g_t = torch.from_numpy(x).requires_grad_(), torch.from_numpy(grad_out)
    reference = torch.nn.LSTM(size, size)
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})

    def torch_native_step():
        reference(x_t)[0].backward(g_t)

    def torch_tree_step():
        layers["torch"](x_t)[0].backward(g_t)

    x_tf, g_tf = tf.constant(x), tf.constant(grad_out)
    tf_layer = layers["tf"]
    variables = list(tf_layer.params.values())

    @tf.function
    def tf_tree_step():
        with tf.GradientTape() as tape:
            tape.watch(x_tf)
            y, _ = tf_layer(x_tf)
        return tape.gradient(y, [x_tf, *variables], output_gradients=g_tf)

    steps = {"torch.nn.LSTM": torch_native_step, "numpy tree": numpy_step, "numpy GEMMs alone": numpy_gemms, "torch tree": torch_tree_step,
             "tf tree (tf.function)": tf_tree_step}
    print(f"LSTM forward+backward, N={n}, T={t}, input=hidden={size}, 1 layer, float32 "
          f"(torch {torch.__version__}, TF {tf.__version__}, NumPy {np.__version__}; threads: {threads})")
    times = {name: best_seconds(step, args.repeats) for name, step in steps.items()}
    for name, seconds in times.items():
        print(f"  {name:24s} {seconds * 1e3:8.1f} ms   {seconds / times['torch.nn.LSTM']:5.2f}x")


if __name__ == "__main__":
    main()
