"""Exploding and vanishing gradients in a vanilla tanh RNN, and what global-norm clipping does (day 23).

    python examples/gradient_norms.py --backend numpy|torch|tf --plot docs/days/img/day23_gradient_norms.png

A tanh RNN h_t = tanh(W_ih x_t + W_hh h_{t-1}) runs T steps from h_0 = 0 on random inputs; the loss
is L = c . h_T for a fixed unit vector c. Left: ||dL/dh_t|| for t = T ... 1, one curve per
spectral radius of W_hh (--radius): below 1 it shrinks geometrically (vanishing); well above 1 it
grows (exploding) — though a saturated tanh (derivative near 0) can hold a radius just above 1 back.
Right: the total norm of the parameter gradients over a sweep of radii, before and after
clip_grad_norm_(grads, --max-norm) from the chosen backend's generative/clipping.py: clipping caps
the step's size (and keeps its direction); it does nothing for vanishing gradients.

The recurrence and its backward (BPTT) are written here with NumPy; --backend picks whose
clip_grad_norm_ clips the gradients (they agree to 1e-9 in float64: parity_tests/generative/test_clipping.py).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ml100.backends import BACKENDS, FrameworkNotInstalledError, check_installed, get_module
from ml100.cli_args import OneLineErrorParser, non_negative_int, plot_file, positive_float, positive_int

INPUT_SIZE, INPUT_SCALE = 4, 0.1
SWEEP = np.linspace(0.5, 3.5, 13)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    parser.add_argument("--backend", choices=list(BACKENDS), default="numpy", help="whose clip_grad_norm_ clips (default: numpy)")
    parser.add_argument("--steps", type=positive_int, default=60, help="sequence length T")
    parser.add_argument("--hidden", type=positive_int, default=32, help="hidden size H")
    parser.add_argument("--radius", type=positive_float, nargs="+", default=[0.9, 3.0],
                        help="spectral radii of W_hh, one curve each on the left")
    parser.add_argument("--max-norm", type=positive_float, default=5.0, help="clip_grad_norm_'s max_norm")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the weights, inputs and c")
    parser.add_argument("--plot", type=plot_file, help="save the figure to this image (.png, .pdf, .svg, ...)")
    return parser


def rnn_problem(radius: float, args, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Weights (canonical torch.nn.RNN names), inputs ``(T, F)`` and the loss vector ``c`` ``(H,)``."""
    weight_hh = rng.standard_normal((args.hidden, args.hidden))  # (H, H)
    # Scaled so that the largest |eigenvalue| is exactly `radius`.
    weight_hh *= radius / np.max(np.abs(np.linalg.eigvals(weight_hh)))
    params = {"weight_ih_l0": INPUT_SCALE * rng.standard_normal((args.hidden, INPUT_SIZE)),  # (H, F)
              "weight_hh_l0": weight_hh, "bias_ih_l0": np.zeros(args.hidden), "bias_hh_l0": np.zeros(args.hidden)}
    x = rng.standard_normal((args.steps, INPUT_SIZE))  # (T, F)
    c = rng.standard_normal(args.hidden)  # (H,)
    return params, x, c / np.linalg.norm(c)


def bptt(params: dict[str, np.ndarray], x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``||dL/dh_t||`` for t = 1..T (index t-1) and the parameter gradients, for L = c . h_T.

    dL/dh_T = c; going back, dL/dh_{t-1} = W_hh^T ((1 - h_t^2) * dL/dh_t).
    """
    h = [np.zeros_like(c)]
    for x_t in x:
        pre = params["weight_ih_l0"] @ x_t + params["bias_ih_l0"] + params["weight_hh_l0"] @ h[-1] + params["bias_hh_l0"]  # (H,)
        h.append(np.tanh(pre))
    grads = {name: np.zeros_like(p) for name, p in params.items()}
    norms = np.zeros(len(x))  # (T,)
    grad_h = c  # (H,)
    for t in range(len(x), 0, -1):
        norms[t - 1] = np.linalg.norm(grad_h)
        grad_pre = (1.0 - h[t] ** 2) * grad_h  # (H,)
        grads["weight_ih_l0"] += np.outer(grad_pre, x[t - 1])
        grads["weight_hh_l0"] += np.outer(grad_pre, h[t - 1])
        grads["bias_ih_l0"] += grad_pre
        grads["bias_hh_l0"] += grad_pre
        grad_h = params["weight_hh_l0"].T @ grad_pre
    return norms, grads


def clipped_norm(backend: str, grads: dict[str, np.ndarray], max_norm: float) -> tuple[float, float]:
    """The backend's ``clip_grad_norm_`` on its own tensors: the total norm before, and after clipping."""
    clipping = get_module(backend, "generative.clipping")
    tensors = {name: to_backend(backend, g) for name, g in grads.items()}
    before = float(clipping.clip_grad_norm_(tensors, max_norm))
    after = float(clipping.get_total_norm(tensors))
    return before, after


def to_backend(backend: str, array: np.ndarray):
    if backend == "torch":
        import torch
        return torch.from_numpy(array.copy())
    if backend == "tf":
        import tensorflow as tf
        return tf.constant(array)
    return array.copy()


def save_plot(path, args, curves: dict[float, np.ndarray], sweep: list[tuple[float, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.arange(1, args.steps + 1)
    for radius, norms in curves.items():
        left.semilogy(steps, norms, linewidth=2, label=f"radius {radius:g}")
    left.invert_xaxis()
    left.set(xlabel="time step t (backward from T)", ylabel=r"$\|\partial L/\partial h_t\|$",
             title=f"tanh RNN, H={args.hidden}, T={args.steps}")
    left.legend()
    before, after = zip(*sweep)
    right.semilogy(SWEEP, before, "o-", linewidth=2, label="before clipping")
    right.semilogy(SWEEP, after, "s--", linewidth=2, label=f"after clip_grad_norm_ (max_norm={args.max_norm:g})")
    right.axvline(1.0, color="gray", linewidth=1)
    right.set(xlabel="spectral radius of $W_{hh}$", ylabel=r"$\|\nabla_\theta L\|_2$", title=f"clipping ({args.backend})")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before any framework is imported.
    args = parser.parse_args(argv)
    try:
        check_installed(args.backend)
    except FrameworkNotInstalledError as error:
        parser.error(str(error))
    curves = {}
    for radius in args.radius:
        norms, _ = bptt(*rnn_problem(radius, args, np.random.default_rng(args.seed)))
        curves[radius] = norms
        ratio = norms[0] / norms[-1]
        kind = "vanishing" if ratio < 1 else "exploding"
        print(f"radius {radius:g}: ||dL/dh_1|| / ||dL/dh_T|| = {ratio:.1e} ({kind})")
    sweep = [clipped_norm(args.backend, bptt(*rnn_problem(r, args, np.random.default_rng(args.seed)))[1], args.max_norm)
             for r in SWEEP]
    for radius, (before, after) in zip(SWEEP, sweep):
        print(f"radius {radius:.2f}: gradient norm {before:.3e} -> {after:.3e} after clipping")
    if args.plot:
        save_plot(args.plot, args, curves, sweep)
        print(f"figure saved to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
