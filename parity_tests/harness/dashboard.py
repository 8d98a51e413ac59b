"""The parity dashboard's data, written by the test run itself: a pytest plugin (loaded by
``parity_tests/conftest.py``) that listens to every comparison (:mod:`.record`) and, at the end of
the session, writes the largest relative error per test file, pair and dtype to ``--parity-json``
(default ``build/parity.json``; an empty value turns it off). The docs site renders it
(``ml100/site.py``, the page "Parity dashboard").

A run of some files replaces those files' rows and keeps the others', so running one day's tests
does not erase the rest; under pytest-xdist the controller gathers the workers' rows and writes once.
Each row keeps the tensor and the test where the maximum was seen, and how
many comparisons it is the maximum of.
"""
from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import pytest

from .compare import EXACT, TOLERANCES
from .record import Comparison, listening

#: Bumped when the JSON's layout changes; a file of another schema is replaced whole.
SCHEMA = 1
DEFAULT_PATH = "build/parity.json"
#: Where a pytest-xdist worker leaves its rows for the controller.
WORKER_KEY = "ml100_parity_dashboard"


def pytest_addoption(parser) -> None:
    parser.getgroup("ml100 parity dashboard").addoption(
        "--parity-json", default=DEFAULT_PATH,
        help=f"where to write the largest relative errors per test file, pair and dtype (default {DEFAULT_PATH}; '' = off)")


class Collector:
    """The largest error per (test file, pair, dtype), with where it was seen."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], dict] = {}
        self.files: set[str] = set()
        self.test = ""

    def __call__(self, comparison: Comparison) -> None:
        file = self.test.partition("::")[0]
        self.add(file, {"pair": comparison.pair, "dtype": comparison.dtype, "max_rel_err": comparison.rel_err,
                        "tensor": comparison.label, "test": self.test, "comparisons": 1})

    def add(self, file: str, new: dict) -> None:
        """Count ``new`` (one comparison, or a row of several) into its (file, pair, dtype) row."""
        row = self.rows.setdefault((file, new["pair"], new["dtype"]), {**new, "max_rel_err": -1.0, "comparisons": 0})
        row["comparisons"] += new["comparisons"]
        if new["max_rel_err"] > row["max_rel_err"]:
            row.update(max_rel_err=new["max_rel_err"], tensor=new["tensor"], test=new["test"])

    def absorb(self, files: dict[str, list[dict]]) -> None:
        """Another process's :meth:`by_file` (a pytest-xdist worker's), counted in."""
        self.files.update(files)
        for file, rows in files.items():
            for row in rows:
                self.add(file, row)

    def by_file(self) -> dict[str, list[dict]]:
        files: dict[str, list[dict]] = {file: [] for file in self.files}
        for (file, _, _), row in sorted(self.rows.items()):
            files.setdefault(file, []).append(row)
        return files


def versions() -> dict[str, str]:
    """The libraries the numbers were measured with (imported already by the conftest)."""
    import numpy
    import tensorflow
    import torch
    return {"python": platform.python_version(), "numpy": numpy.__version__, "torch": torch.__version__,
            "tensorflow": tensorflow.__version__}


def merged(path: Path, files: dict[str, list[dict]]) -> dict:
    """The file at ``path`` (if it has this schema) with ``files``' rows in place of its own."""
    old: dict = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
    kept = old.get("files", {}) if old.get("schema") == SCHEMA else {}
    kept.update(files)
    return {"schema": SCHEMA, "written": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions(), "tolerances": {**TOLERANCES, EXACT: 0.0},
            "files": dict(sorted(kept.items()))}


@pytest.hookimpl(trylast=True)
def pytest_configure(config) -> None:
    if config.getoption("parity_json"):
        config.pluginmanager.register(DashboardPlugin(config), "ml100-parity-dashboard")


class DashboardPlugin:
    def __init__(self, config) -> None:
        self.config = config
        self.collector = Collector()

    def pytest_collection_modifyitems(self, items) -> None:
        self.collector.files.update(item.nodeid.partition("::")[0] for item in items)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        self.collector.test = item.nodeid
        with listening(self.collector):
            return (yield)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        """Under pytest-xdist (``-n``), the controller gathers each worker's rows when it finishes."""
        self.collector.absorb(json.loads(getattr(node, "workeroutput", {}).get(WORKER_KEY, "{}")))

    def pytest_sessionfinish(self, session) -> None:
        if hasattr(self.config, "workeroutput"):
            # An xdist worker ran only some of the tests it collected: its rows go to the controller, which writes.
            self.config.workeroutput[WORKER_KEY] = json.dumps(self.collector.by_file())
            return
        if not self.collector.rows:
            return
        path = Path(self.config.rootpath) / self.config.getoption("parity_json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged(path, self.collector.by_file()), indent=1) + "\n")
