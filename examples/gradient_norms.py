"""Exploding and vanishing gradients in a vanilla tanh RNN, and what global-norm clipping does (day 23).

    python examples/gradient_norms.py --backend numpy|torch|tf --plot docs/days/img/day23_gradient_norms.png

A tanh RNN h_t = tanh(W_ih x_t + W_hh h_{t-1}) runs T steps from h_0 = 0 on random inputs; the loss
is L = c . h_T for a fixed unit vector c. Left: ||dL/dh_t|| for t = T ... 1, one curve per
spectral radius of W_hh (--radius): below 1 it shrinks geometrically (vanishing); well above 1 it
grows (exploding) — though a saturated tanh (derivative near 0) can hold a radius just above 1 back.
Right: the total norm of the parameter gradients over a sweep of radii, before and after
clip_grad_norm_(grads, --max-norm) from the chosen backend's generative/clipping.py: clipping caps
the step's size (and keeps its direction); it does nothing for vanishing gradients.

Everything runs in the chosen backend's tree (--backend): the project's day-22 RNN
(generative/rnn.py) in float64 computes the forward and backward passes (NumPy: its hand-written
BPTT; torch and TF: autograd), and that tree's generative/clipping.py clips. The three print the
same numbers (parity_tests/generative/test_clipping.py checks the per-step norms agree to 1e-9).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ml100.backends import BACKENDS, FrameworkNotInstalledError, check_installed, get_module
from ml100.cli_args import OneLineErrorParser, non_negative_int, plot_file, positive_float, positive_int
from ml100.runs import to_backend, to_numpy

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
    """Canonical RNN weights, inputs ``(T, 1, F)`` and the loss vector ``c`` ``(1, 1, H)`` (shaped as ``h_n``)."""
    weight_hh = rng.standard_normal((args.hidden, args.hidden))  # (H, H)
    # Scaled so that the largest |eigenvalue| is exactly `radius`.
    weight_hh *= radius / np.max(np.abs(np.linalg.eigvals(weight_hh)))
    state = {"weight_ih_l0": INPUT_SCALE * rng.standard_normal((args.hidden, INPUT_SIZE)),  # (H, F)
             "weight_hh_l0": weight_hh, "bias_ih_l0": np.zeros(args.hidden), "bias_hh_l0": np.zeros(args.hidden)}
    x = rng.standard_normal((args.steps, 1, INPUT_SIZE))  # (T, 1, F)
    c = rng.standard_normal((1, 1, args.hidden))  # (1, 1, H)
    return state, x, c / np.linalg.norm(c)


def build_rnn(backend: str, state: dict[str, np.ndarray]):
    """The project's day-22 ``RNN`` of ``backend``'s tree, in float64, loaded with ``state``."""
    model = get_module(backend, "generative.rnn").RNN(INPUT_SIZE, state["weight_hh_l0"].shape[0], dtype="float64")
    model.load_canonical_state_dict(state)
    return model


def backward_pass(backend: str, model, x: np.ndarray, hx: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, dict]:
    """For L = c . h_n of ``model`` run on ``x`` from ``hx``: dL/dhx ``(1, 1, H)`` and the parameter
    gradients as the tree's own tensors (what ``clip_grad_norm_`` takes): the NumPy module's
    ``grads`` arrays, torch's ``.grad``, the tape's tensors."""
    if backend == "numpy":
        model.zero_grad()
        model(x, hx)
        _, grad_hx = model.backward(None, c)
        return grad_hx, dict(model.named_grads())
    if backend == "torch":
        import torch

        model.zero_grad()
        hx = torch.from_numpy(hx).requires_grad_()
        _, h_n = model(torch.from_numpy(x), hx)
        (h_n * torch.from_numpy(c)).sum().backward()
        return hx.grad.numpy(), {name: p.grad for name, p in model.named_parameters()}
    import tensorflow as tf

    hx = tf.constant(hx)
    params = dict(model.named_parameters())
    with tf.GradientTape() as tape:
        tape.watch(hx)
        _, h_n = model(tf.constant(x), hx)
        loss = tf.reduce_sum(h_n * c)
    grad_hx, *grads = tape.gradient(loss, [hx, *params.values()])
    return grad_hx.numpy(), dict(zip(params, grads))


def step_norms(backend: str, state: dict[str, np.ndarray], x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``||dL/dh_t||`` for t = 1..T (index t-1), L = c . h_T.

    h_T depends on h_t only through steps t+1..T, so dL/dh_t is the gradient of the initial state
    of the same RNN restarted from h_t on x_{t+1..T}: T backward passes of the tree's own RNN
    (O(T^2) steps in all: fine for a figure; BPTT computes them all in one pass inside backward).
    """
    model = build_rnn(backend, state)
    with get_module(backend, "module").no_grad():
        output, _ = model(to_backend(backend, x))  # (T, 1, H)
    h = to_numpy(output)  # (T, 1, H)
    norms = [np.linalg.norm(backward_pass(backend, model, x[t:], h[t - 1:t], c)[0]) for t in range(1, len(x))]
    # At t = T the gradient is c itself, of norm 1.
    return np.array([*norms, np.linalg.norm(c)])  # (T,)


def clipped_norm(backend: str, state: dict[str, np.ndarray], x: np.ndarray, c: np.ndarray,
                 max_norm: float) -> tuple[float, float]:
    """The parameter gradients' total norm before and after the tree's ``clip_grad_norm_``."""
    clipping = get_module(backend, "generative.clipping")
    _, grads = backward_pass(backend, build_rnn(backend, state), x, np.zeros_like(c), c)
    before = float(clipping.clip_grad_norm_(grads, max_norm))
    after = float(clipping.get_total_norm(grads))
    return before, after






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
        norms = step_norms(args.backend, *rnn_problem(radius, args, np.random.default_rng(args.seed)))
        curves[radius] = norms
        ratio = norms[0] / norms[-1]
        kind = "vanishing" if ratio < 1 else "exploding"
        print(f"radius {radius:g}: ||dL/dh_1|| / ||dL/dh_T|| = {ratio:.1e} ({kind})")
    sweep = [clipped_norm(args.backend, *rnn_problem(r, args, np.random.default_rng(args.seed)), args.max_norm) for r in SWEEP]
    for radius, (before, after) in zip(SWEEP, sweep):
        print(f"radius {radius:.2f}: gradient norm {before:.3e} -> {after:.3e} after clipping")
    if args.plot:
        save_plot(args.plot, args, curves, sweep)
        print(f"figure saved to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
