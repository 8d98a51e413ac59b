"""A Jupyter notebook per implemented day, generated from its day page and run in one kernel.

Each notebook is the day page (``docs/days/dayNN.md``, its links rewritten to resolve from the
notebook's folder) followed by a section "Run the three implementations" whose code cells run a few
of the day's parity tests in the kernel and show, per pair of trees (or tree and reference) and
dtype, the largest relative error the harness measured against the dtype's tolerance:

.. math::

    \\text{rel\\_err} = \\frac{\\max_i |a_i - b_i|}{\\max(\\max_i |a_i|, \\max_i |b_i|)} \\le \\text{tol}(\\text{dtype}),
    \\qquad \\text{tol}(\\text{float64}) = 10^{-9},\\ \\text{tol}(\\text{float32}) = 10^{-4}.

The notebooks are built, never kept: ``ml100 notebooks build`` writes them to ``build/notebooks``
(git-ignored) and ``ml100 notebooks run`` executes them all in one kernel, so torch and TensorFlow
are imported once. jupytext, nbformat, nbclient and ipykernel are imported only here, inside the
functions that use them, so the rest of ``ml100`` does not need them.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .backends import BACKENDS
from .curriculum import CAPSTONE_EXAMPLES, DAYS, ROOT, Day, status
from .exercise import test_files

#: Where ``build`` writes and ``run`` reads when no folder is given.
DEFAULT_OUT = ROOT / "build" / "notebooks"
#: How many of a day's tests its notebook runs: each from a different test function.
TESTS_PER_DAY = 2
#: Days whose tests compare without a tolerance (integers, printed numbers): what they compare instead.
EXACT_DAYS = {
    48: "merges, vocabulary ids and encodings are integers, compared exactly with Hugging Face `tokenizers`",
    50: "the warped scores hold -inf where a token is cut, compared position for position (no relative error recorded)",
    59: "the kept boxes are integer indices, compared exactly",
    70: "the capstone's printed accuracies, equal across the three backends in float64",
}
#: Tests a day's notebook runs first, where the scores would pick one that checks its errors itself
#: (day 11's loss curves compare with ``max_errors``, which records nothing).
PREFERRED = {11: "test_final_weights_and_evaluation_agree"}
#: Words of a test's name that mark a check of bad input or of one tree alone (NumPy's gradcheck), or
#: one slow or random by design (hypothesis fuzzing, training runs, real checkpoints, scripts that
#: write files): never picked. A name's word is excluded when it starts with one of these.
EXCLUDED_WORDS = ("refuse", "bad", "error", "raise", "reject", "invalid", "fuzz", "gradcheck", "training", "minilm",
                  "png", "example")
#: Words of a test's name that say it compares implementations or names a reference (one point; parity two).
AGREEMENT_WORDS = frozenset({"every", "across", "identical", "match", "same", "agree", "equal", "torch", "keras",
                             "torchvision", "torchmetric", "hugging", "diffuser", "peft", "sklearn", "reference"})
#: Words of a day's topic too common to tell its tests apart.
STOPWORDS = frozenset({"and", "the", "with", "from", "for", "vs", "incl", "per", "small", "on", "of", "its", "in", "to"})
#: Seconds a notebook cell may run before ``run`` gives up on it.
CELL_TIMEOUT = 300
#: What ``ml100 notebooks`` needs beyond the project's own requirements.
NEEDS = "jupytext, nbformat, nbclient and ipykernel (pip install -e \".[docs]\")"


class NotebookError(Exception):
    """A request ``ml100 notebooks`` refuses, or a notebook that failed; the message says which and why."""


# ---------------------------------------------------------------------------------------------
# Which days, which tests
# ---------------------------------------------------------------------------------------------


def implemented_days(numbers: Iterable[int] | None = None) -> list[Day]:
    """The implemented days among ``numbers`` (all of them when ``None``), refusing unknown,
    unbuilt and repeated days by number before any work."""
    built = {day.number: implemented for day, implemented in status()}
    if numbers is None:
        return [DAYS[number - 1] for number, implemented in built.items() if implemented]
    numbers = list(numbers)
    for number in numbers:
        if number not in built:
            raise NotebookError(f"unknown day {number}: the curriculum has days 1 to {len(DAYS)}")
        if not built[number]:
            raise NotebookError(f"day {number} ({DAYS[number - 1].topic}) is not built yet; `ml100 list` shows which days are")
        if numbers.count(number) > 1:
            raise NotebookError(f"day {number} is given {numbers.count(number)} times: name each day once")
    if not numbers:
        raise NotebookError("no days given: name at least one, or leave --days out for every built day")
    return [DAYS[number - 1] for number in numbers]


def day_tests(day: Day) -> list[Path]:
    """The day's test files: its module's (``test_files``); for a capstone, its example's
    (``examples/capstone_digits.py`` is tested by ``parity_tests/**/test_capstone_digits.py``)."""
    if day.module is None:
        return sorted((ROOT / "parity_tests").rglob(f"test_{Path(CAPSTONE_EXAMPLES[day.number]).stem}.py"))
    return test_files(day)


def collect(paths: Iterable[Path]) -> list[str]:
    """Every test id in ``paths``, from one ``pytest --collect-only`` process (the frameworks are
    imported once for all days, and not into the caller)."""
    paths = sorted({str(Path(path).relative_to(ROOT)) for path in paths})
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:warnings",
               "--parity-json=", *paths]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if finished.returncode != 0:
        said = finished.stdout[-3000:] + finished.stderr[-3000:]
        raise NotebookError(f"collecting the tests of {len(paths)} files failed:\n{said}")
    # -q lists one id a line, then a blank line and the count.
    listed = finished.stdout.split("\n\n")[0].splitlines()
    return [line for line in listed if "::" in line]


def singular(word: str) -> str:
    """``curves`` -> ``curve``, ``matches`` -> ``match``, ``classes`` -> ``class``; ``loss`` and short words
    (``bias``) stay."""
    if len(word) <= 4 or not word.endswith("s") or word.endswith("ss"):
        return word
    return word[:-2] if word.endswith(("ches", "shes", "sses", "xes")) else word[:-1]


def words(text: str) -> set[str]:
    """``text``'s lowercase words, singular (``curves`` and ``curve`` are one word)."""
    return {singular(word) for word in re.findall(r"[a-z0-9]+", text.lower())}


