r"""Day 51: the KV cache — incremental decoding without recomputing the past.

A causal model's keys and values at a position never change once computed: token :math:`t` only
attends to :math:`1..t`. So each attention layer keeps them, ``(B, H, S, d)``, and a step feeds only
the **new** tokens: their queries attend to the cached keys and values plus their own,

.. math::  K_{1..S} = [K_\text{cache};\, K_\text{new}], \qquad V_{1..S} = [V_\text{cache};\, V_\text{new}], \qquad
           o_i = \operatorname{softmax}\!\big(q_i K_{1..S}^\top/\sqrt d + M_i\big)\, V_{1..S},

with position ids offset by the cache length :math:`p` (``wpe[p + t]``) and the causal mask aligned
bottom-right (query :math:`i` of :math:`T` new ones sees keys :math:`j \le p + i`). The logits equal
the full recomputation's at every step; a step costs :math:`O(S)` attention per new token instead of
:math:`O(S^2)` for re-running the prefix, and the MLPs and projections run on one token instead of
:math:`S`.

:class:`KVCache` holds one key and one value array per layer, appended along the step axis
(concatenation: each step copies the cache once, :math:`O(S)` memory traffic, far below the
recomputation it replaces), and refuses to grow past ``max_length``. It is **inference only**:
nothing is backpropagated into the cached tensors, so decode inside ``no_grad()`` (outside it,
autograd would keep every step's graph alive through the cache) with dropout off (the GPT refuses
a cache in training mode with dropout).

:func:`generate` decodes ``max_new_tokens`` tokens with day 50's :func:`~.sampling.greedy` (no
``uniforms``) or :func:`~.sampling.warp` then :func:`~.sampling.sample` (one uniform per step and
sequence, passed in): the prompt in one forward, then one token per step through the cache;
``use_cache=False`` re-runs the whole sequence each step instead (the same tokens, slower).
"""
from __future__ import annotations

import torch

from ml100.checks import check_array_type, check_generate_inputs, check_int, check_kv_cache_update

from ..module import no_grad
from .sampling import greedy, sample, warp


class KVCache:
    """Per layer, the keys and values ``(B, H, S, d)`` of every step so far; ``length`` = ``S``."""

    def __init__(self, n_layer: int, max_length: int):
        self.n_layer = check_int("KVCache", "n_layer", n_layer, 1)
        self.max_length = check_int("KVCache", "max_length", max_length, 1)
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    @property
    def length(self) -> int:
        """Steps cached (read by the model before a forward, when every layer holds the same number)."""
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's ``key``, ``value`` ``(B, H, t, d)`` to ``layer``'s; return all ``(B, H, S + t, d)``."""
        check_array_type("KVCache", "torch", key, torch.Tensor)
        cached = self.keys[layer] if isinstance(layer, int) and 0 <= layer < self.n_layer else None
        length = 0 if cached is None else cached.shape[-2]
        check_kv_cache_update("KVCache", self.n_layer, self.max_length, layer, length,
                              None if cached is None else cached.shape, key, value)
        if cached is None:
            self.keys[layer], self.values[layer] = key, value
        else:
            self.keys[layer] = torch.cat([cached, key], dim=-2)  # (B, H, S + t, d)
            self.values[layer] = torch.cat([self.values[layer], value], dim=-2)  # (B, H, S + t, d)
        return self.keys[layer], self.values[layer]


def generate(model, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, uniforms: torch.Tensor | None = None, use_cache: bool = True) -> torch.Tensor:
    """The prompt ``(B, T)`` followed by ``max_new_tokens`` generated ids, int64 ``(B, T + max_new_tokens)``:
    greedy without ``uniforms``, else sampled from the warped scores with ``uniforms[step]`` ``(B,)``."""
    check_array_type("generate", "torch", input_ids, torch.Tensor)
    max_new_tokens = check_generate_inputs("generate", model.config, input_ids, max_new_tokens, uniforms)
    cache = KVCache(model.config.n_layer, input_ids.shape[1] + max_new_tokens) if use_cache else None
    ids = input_ids  # (B, T)
    with no_grad():
        # The prompt in one forward; after it, with a cache, only the newest token.
        logits, _ = model(input_ids, cache=cache)  # (B, T, V)
        for step in range(max_new_tokens):
            scores = logits[:, -1]  # (B, V) the last position predicts the next token
            if uniforms is None:
                token = greedy(scores)  # (B,)
            else:
                token = sample(warp(scores, temperature, top_k, top_p), uniforms[step])  # (B,)
            ids = torch.cat([ids, token[:, None]], dim=1)  # (B, T + step + 1)
            if step + 1 < max_new_tokens:
                logits, _ = model(token[:, None] if use_cache else ids, cache=cache)  # (B, 1 or T + step + 1, V)
    return ids
