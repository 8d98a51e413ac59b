r"""Day 53: BERT's masked-language-model corruption (the 80/10/10 rule), framework-neutral.

Masking is integer bookkeeping on token ids — no tensor math, no gradient — so it lives here once
and the three trees receive its output (the corrupted ids and the labels) as plain int64 arrays.
The randomness is an input: two arrays of uniforms in ``[0, 1)`` shaped like the ids and an array
of random token ids, so every tree and every test sees the same corruption.

For every position :math:`t` that is not a special token ([CLS], [SEP], padding):

.. math::  \text{selected}_t = [u_t < p], \qquad
           x'_t = \begin{cases} \text{[MASK]} & \text{selected}_t \wedge v_t < 0.8 \\
                                r_t & \text{selected}_t \wedge 0.8 \le v_t < 0.9 \\
                                x_t & \text{otherwise} \end{cases}, \qquad
           y_t = \begin{cases} x_t & \text{selected}_t \\ -100 & \text{otherwise} \end{cases}

with :math:`p = 0.15` (``mlm_probability``), :math:`u` the selection uniforms, :math:`v` the action
uniforms and :math:`r` the random ids. Hugging Face's ``DataCollatorForLanguageModeling`` draws the
same three events with ``torch.bernoulli`` (select with :math:`p`, then [MASK] with 0.8, then a
random token with 0.5 of the rest): the same distribution, written here with one uniform per
decision so the draw can be handed in.
"""
from __future__ import annotations

import numpy as np

from ml100.checks import LM_IGNORE_INDEX, check_input

#: The share of selected positions replaced by [MASK]; the next 10% get a random token, the last 10% stay.
MASK_SHARE = 0.8
#: Where the random-token share ends: action uniforms in [MASK_SHARE, RANDOM_END) pick a random token.
RANDOM_END = 0.9


def mask_tokens(input_ids: np.ndarray, special_tokens_mask: np.ndarray, selection_uniforms: np.ndarray,
                action_uniforms: np.ndarray, random_ids: np.ndarray, mask_token_id: int,
                mlm_probability: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """BERT's MLM corruption of ``input_ids`` ``(B, T)``: returns ``(corrupted_ids, labels)``, both
    int64 ``(B, T)``; ``labels`` holds the original id where a position was selected and -100 elsewhere.

    ``special_tokens_mask`` ``(B, T)`` is 1 (or True) where a token may never be selected; the two
    uniform arrays are float in ``[0, 1)`` and ``random_ids`` int64, all shaped like the ids.
    """
    owner = "mask_tokens"
    check_input(owner, "input_ids", input_ids.shape, input_ids.dtype, expected_dtype="int64", ndim=2)
    shape = input_ids.shape
    check_input(owner, "random_ids", random_ids.shape, random_ids.dtype, expected_dtype="int64", shape_like=shape)
    special = np.asarray(special_tokens_mask)
    if special.shape != shape or not np.all((special == 0) | (special == 1)):
        raise ValueError(f"{owner}: special_tokens_mask must hold 0/1 (or bool) of shape {shape}, got "
                         f"{special.dtype} of shape {special.shape}")
    for name, uniforms in (("selection_uniforms", selection_uniforms), ("action_uniforms", action_uniforms)):
        in_range = np.issubdtype(uniforms.dtype, np.floating) and np.all((uniforms >= 0) & (uniforms < 1))
        if uniforms.shape != shape or not in_range:
            raise ValueError(f"{owner}: {name} must be floats in [0, 1) of shape {shape}, got {uniforms.dtype} of "
                             f"shape {uniforms.shape}")
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f"{owner}: mlm_probability must lie in [0, 1], got {mlm_probability}")
    # A special token is never a prediction target.
    selected = (selection_uniforms < mlm_probability) & (special == 0)  # (B, T)
    replaced = selected & (action_uniforms < MASK_SHARE)  # (B, T)
    randomized = selected & (action_uniforms >= MASK_SHARE) & (action_uniforms < RANDOM_END)  # (B, T)
    kept_or_random = np.where(randomized, random_ids, input_ids)  # (B, T)
    corrupted = np.where(replaced, mask_token_id, kept_or_random).astype(np.int64)  # (B, T)
    labels = np.where(selected, input_ids, LM_IGNORE_INDEX).astype(np.int64)  # (B, T)
    return corrupted, labels