def score(day: Day, node_id: str) -> int | None:
    """How well ``node_id`` shows the day's trees agreeing; ``None`` for a test never picked.

    A day's ``PREFERRED`` test outranks all. Otherwise: three points per word of the day's topic in
    the test's name and parameters (days sharing a module pick their own tests: polynomial features
    on day 2, AdaGrad on day 10), two for "parity" or one for another word of agreement, one for
    float64 (the tight tolerance), minus three for a test of one tree (parametrized by ``numpy``,
    ``torch`` or ``tf``).
    """
    test = node_id.partition("::")[2]
    function = test.partition("[")[0]
    name = words(function)
    if any(word.startswith(EXCLUDED_WORDS) for word in name):
        return None
    if PREFERRED.get(day.number) == function:
        return 100
    points = 3 * len(words(test) & (words(day.topic) - STOPWORDS))
    points += 2 if "parity" in name else int(bool(name & AGREEMENT_WORDS))
    # A test parametrized by one tree (``[numpy]``) checks that tree alone.
    points -= 3 * bool(words(test.partition("[")[2]) & set(BACKENDS))
    return points + int("float64" in test)


def choose(day: Day, node_ids: Iterable[str]) -> list[str]:
    """Up to ``TESTS_PER_DAY`` of the day's test ids, the best-scored of different test functions
    (ties: the first collected); none when every test is excluded."""
    files = {str(path.relative_to(ROOT)) for path in day_tests(day)}
    ranked = []
    for position, node_id in enumerate(node_ids):
        points = score(day, node_id) if node_id.partition("::")[0] in files else None
        if points is not None:
            ranked.append((-points, position, node_id))
    chosen: dict[str, str] = {}
    for _, _, node_id in sorted(ranked):
        function = node_id.partition("[")[0]
        if function not in chosen and len(chosen) < TESTS_PER_DAY:
            chosen[function] = node_id
    return list(chosen.values())


