"""Time scaled dot-product attention forward + backward in every backend, side by side (day 41).

    python benchmarks/bench_attention.py [--batch 8] [--heads 8] [--steps 256] [--embed-dim 256] [--repeats 5] [--threads 1]

What a multi-head layer of width ``--embed-dim`` with ``--heads`` heads computes between its
projections: day 41's ``ScaledDotProductAttention`` on query, key and value of shape
``(B, H, T, E/H)`` — by default ``(8, 8, 256, 32)``, self-attention without a mask, float32 —
then the cotangent of the output backpropagated to the three inputs. Timed in one process on the
same inputs, the best of ``--repeats``, printed as ratios to torch's own
``F.scaled_dot_product_attention`` (its fused CPU kernel) with autograd: the NumPy tree (batched
matmuls, the softmax's Jacobian-vector product written out), the torch tree (the math written with
tensor ops, autograd) and the TF tree under ``tf.function``. The trees also return the attention
weights ``(B, H, T, T)``, which the fused kernel never forms.

The line "numpy GEMMs alone" is the floor of the NumPy tree's method: its six batched matrix
products (``Q K^T`` and ``A V`` forward; ``G V^T``, ``A^T G``, ``dS K`` and ``dS^T Q`` backward) on
ready operands, nothing around them.

Every framework gets ``--threads`` threads (BLAS for NumPy, intra-op for torch and TF; see
``ml100.runs.set_threads``): torch's OpenMP threads spin, so oversubscribed cores distort it.
"""
from __future__ import annotations

import os

from ml100.cli_args import OneLineErrorParser, positive_int
from ml100.runs import best_seconds, set_threads


def gemm_floor(np, query, key, value, grad_output):
    """The NumPy tree's six batched products on ready operands of its shapes (the weights and their
    gradient stand in for ``softmax`` and its Jacobian-vector product, which are not products)."""
    weights = query @ key.swapaxes(-1, -2)  # (B, H, T, T)

    def gemms():
        query @ key.swapaxes(-1, -2)  # scores
        weights @ value  # output
        grad_output @ value.swapaxes(-1, -2)  # grad of the weights
        weights.swapaxes(-1, -2) @ grad_output  # grad of the value
        weights @ key  # grad of the query
        weights.swapaxes(-1, -2) @ query  # grad of the key

    return gemms


def main(argv=None) -> None:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--batch", type=positive_int, default=8)
    parser.add_argument("--heads", type=positive_int, default=8)
    parser.add_argument("--steps", type=positive_int, default=256, help="T, the sequence length (queries = keys)")
    parser.add_argument("--embed-dim", type=positive_int, default=256, help="E; each head is E / heads wide")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--threads", type=positive_int, default=1)
    # Parsed before the frameworks load, so --help and a bad value answer at once.
    args = parser.parse_args(argv)
    if args.embed_dim % args.heads:
        parser.error(f"argument --embed-dim: must be divisible by --heads ({args.heads}), got {args.embed_dim}")
    # CPU timings must not pick up a GPU.
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import numpy as np

    from ml100.backends import get_module, load_framework

    threads = set_threads(args.threads)
    tf, torch = load_framework("tf"), load_framework("torch")
    b, h, t, d = args.batch, args.heads, args.steps, args.embed_dim // args.heads

    rng = np.random.default_rng(0)
    query, key, value, grad_output = (rng.standard_normal((b, h, t, d)).astype(np.float32) for _ in range(4))  # (B, H, T, d)
    attention = {tree: get_module(tree, "modern.attention").ScaledDotProductAttention() for tree in ("numpy", "torch", "tf")}

    def numpy_step():
        attention["numpy"].forward(query, key, value)
        attention["numpy"].backward(grad_output)

    q_t, k_t, v_t = (torch.from_numpy(x).requires_grad_() for x in (query, key, value))
    g_t = torch.from_numpy(grad_output)

    def torch_native_step():
        torch.nn.functional.scaled_dot_product_attention(q_t, k_t, v_t).backward(g_t)

    def torch_tree_step():
        attention["torch"](q_t, k_t, v_t)[0].backward(g_t)

    q_tf, k_tf, v_tf, g_tf = (tf.constant(x) for x in (query, key, value, grad_output))

    @tf.function
    def tf_tree_step():
        with tf.GradientTape() as tape:
            tape.watch([q_tf, k_tf, v_tf])
            output, _ = attention["tf"](q_tf, k_tf, v_tf)
        return tape.gradient(output, [q_tf, k_tf, v_tf], output_gradients=g_tf)

    steps = {"torch F.sdpa": torch_native_step, "numpy tree": numpy_step,
             "numpy GEMMs alone": gemm_floor(np, query, key, value, grad_output), "torch tree": torch_tree_step,
             "tf tree (tf.function)": tf_tree_step}
    print(f"scaled dot-product attention forward+backward, (B, H, T, d) = ({b}, {h}, {t}, {d}), i.e. E={args.embed_dim}, "
          f"no mask, float32 (torch {torch.__version__}, TF {tf.__version__}, NumPy {np.__version__}; threads: {threads})")
    times = {name: best_seconds(step, args.repeats) for name, step in steps.items()}
    for name, seconds in times.items():
        print(f"  {name:24s} {seconds * 1e3:8.1f} ms   {seconds / times['torch F.sdpa']:5.2f}x")


if __name__ == "__main__":
    main()
