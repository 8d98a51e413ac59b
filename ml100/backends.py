"""Backend selection: ``"numpy"``, ``"torch"`` or ``"tf"`` -> the mirrored tree's package.

The trees share sub-module names, so ``get_backend(name).foundations.mlp.MLP`` is the same
model in every framework. Frameworks are imported lazily: asking for NumPy never loads TF.

Every framework import goes through :func:`load_framework`, the one place that keeps start-up
quiet (TF's C++ log lines, torch's CUDA probe on a machine without a GPU) and that turns a missing
framework into the ``pip install "ml100[...]"`` line that installs it.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import sys
import tempfile
import warnings
from types import ModuleType

#: Backend name -> the package that implements it.
BACKENDS = {"numpy": "numpy_impl", "torch": "torch_impl", "tf": "tf_impl"}

#: Backend name -> the framework its tree is written in (NumPy ships with ml100 itself).
FRAMEWORKS = {"numpy": "numpy", "torch": "torch", "tf": "tensorflow"}

#: Top-level package a tree may need -> the install extra (pyproject.toml) that provides it.
EXTRAS = {"torch": "torch", "torchvision": "torch", "tensorflow": "tf", "keras": "tf"}

# TF's C++ log lines start with a severity letter and the date: "I0000 00:00:17.95 port.cc:153] ...".
_LOG_LINE = re.compile(r"^([IWEF])\d{4} ")
_SEVERITIES = "IWEF"
# absl prints this once before its first line when nobody initialized logging; it carries no news.
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


class FrameworkNotInstalledError(ModuleNotFoundError):
    """A backend's framework is not installed; the message names the extra that installs it."""


class NotBuiltYetError(ModuleNotFoundError):
    """A tree has no such module: the message says which curriculum day it is, or that none is."""


def check_backend(name: str) -> str:
    """Return ``name`` if it is a backend, else raise a ``ValueError`` listing the valid ones."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")
    return name


def get_backend(name: str) -> ModuleType:
    """Import and return the tree package for backend ``name``."""
    load_framework(name)
    return _import_tree_module(name, BACKENDS[name])


def get_module(name: str, path: str) -> ModuleType:
    """Import ``path`` (e.g. ``"foundations.mlp"``) from backend ``name``'s tree.

    A path no tree has yet raises :class:`NotBuiltYetError` naming its curriculum day; an import
    error raised inside an existing module propagates unchanged.
    """
    load_framework(name)
    return _import_tree_module(name, f"{BACKENDS[name]}.{path}")


def check_installed(name: str) -> str:
    """Return backend ``name`` if its framework is installed (found, not imported: instant), else raise
    :class:`FrameworkNotInstalledError` naming the extra that installs it."""
    framework = FRAMEWORKS[check_backend(name)]
    if importlib.util.find_spec(framework) is None:
        raise FrameworkNotInstalledError(_install_hint(name, framework), name=framework)
    return name


def load_framework(name: str) -> ModuleType:
    """Import and return backend ``name``'s framework (``numpy``, ``torch`` or ``tensorflow``), quietly.

    TF >= 2.19 logs its start-up lines (oneDNN, CUDA drivers) through absl before it reads
    ``TF_CPP_MIN_LOG_LEVEL`` (tensorflow/tensorflow#100442), so the level is applied here: the
    import's stderr is captured and replayed without the lines below that level (3, the default,
    drops all of them; anything that is not a TF log line is replayed as it was).
    """
    framework = FRAMEWORKS[check_backend(name)]
    # sys.modules may hold None for a module blocked from import: that goes through the import below.
    if sys.modules.get(framework) is not None:
        return sys.modules[framework]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _ignore_cuda_probe_warning()
    if framework == "tensorflow":
        _load_triton_before_tensorflow()
    try:
        with _stderr_filtered(_tf_min_log_level()):
            return importlib.import_module(framework)
    except ModuleNotFoundError as error:
        raise _not_installed(name, error) from error


def _load_triton_before_tensorflow() -> None:
    """``torch.optim`` (and ``torch.compile``) import ``torch._dynamo`` lazily, which loads Triton's
    ``libtriton.so``; loaded after TensorFlow's shared libraries, it segfaults the process. So where
    torch is installed, ``torch._dynamo`` is imported before TensorFlow (a few seconds, once)."""
    if "tensorflow" not in sys.modules and importlib.util.find_spec("torch") is not None:
        load_framework("torch")
        importlib.import_module("torch._dynamo")


def _import_tree_module(name: str, module: str) -> ModuleType:
    """Import one module of a tree, explaining the two misses a user can fix or should know about."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing.split(".")[0] in EXTRAS:
            raise _not_installed(name, error) from error
        # Only the module asked for (or a package above it inside the tree) is "not built";
        # a module that exists but imports something missing is a real bug and propagates as it is.
        if missing != BACKENDS[name] and (module == missing or module.startswith(missing + ".")):
            raise NotBuiltYetError(_not_built_message(module), name=module) from error
        raise