def choose_all(days: list[Day]) -> dict[int, list[str]]:
    """Each day's chosen test ids, from one collection of all the days' test files; a day with none
    to run is refused by name."""
    node_ids = collect(path for day in days for path in day_tests(day))
    chosen = {day.number: choose(day, node_ids) for day in days}
    missing = [f"day {number}" for number, ids in chosen.items() if not ids]
    if missing:
        raise NotebookError(f"no test compares the trees for {', '.join(missing)}: expected parity_tests/**/test_<module>.py")
    return chosen


# ---------------------------------------------------------------------------------------------
# agreement: run tests in this process and tabulate what the harness compared
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """The largest relative error of one pair and dtype over the tests run, with where it was seen."""

    pair: str
    dtype: str
    max_rel_err: float
    tensor: str
    test: str
    comparisons: int
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_rel_err <= self.tolerance


@dataclass(frozen=True)
class Agreement:
    """The tests run (id -> ``passed``, ``failed`` or ``skipped``), how many comparisons each made,
    and the table of those comparisons; ``exact`` says what a day compares without a tolerance.
    Renders as Markdown in Jupyter."""

    outcomes: dict[str, str]
    counts: dict[str, int]
    rows: tuple[Row, ...]
    exact: str | None = None

    @property
    def passed(self) -> bool:
        return all(outcome == "passed" for outcome in self.outcomes.values()) and all(row.passed for row in self.rows)

    def lines(self, markdown: bool) -> list[str]:
        """The table then the tests, as Markdown or as aligned plain text."""
        header = ("pair", "dtype", "max rel err", "tolerance", "result", "tensor", "test", "comparisons")
        cells = [(row.pair, row.dtype, f"{row.max_rel_err:.2e}", f"{row.tolerance:.0e}", "pass" if row.passed else "FAIL",
                  row.tensor, short_test(row.test), str(row.comparisons)) for row in self.rows]
        table = (markdown_table(header, cells) if markdown else text_table(header, cells)) if cells else []
        code = "`" if markdown else ""
        tests = [f"- {code}{short_test(test)}{code}: {outcome}, {self.counts.get(test, 0)} comparisons"
                 for test, outcome in self.outcomes.items()]
        note = [f"Compared without a tolerance: {self.exact}.", ""] if self.exact else []
        return [*table, *[""] * bool(table), *note, "Tests run:", *tests]

    def _repr_markdown_(self) -> str:
        return "\n".join(self.lines(markdown=True))

    def __str__(self) -> str:
        return "\n".join(self.lines(markdown=False))

    __repr__ = __str__


def short_test(node_id: str) -> str:
    """``test_mlp.py::test_mlp_parity[relu-float64]``: the id without its folders."""
    path, separator, test = node_id.partition("::")
    return Path(path).name + separator + test


