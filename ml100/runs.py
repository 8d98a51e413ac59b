"""Pieces the example and benchmark scripts share: one set of initial weights through a safetensors
file, arrays to and from a backend's tensors, a progress bar, the spread between backends' loss
curves and a plot of them, and the best-of-N timer of the benchmarks."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .backends import load_framework
from .weights import StateDictError, load_weights, save_weights


def shared_initial_weights(numpy_model, weights_path: Path | None = None, parser=None) -> dict[str, np.ndarray]:
    """The canonical starting point every backend loads: read from ``weights_path`` if given, else the
    NumPy model's own (seeded) weights, written to and read back from a safetensors file exactly as
    they would travel between frameworks.

    A file is loaded into the NumPy model first, so one that does not fit the model raises its
    ``StateDictError`` before any framework is imported — or, given the script's argparse
    ``parser``, is refused as its ``--weights`` argument (one line, exit 2).
    """
    if weights_path:
        state = load_weights(weights_path)
        try:
            numpy_model.load_canonical_state_dict(state)
        except StateDictError as error:
            if parser is None:
                raise
            parser.error(f"argument --weights: {error}")
        return state
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "initial.safetensors"
        save_weights(path, numpy_model.canonical_state_dict())
        return load_weights(path)


def training_progress() -> Progress:
    """A progress bar per backend, showing the step count and the latest loss."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn())


def curve_difference(curves: dict[str, list[float]]) -> tuple[float, float]:
    """Largest |difference| between any two backends' losses at the same step, absolute and relative."""
    stacked = np.array(list(curves.values()))  # (backends, steps)
    spread = stacked.max(axis=0) - stacked.min(axis=0)  # (steps,)
    return float(spread.max()), float((spread / np.abs(stacked).max(axis=0)).max())


def save_curves_plot(path: Path, curves: dict[str, list[float]], title: str) -> None:
    """The backends' loss curves on one log-scale plot, saved to ``path`` in the format its extension
    names (checked beforehand by ``ml100.cli_args.plot_file``, so ``path`` is the file written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (backend, losses), style in zip(curves.items(), ["-", "--", ":"]):
        ax.plot(losses, style, linewidth=2, label=backend)
    ax.set(xlabel="step", ylabel="training loss", yscale="log", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_comparison(results: dict[str, tuple[list[float], float | None]], dtype: str, plot: Path | None, title: str,
                      metric: str = "test accuracy") -> None:
    """Print each backend's final loss and its ``metric`` (left out where the value is ``None``), save
    the plot if asked, and end with the largest loss-curve difference between backends."""
    curves = {backend: losses for backend, (losses, _) in results.items()}
    for backend, (losses, value) in results.items():
        shown = "" if value is None else f"  {metric} {value:.3f}"
        print(f"{backend:5s}  final loss {losses[-1]:.6f}{shown}")
    if plot:
        save_curves_plot(plot, curves, title)
        print(f"loss curves saved to {plot}")
    abs_diff, rel_diff = curve_difference(curves)
    steps = len(next(iter(curves.values())))
    print(f"largest loss difference between backends over {steps} steps: {abs_diff:.3e} (relative {rel_diff:.3e}, {dtype})")


def to_backend(backend: str, array: np.ndarray):
    """A NumPy array as the backend's tensor (each tree takes its own framework's arrays)."""
    if backend == "torch":
        return load_framework("torch").from_numpy(array)
    if backend == "tf":
        return load_framework("tf").constant(array)
    return array


def to_numpy(tensor) -> np.ndarray:
    """A NumPy, torch or TF array as a NumPy array (a torch tensor detached from its graph first)."""
    return tensor.detach().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)


def set_threads(threads: int) -> str:
    """Give NumPy's BLAS, torch and TF ``threads`` threads each, for a benchmark; returns the line
    ``BLAS/torch/TF n/n/n`` read back from the libraries. BLAS goes through threadpoolctl, which
    works after NumPy has loaded (the ``OPENBLAS_NUM_THREADS`` variable is read only at load, and
    this package imports NumPy). torch's OpenMP threads spin, so an oversubscribed machine
    distorts its timings many-fold: benchmarks default to 1 and say so."""
    from threadpoolctl import threadpool_info, threadpool_limits

    # Called as a function, not a context, the limit holds for the rest of the process.
    threadpool_limits(limits=threads, user_api="blas")
    torch, tf = load_framework("torch"), load_framework("tf")
    torch.set_num_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    blas = min((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=threads)
    return f"BLAS/torch/TF {blas}/{torch.get_num_threads()}/{tf.config.threading.get_intra_op_parallelism_threads()}"


def best_seconds(fn, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``fn``, after one untimed warm-up (and tracing, for
    ``tf.function``): the least disturbed measurement on a shared machine."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