def _not_installed(name: str, error: ModuleNotFoundError) -> FrameworkNotInstalledError:
    package = (error.name or FRAMEWORKS[name]).split(".")[0]
    return FrameworkNotInstalledError(_install_hint(name, package), name=package)


def _install_hint(name: str, package: str) -> str:
    # A package no extra lists (a dependency of the framework) is fixed by reinstalling the backend's extra.
    extra = EXTRAS.get(package, name)
    return f"backend {name!r} needs {package}, which is not installed: pip install \"ml100[{extra}]\""


def _not_built_message(module: str) -> str:
    """Which curriculum days a missing tree module belongs to, from ``ml100.curriculum``'s table."""
    # Imported here: the curriculum imports BACKENDS from this module.
    from .curriculum import DAYS

    package, _, path = module.partition(".")
    days = [day for day in DAYS if day.module and f"{day.phase}.{day.module}" == path]
    if not days:
        return f"{package} has no module {path!r}, and no curriculum day uses that path (`ml100 list` shows every day's module)"
    which = "; ".join(f"day {day.number}: {day.topic}" for day in days)
    if days[0].neutral:
        name = f"ml100.{days[0].module}"
        return f"{module} does not exist: {which} needs no framework and lives once in {name} (import {name})"
    return f"{module} is not built yet ({which}); `ml100 list` shows which days are built"


def _tf_min_log_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TF reads it: 0 (everything) to 3 (errors dropped too)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def _ignore_cuda_probe_warning() -> None:
    """Without an NVIDIA driver (none at ``/proc/driver/nvidia``), torch's CUDA build warns on its first
    backward that it found no GPU: expected here, so not shown. With a driver the warning means a
    real problem and stays."""
    if not os.path.exists("/proc/driver/nvidia"):
        warnings.filterwarnings("ignore", message="CUDA initialization", category=UserWarning)


def drop_quiet_lines(text: str, min_level: int) -> str:
    """``text`` without TF log lines whose severity (I=0, W=1, E=2, F=3) is below ``min_level`` and
    without absl's preamble when every line it announced was dropped; other lines are kept."""
    kept = []
    for line in text.splitlines(keepends=True):
        match = _LOG_LINE.match(line)
        if match and _SEVERITIES.index(match[1]) < min_level:
            continue
        kept.append(line)
    if not any(_LOG_LINE.match(line) for line in kept):
        kept = [line for line in kept if not line.startswith(_ABSL_PREAMBLE)]
    return "".join(kept)


@contextlib.contextmanager
def _stderr_filtered(min_level: int):
    """Capture file descriptor 2 (C++ libraries write there, not to ``sys.stderr``) for the block,
    then write back what :func:`drop_quiet_lines` keeps. If the block raises, everything is replayed."""
    try:
        saved = os.dup(2)
    except OSError:
        # No stderr to capture (a daemon, a closed descriptor): nothing to filter.
        yield
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            sys.stderr.write(text if failed else drop_quiet_lines(text, min_level))
            sys.stderr.flush()