def markdown_table(header: tuple[str, ...], cells: list[tuple[str, ...]]) -> list[str]:
    """A Markdown table; a ``|`` inside a cell (a test's parameters) is escaped so it stays one cell."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in cells]


def text_table(header: tuple[str, ...], cells: list[tuple[str, ...]]) -> list[str]:
    """Columns padded to their widest cell (the last column, the comparison count, right-aligned)."""
    widths = [max(len(row[column]) for row in [header, *cells]) for column in range(len(header))]
    return ["  ".join(cell.rjust(width) if column == len(header) - 1 else cell.ljust(width)
                      for column, (cell, width) in enumerate(zip(row, widths))).rstrip() for row in [header, *cells]]


def summarize(observed: Iterable[tuple[str, object]], outcomes: dict[str, str], exact: str | None = None) -> Agreement:
    """The table of ``observed`` (test id, :class:`~parity_tests.harness.record.Comparison`) pairs: per
    pair and dtype the largest ``rel_err``, its tensor and test, the count, and the dtype's tolerance
    (``parity_tests.harness.compare.tolerance_of``: 0 for the exact comparisons of integers); rows in the
    order first seen."""
    tolerance_of = harness().compare.tolerance_of
    observed = list(observed)
    rows: dict[tuple[str, str], Row] = {}
    for test, comparison in observed:
        key = (comparison.pair, comparison.dtype)
        old = rows.get(key)
        count = old.comparisons + 1 if old else 1
        if old is None or comparison.rel_err > old.max_rel_err:
            rows[key] = Row(comparison.pair, comparison.dtype, comparison.rel_err, comparison.label, test, count,
                            tolerance_of(comparison.dtype))
        else:
            rows[key] = Row(old.pair, old.dtype, old.max_rel_err, old.tensor, old.test, count, old.tolerance)
    counts = Counter(test for test, _ in observed)
    return Agreement(dict(outcomes), dict(counts), tuple(rows.values()), exact)


def harness():
    """The parity harness (``parity_tests.harness``), imported after the test session's set-up.

    ``parity_tests/conftest.py`` imports ``torch._dynamo`` before TensorFlow (the other order
    segfaults at the first optimizer step) and sets TF's threads before its first op; the harness
    imports TF, so the conftest comes first. pytest later finds the conftest in ``sys.modules``
    and does not run it again, so calling :func:`agreement` repeatedly sets the threads once.
    """
    # Test modules import ``parity_tests`` from the repository root, wherever the caller runs.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    first = "parity_tests.conftest" not in sys.modules
    if first and "tensorflow" in sys.modules and "torch._dynamo" not in sys.modules:
        raise NotebookError("TensorFlow was imported in this process before torch._dynamo, and the tests would then "
                            "segfault: restart the kernel and run the tests first (or import torch._dynamo before TF)")
    try:
        import parity_tests.conftest  # noqa: F401
    except RuntimeError as error:
        # TF refuses new thread settings once it has run an op.
        sys.modules.pop("parity_tests.conftest", None)
        raise NotebookError(f"TensorFlow already ran in this process ({error}): restart the kernel and run the "
                            "tests before any TensorFlow code") from None
    import parity_tests.harness

    return parity_tests.harness


class Recorder:
    """A pytest plugin and a comparison listener: each test's outcome, and every comparison the
    harness makes while the test (its fixtures included) runs."""

    def __init__(self) -> None:
        self.observed: list[tuple[str, object]] = []
        self.outcomes: dict[str, str] = {}
        self.failures: dict[str, str] = {}
        self.test = ""

    def __call__(self, comparison) -> None:
        self.observed.append((self.test, comparison))

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.test = nodeid

    def pytest_runtest_logreport(self, report) -> None:
        # A failure in set-up or teardown fails the test too; a skip is reported once.
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[report.nodeid] = report.outcome
        if report.failed:
            self.failures[report.nodeid] = report.longreprtext


def agreement(*node_ids: str, exact: str | None = None) -> Agreement:
    """Run the tests ``node_ids`` in this process (from the repository root, without the parity
    dashboard) and return the table of what they compared.

    Raises :class:`NotebookError` when a test did not pass, an id names no test, or nothing was
    compared (unless ``exact`` says what the tests compare without a tolerance), so a notebook that
    calls it fails loudly.
    """
    import pytest

    if not node_ids:
        raise NotebookError("agreement needs at least one test id, "
                            "e.g. 'parity_tests/foundations/test_mlp.py::test_mlp_parity'")
    listening = harness().record.listening
    recorder = Recorder()
    said = io.StringIO()
    # Test ids and the conftest's paths are relative to the root.
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        with listening(recorder), contextlib.redirect_stdout(said):
            # pytest's unraisable-exception plugin runs gc.collect at the end of every session: with
            # torch and TF loaded that took 0.7 s of a 0.8 s call, repeated in every notebook.
            code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:unraisableexception", "--parity-json=",
                                *node_ids], plugins=[recorder])
    finally:
        os.chdir(here)
    missing = [node_id for node_id in node_ids if not any(test.startswith(node_id) for test in recorder.outcomes)]
    if missing or code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise NotebookError(f"pytest could not run {', '.join(missing or node_ids)} (exit code {int(code)}):\n"
                            f"{said.getvalue()[-3000:]}")
    result = summarize(recorder.observed, recorder.outcomes, exact)
    if recorder.failures:
        reasons = "\n\n".join(f"{test}:\n{text[-2000:]}" for test, text in recorder.failures.items())
        raise NotebookError(f"{len(recorder.failures)} test(s) failed:\n{reasons}\n\n{result}")
    if not result.rows and exact is None:
        raise NotebookError(f"the tests passed but compared no float tensors through the harness: {', '.join(node_ids)}")
    if not result.passed:
        raise NotebookError(f"a comparison exceeds its tolerance:\n{result}")
    return result


def sources(number: int) -> dict[str, str]:
    """Day ``number``'s files, repository-relative: one per tree, or the neutral module, or the
    capstone's example."""
    day = DAYS[number - 1]
    if day.module is None or day.neutral:
        return {"file": day.where}
    return {backend: f"{package}/{day.path}" for backend, package in BACKENDS.items()}


