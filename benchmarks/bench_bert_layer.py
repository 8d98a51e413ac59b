"""Time one BERT layer's forward + backward in every tree, side by side (day 52).

    python benchmarks/bench_bert_layer.py [--batch 8] [--seq-len 64] [--hidden-size 384] [--heads 12] [--repeats 5] [--threads 1]

One ``BertLayer`` (Hugging Face's names: self-attention, output projection with residual and
LayerNorm, the erf-GELU feed-forward with residual and LayerNorm) at all-MiniLM-L6-v2's shape by
default — width 384, 12 heads, feed-forward 1536 — on a batch of hidden states, no padding, dropout
off, float32, from the same canonical weights: the forward and the backward of one fixed cotangent
(every parameter's gradient and the input's). The best of ``--repeats``, printed as ratios to the
torch tree: the NumPy tree (its backward written out step by step), and the TF tree with the step
traced once by ``tf.function``.
"""
from __future__ import annotations

from ml100.cli_args import OneLineErrorParser, positive_int


def main(argv=None) -> None:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--batch", type=positive_int, default=8)
    parser.add_argument("--seq-len", type=positive_int, default=64)
    parser.add_argument("--hidden-size", type=positive_int, default=384)
    parser.add_argument("--heads", type=positive_int, default=12)
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--threads", type=positive_int, default=1)
    # Parsed before the frameworks load, so --help and a bad value answer at once.
    args = parser.parse_args(argv)
    if args.hidden_size % args.heads:
        parser.error(f"argument --hidden-size: must be divisible by --heads ({args.heads}), got {args.hidden_size}")
    import numpy as np

    from ml100.backends import get_module
    from ml100.configs import BertConfig
    from ml100.runs import best_seconds, set_threads

    threads = set_threads(args.threads)
    import tensorflow as tf
    import torch

    config = BertConfig(hidden_size=args.hidden_size, num_attention_heads=args.heads,
                        intermediate_size=4 * args.hidden_size, num_hidden_layers=1,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((args.batch, args.seq_len, args.hidden_size)).astype(np.float32)  # (B, T, E)
    cotangent = rng.standard_normal(hidden.shape).astype(np.float32)  # (B, T, E)
    layers = {tree: get_module(tree, "modern.bert").BertLayer(config, rng=np.random.default_rng(1))
              for tree in ("numpy", "torch", "tf")}
    state = layers["numpy"].canonical_state_dict()
    for layer in layers.values():
        layer.load_canonical_state_dict(state)

    def numpy_step():
        layers["numpy"].zero_grad()
        layers["numpy"](hidden, None, {})
        return layers["numpy"].backward(cotangent, {})  # (B, T, E)

    torch_hidden = torch.tensor(hidden, requires_grad=True)
    torch_cotangent = torch.tensor(cotangent)

    def torch_step():
        layers["torch"].zero_grad()
        torch_hidden.grad = None
        layers["torch"](torch_hidden, None, {}).backward(torch_cotangent)

    tf_hidden, tf_cotangent = tf.constant(hidden), tf.constant(cotangent)

    @tf.function
    def tf_step():
        with tf.GradientTape() as tape:
            tape.watch(tf_hidden)
            output = layers["tf"](tf_hidden, None, {})  # (B, T, E)
        return tape.gradient(output, [tf_hidden, *layers["tf"].trainable_variables], output_gradients=tf_cotangent)

    steps = {"torch tree": torch_step, "numpy tree": numpy_step, "tf tree (tf.function)": tf_step}
    print(f"BERT layer forward + backward, batch {args.batch}, T={args.seq_len}, width {args.hidden_size}, "
          f"{args.heads} heads, feed-forward {4 * args.hidden_size}, float32 (torch {torch.__version__}, "
          f"TF {tf.__version__}, NumPy {np.__version__}; threads: {threads})")
    times = {name: best_seconds(step, args.repeats) for name, step in steps.items()}
    for name, seconds in times.items():
        print(f"  {name:24s} {seconds * 1e3:8.1f} ms   {seconds / times['torch tree']:5.2f}x")


if __name__ == "__main__":
    main()
