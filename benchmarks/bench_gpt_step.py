"""Time one GPT training step in every tree, side by side (day 49).

    python benchmarks/bench_gpt_step.py [--n-layer 4] [--n-embd 128] [--seq-len 64] [--batch 16] [--vocab-size 384] [--repeats 5] [--threads 1]

The step ``examples/train_gpt.py`` runs: each tree's ``Trainer.train_step`` on a batch of
``--batch`` windows of ``--seq-len`` token ids — the GPT's forward (4 pre-LN blocks of width 128,
4 heads, tanh GELU, tied head over ``--vocab-size`` tokens, dropout off), day 27's next-token
cross-entropy, the backward, gradient clipping at norm 1 and an Adam update — from the same
canonical weights and ids, float32. The best of ``--repeats``, printed as ratios to the torch tree:
the NumPy tree (every backward written out), the TF tree (its Trainer runs the step as one
``tf.function`` graph). Goals: NumPy <= 2x the torch tree, TF <= 1.5x.

Every framework gets ``--threads`` threads (BLAS for NumPy, intra-op for torch and TF; see
``ml100.runs.set_threads``): torch's OpenMP threads spin, so oversubscribed cores distort it.
"""
from __future__ import annotations

import os

from ml100.cli_args import OneLineErrorParser, positive_int
from ml100.runs import best_seconds, set_threads


def main(argv=None) -> None:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--n-layer", type=positive_int, default=4)
    parser.add_argument("--n-embd", type=positive_int, default=128)
    parser.add_argument("--n-head", type=positive_int, default=4)
    parser.add_argument("--seq-len", type=positive_int, default=64)
    parser.add_argument("--batch", type=positive_int, default=16)
    parser.add_argument("--vocab-size", type=positive_int, default=384)
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--threads", type=positive_int, default=1)
    # Parsed before the frameworks load, so --help and a bad value answer at once.
    args = parser.parse_args(argv)
    if args.n_embd % args.n_head:
        parser.error(f"argument --n-embd: must be divisible by --n-head ({args.n_head}), got {args.n_embd}")
    # CPU timings must not pick up a GPU.
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import numpy as np

    from ml100.backends import get_module, load_framework
    from ml100.configs import GPTConfig

    threads = set_threads(args.threads)
    tf, torch = load_framework("tf"), load_framework("torch")

    config = GPTConfig(vocab_size=args.vocab_size, n_positions=args.seq_len, n_embd=args.n_embd, n_layer=args.n_layer,
                       n_head=args.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    rng = np.random.default_rng(0)
    windows = rng.integers(0, args.vocab_size, size=(args.batch, args.seq_len + 1))  # (N, T+1) int64
    state = get_module("numpy", "modern.gpt").GPT(config, rng=np.random.default_rng(1)).canonical_state_dict()

    def trainer_step(tree: str):
        """``tree``'s Trainer over its GPT, loaded with the shared state: the example's step."""
        model = get_module(tree, "modern.gpt").GPT(config)
        model.load_canonical_state_dict(state)
        loss_fn = get_module(tree, "generative.char_lm").NextCharLoss()
        optimizer = get_module(tree, "foundations.optim").Adam(dict(model.named_parameters()), lr=1e-3)
        trainer = get_module(tree, "foundations.trainer").Trainer(model, loss_fn, optimizer, max_norm=1.0)
        return lambda: trainer.train_step(windows[:, :-1], windows[:, 1:])

    steps = {"torch tree": trainer_step("torch"), "numpy tree": trainer_step("numpy"),
             "tf tree (tf.function)": trainer_step("tf")}
    print(f"GPT training step (forward, loss, backward, clip, Adam), {args.n_layer} layers, d={args.n_embd}, "
          f"{args.n_head} heads, T={args.seq_len}, batch {args.batch}, V={args.vocab_size}, float32 "
          f"(torch {torch.__version__}, TF {tf.__version__}, NumPy {np.__version__}; threads: {threads})")
    times = {name: best_seconds(step, args.repeats) for name, step in steps.items()}
    for name, seconds in times.items():
        print(f"  {name:24s} {seconds * 1e3:8.1f} ms   {seconds / times['torch tree']:5.2f}x")


if __name__ == "__main__":
    main()
