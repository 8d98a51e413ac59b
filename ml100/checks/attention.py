"""Days 41-70's sequence models: positions, attention masks, Transformer layers and stacks, GPT and
its KV cache, decoding, BERT and its heads, GQA, efficient attention, LoRA, Llama, mixture of experts."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from .core import (FLOAT_DTYPES, check_bool, check_input, check_int, check_range, check_real, check_real_type,
                   check_rng, dtype_name, is_int)
from .sequences import check_ids


def check_position_window(owner: str, offset, steps: int, max_len: int) -> int:
    """Positions ``offset .. offset + steps - 1`` must fit a table of ``max_len`` rows (no silent
    truncation, no wrap-around); ``offset`` an int >= 0, returned as a Python int."""
    offset = check_int(owner, "offset", offset, 0)
    if offset + steps > max_len:
        raise ValueError(f"{owner}: positions {offset}..{offset + steps - 1} (offset {offset} + sequence length "
                         f"{steps}) do not fit max_len={max_len}; build it with max_len >= {offset + steps}")
    return offset


def check_multihead_inputs(owner: str, dtype: str, embed_dim: int, num_heads: int, batch_first: bool, query, key, value,
                           key_padding_mask=None, attn_mask=None, is_causal: bool = False, dropout_mask=None,
                           dropout_on: bool = False) -> None:
    """Multi-head attention's inputs (any framework's tensors; only ``.shape`` and ``.dtype`` are read),
    as ``nn.MultiheadAttention`` takes them: ``query (T, B, E)``, ``key``/``value (S, B, E)`` (batch
    first: ``(B, T, E)``, ``(B, S, E)``); ``key_padding_mask (B, S)`` and ``attn_mask (T, S)`` or
    ``(B*H, T, S)``, bool (True = ignore) or float (added); ``is_causal`` only as a hint next to an
    ``attn_mask``; ``dropout_mask (B, H, T, S)`` bool (True = keep) exactly when dropout is on."""
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_input(owner, name, x.shape, x.dtype, expected_dtype=dtype, ndim=3, last_dim=embed_dim)
    batch_axis = 0 if batch_first else 1
    batch, target = int(query.shape[batch_axis]), int(query.shape[1 - batch_axis])
    source = int(key.shape[1 - batch_axis])
    # The key's batch must be the query's; its length S is its own (the value's must match it).
    check_input(owner, "key", key.shape, key.dtype,
                shape_like=(batch, source, embed_dim) if batch_first else (source, batch, embed_dim))
    check_input(owner, "value", value.shape, value.dtype, shape_like=tuple(key.shape))
    for name, mask, shapes in (("key_padding_mask", key_padding_mask, [(batch, source)]),
                               ("attn_mask", attn_mask, [(target, source), (batch * num_heads, target, source)])):
        if mask is None:
            continue
        if dtype_name(mask.dtype) not in ("bool", dtype):
            raise TypeError(f"{owner}: {name} must have dtype bool or {dtype}, got {dtype_name(mask.dtype)} "
                            "(cast it explicitly)")
        if tuple(int(s) for s in mask.shape) not in shapes:
            raise ValueError(f"{owner}: {name} must have shape {' or '.join(map(str, shapes))}, "
                             f"got {tuple(int(s) for s in mask.shape)}")
    if check_bool(owner, "is_causal", is_causal) and attn_mask is None:
        raise ValueError(f"{owner}: is_causal is only a hint that attn_mask is the causal mask (torch's rule): "
                         "pass the (T, S) causal attn_mask too")
    if dropout_mask is None:
        if dropout_on:
            raise ValueError(f"{owner}: dropout is on (training, dropout > 0), so dropout_mask (B, H, T, S) bool, "
                             "True = keep, must be given, got None")
        return
    if not dropout_on:
        raise ValueError(f"{owner}: dropout_mask was given but dropout is off (dropout == 0 or eval mode)")
    check_input(owner, "dropout_mask", dropout_mask.shape, dropout_mask.dtype, expected_dtype="bool",
                shape_like=(batch, num_heads, target, source))


# --- day 44: rotary embeddings and ALiBi ----------------------------------------------------------


def check_rotary_embedding_args(owner: str, head_dim, max_position_embeddings, base, interleaved) -> None:
    """RoPE's constructor: ``head_dim`` an even int >= 2 (channels rotate in pairs),
    ``max_position_embeddings`` an int >= 1, ``base`` > 1 (finite), ``interleaved`` a bool."""
    if not is_int(head_dim) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"{owner}: head_dim must be an even int >= 2 (channels rotate in pairs), got {head_dim!r}")
    check_int(owner, "max_position_embeddings", max_position_embeddings, 1)
    check_real_type(owner, "base", base)
    if not 1 < base < math.inf:
        raise ValueError(f"{owner}: base must be a finite number > 1 (the frequencies base ** (-2i/d) must fall), got {base!r}")
    check_bool(owner, "interleaved", interleaved)


def check_positions(owner: str, positions, max_position_embeddings: int) -> None:
    """Token positions ``(B, T)``, int64, each in ``[0, max_position_embeddings)`` (an offset such as a
    KV cache's length is already added in)."""
    check_input(owner, "positions", positions.shape, positions.dtype, expected_dtype="int64", ndim=2)
    check_ids(owner, "positions", positions, max_position_embeddings)


def check_rotary_inputs(owner: str, dtype: str, q, k, cos, sin) -> None:
    """``q`` ``(B, H, T, d)`` and ``k`` ``(B, H_k, T, d)`` (fewer key heads allowed, as with grouped
    queries) in ``dtype``; ``cos`` and ``sin`` ``(B, T, d)`` in ``dtype``, shared by every head."""
    check_input(owner, "q", q.shape, q.dtype, expected_dtype=dtype, ndim=4)
    batch, _, steps, head_dim = (int(s) for s in q.shape)
    check_input(owner, "k", k.shape, k.dtype, expected_dtype=dtype, ndim=4)
    if (int(k.shape[0]), int(k.shape[2]), int(k.shape[3])) != (batch, steps, head_dim):
        raise ValueError(f"{owner}: k must have shape ({batch}, H_k, {steps}, {head_dim}) like q "
                         f"{tuple(int(s) for s in q.shape)}, got {tuple(int(s) for s in k.shape)}")
    if head_dim % 2:
        raise ValueError(f"{owner}: the head dimension must be even (channels rotate in pairs), got {head_dim}")
    for name, table in (("cos", cos), ("sin", sin)):
        check_input(owner, name, table.shape, table.dtype, expected_dtype=dtype, shape_like=(batch, steps, head_dim))


def check_alibi_mask(owner: str, attention_mask) -> None:
    """BLOOM's token mask ``(B, S)``: int64, 1 = a real token, 0 = padding (no other value)."""
    check_input(owner, "attention_mask", attention_mask.shape, attention_mask.dtype, expected_dtype="int64", ndim=2)
    values = np.asarray(attention_mask)
    if np.any((values != 0) & (values != 1)):
        raise ValueError(f"{owner}: attention_mask must hold 0 (padding) or 1 (token), got values "
                         f"{np.unique(values[(values != 0) & (values != 1)])[:5].tolist()}")


# --- scaled dot-product attention (day 41): the same rules and texts in every tree ---------------


def _check_mask_broadcast(owner: str, name: str, shape, scores_shape: tuple) -> None:
    """A mask broadcasts to the scores ``(..., L, S)`` without growing them (torch adds it in place):
    at least two axes, no more axes than the scores, each axis 1 or the scores' size."""
    shape = tuple(int(s) for s in shape)
    fits = 2 <= len(shape) <= len(scores_shape) and all(
        size in (1, target) for size, target in zip(reversed(shape), reversed(scores_shape)))
    if not fits:
        raise ValueError(f"{owner}: {name} must broadcast to the attention scores' shape {scores_shape} "
                         f"(..., L, S), got {shape}")


def check_sdpa_inputs(owner: str, dtype: str, query, key, value, attn_mask=None, dropout_mask=None,
                      is_causal=False, scale=None) -> float:
    """``F.scaled_dot_product_attention``'s inputs, torch's rules (only ``.shape`` and ``.dtype`` are
    read): ``query (..., L, E)``, ``key (..., S, E)``, ``value (..., S, Ev)`` in ``dtype`` with batch
    axes that broadcast together; ``attn_mask`` boolean (True = take part) or additive in ``dtype``,
    ``dropout_mask`` in ``dtype``, both broadcastable to ``(..., L, S)``; no ``attn_mask`` with
    ``is_causal``. Returns the scale: ``scale``, or :math:`1/\\sqrt E` (``inf`` when ``E = 0``, as torch)."""
    shapes = {}
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        check_input(owner, name, tensor.shape, tensor.dtype, expected_dtype=dtype)
        shapes[name] = tuple(int(s) for s in tensor.shape)
        if len(shapes[name]) < 2:
            raise ValueError(f"{owner}: {name} must have at least 2 dimensions (..., length, features), "
                             f"got shape {shapes[name]}")
    q, k, v = shapes["query"], shapes["key"], shapes["value"]
    if k[-1] != q[-1]:
        raise ValueError(f"{owner}: key must have the query's feature size on its last axis (..., S, {q[-1]}), got {k}")
    if v[-2] != k[-2]:
        raise ValueError(f"{owner}: value must have the key's length (..., {k[-2]}, Ev), got {v}")
    try:
        batch = np.broadcast_shapes(q[:-2], k[:-2], v[:-2])
    except ValueError:
        raise ValueError(f"{owner}: the batch axes of query {q}, key {k} and value {v} must broadcast together") from None
    scores_shape = (*batch, q[-2], k[-2])
    if check_bool(owner, "is_causal", is_causal) and attn_mask is not None:
        raise ValueError(f"{owner}: attn_mask must be None when is_causal=True (the causal mask replaces it)")
    if attn_mask is not None:
        if dtype_name(attn_mask.dtype) not in ("bool", dtype):
            raise TypeError(f"{owner}: attn_mask must be boolean (True = take part) or additive with dtype {dtype}, "
                            f"got {dtype_name(attn_mask.dtype)}")
        _check_mask_broadcast(owner, "attn_mask", attn_mask.shape, scores_shape)
    if dropout_mask is not None:
        check_input(owner, "dropout_mask", dropout_mask.shape, dropout_mask.dtype, expected_dtype=dtype)
        _check_mask_broadcast(owner, "dropout_mask", dropout_mask.shape, scores_shape)
    if scale is not None:
        return check_real(owner, "scale", scale)
    # torch's default for an empty feature axis: 1/sqrt(0) = inf (the scores are empty sums, 0).
    return math.inf if q[-1] == 0 else 1.0 / math.sqrt(q[-1])


# --- day 45: the Transformer encoder layer --------------------------------------------------------

#: The dropout masks of ``TransformerEncoderLayer``, by torch's submodule names, in the order they are applied.
ENCODER_DROPOUT_MASKS = ("self_attn", "dropout1", "dropout", "dropout2")


def check_encoder_dropout_masks(owner: str, dropout_masks, src_shape, num_heads: int, batch_first: bool,
                                dim_feedforward: int, dropout_on: bool) -> dict:
    """The encoder layer's dropout masks (bool, True = keep), a dict keyed by
    :data:`ENCODER_DROPOUT_MASKS` exactly when dropout is on: ``self_attn (B, H, T, T)`` on the
    attention weights, ``dropout1`` (src's shape) after attention, ``dropout`` ``(..., F)`` inside the
    feed-forward block, ``dropout2`` (src's shape) after it. Returns the dict (empty when off)."""
    if dropout_masks is None:
        if dropout_on:
            raise ValueError(f"{owner}: dropout is on (training, dropout > 0), so dropout_masks, a dict with keys "
                             f"{', '.join(ENCODER_DROPOUT_MASKS)} (bool, True = keep), must be given, got None")
        return {}
    if not dropout_on:
        raise ValueError(f"{owner}: dropout_masks was given but dropout is off (dropout == 0 or eval mode)")
    if not isinstance(dropout_masks, dict) or tuple(sorted(dropout_masks)) != tuple(sorted(ENCODER_DROPOUT_MASKS)):
        got = f"keys {sorted(dropout_masks)}" if isinstance(dropout_masks, dict) else type(dropout_masks).__name__
        raise ValueError(f"{owner}: dropout_masks must be a dict with exactly the keys "
                         f"{', '.join(ENCODER_DROPOUT_MASKS)}, got {got}")
    src_shape = tuple(int(s) for s in src_shape)
    batch, steps = (src_shape[0], src_shape[1]) if batch_first else (src_shape[1], src_shape[0])
    shapes = {"self_attn": (batch, num_heads, steps, steps), "dropout1": src_shape,
              "dropout": src_shape[:-1] + (dim_feedforward,), "dropout2": src_shape}
    for name in ENCODER_DROPOUT_MASKS:
        mask = dropout_masks[name]
        check_input(owner, f"dropout_masks[{name!r}]", mask.shape, mask.dtype, expected_dtype="bool",
                    shape_like=shapes[name])
    return dropout_masks


# --- day 46: the Transformer decoder layer --------------------------------------------------------

#: The decoder layer's dropout sites, in torch's names.
DECODER_DROPOUT_SITES = ("self_attn", "dropout1", "multihead_attn", "dropout2", "dropout", "dropout3")
#: The sites on attention weights, ``(B, H, T, ·)`` whatever the layout; the others are shaped like ``tgt``.
DECODER_ATTENTION_SITES = ("self_attn", "multihead_attn")


def check_decoder_inputs(owner: str, dtype: str, d_model: int, nhead: int, dim_feedforward: int, batch_first: bool,
                         tgt, memory, dropout_masks, dropout_on: bool) -> None:
    """The decoder layer's ``tgt (T, B, E)`` and ``memory (S, B, E)`` (batch first: ``(B, T, E)``,
    ``(B, S, E)``), and its ``dropout_masks``: exactly when dropout is on, a dict of bool keep-masks
    (True = keep): ``self_attn (B, H, T, T)`` and ``multihead_attn (B, H, T, S)`` on the attention
    weights, ``dropout1``/``dropout2``/``dropout3`` shaped like ``tgt`` and ``dropout`` like ``tgt`` with
    width F (in ``tgt``'s layout, as the encoder layer's masks follow ``src``'s)."""
    for name, x in (("tgt", tgt), ("memory", memory)):
        check_input(owner, name, x.shape, x.dtype, expected_dtype=dtype, ndim=3, last_dim=d_model)
    batch_axis = 0 if batch_first else 1
    batch, target = int(tgt.shape[batch_axis]), int(tgt.shape[1 - batch_axis])
    source = int(memory.shape[1 - batch_axis])
    check_input(owner, "memory", memory.shape, memory.dtype,
                shape_like=(batch, source, d_model) if batch_first else (source, batch, d_model))
    if dropout_masks is None:
        if dropout_on:
            raise ValueError(f"{owner}: dropout is on (training, dropout > 0), so dropout_masks (a dict with keys "
                             f"{', '.join(DECODER_DROPOUT_SITES)}) must be given, got None")
        return
    if not dropout_on:
        raise ValueError(f"{owner}: dropout_masks was given but dropout is off (dropout == 0 or eval mode)")
    if not isinstance(dropout_masks, dict) or sorted(dropout_masks) != sorted(DECODER_DROPOUT_SITES):
        raise ValueError(f"{owner}: dropout_masks must be a dict with exactly the keys "
                         f"{', '.join(DECODER_DROPOUT_SITES)}, got {dropout_masks!r}")
    # The residual sites are shaped like tgt in its own layout, as the tensors they multiply.
    like_tgt = (lambda width: (batch, target, width)) if batch_first else (lambda width: (target, batch, width))
    shapes = {"self_attn": (batch, nhead, target, target), "multihead_attn": (batch, nhead, target, source),
              "dropout1": like_tgt(d_model), "dropout2": like_tgt(d_model),
              "dropout": like_tgt(dim_feedforward), "dropout3": like_tgt(d_model)}
    for name, shape in shapes.items():
        mask = dropout_masks[name]
        check_input(owner, f"dropout_masks[{name!r}]", mask.shape, mask.dtype, expected_dtype="bool", shape_like=shape)


# --- day 47: the encoder-decoder Transformer ------------------------------------------------------

def check_layer_stack(owner: str, layers, layer_type: type, norm, norm_type: type) -> list:
    """A stack's layers: a non-empty list of ``layer_type`` (torch's stacks index ``layers[0]``), and
    ``norm`` ``None`` or a ``norm_type``. Returns the layers as a list."""
    if not isinstance(layers, (list, tuple)) or not layers or not all(isinstance(layer, layer_type) for layer in layers):
        raise TypeError(f"{owner}: layers must be a non-empty list of {layer_type.__name__}, got {layers!r}")
    if norm is not None and not isinstance(norm, norm_type):
        raise TypeError(f"{owner}: norm must be None or a {norm_type.__name__}, got {type(norm).__name__}")
    return list(layers)


def stack_dropout_masks(owner: str, dropout_masks, num_layers: int) -> list:
    """A stack's ``dropout_masks``, one entry per layer: ``None`` (each layer gets ``None`` and refuses
    it itself when its dropout is on) or a dict with exactly the keys ``layers.0`` .. ``layers.{n-1}``
    (the layers' canonical names), each value that layer's own dict of keep-masks."""
    keys = [f"layers.{index}" for index in range(num_layers)]
    if dropout_masks is None:
        return [None] * num_layers
    if not isinstance(dropout_masks, dict) or sorted(dropout_masks) != sorted(keys):
        got = f"keys {sorted(dropout_masks)}" if isinstance(dropout_masks, dict) else type(dropout_masks).__name__
        raise ValueError(f"{owner}: dropout_masks must be None or a dict with exactly the keys {', '.join(keys)} "
                         f"(one dict of keep-masks per layer), got {got}")
    return [dropout_masks[key] for key in keys]


def split_transformer_dropout_masks(owner: str, dropout_masks, num_encoder_layers: int,
                                    num_decoder_layers: int) -> tuple[dict | None, dict | None]:
    """The model's ``dropout_masks`` (``None``, or a dict keyed by every layer's canonical name,
    ``encoder.layers.{i}`` and ``decoder.layers.{j}``) as the encoder's and the decoder's (keys
    ``layers.{i}``)."""
    if dropout_masks is None:
        return None, None
    stacks = {"encoder": num_encoder_layers, "decoder": num_decoder_layers}
    keys = [f"{stack}.layers.{index}" for stack, count in stacks.items() for index in range(count)]
    if not isinstance(dropout_masks, dict) or sorted(dropout_masks) != sorted(keys):
        got = f"keys {sorted(dropout_masks)}" if isinstance(dropout_masks, dict) else type(dropout_masks).__name__
        raise ValueError(f"{owner}: dropout_masks must be None or a dict with exactly the keys {', '.join(keys)} "
                         f"(one dict of keep-masks per layer), got {got}")
    encoder, decoder = ({key[len(stack) + 1:]: dropout_masks[key] for key in keys if key.startswith(stack + ".")}
                        for stack in stacks)
    return encoder, decoder


def check_transformer_inputs(owner: str, dtype: str, d_model: int, batch_first: bool, src, tgt) -> None:
    """``src (S, B, E)`` and ``tgt (T, B, E)`` (batch first: ``(B, S, E)`` and ``(B, T, E)``) of the
    model's dtype and width ``d_model``, with one batch size (torch: "the batch number of src and tgt
    must be equal"). Unbatched 2-d inputs, which torch also takes, are refused."""
    for name, x in (("src", src), ("tgt", tgt)):
        check_input(owner, name, x.shape, x.dtype, expected_dtype=dtype, ndim=3, last_dim=d_model)
    axis = 0 if batch_first else 1
    if int(src.shape[axis]) != int(tgt.shape[axis]):
        raise ValueError(f"{owner}: src and tgt must have the same batch size (axis {axis}), got "
                         f"{int(src.shape[axis])} and {int(tgt.shape[axis])}")


# --- day 49: GPT; day 51: the KV cache -----------------------------------------------------------

#: The label a position carries to be left out of the language-model loss (Hugging Face's and torch's).
LM_IGNORE_INDEX = -100


def check_lm_label_values(owner: str, labels, vocab_size: int) -> None:
    """Language-model labels (GPT, Llama, BERT's MLM): each a token id in ``[0, vocab_size)`` or
    :data:`LM_IGNORE_INDEX` (a position the loss skips)."""
    values = np.asarray(labels)
    bad = ((values < 0) | (values >= vocab_size)) & (values != LM_IGNORE_INDEX)
    if np.any(bad):
        raise ValueError(f"{owner}: labels must lie in [0, {vocab_size}) or be {LM_IGNORE_INDEX} (ignored), "
                         f"got {np.unique(values[bad])[:5].tolist()}")


def check_token_steps(owner: str, input_ids) -> tuple:
    """``input_ids`` int64 ``(B, T)`` with ``T >= 1``; returns its shape. A traced TF call may not know
    the batch (``None``); the step count sizes the positions, so it must be known."""
    check_input(owner, "input_ids", input_ids.shape, input_ids.dtype, expected_dtype="int64", ndim=2)
    shape = tuple(None if size is None else int(size) for size in input_ids.shape)
    if shape[1] is None or shape[1] < 1:
        raise ValueError(f"{owner}: input_ids must hold at least one token per sequence, got shape {shape}")
    return shape


def check_lm_labels(owner: str, labels, shape: tuple, vocab_size: int, values_known: bool) -> None:
    """``labels`` ``None`` or int64 of ``shape``, each a token id or -100 (ignored)."""
    if labels is None:
        return
    check_input(owner, "labels", labels.shape, labels.dtype, expected_dtype="int64", shape_like=shape)
    if values_known:
        check_lm_label_values(owner, labels, vocab_size)


def check_gpt_inputs(owner: str, config, input_ids, labels, past_length: int, values_known: bool = True) -> None:
    """``input_ids (B, T)`` int64 with ``T >= 1`` and ids in ``[0, vocab_size)``; ``past_length + T``
    (the cached steps before these) at most ``n_positions``, the rows of the position table; ``labels``
    ``None`` or int64 of the same shape, each a token id or -100 (ignored). ``values_known`` is False
    for a traced TF call, whose values are checked by the ops themselves."""
    shape = check_token_steps(owner, input_ids)
    steps = shape[1]
    if past_length + steps > config.n_positions:
        raise ValueError(f"{owner}: {past_length} cached + {steps} new tokens exceed n_positions = "
                         f"{config.n_positions} (the rows of the position table wpe)")
    if values_known:
        check_ids(owner, "input_ids", input_ids, config.vocab_size)
    check_lm_labels(owner, labels, shape, config.vocab_size, values_known)


def check_gpt_dropout_masks(owner: str, config, dropout_masks, batch: int, steps: int, dropout_on: bool,
                            cached: bool) -> dict:
    """The GPT's keep-masks (bool, True = keep): exactly when dropout is on (training and some
    probability > 0), a dict keyed as ``config.dropout_shapes(B, T)`` names them, each of its shape.
    Decoding with a cache is inference only, so dropout must be off then. Returns the dict ({} when off)."""
    if cached and dropout_on:
        raise ValueError(f"{owner}: decoding with a KVCache is inference only; call model.eval() (or use dropout 0) "
                         "first")
    if dropout_masks is None:
        if dropout_on:
            raise ValueError(f"{owner}: dropout is on (training, a probability > 0), so dropout_masks, a dict keyed as "
                             "config.dropout_shapes(B, T) names them (bool, True = keep), must be given, got None")
        return {}
    if not dropout_on:
        raise ValueError(f"{owner}: dropout_masks was given but dropout is off (every probability 0, or eval mode)")
    shapes = config.dropout_shapes(batch, steps)
    if not isinstance(dropout_masks, dict) or sorted(dropout_masks) != sorted(shapes):
        got = f"keys {sorted(dropout_masks)}" if isinstance(dropout_masks, dict) else type(dropout_masks).__name__
        raise ValueError(f"{owner}: dropout_masks must be a dict with exactly the keys {', '.join(shapes)}, got {got}")
    for name, shape in shapes.items():
        mask = dropout_masks[name]
        check_input(owner, f"dropout_masks[{name!r}]", mask.shape, mask.dtype, expected_dtype="bool", shape_like=shape)
    return dropout_masks


def check_kv_cache_update(owner: str, n_layer: int, max_length: int, layer: int, length: int, cached_shape, key,
                          value) -> None:
    """A step's ``key`` and ``value`` ``(B, H, t, d)`` for ``layer`` in ``[0, n_layer)``: equal shapes,
    the cached ``(B, H, ., d)`` of that layer (``cached_shape``, ``None`` while empty), and room left:
    ``length + t <= max_length``."""
    if not is_int(layer) or not 0 <= layer < n_layer:
        raise ValueError(f"{owner}: layer must be an int in [0, {n_layer}), got {layer!r}")
    check_input(owner, "key", key.shape, key.dtype, ndim=4)
    check_input(owner, "value", value.shape, value.dtype, shape_like=tuple(map(int, key.shape)))
    key_shape = tuple(map(int, key.shape))
    if cached_shape is not None:
        expected = (*cached_shape[:2], key_shape[2], cached_shape[3])
        if key_shape != expected:
            raise ValueError(f"{owner}: key must have shape {expected} (the cached batch, heads and head width), "
                             f"got {key_shape}")
    if length + key_shape[2] > max_length:
        raise ValueError(f"{owner}: full: {length} cached + {key_shape[2]} new steps exceed max_length = {max_length}")


# --- day 50: decoding (greedy, temperature, top-k, top-p, sampling) -------------------------------


def check_scores(owner: str, dtype: str | None, scores) -> None:
    """Next-token scores ``(B, V)`` in ``dtype`` (``None``: float32 or float64), with at least one token
    (a top-k of nothing is undefined)."""
    if dtype is None and dtype_name(scores.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{owner}: scores must have dtype float32 or float64, got {dtype_name(scores.dtype)}")
    check_input(owner, "scores", scores.shape, scores.dtype, expected_dtype=dtype, ndim=2)
    # A size unknown while tracing (None) cannot be checked here and passes.
    if scores.shape[1] == 0:
        raise ValueError(f"{owner}: scores must have at least one token, shape (B, V) with V >= 1, "
                         f"got {tuple(None if s is None else int(s) for s in scores.shape)}")


def check_uniforms(owner: str, uniforms: np.ndarray, batch: int) -> None:
    """One float64 draw in ``[0, 1)`` per row of scores, shape ``(B,)`` (``Generator.random(B)``)."""
    check_input(owner, "uniforms", uniforms.shape, uniforms.dtype, expected_dtype="float64", shape_like=(batch,))
    if not ((uniforms >= 0.0) & (uniforms < 1.0)).all():
        raise ValueError(f"{owner}: uniforms must lie in [0, 1), one draw per row of scores")


def check_distributions(owner: str, valid_rows: np.ndarray) -> None:
    """Every row of scores must define a distribution: ``valid_rows (B,)`` is False for a row that holds
    NaN or +inf, or whose scores are all -inf (``torch.multinomial`` refuses those rows too)."""
    bad = np.flatnonzero(~valid_rows)
    if bad.size:
        raise ValueError(f"{owner}: scores row {int(bad[0])} is not a distribution: it holds NaN or +inf, "
                         f"or every score is -inf")


# --- day 51: generation with a KV cache ----------------------------------------------------------

def check_generate_inputs(owner: str, config, input_ids, max_new_tokens, uniforms) -> int:
    """``generate``'s arguments: prompt ids ``(B, T)`` (checked by the model), ``max_new_tokens`` an
    int >= 1 with ``T + max_new_tokens <= n_positions``, and ``uniforms`` ``None`` (greedy) or float64
    ``(max_new_tokens, B)``, one draw per step and sequence. Returns ``max_new_tokens``."""
    max_new_tokens = check_int(owner, "max_new_tokens", max_new_tokens, 1)
    check_input(owner, "input_ids", input_ids.shape, input_ids.dtype, expected_dtype="int64", ndim=2)
    batch, steps = map(int, input_ids.shape)
    if steps + max_new_tokens > config.n_positions:
        raise ValueError(f"{owner}: {steps} prompt + {max_new_tokens} new tokens exceed n_positions = "
                         f"{config.n_positions}")
    if uniforms is not None:
        check_input(owner, "uniforms", uniforms.shape, uniforms.dtype, expected_dtype="float64",
                    shape_like=(max_new_tokens, batch))
    return max_new_tokens


# --- day 67: grouped-query attention ----------------------------------------------------------------

def check_gqa_inputs(owner: str, dtype: str, query, key, value, attn_mask=None, dropout_mask=None, is_causal=False,
                     scale=None) -> tuple[float, int, int]:
    """``F.scaled_dot_product_attention(enable_gqa=True)``'s inputs: ``query (..., Hq, L, E)``,
    ``key (..., Hk, S, E)``, ``value (..., Hv, S, Ev)``, each with a head axis, ``Hk`` and ``Hv`` at
    least 1 and dividing ``Hq`` (torch's rule: key and value may differ); then day 41's rules on the
    shapes with the key and value heads repeated to ``Hq``. Returns the scale and the group sizes
    ``Hq // Hk``, ``Hq // Hv`` (how many query heads share one key head, one value head)."""
    shapes = {}
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        shapes[name] = tuple(int(s) for s in tensor.shape)
        if len(shapes[name]) < 3:
            raise ValueError(f"{owner}: {name} must have at least 3 dimensions (..., heads, length, features), "
                             f"got shape {shapes[name]}")
    query_heads = shapes["query"][-3]
    groups = []
    for name in ("key", "value"):
        heads = shapes[name][-3]
        if heads < 1 or query_heads % heads:
            raise ValueError(f"{owner}: {name}'s head count must be at least 1 and divide the query's "
                             f"{query_heads} heads, got {heads} (shape {shapes[name]})")
        groups.append(query_heads // heads)
    # Day 41's rules on the shapes the grouped key and value take once repeated (only .shape and .dtype are read).
    repeated = [SimpleNamespace(shape=(*shapes[name][:-3], query_heads, *shapes[name][-2:]), dtype=tensor.dtype)
                for name, tensor in (("key", key), ("value", value))]
    scale = check_sdpa_inputs(owner, dtype, query, *repeated, attn_mask, dropout_mask, is_causal, scale)
    return scale, groups[0], groups[1]


def check_gqa_module(owner: str, dtype: str, embed_dim: int, hidden_states) -> None:
    """``GroupedQueryAttention``'s input: ``hidden_states (B, T, embed_dim)`` in the module's dtype."""
    check_input(owner, "hidden_states", hidden_states.shape, hidden_states.dtype, expected_dtype=dtype, ndim=3,
                last_dim=embed_dim)


# --- day 68: sliding-window and linear attention --------------------------------------------------

def check_sliding_window(owner: str, window, symmetric) -> tuple[int, bool]:
    """A sliding window: ``window`` an int >= 1 (how far back, or either way, a query sees) and
    ``symmetric`` a bool. Returns both."""
    return check_int(owner, "window", window, 1), check_bool(owner, "symmetric", symmetric)


def check_linear_attention_inputs(owner: str, dtype: str, query, key, value, causal: bool) -> None:
    """Linear attention's inputs: ``query (..., L, d)``, ``key (..., S, d)``, ``value (..., S, dv)``
    in ``dtype`` with the same batch axes (no broadcasting); causal needs ``L == S``."""
    check_sdpa_inputs(owner, dtype, query, key, value)
    batches = [tuple(int(s) for s in tensor.shape[:-2]) for tensor in (query, key, value)]
    if len(set(batches)) > 1:
        raise ValueError(f"{owner}: query, key and value must have the same batch axes, got {batches[0]}, "
                         f"{batches[1]} and {batches[2]}")
    if causal and int(query.shape[-2]) != int(key.shape[-2]):
        raise ValueError(f"{owner}: causal linear attention needs as many queries as keys, got "
                         f"L = {int(query.shape[-2])} and S = {int(key.shape[-2])}")


# --- days 64-65: LoRA -------------------------------------------------------------------------------

def check_lora_args(owner: str, r, lora_alpha, lora_dropout, use_rslora, rng) -> tuple:
    """peft's LoRA settings: rank ``r >= 1``, ``lora_alpha > 0`` finite, ``lora_dropout`` in [0, 1),
    ``use_rslora`` a bool, ``rng`` a Generator or None. Returns them (the generator made real)."""
    rank = check_int(owner, "r", r, 1)
    alpha = check_real(owner, "lora_alpha", lora_alpha)
    if not alpha > 0:
        raise ValueError(f"{owner}: lora_alpha must be > 0, got {lora_alpha!r}")
    check_range(owner, "lora_dropout", lora_dropout, 0.0, 1.0)
    return rank, alpha, float(lora_dropout), check_bool(owner, "use_rslora", use_rslora), check_rng(owner, rng)


def check_lora_base(owner: str, base_layer, allowed: tuple) -> None:
    """The wrapped layer must be one of ``allowed`` (a LoRA layer is not wrapped again)."""
    if not isinstance(base_layer, allowed):
        got = type(base_layer).__name__
        hint = " (it already has an adapter: a layer is wrapped once)" if got == "LoRALinear" else ""
        raise TypeError(f"{owner}: base_layer must be a {' or '.join(t.__name__ for t in allowed)}, got {got}{hint}")


def check_lora_dropout_mask(owner: str, dropout_mask, shape, active: bool):
    """A bool keep mask shaped like the input, given only while dropout is on; returned as is."""
    if dropout_mask is None:
        return None
    if not active:
        raise ValueError(f"{owner}: dropout_mask given but dropout is off (eval mode or lora_dropout = 0)")
    check_input(owner, "dropout_mask", dropout_mask.shape, dropout_mask.dtype, expected_dtype="bool",
                shape_like=tuple(int(s) for s in shape))
    return dropout_mask


def check_lora_targets(owner: str, target_modules, modules: dict, allowed: tuple, wrapper: type) -> list:
    """The names in ``modules`` (name -> module) that peft's suffix rule selects: a name equal to an entry
    of ``target_modules`` or ending with ``.`` + it. Each must be one of ``allowed`` and not yet wrapped."""
    if (isinstance(target_modules, str) or not isinstance(target_modules, (list, tuple)) or not target_modules
            or not all(isinstance(t, str) and t for t in target_modules)):
        raise TypeError(f"{owner}: target_modules must be a non-empty list of module names, got {target_modules!r}")
    names = [name for name in modules if name and any(name == t or name.endswith("." + t) for t in target_modules)]
    if not names:
        dense = [name for name, module in modules.items() if isinstance(module, allowed)]
        raise ValueError(f"{owner}: target_modules {list(target_modules)} match no submodule; its dense layers are {dense}")
    for name in names:
        if isinstance(modules[name], wrapper):
            raise ValueError(f"{owner}: {name} already has an adapter (apply_lora runs once per model)")
        check_lora_base(f"{owner}: {name}", modules[name], allowed)
    return names


def check_lora_merge_state(owner: str, merged: bool, expected: bool) -> None:
    """``merge`` needs an unmerged layer and ``unmerge`` a merged one (peft only warns)."""
    if merged != expected:
        state = "already merged" if merged else "not merged"
        raise RuntimeError(f"{owner}: the adapter is {state}; merge() and unmerge() alternate")


# --- day 69: Llama ------------------------------------------------------------------------------------

def check_llama_inputs(owner: str, config, input_ids, labels, values_known: bool = True) -> None:
    """``input_ids (B, T)`` int64 with ``1 <= T <= max_position_embeddings`` (the positions the rotary
    tables cover) and ids in ``[0, vocab_size)``; ``labels`` ``None`` or int64 of the same shape, each a
    token id or -100 (ignored). ``values_known`` is False for a traced TF call."""
    shape = check_token_steps(owner, input_ids)
    steps = shape[1]
    if steps > config.max_position_embeddings:
        raise ValueError(f"{owner}: {steps} tokens exceed max_position_embeddings = {config.max_position_embeddings} "
                         "(the positions the rotary tables cover)")
    if values_known:
        check_ids(owner, "input_ids", input_ids, config.vocab_size)
    check_lm_labels(owner, labels, shape, config.vocab_size, values_known)


def check_bert_inputs(owner: str, config, input_ids, attention_mask, token_type_ids, values_known: bool = True) -> None:
    """``input_ids (B, T)`` int64 with ``1 <= T <= max_position_embeddings`` and ids in ``[0, vocab_size)``;
    ``attention_mask`` ``None`` or int64 ``(B, T)`` of 0 (padding) and 1 (attend), at least one 1 per
    sequence (a sequence of padding only has nothing to attend to); ``token_type_ids`` ``None`` or
    int64 ``(B, T)`` in ``[0, type_vocab_size)``. ``values_known`` is False for a traced TF call."""
    shape = check_token_steps(owner, input_ids)
    steps = shape[1]
    if steps > config.max_position_embeddings:
        raise ValueError(f"{owner}: {steps} tokens exceed max_position_embeddings = {config.max_position_embeddings} "
                         "(the rows of position_embeddings)")
    if values_known:
        check_ids(owner, "input_ids", input_ids, config.vocab_size)
    if attention_mask is not None:
        check_input(owner, "attention_mask", attention_mask.shape, attention_mask.dtype, expected_dtype="int64",
                    shape_like=shape)
        if values_known:
            values = np.asarray(attention_mask)
            if np.any((values != 0) & (values != 1)):
                raise ValueError(f"{owner}: attention_mask must hold 1 (attend) and 0 (padding), got "
                                 f"{np.unique(values[(values != 0) & (values != 1)])[:5].tolist()}")
            empty = np.flatnonzero(values.sum(axis=1) == 0)
            if empty.size:
                raise ValueError(f"{owner}: every sequence must attend to at least one token (attention_mask 1), "
                                 f"sequences {empty[:5].tolist()} are all padding")
    if token_type_ids is not None:
        check_input(owner, "token_type_ids", token_type_ids.shape, token_type_ids.dtype, expected_dtype="int64",
                    shape_like=shape)
        if values_known:
            check_ids(owner, "token_type_ids", token_type_ids, config.type_vocab_size)


def check_top_k(owner: str, num_experts, top_k) -> tuple[int, int]:
    """Day 66: ``num_experts >= 1`` experts and ``1 <= top_k <= num_experts`` of them per token."""
    num_experts = check_int(owner, "num_experts", num_experts, 1)
    top_k = check_int(owner, "top_k", top_k, 1)
    if top_k > num_experts:
        raise ValueError(f"{owner}: top_k must be <= num_experts = {num_experts} (each token picks distinct "
                         f"experts), got {top_k}")
    return num_experts, top_k


def check_router_logits(owner: str, dtype: str, num_experts: int, router_logits) -> None:
    """Day 66: router logits ``(N, num_experts)`` (tokens flattened, one row each) of the module's dtype."""
    check_input(owner, "router_logits", router_logits.shape, router_logits.dtype, expected_dtype=dtype, ndim=2,
                last_dim=num_experts)


def check_pretraining_labels(owner: str, config, input_ids, labels, next_sentence_label, values_known: bool = True) -> None:
    """Day 53: ``labels`` and ``next_sentence_label`` both ``None`` (no loss) or both given, as
    ``BertForPreTraining`` computes its loss only from both: ``labels`` int64 like ``input_ids``, each
    a token id or -100 (not masked, ignored); ``next_sentence_label`` int64 ``(B,)``, 0 (B follows A)
    or 1 (B is random)."""
    if (labels is None) != (next_sentence_label is None):
        raise ValueError(f"{owner}: labels and next_sentence_label must be given together (the loss is MLM + NSP), "
                         f"got only {'labels' if next_sentence_label is None else 'next_sentence_label'}")
    if labels is None:
        return
    shape = tuple(None if size is None else int(size) for size in input_ids.shape)
    check_input(owner, "labels", labels.shape, labels.dtype, expected_dtype="int64", shape_like=shape)
    check_input(owner, "next_sentence_label", next_sentence_label.shape, next_sentence_label.dtype,
                expected_dtype="int64", shape_like=shape[:1])
    if not values_known:
        return
    check_lm_label_values(owner, labels, config.vocab_size)
    sentence = np.asarray(next_sentence_label)
    if np.any((sentence != 0) & (sentence != 1)):
        raise ValueError(f"{owner}: next_sentence_label must hold 0 (sentence B follows A) or 1 (B is random), "
                         f"got {np.unique(sentence[(sentence != 0) & (sentence != 1)])[:5].tolist()}")


def check_classifier_inputs(owner: str, config, num_labels: int, input_ids, labels, dropout_masks, dropout_on: bool,
                            values_known: bool = True):
    """Day 54: ``labels`` ``None`` or int64 ``(B,)`` classes in ``[0, num_labels)``; ``dropout_masks`` as
    ``BertModel``'s plus ``"dropout"``, the classifier's keep-mask ``(B, hidden_size)`` (bool, True = keep) on
    the pooled output, required exactly when dropout is on. Returns ``(bert_masks, classifier_mask)``."""
    batch = None if input_ids.shape[0] is None else int(input_ids.shape[0])
    if labels is not None:
        check_input(owner, "labels", labels.shape, labels.dtype, expected_dtype="int64", shape_like=(batch,))
        # A traced TF call has no values to read: its ops check them.
        values = np.asarray(labels) if values_known else None
        bad = None if values is None else (values < 0) | (values >= num_labels)
        if bad is not None and np.any(bad):
            raise ValueError(f"{owner}: labels must be classes in [0, {num_labels}) (num_labels), "
                             f"got {np.unique(values[bad])[:5].tolist()}")
    bert_masks = dict(dropout_masks or {})
    classifier_mask = bert_masks.pop("dropout", None)
    if dropout_on and classifier_mask is None:
        raise ValueError(f"{owner}: dropout is on (training, hidden_dropout_prob > 0), so dropout_masks must hold "
                         f"'dropout', the classifier's keep-mask (bool, True = keep) of shape (B, {config.hidden_size})")
    if classifier_mask is not None:
        if not dropout_on:
            raise ValueError(f"{owner}: dropout_masks['dropout'] given but dropout is off (eval mode or "
                             "hidden_dropout_prob = 0)")
        check_input(owner, "dropout_masks['dropout']", classifier_mask.shape, classifier_mask.dtype,
                    expected_dtype="bool", shape_like=(batch, config.hidden_size))
    return bert_masks or None, classifier_mask
