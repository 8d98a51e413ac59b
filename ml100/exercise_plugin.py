"""The pytest plugin behind ``ml100 exercise check``: the learner's file in place of a tree's module.

Loaded with ``-p ml100.exercise_plugin`` in the subprocess that :func:`ml100.exercise.run_checks`
starts. At configuration (after ``parity_tests/conftest.py`` has imported the frameworks, before any
test module is collected) it executes the learner's file as the module it stands for — same dotted
name, same package, so its relative imports resolve in the tree — and puts it in ``sys.modules`` and
on its parent package: every later ``get_module(tree, path)`` or ``from ... import`` gets it. The
tree's own file is never touched.

It then deselects the tests parametrized with another tree (``tree`` other than the learner's
backend: they do not run the learner's code) and writes one JSON row per test — its id, pass or
fail, and for a failure the first line that says why (:func:`first_message`) — to ``--exercise-report``.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from .backends import BACKENDS

# The harness's failures: a heading "parity of foundations.linear (float64): 2 mismatch(es)", then one line
# per tensor, naming its pair in brackets: "grad of weight [numpy vs torch]: max abs err ...".
_MISMATCHES = re.compile(r"\d+ mismatch\(es\)$")
_PAIR = re.compile(r"\[(?P<a>[^\]]+?) vs (?P<b>[^\]]+?)\]")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("ml100 exercise")
    group.addoption("--exercise-module", help="dotted module the learner's file replaces, e.g. numpy_impl.foundations.linear")
    group.addoption("--exercise-file", help="the learner's file")
    group.addoption("--exercise-backend", default="", help="the learner's backend (empty for a neutral topic)")
    group.addoption("--exercise-report", help="where to write the JSON rows")


def pytest_configure(config) -> None:
    name, path, report = (config.getoption(option) for option in ("--exercise-module", "--exercise-file", "--exercise-report"))
    if not (name and path and report):
        raise pytest.UsageError("ml100.exercise_plugin needs --exercise-module, --exercise-file and --exercise-report")
    try:
        install(name, Path(path))
    except Exception as error:  # noqa: BLE001 - whatever the learner's module raises on import is reported
        raise pytest.UsageError(f"{path} could not be imported as {name}: {type(error).__name__}: {error}") from error
    quiet_hypothesis()
    config.pluginmanager.register(Recorder(config.getoption("--exercise-backend"), Path(report)), "ml100-exercise-recorder")


def install(name: str, path: Path) -> None:
    """Execute ``path`` as module ``name`` (its parent package imported first) and make it the one
    ``import name`` returns."""
    parent, _, leaf = name.rpartition(".")
    package = importlib.import_module(parent)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # In sys.modules before it runs, as the import system does (a module may import itself indirectly).
    sys.modules[name] = module
    spec.loader.exec_module(module)
    setattr(package, leaf, module)


def quiet_hypothesis() -> None:
    """Fuzz tests report one failure, unshrunk, and save no examples: the learner needs the first
    mismatch fast, not a group of distinct failures, and the repository's example database must
    not fill with the learner's bugs. The session's profile (CI's fixed examples) stays the parent."""
    settings.register_profile("ml100-exercise", parent=settings.default, report_multiple_bugs=False, database=None,
                              phases=(Phase.explicit, Phase.generate))
    settings.load_profile("ml100-exercise")


class Recorder:
    """Keeps the learner's backend's tests and writes one JSON row per test to ``report``."""

    def __init__(self, backend: str, report: Path):
        self.backend = backend
        self.report = report
        self.rows: list[dict] = []

    def pytest_collection_modifyitems(self, config, items) -> None:
        """Leave out the tests parametrized with a tree other than the learner's: they never run its code."""
        if not self.backend:
            return
        others = set(BACKENDS) - {self.backend}
        kept, dropped = [], []
        for item in items:
            callspec = getattr(item, "callspec", None)
            (dropped if callspec and callspec.params.get("tree") in others else kept).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    def pytest_runtest_logreport(self, report) -> None:
        """A failure in any phase (set-up, call, tear-down) fails the test; its call passing passes it."""
        if report.failed or (report.when == "call" and report.passed):
            self.add(report)

    def pytest_collectreport(self, report) -> None:
        """A test file that fails to import is a failed check too (its message says why)."""
        if report.failed:
            self.add(report)

    def add(self, report) -> None:
        message = "" if report.passed else first_message(report, self.backend)
        self.rows.append({"test": report.nodeid, "passed": report.passed, "message": message})

    def pytest_sessionfinish(self) -> None:
        self.report.write_text(json.dumps(self.rows, indent=1))


def first_message(report, backend: str) -> str:
    """The exception's first line; for the harness's list of mismatches (``<what>: N mismatch(es)``,
    then one line per tensor) the first tensor whose pair involves ``backend`` — the learner's — or
    else the first listed, with how many others differ."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "failed"
    # The list is the lines indented by exactly two spaces under the heading (notes such as
    # Hypothesis' falsifying example follow it, unindented or deeper).
    listed = []
    for line in lines[1:] if _MISMATCHES.search(lines[0]) else []:
        if not line.startswith("  ") or line.startswith("   "):
            break
        listed.append(line.strip())
    if not listed:
        return lines[0].strip()
    pairs = [_PAIR.search(line) for line in listed]
    mine = [line for line, pair in zip(listed, pairs) if pair and backend in pair.group("a", "b")]
    first = (mine or listed)[0]
    more = len(listed) - 1
    return first + (f" (+{more} more mismatch{'es' if more > 1 else ''})" if more else "")
