"""Toy sequence tasks for the seq2seq days (28-29): reverse a string of digits.

Vocabulary: ``PAD_ID = 0``, ``BOS_ID = 1``, ``EOS_ID = 2``, then the digits ``0..9`` as ids
``3..12`` (``VOCAB_SIZE = 13``). A string of ``L`` digits ``d_1 .. d_L`` becomes

* ``src``    ``d_1 .. d_L EOS PAD ..``        (width ``max_len + 1``)
* ``tgt_out`` ``d_L .. d_1 EOS PAD ..``        (what the decoder must emit)
* ``tgt_in``  ``BOS d_L .. d_1 EOS PAD ..``    (``tgt_out`` shifted right: teacher forcing)

Padded batches are fixed-width (``max_len + 1``), so a batch is one array; with
``min_len == max_len`` there is no padding at all. The model is asked to emit the padding too, so
a prediction is right when the whole padded row matches (:func:`sequence_accuracy`).

Held-out strings are drawn first and never appear in training (:func:`draw_strings` with
``exclude``), so the accuracy measures reversal, not memory.
"""
from __future__ import annotations

import numpy as np

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
#: The id of digit 0; digit ``k`` is ``FIRST_DIGIT_ID + k``.
FIRST_DIGIT_ID = 3
VOCAB_SIZE = FIRST_DIGIT_ID + 10


def check_lengths(min_len: int, max_len: int) -> None:
    """``1 <= min_len <= max_len`` (ints), or a ``ValueError`` naming both."""
    for name, value in (("min_len", min_len), ("max_len", max_len)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"toy_tasks: {name} must be an int >= 1, got {value!r}")
    if min_len > max_len:
        raise ValueError(f"toy_tasks: min_len ({min_len}) must not exceed max_len ({max_len})")


def count_strings(min_len: int, max_len: int) -> int:
    """How many distinct digit strings have a length in ``[min_len, max_len]``."""
    check_lengths(min_len, max_len)
    return sum(10 ** length for length in range(min_len, max_len + 1))


def draw_strings(count: int, min_len: int, max_len: int, rng: np.random.Generator,
                 exclude: frozenset = frozenset()) -> list[tuple[int, ...]]:
    """``count`` distinct digit strings (tuples of ints 0-9), lengths uniform in ``[min_len, max_len]``,
    none of them in ``exclude``; refused when fewer than ``count`` such strings exist."""
    available = count_strings(min_len, max_len) - len(exclude)
    if count > available:
        raise ValueError(f"toy_tasks: cannot draw {count} distinct strings of lengths {min_len}-{max_len}: "
                         f"only {available} are not excluded")
    drawn: dict[tuple[int, ...], None] = {}
    # Rejection sampling: cheap while count is far below the number of strings (the examples' case).
    while len(drawn) < count:
        length = int(rng.integers(min_len, max_len + 1))
        string = tuple(int(d) for d in rng.integers(0, 10, length))
        if string not in exclude:
            drawn[string] = None
    return list(drawn)


def encode_reversal(strings: list[tuple[int, ...]], max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``src, tgt_in, tgt_out`` int64 ``(N, max_len + 1)`` each (layout in the module docstring)."""
    width = max_len + 1
    src = np.full((len(strings), width), PAD_ID, dtype=np.int64)  # (N, S)
    tgt_out = np.full((len(strings), width), PAD_ID, dtype=np.int64)  # (N, T)
    for row, string in enumerate(strings):
        if not 1 <= len(string) <= max_len:
            raise ValueError(f"toy_tasks: string {row} has length {len(string)}, outside [1, {max_len}]")
        digits = np.asarray(string, dtype=np.int64) + FIRST_DIGIT_ID  # (L,)
        src[row, :len(string)], src[row, len(string)] = digits, EOS_ID
        tgt_out[row, :len(string)], tgt_out[row, len(string)] = digits[::-1], EOS_ID
    # Teacher forcing: the decoder reads BOS then the true previous tokens.
    tgt_in = np.concatenate([np.full((len(strings), 1), BOS_ID, dtype=np.int64), tgt_out[:, :-1]], axis=1)  # (N, T)
    return src, tgt_in, tgt_out


def sequence_accuracy(predicted: np.ndarray, target: np.ndarray) -> float:
    """The fraction of rows of ``predicted`` equal to ``target`` at every position (exact match)."""
    predicted, target = np.asarray(predicted), np.asarray(target)
    if predicted.shape != target.shape or predicted.ndim != 2:
        raise ValueError(f"toy_tasks: predicted and target must be (N, T) of one shape, got {predicted.shape} and "
                         f"{target.shape}")
    if len(target) == 0:
        raise ValueError("toy_tasks: sequence_accuracy of an empty batch is undefined")
    return float(np.mean(np.all(predicted == target, axis=1)))