# ---------------------------------------------------------------------------------------------
# build: day page -> MyST text -> notebook
# ---------------------------------------------------------------------------------------------


def notebook_name(day: Day) -> str:
    """``day07_mlp.ipynb``; ``day70_capstone.ipynb`` for a module-less capstone."""
    return f"day{day.number:02d}_{day.module or 'capstone'}.ipynb"


def page_path(day: Day) -> Path:
    return ROOT / "docs" / "days" / f"day{day.number:02d}.md"


def jupyter_anchor(page: str, anchor: str) -> str:
    """A heading anchor as the docs site spells it (``run-it``) as Jupyter does (``Run-it``: the
    heading's text, spaces made hyphens); an anchor matching no heading of ``page`` is kept."""
    for title in re.findall(r"^#+ +(.+?) *$", page, flags=re.MULTILINE):
        if re.sub(r"[^\w\- ]", "", title.lower()).strip().replace(" ", "-") == anchor:
            return title.replace(" ", "-")
    return anchor


def rewrite_links(page: str, out_dir: Path, notebooks: dict[str, str]) -> str:
    """The page's Markdown link targets made to resolve from ``out_dir``: a relative path that exists
    from ``docs/days`` becomes relative to ``out_dir``; a link to another day page points at that
    day's notebook when it is in ``notebooks`` (page name -> notebook name); an anchor into a page
    that became a notebook takes Jupyter's spelling. Anything else (URLs, code that looks like a
    link) is left as written."""
    pages = page_path(DAYS[0]).parent

    def target(match: re.Match) -> str:
        path, hash_mark, anchor = match.group(1).partition("#")
        if not path:
            return f"]({hash_mark}{jupyter_anchor(page, anchor)})"
        if path in notebooks:
            return f"]({notebooks[path]}{hash_mark}{jupyter_anchor((pages / path).read_text(), anchor)})"
        resolved = (pages / path).resolve()
        if "://" in path or not resolved.exists():
            return match.group(0)
        return f"]({Path(os.path.relpath(resolved, out_dir.resolve())).as_posix()}{hash_mark}{anchor})"

    return re.sub(r"\]\(([^)\s]+)\)", target, page)


def sections(page: str) -> str:
    """The page with a MyST cell break (``+++``) before each heading after the first, outside code
    fences: one Markdown cell per section."""
    lines, fenced = [], False
    for line in page.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## ") and lines:
            lines += ["+++", ""]
        lines.append(line)
    return "\n".join(lines)


HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def run_section(day: Day, node_ids: list[str]) -> str:
    """The final section: the day's files, then its chosen tests run with :func:`agreement`."""
    arguments = "".join(f"\n    {node_id!r}," for node_id in node_ids)
    exact = f"\n    exact={EXACT_DAYS[day.number]!r}," if day.number in EXACT_DAYS else ""
    tests = "this day's test" if len(node_ids) == 1 else f"{len(node_ids)} of this day's tests"
    if day.number in EXACT_DAYS:
        shown = (f"Nothing here is compared with a tolerance ({EXACT_DAYS[day.number]}): the last cell shows, "
                 "for what the harness compares exactly (dtype \"exact\"), the share of elements that differ — 0 "
                 "when equal — and each test's outcome, and fails if one fails.")
    else:
        shown = ("The last cell shows, for each pair of trees (or tree and reference) and dtype, the largest "
                 "relative error the harness measured, the tensor where it was seen and the dtype's tolerance; "
                 "it fails if a test fails or an error exceeds its tolerance.")
    return f"""
+++

## Run the three implementations

The cells below run {tests} here, in this kernel. {shown}

```{{code-cell}} ipython3
from ml100.notebooks import agreement, sources

sources({day.number})
```

```{{code-cell}} ipython3
agreement({arguments}{exact}
)
```
"""


