"""Time 256 new tokens with and without the KV cache in every tree, and Hugging Face's ``generate`` beside them (day 51).

    python benchmarks/bench_kv_cache.py [--new-tokens 256] [--prompt-len 16] [--n-layer 4] [--n-embd 128] [--repeats 1] [--threads 1]

One GPT (``GPTConfig``: 4 layers, width 128, 4 heads, 384 tokens, 512 positions, dropout off,
float32), the same seeded weights in every tree and in a ``GPT2LMHeadModel`` built offline from the
same config (its ``lm_head`` is tied to ``wte``, so the canonical state loads as it is), one prompt
of ``--prompt-len`` random ids, greedy decoding of ``--new-tokens`` tokens: each tree's day-51
``generate`` with ``use_cache=True`` (the prompt once, then one token per step through the cache)
and ``use_cache=False`` (the whole sequence again every step), and Hugging Face's
``generate(do_sample=False)`` with ``use_cache`` True and False. Eager in every tree (a Python loop
of steps, as the examples decode). Each is timed after one untimed warm-up run, the best of
``--repeats``; each line ends with the cache's speed-up, uncached time / cached time. The last line
says how many generated tokens each implementation shares with the NumPy tree's (float32 rounding
can flip a near-tie of random weights' logits, after which the sequences part).

Every framework gets ``--threads`` threads (BLAS for NumPy, intra-op for torch and TF; see
``ml100.runs.set_threads``): torch's OpenMP threads spin, so oversubscribed cores distort it.
"""
from __future__ import annotations

import os

from ml100.cli_args import OneLineErrorParser, positive_int
from ml100.runs import best_seconds, set_threads

#: The model's position table: the prompt and the new tokens must fit.
N_POSITIONS = 512


def main(argv=None) -> None:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--new-tokens", type=positive_int, default=256)
    parser.add_argument("--prompt-len", type=positive_int, default=16)
    parser.add_argument("--n-layer", type=positive_int, default=4)
    parser.add_argument("--n-embd", type=positive_int, default=128)
    parser.add_argument("--n-head", type=positive_int, default=4)
    parser.add_argument("--vocab-size", type=positive_int, default=384)
    parser.add_argument("--repeats", type=positive_int, default=1)
    parser.add_argument("--threads", type=positive_int, default=1)
    # Parsed before the frameworks load, so --help and a bad value answer at once.
    args = parser.parse_args(argv)
    if args.n_embd % args.n_head:
        parser.error(f"argument --n-embd: must be divisible by --n-head ({args.n_head}), got {args.n_embd}")
    if args.prompt_len + args.new_tokens > N_POSITIONS:
        parser.error(f"argument --new-tokens: --prompt-len {args.prompt_len} + {args.new_tokens} new tokens exceed "
                     f"the {N_POSITIONS} positions")
    # CPU timings must not pick up a GPU.
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import numpy as np

    from ml100.backends import get_module, load_framework
    from ml100.configs import GPTConfig
    from ml100.runs import to_backend

    threads = set_threads(args.threads)
    tf, torch = load_framework("tf"), load_framework("torch")
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPTConfig(vocab_size=args.vocab_size, n_positions=N_POSITIONS, n_embd=args.n_embd, n_layer=args.n_layer,
                       n_head=args.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    prompt = np.random.default_rng(0).integers(0, args.vocab_size, size=(1, args.prompt_len))  # (1, P) int64
    state = get_module("numpy", "modern.gpt").GPT(config, rng=np.random.default_rng(1)).canonical_state_dict()

    def tree_generate(tree: str):
        """``tree``'s GPT with the shared state; ``run(use_cache)`` decodes greedily, returns the ids as NumPy."""
        model = get_module(tree, "modern.gpt").GPT(config)
        model.load_canonical_state_dict(state)
        model.eval()
        generate, ids = get_module(tree, "modern.kv_cache").generate, to_backend(tree, prompt)
        return lambda use_cache: np.asarray(generate(model, ids, args.new_tokens, use_cache=use_cache))

    # No begin/end-of-text ids: GPT-2's 50256 lies outside this vocabulary, and nothing must end a run early.
    hf_config = GPT2Config(**config.to_dict(), attn_implementation="eager", bos_token_id=None, eos_token_id=None)
    hf = GPT2LMHeadModel(hf_config).eval()
    # strict=False: the canonical state lists the tied head once, as wte; HF's lm_head is that same tensor.
    missing, unexpected = hf.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()}, strict=False)
    if missing != ["lm_head.weight"] or unexpected:
        raise RuntimeError(f"the GPT state does not load into GPT2LMHeadModel: missing {missing}, unexpected {unexpected}")
    prompt_t = torch.from_numpy(prompt)

    def hf_generate(use_cache: bool) -> np.ndarray:
        with torch.no_grad():
            return hf.generate(prompt_t, do_sample=False, max_new_tokens=args.new_tokens, use_cache=use_cache,
                               pad_token_id=0).numpy()

    runs = {"numpy tree": tree_generate("numpy"), "torch tree": tree_generate("torch"), "tf tree (eager)": tree_generate("tf"),
            "HF generate": hf_generate}
    print(f"greedy decoding of {args.new_tokens} tokens after a {args.prompt_len}-token prompt, GPT {args.n_layer} layers, "
          f"d={args.n_embd}, {args.n_head} heads, V={args.vocab_size}, float32 (torch {torch.__version__}, "
          f"TF {tf.__version__}, NumPy {np.__version__}; threads: {threads})")
    tokens = {}
    for name, run in runs.items():
        tokens[name] = run(True)[0, args.prompt_len:]  # (new_tokens,)
        cached, uncached = (best_seconds(lambda flag=flag: run(flag), args.repeats) for flag in (True, False))
        print(f"  {name:18s} cache {cached:7.2f} s   no cache {uncached:7.2f} s   speed-up {uncached / cached:5.2f}x")
    shared = ", ".join(f"{name} {int(np.sum(ids == tokens['numpy tree']))}" for name, ids in tokens.items() if name != "numpy tree")
    print(f"generated tokens equal to the numpy tree's: {shared} of {args.new_tokens}")


if __name__ == "__main__":
    main()
