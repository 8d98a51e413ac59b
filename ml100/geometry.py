"""The geometry of convolution and pooling, written once for the three trees.

Padding, output sizes and adaptive bins are plain integer arithmetic on shapes, so they live here
rather than in three identical copies; the constructors' geometry arguments are checked here too,
with the single-value rules (and messages) of :mod:`ml100.checks`.

Rules follow PyTorch's where it has one (pooling padding at most half the kernel, ``ceil_mode``'s
last window, adaptive bins); the conv padding ``"same"`` is TensorFlow's (any stride, the odd
pixel after the image), documented on day 15.
"""
from __future__ import annotations

import math

import numpy as np

from .checks import is_int, check_divisible, check_int, pair

#: Conv padding keywords; anything else is an int or a (height, width) pair, applied symmetrically.
PADDING_MODES = ("same", "valid")


# --- convolution -------------------------------------------------

def conv_geometry(owner: str, in_channels, out_channels, kernel_size, stride, padding, dilation, groups):
    """Validated ``(kernel, stride, padding, dilation)``: channels >= 1 and divisible by ``groups``,
    kernel, stride and dilation >= 1, padding an int/pair >= 0 or ``"same"``/``"valid"``."""
    check_int(owner, "in_channels", in_channels, 1)
    check_int(owner, "out_channels", out_channels, 1)
    check_int(owner, "groups", groups, 1)
    check_divisible(owner, "in_channels", in_channels, "groups", groups)
    check_divisible(owner, "out_channels", out_channels, "groups", groups)
    kernel, stride, dilation = (pair(owner, name, value, 1) for name, value in
                                (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)))
    if isinstance(padding, str):
        if padding not in PADDING_MODES:
            raise ValueError(f"{owner}: padding must be an int >= 0, a pair of them or one of {PADDING_MODES}, got {padding!r}")
    else:
        padding = pair(owner, "padding", padding, 0)
    return kernel, stride, padding, dilation