def read_page(day: Day) -> str:
    """The day page's text; refuses a control character (a ``\\b`` of ``\\beta`` written through a
    Python string becomes a backspace), which the notebook's YAML reader would reject less clearly."""
    path = page_path(day)
    text = path.read_text()
    for number, line in enumerate(text.split("\n"), start=1):
        found = re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", line)
        if found:
            raise NotebookError(f"{path.relative_to(ROOT)} line {number} holds the control character "
                                f"U+{ord(found.group()):04X} at column {found.start() + 1}: fix the page")
    return text


def myst_text(day: Day, page: str, node_ids: list[str], out_dir: Path, notebooks: dict[str, str]) -> str:
    """The notebook's MyST source: header, the day's ``page`` (links rewritten), the run section."""
    page = rewrite_links(page, out_dir, notebooks)
    return HEADER + sections(page).rstrip() + "\n" + run_section(day, node_ids)


def require_notebook_tools() -> None:
    """Refuse clearly when the notebook packages (the ``docs`` extra) are missing."""
    import importlib.util

    missing = [name for name in ("jupytext", "nbformat", "nbclient", "ipykernel") if importlib.util.find_spec(name) is None]
    if missing:
        raise NotebookError(f"{', '.join(missing)} not installed: ml100 notebooks needs {NEEDS}")


def check_out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotebookError(f"--out {out_dir} is a file, not a folder")
    return out_dir


def build_notebooks(days: Iterable[int] | None = None, out_dir: Path = DEFAULT_OUT) -> list[Path]:
    """Write ``dayNN_<module>.ipynb`` in ``out_dir`` for each of ``days`` (every built day when
    ``None``); returns their paths. Bad days and folders are refused before any work."""
    chosen_days = implemented_days(days)
    out_dir = check_out_dir(out_dir)
    require_notebook_tools()
    pages = {day.number: read_page(day) for day in chosen_days}
    import jupytext

    tests = choose_all(chosen_days)
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = {page_path(day).name: notebook_name(day) for day in chosen_days}
    written = []
    for day in chosen_days:
        notebook = jupytext.reads(myst_text(day, pages[day.number], tests[day.number], out_dir, notebooks), fmt="md:myst")
        path = out_dir / notebook_name(day)
        jupytext.write(notebook, path, fmt="ipynb")
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# run: every notebook in one kernel
# ---------------------------------------------------------------------------------------------


def built_notebooks(out_dir: Path = DEFAULT_OUT) -> list[Path]:
    """The day notebooks in ``out_dir``, in day order; refuses an empty or missing folder."""
    out_dir = check_out_dir(out_dir)
    paths = sorted(Path(out_dir).glob("day[0-9][0-9]_*.ipynb"))
    if not paths:
        raise NotebookError(f"no day notebooks in {out_dir}: build them first with `ml100 notebooks build`")
    return paths


def run_notebooks(paths: Iterable[Path], timeout: int = CELL_TIMEOUT, say=print) -> list[tuple[Path, float]]:
    """Execute each notebook in one kernel (the frameworks are imported once) and save it in place;
    returns (path, seconds) per notebook and reports each through ``say``.

    Stops at the first notebook that fails (it is saved with the error) and raises
    :class:`NotebookError` naming it and the cell's error.
    """
    require_notebook_tools()
    import nbformat
    from jupyter_client import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    paths = [Path(path) for path in paths]
    times = []
    # nbclient starts this kernel for the first notebook and, since it does not own it, keeps it for
    # the next. The asynchronous manager: with the blocking one, nbclient's liveness check blocked
    # forever on a kernel that had died (a segfault) instead of raising DeadKernelError.
    kernel = AsyncKernelManager(kernel_name="python3")
    try:
        for path in paths:
            notebook = nbformat.read(path, as_version=4)
            client = NotebookClient(notebook, km=kernel, timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
            started = time.perf_counter()
            try:
                client.execute()
            except (CellExecutionError, DeadKernelError) as error:
                nbformat.write(notebook, path)
                raise NotebookError(f"{path.name} failed:\n{error}") from None
            times.append((path, time.perf_counter() - started))
            nbformat.write(notebook, path)
            say(f"{path.name}: {times[-1][1]:.1f} s")
    finally:
        if kernel.has_kernel:
            run_sync(kernel.shutdown_kernel)(now=True)
    return times
