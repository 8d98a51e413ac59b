"""Days 37-40: the noising process, timestep embeddings, sampler steps, class labels."""
from __future__ import annotations

import numpy as np

from .core import check_bool, check_input, check_int, check_labels, check_positive, check_real, dtype_name


def check_noising_inputs(owner: str, dtype: str, x0, noise, timesteps) -> None:
    """A diffusion forward process's inputs: ``x0`` ``(N, *)`` in the module's ``dtype`` (at least
    the batch axis), ``noise`` of the same shape and dtype, ``timesteps`` int64 ``(N,)``, one per
    sample. The timesteps' values are checked against the schedule's length by ``check_ids``."""
    check_input(owner, "x0", x0.shape, x0.dtype, expected_dtype=dtype)
    if len(x0.shape) == 0:
        raise ValueError(f"{owner}: x0 must have a batch axis, shape (N, *), got a 0-d tensor")
    check_input(owner, "noise", noise.shape, noise.dtype, expected_dtype=dtype, shape_like=x0.shape)
    check_input(owner, "timesteps", timesteps.shape, timesteps.dtype, expected_dtype="int64", shape_like=x0.shape[:1])


def check_timestep_embedding(owner: str, dtype: str, timesteps, embedding_dim, flip_sin_to_cos, downscale_freq_shift,
                             scale, max_period) -> int:
    """The arguments of diffusers' ``get_timestep_embedding``: ``timesteps`` ``(N,)``, int64 or the float
    ``dtype``; ``embedding_dim`` an int >= 1; ``flip_sin_to_cos`` a bool; ``downscale_freq_shift`` and
    ``scale`` finite reals; ``max_period`` > 0. Returns ``half_dim = embedding_dim // 2``. The frequency
    exponent divides by ``half_dim - downscale_freq_shift``: where that is 0 diffusers returns NaN
    (``embedding_dim`` 2 or 3 with the default shift 1); here it is an error."""
    got = dtype_name(timesteps.dtype)
    if got not in ("int64", dtype):
        raise TypeError(f"{owner}: timesteps must have dtype int64 or {dtype}, got {got} (cast it explicitly)")
    check_input(owner, "timesteps", timesteps.shape, timesteps.dtype, ndim=1)
    half_dim = check_int(owner, "embedding_dim", embedding_dim, 1) // 2
    check_bool(owner, "flip_sin_to_cos", flip_sin_to_cos)
    shift = check_real(owner, "downscale_freq_shift", downscale_freq_shift)
    check_real(owner, "scale", scale)
    check_positive(owner, "max_period", max_period)
    if half_dim and half_dim == shift:
        raise ValueError(f"{owner}: downscale_freq_shift ({downscale_freq_shift!r}) must differ from embedding_dim // 2 "
                         f"({half_dim}): the frequency exponent divides by their difference")
    return half_dim


def check_timestep(owner: str, timestep, num_train_timesteps: int) -> int:
    """One sampling step's timestep: a Python/NumPy int or a 0-d int64 tensor of any tree, in
    ``[0, num_train_timesteps)``; returned as a Python int (it indexes the schedule)."""
    value = np.asarray(timestep)
    if value.ndim != 0 or isinstance(timestep, bool) or not np.issubdtype(value.dtype, np.integer):
        raise TypeError(f"{owner}: timestep must be an int (or a 0-d int64 tensor), got {timestep!r}")
    if not 0 <= int(value) < num_train_timesteps:
        raise ValueError(f"{owner}: timestep must lie in [0, {num_train_timesteps}), got {int(value)}")
    return int(value)


def check_step_inputs(owner: str, dtype: str, model_output, sample, noise, noise_needed: bool) -> None:
    """One sampling step's tensors: ``model_output`` and ``sample`` ``(N, *)`` alike in the schedule's
    ``dtype``; ``noise`` the same where the step adds noise (``None`` allowed where it does not)."""
    check_input(owner, "sample", sample.shape, sample.dtype, expected_dtype=dtype)
    if len(sample.shape) == 0:
        raise ValueError(f"{owner}: sample must have a batch axis, shape (N, *), got a 0-d tensor")
    check_input(owner, "model_output", model_output.shape, model_output.dtype, expected_dtype=dtype,
                shape_like=sample.shape)
    if noise is None:
        if noise_needed:
            raise ValueError(f"{owner}: this step adds noise, so noise (shaped like sample) must be given, got None")
        return
    check_input(owner, "noise", noise.shape, noise.dtype, expected_dtype=dtype, shape_like=sample.shape)


def check_class_labels(owner: str, labels, num_classes: int, batch: int, check_values: bool = True) -> None:
    """Class labels for a conditional model: int64, shape ``(batch,)``, values in ``[0, num_classes)``
    (``check_values=False`` skips the values: a traced TF call does not know them)."""
    check_input(owner, "labels", labels.shape, labels.dtype, expected_dtype="int64", ndim=1)
    if check_values:
        check_labels(owner, "labels", labels, num_classes, batch)
    elif tuple(labels.shape) != (batch,):
        raise ValueError(f"{owner}: labels must have shape ({batch},), got {tuple(labels.shape)}")