def conv_padding(padding, size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) for a validated pair, ``"valid"`` or TF's ``"same"``."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        out = []
        for n, k, s, d in zip(size, kernel, stride, dilation):
            total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
            # TF puts the odd pixel after the image: (0, 1) at stride 2 on an even size.
            out.append((total // 2, total - total // 2))
        return out[0], out[1]
    ph, pw = padding
    return (ph, ph), (pw, pw)


def conv_output_size(size: int, pads: tuple[int, int], kernel: int, stride: int, dilation: int) -> int:
    """``floor((H + p_top + p_bottom - d(k-1) - 1) / s) + 1``."""
    return (size + pads[0] + pads[1] - dilation * (kernel - 1) - 1) // stride + 1


# --- pooling -----------------------------------------------------

def pool_geometry(owner: str, kernel_size, stride, padding) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validated ``(kernel, stride, padding)`` pairs; ``stride=None`` means the kernel size, as in torch."""
    kernel = pair(owner, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else pair(owner, "stride", stride, 1)
    padding = pair(owner, "padding", padding, 0)
    # torch's rule: a window must never lie wholly in the padding (it would be all -inf / all pad).
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{owner}: padding must be at most half the kernel size, got padding {padding} for kernel {kernel}")
    return kernel, stride, padding


def check_spatial_size(owner: str, size: tuple[int, int]) -> None:
    """A pooled image needs at least one pixel (torch refuses an empty height or width too)."""
    if min(size) < 1:
        raise ValueError(f"{owner}: the spatial size must be at least 1x1, got {tuple(size)}")


def pool_output_size(owner: str, size: tuple[int, int], kernel, stride, padding, ceil_mode: bool = False) -> tuple[int, int]:
    """Windows per spatial axis: ``floor((H + 2p - k) / s) + 1``, or with ``ceil_mode`` the ceiling —
    minus the last window if it would start past the image and its left padding (torch's rule:
    ``(H_o - 1) s >= H + p`` drops it, so no window lies wholly in padding or beyond)."""
    check_spatial_size(owner, size)
    out = []
    for n, k, s, p in zip(size, kernel, stride, padding):
        span = n + 2 * p - k
        if span < 0:
            raise ValueError(f"{owner}: input of spatial size {size} is smaller than the kernel {kernel} (padding {padding})")
        count = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (count - 1) * s >= n + p:
            count -= 1
        out.append(count)
    return out[0], out[1]


def check_output_size(owner: str, output_size) -> tuple[int | None, int | None]:
    """An adaptive pool's target: an int >= 1, or a pair of (int >= 1 or ``None`` = keep that axis)."""
    values = (output_size, output_size) if is_int(output_size) else output_size
    if (not isinstance(values, (tuple, list)) or len(values) != 2
            or not all(v is None or (is_int(v) and v >= 1) for v in values)):
        raise ValueError(f"{owner}: output_size must be an int >= 1 or a pair of them (None keeps that axis), got {output_size!r}")
    return tuple(None if v is None else int(v) for v in values)


def adaptive_bins(size: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's adaptive pooling bins along one axis: bin ``i`` covers ``[floor(i H / out), ceil((i+1) H / out))``.

    Returns ``index`` ``(out, K)`` int64 — the positions of each bin, padded to the widest bin ``K``
    by repeating its last position —, ``valid`` ``(out, K)`` bool (which of them are really in the
    bin) and ``count`` ``(out,)`` (each bin's width, the divisor of its mean).
    """
    i = np.arange(out)  # (out,)
    start = (i * size) // out  # (out,)
    end = -((-(i + 1) * size) // out)  # (out,) ceil((i+1) H / out)
    count = end - start  # (out,)
    offset = np.arange(count.max())  # (K,)
    valid = offset[None, :] < count[:, None]  # (out, K)
    # Positions past a bin's end are clipped back into it; `valid` masks them out of every sum.
    index = np.minimum(start[:, None] + offset[None, :], end[:, None] - 1)  # (out, K)
    return index, valid, count


# --- transposed convolution --------------------------------------

def conv_transpose_geometry(owner: str, in_channels, out_channels, kernel_size, stride, padding, output_padding,
                            dilation, groups):
    """Validated ``(kernel, stride, padding, output_padding, dilation)`` of a transposed convolution:
    the convolution's rules, padding an int/pair >= 0 only (torch's ``ConvTranspose2d`` has no
    ``"same"``), and ``output_padding`` >= 0 and smaller than ``max(stride, dilation)`` on each axis
    (torch's rule: a larger one would add rows that no input pixel reaches)."""
    padding = pair(owner, "padding", padding, 0)
    output_padding = pair(owner, "output_padding", output_padding, 0)
    kernel, stride, padding, dilation = conv_geometry(owner, in_channels, out_channels, kernel_size, stride, padding,
                                                      dilation, groups)
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"{owner}: output_padding must be smaller than max(stride, dilation) on each axis, "
                         f"got output_padding {output_padding}, stride {stride}, dilation {dilation}")
    return kernel, stride, padding, output_padding, dilation


def conv_transpose_output_size(owner: str, size: tuple[int, int], kernel, stride, padding, output_padding,
                               dilation) -> tuple[int, int]:
    """``(H - 1) s - 2p + d(k - 1) + output_padding + 1`` per axis — the input size of the convolution
    this one transposes; refused when empty (as torch does)."""
    check_spatial_size(owner, size)
    out = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1
                for n, k, s, p, op, d in zip(size, kernel, stride, padding, output_padding, dilation))
    if min(out) < 1:
        raise ValueError(f"{owner}: input of spatial size {tuple(size)} gives an empty output {out} "
                         f"(padding {padding} crops more than the kernel spreads)")
    return out


# --- upsampling --------------------------------------------------

#: The interpolation modes of ``Upsample`` (torch's names; ``"nearest"`` is torch's floor rule).
UPSAMPLE_MODES = ("nearest", "bilinear")


def upsample_geometry(owner: str, size, scale_factor, mode: str, align_corners):
    """Validated ``(size, scale_factor, align_corners)``: exactly one of ``size`` (an int or pair
    >= 1) and ``scale_factor`` (a number or pair > 0) — torch's rule —, ``mode`` one of
    :data:`UPSAMPLE_MODES`, and ``align_corners`` only with ``"bilinear"`` (``None`` means False)."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"{owner}: mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{owner}: give exactly one of size and scale_factor, got size={size!r}, scale_factor={scale_factor!r}")
    if size is not None:
        size = pair(owner, "size", size, 1)
    else:
        factors = (scale_factor, scale_factor) if isinstance(scale_factor, (int, float)) else scale_factor
        if (not isinstance(factors, (tuple, list)) or len(factors) != 2
                or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in factors)):
            raise ValueError(f"{owner}: scale_factor must be a number > 0 or a pair of them, got {scale_factor!r}")
        scale_factor = (float(factors[0]), float(factors[1]))
    if mode == "nearest" and align_corners is not None:
        raise ValueError(f"{owner}: align_corners can only be set with mode 'bilinear', got mode {mode!r}")
    return size, scale_factor, bool(align_corners)


def upsample_output_size(owner: str, in_size: tuple[int, int], size, scale_factor) -> tuple[int, int]:
    """``size``, or ``floor(H * scale_factor)`` per axis (torch's rule); both at least 1."""
    check_spatial_size(owner, in_size)
    out = size if size is not None else tuple(math.floor(n * f) for n, f in zip(in_size, scale_factor))
    if min(out) < 1:
        raise ValueError(f"{owner}: input of spatial size {tuple(in_size)} times scale_factor {scale_factor} is empty")
    return out


def interpolation_indices(in_size: int, out_size: int, factor: float | None, mode: str, align_corners: bool, dtype: str):
    """Where each output position reads along one axis, as torch computes it (in ``dtype``):
    ``(low, high, weight)`` with ``y = (1 - weight) x[low] + weight x[high]`` for ``"bilinear"``
    (``high = min(low + 1, H - 1)``), ``(low, low, None)`` for ``"nearest"`` (a pure gather).

    The scale is ``1 / scale_factor`` when one was given, else ``H / H_o``; with ``align_corners``
    it is ``(H - 1) / (H_o - 1)`` and the source ``i * scale`` (corners on corners); otherwise the
    source is the half-pixel ``(i + 0.5) scale - 0.5``, clamped at 0. Nearest is torch's
    ``floor(i * scale)`` in float32 (not the half-pixel ``"nearest-exact"``)."""
    i = np.arange(out_size)  # (H_o,)
    if mode == "nearest":
        scale = np.float32(1.0 / factor) if factor else np.float32(in_size) / np.float32(out_size)
        low = np.minimum(np.floor(i.astype(np.float32) * scale).astype(np.int64), in_size - 1)  # (H_o,)
        return low, low, None
    real = np.dtype(dtype).type
    if align_corners:
        scale = real(in_size - 1) / real(out_size - 1) if out_size > 1 else real(0)
        source = scale * i.astype(dtype)  # (H_o,)
    else:
        scale = real(1.0 / factor) if factor else real(in_size) / real(out_size)
        source = np.maximum(scale * (i.astype(dtype) + real(0.5)) - real(0.5), real(0))  # (H_o,)
    low = source.astype(np.int64)  # (H_o,) floor: source >= 0
    high = low + (low < in_size - 1)  # (H_o,)
    return low, high, source - low.astype(dtype)
