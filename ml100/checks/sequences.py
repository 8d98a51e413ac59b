"""Days 21-29: gradient clipping, token ids, sequence lengths, seq2seq inputs."""
from __future__ import annotations

import math

import numpy as np

from .core import FLOAT_DTYPES, check_real_type, check_input, dtype_name, is_int


# --- gradient clipping (day 23): the same rules and texts in every tree --------------------------


def check_norm_type(owner: str, value) -> float:
    """A p-norm order: a real ``p > 0``, ``inf``, or the string ``'inf'`` (torch's spelling), as a float.
    torch also takes 0 (a count of non-zeros) and negative orders, which measure no size to clip."""
    if isinstance(value, str) and value == "inf":
        return math.inf
    check_real_type(owner, "norm_type", value)
    if not value > 0:
        raise ValueError(f"{owner}: norm_type must be a real number > 0, inf or 'inf', got {value!r}")
    return float(value)


def check_nonnegative(owner: str, name: str, value) -> float:
    """A real number ``>= 0`` (``inf`` allowed, NaN not): a clipping threshold. torch accepts a negative
    ``max_norm`` and flips every gradient's sign; a negative ``clip_value`` clamps everything to it."""
    check_real_type(owner, name, value)
    if not value >= 0:
        raise ValueError(f"{owner}: {name} must be a real number >= 0, got {value!r}")
    return float(value)


def check_gradient_dict(owner: str, grads, expected: type, type_name: str) -> dict:
    """``{name: gradient}`` without its ``None`` entries (torch skips a parameter whose ``.grad`` is
    None); every gradient a ``type_name`` of one float dtype (torch promotes mixed dtypes; refused here)."""
    if not isinstance(grads, dict):
        raise TypeError(f"{owner}: grads must be a dict {{canonical name: gradient}}, got {type(grads).__name__}")
    present = {name: g for name, g in grads.items() if g is not None}
    for name, g in present.items():
        if not isinstance(g, expected):
            raise TypeError(f"{owner}: grads[{name!r}] must be a {type_name}, got {type(g).__name__}")
    dtypes = sorted({dtype_name(g.dtype) for g in present.values()})
    if len(dtypes) > 1 or not set(dtypes) <= set(FLOAT_DTYPES):
        raise TypeError(f"{owner}: the gradients must share one dtype among {FLOAT_DTYPES}, got {dtypes}")
    return present


def check_inf_norm_sizes(owner: str, norm_type: float, sizes: dict) -> None:
    """The inf norm of an empty gradient is undefined (a max over nothing): torch raises, so do we."""
    empty = [name for name, size in sizes.items() if size == 0]
    if norm_type == math.inf and empty:
        raise RuntimeError(f"{owner}: cannot compute the inf norm of the empty gradient(s) {empty}: "
                           "a max over no elements has no value")


def nonfinite_norm_message(owner: str, norm_type: float) -> str:
    """torch's text for ``error_if_nonfinite=True`` on a NaN or inf total norm."""
    return (f"{owner}: the total norm of order {norm_type} of the gradients is non-finite, so it cannot be clipped. "
            "To scale the gradients by the non-finite norm anyway, set error_if_nonfinite=False")


def check_finite_norm(owner: str, norm_type: float, total: float) -> None:
    """``error_if_nonfinite=True``: a NaN or inf total norm raises torch's ``RuntimeError``."""
    if not math.isfinite(total):
        raise RuntimeError(nonfinite_norm_message(owner, norm_type))


def check_padding_idx(owner: str, padding_idx, num_embeddings: int) -> int | None:
    """``None``, or an int in ``[-num_embeddings, num_embeddings)`` (torch's rule), returned
    normalized to a row index: a negative one counts from the end, ``num_embeddings + padding_idx``."""
    if padding_idx is None:
        return None
    if not is_int(padding_idx) or not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{owner}: padding_idx must be None or an int in [{-num_embeddings}, {num_embeddings}), "
                         f"got {padding_idx!r}")
    return int(padding_idx) % num_embeddings


def check_ids(owner: str, name: str, ids, size: int) -> None:
    """Row indices (token ids) into a table of ``size`` rows: every value in ``[0, size)``.
    ``ids`` is any CPU array the trees hold (NumPy, torch, eager TF); its dtype is checked by the caller."""
    values = np.asarray(ids)
    bad = (values < 0) | (values >= size)
    if np.any(bad):
        raise ValueError(f"{owner}: {name} must lie in [0, {size}), got out-of-range values {np.unique(values[bad])[:5].tolist()}")


def check_seq2seq_inputs(owner: str, src, tgt=None) -> None:
    """Source ``(N, S)`` and target ``(N, T)`` token ids (``tgt=None``: greedy decoding has none),
    int64, the same batch ``N``; ``S, T >= 1`` (the decoder starts from the encoder's last state,
    which an empty source does not have)."""
    for name, ids in (("src", src), ("tgt_in", tgt)):
        if ids is None:
            continue
        check_input(owner, name, ids.shape, ids.dtype, expected_dtype="int64", ndim=2)
        if int(ids.shape[1]) < 1:
            raise ValueError(f"{owner}: {name} must hold at least one step, got shape {tuple(map(int, ids.shape))}")
    if tgt is not None and int(src.shape[0]) != int(tgt.shape[0]):
        raise ValueError(f"{owner}: src and tgt_in must have the same batch size, got {int(src.shape[0])} and "
                         f"{int(tgt.shape[0])}")


def check_sequence_length(owner: str, arg: str, shape, time_axis: int) -> None:
    """A recurrent layer's input needs at least one time step (torch refuses an empty sequence;
    there would be no output to stack)."""
    if shape[time_axis] == 0:
        raise ValueError(f"{owner}: {arg} must hold at least one time step (axis {time_axis}), got shape {tuple(shape)}")


#: Why a recurrent layer refuses ``dropout`` between layers (the reason ``check_unsupported`` gives).
RNN_DROPOUT_REASON = ("dropout between layers needs random masks, and in this project randomness is an input; "
                      "apply a Dropout module with its own rng to each layer's output instead")
#: Why the LSTM refuses ``proj_size``: the projected LSTM (LSTMP) is not part of day 24.
LSTM_PROJ_SIZE_REASON = "projected LSTMs (h_t = W_hr h_t, Sak et al. 2014) are not implemented; use proj_size=0"


def check_lengths(owner: str, lengths, batch: int | None, steps: int) -> None:
    """Per-sequence lengths of a padded batch, as ``pack_padded_sequence`` takes them: int64 of
    shape ``(N,)``, each in ``[1, T]`` (torch refuses an empty sequence; a length past ``T`` would
    read steps that do not exist). ``batch`` is ``None`` for an unbatched input, which has no
    padding to describe. ``lengths`` is a NumPy view of the values (``np.asarray``), or a traced TF
    tensor, whose shape and dtype are checked but whose values are not known yet."""
    if batch is None:
        raise ValueError(f"{owner}: lengths describe a padded batch; give a batched input (T, N, in) or (N, T, in), "
                         f"not an unbatched one")
    check_input(owner, "lengths", lengths.shape, lengths.dtype, expected_dtype="int64", shape_like=(batch,))
    if isinstance(lengths, np.ndarray) and batch and (lengths.min() < 1 or lengths.max() > steps):
        raise ValueError(f"{owner}: lengths must be in [1, {steps}] (the padded sequence length), "
                         f"got values from {lengths.min()} to {lengths.max()}")
