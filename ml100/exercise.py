"""Exercises graded by the parity harness: ``ml100 exercise start`` and ``ml100 exercise check``.

``start DAY --backend B`` writes the learner a skeleton of the day's module, generated from the
tree's own source with :mod:`ast`: imports, module constants, classes, signatures, decorators and
docstrings stay, and so does every constructor (``__init__``: it registers the parameters the
harness loads weights into, so the model can be built before anything is written). Every other
function and method body defined in that file becomes

    <the body's comments, as an outline of the steps>
    raise NotImplementedError("Linear.forward: write this (day 6)")

The outline keeps each full-line comment of the body (the "why" of a step) and turns each shape
comment at the end of a line into ``# y: (..., out)`` (what was assigned, and its shape).

The skeleton sits at the tree's own relative path under the exercise folder
(``exercises/numpy_impl/foundations/linear.py``; ``exercises/ml100/bpe.py`` for a neutral topic,
which has no backend), so every day and backend has its own file and relative imports read as in
the tree.

``check DAY --backend B`` runs the day's parity tests in one pytest process with the learner's file
imported in place of the tree's module (:mod:`ml100.exercise_plugin`; the tree is never modified)
and prints one row per check: pass or fail, and for a failure the harness's own first message — for
a parity mismatch, the first tensor of the learner's backend that differs, the pair and the errors.
"""
from __future__ import annotations

import ast
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path

from .backends import BACKENDS, check_backend, drop_quiet_lines
from .curriculum import DAYS, ROOT, Day, status

#: Where ``start`` writes and ``check`` reads when ``--dir`` is not given (relative to the working directory).
DEFAULT_DIR = Path("exercises")

#: Methods whose bodies the skeleton keeps: constructors only register parameters and check arguments.
KEPT_FUNCTIONS = frozenset({"__init__"})

#: Trailing comments that are tool directives, not shapes: not copied into the outline.
DIRECTIVES = ("noqa", "type:", "pragma", "fmt:")


class ExerciseError(Exception):
    """A request ``ml100 exercise`` refuses; the message says what was expected."""


# ---------------------------------------------------------------------------------------------
# Which day, which file
# ---------------------------------------------------------------------------------------------


def find_day(number: int) -> Day:
    """The implemented curriculum day ``number``; refuses unknown and unbuilt days by name."""
    built = {day.number: implemented for day, implemented in status()}
    if number not in built:
        raise ExerciseError(f"unknown day {number}: the curriculum has days 1 to {len(DAYS)}")
    day = DAYS[number - 1]
    if day.module is None:
        raise ExerciseError(f"day {number} ({day.topic}) is a capstone with no module of its own: no exercise")
    if not built[number]:
        raise ExerciseError(f"day {number} ({day.path}) is not built yet; `ml100 list` shows which days are built")
    return day


def module_name(day: Day, backend: str) -> str:
    """The dotted module the learner's file stands in for, e.g. ``numpy_impl.foundations.linear``."""
    if day.neutral:
        return f"ml100.{day.module}"
    return f"{BACKENDS[check_backend(backend)]}.{day.phase}.{day.module}"


def source_path(day: Day, backend: str) -> Path:
    """The tree's own file for the day and backend (the neutral package's file for a neutral topic)."""
    return ROOT / Path(*module_name(day, backend).split(".")).with_suffix(".py")


def exercise_path(day: Day, backend: str, directory: Path = DEFAULT_DIR) -> Path:
    """The learner's file: the module's path relative to the repository, under ``directory``."""
    return Path(directory) / source_path(day, backend).relative_to(ROOT)


def days_label(day: Day) -> str:
    """``day 6``, or ``days 9-10`` when one module holds several days."""
    numbers = [other.number for other in DAYS if other.module == day.module and other.phase == day.phase]
    return f"day {numbers[0]}" if len(numbers) == 1 else f"days {numbers[0]}-{numbers[-1]}"


def command(action: str, number: int, backend: str, directory: Path) -> str:
    """The ``ml100 exercise`` command line for ``action`` (``--dir`` only when not the default)."""
    where = "" if Path(directory) == DEFAULT_DIR else f" --dir {directory}"
    return f"ml100 exercise {action} {number} --backend {backend}{where}"


# ---------------------------------------------------------------------------------------------
# The skeleton
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blank:
    """One body to replace: its qualified name and the source span of the statements that go
    (1-based lines, 0-based columns, as :mod:`ast` gives them)."""

    qualname: str
    start: tuple[int, int]
    end: tuple[int, int]


def blanked_functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method the file defines at module or class level (nested classes
    included), with its qualified name, except the constructors in ``KEPT_FUNCTIONS``."""
    found = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not (prefix and node.name in KEPT_FUNCTIONS):
                found.append((f"{prefix}{node.name}", node))

    visit(tree.body, "")
    return found


def has_docstring(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    first = function.body[0]
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)


def blank_of(qualname: str, function: ast.FunctionDef | ast.AsyncFunctionDef) -> Blank | None:
    """The span of ``function``'s body after its docstring; ``None`` for a body that is only a docstring."""
    statements = function.body[1:] if has_docstring(function) else function.body
    if not statements:
        return None
    return Blank(qualname, (statements[0].lineno, statements[0].col_offset), (function.end_lineno, function.end_col_offset))


def assigned_names(tree: ast.Module) -> dict[int, str]:
    """Line -> what the simple statement ending on it assigns (``y``, ``self.grads["weight"]``,
    ``return``): the subject of that line's shape comment."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            names[node.end_lineno] = " = ".join(ast.unparse(target) for target in node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            names[node.end_lineno] = ast.unparse(node.target)
        elif isinstance(node, ast.Return):
            names[node.end_lineno] = "return"
    return names


def outline(comments: list[tokenize.TokenInfo], lines: list[str], names: dict[int, str], blank: Blank) -> list[str]:
    """The comments inside ``blank``'s span, one per line: full-line comments as written, a trailing
    comment as ``# <what the line assigns>: <comment>``; tool directives (``# noqa``) dropped."""
    kept = []
    for token in comments:
        (line, column), text = token.start, token.string
        # A comment after the last statement, on its line, belongs to the body too.
        if not blank.start <= token.start <= (blank.end[0], len(lines[blank.end[0] - 1])):
            continue
        if not lines[line - 1][:column].strip():
            kept.append(text)
            continue
        body = text.lstrip("#").strip()
        if body.startswith(DIRECTIVES):
            continue
        note = f"# {names[line]}: {body}" if line in names else text
        # Two steps that leave one name in one shape (``y = x @ W.T``, ``y = y + b``) read as one note.
        if not kept or kept[-1] != note:
            kept.append(note)
    return kept


def replacement(blank: Blank, notes: list[str], lines: list[str], label: str) -> str:
    """The text that takes the place of ``blank``'s statements: its outline, then the raise."""
    line, column = blank.start
    error = f'raise NotImplementedError("{blank.qualname}: write this ({label})")'
    if lines[line - 1][:column].strip():
        # A one-line function (``def f(x): return x``): the raise takes the statement's place.
        return error
    indent = " " * column
    return "".join(f"{note}\n{indent}" for note in notes) + error


def skeleton(source: str, label: str) -> str:
    """``source`` with every function body but the kept constructors replaced (see the module doc).

    Spans are replaced from the last to the first, so earlier offsets stay valid; the result is
    checked to parse.
    """
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    comments = [token for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT]
    names = assigned_names(tree)
    blanks = [blank for qualname, node in blanked_functions(tree) if (blank := blank_of(qualname, node)) is not None]
    text = list(lines)
    for blank in sorted(blanks, key=lambda b: b.start, reverse=True):
        (first, first_col), (last, last_col) = blank.start, blank.end
        new = replacement(blank, outline(comments, lines, names, blank), lines, label)
        rest = text[last - 1][last_col:]
        # The last line's trailing comment is already in the outline.
        rest = "\n" if rest.lstrip().startswith("#") else rest
        text[first - 1:last] = [text[first - 1][:first_col] + new + rest]
    result = "".join(text)
    ast.parse(result)
    return result


def functions_to_write(source: str) -> list[str]:
    """The qualified names a learner writes in ``source``'s skeleton, in file order."""
    return [qualname for qualname, _ in blanked_functions(ast.parse(source))]


# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------


def start(number: int, backend: str, directory: Path = DEFAULT_DIR, force: bool = False) -> Path:
    """Write the skeleton of day ``number``'s module for ``backend``; refuses to overwrite without ``force``."""
    check_backend(backend)
    day = find_day(number)
    target = exercise_path(day, backend, directory)
    if target.exists() and not force:
        raise ExerciseError(f"{target} already exists (your work?): check it with `{command('check', number, backend, directory)}`, "
                            "or pass --force to overwrite it with a fresh skeleton")
    source = source_path(day, backend).read_text()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(skeleton(source, days_label(day)))
    return target


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One pytest test of the day: its id, whether it passed, and the first line that says why not."""

    test: str
    passed: bool
    message: str = ""


def test_files(day: Day) -> list[Path]:
    """The day's parity tests: ``parity_tests/**/test_<module>.py``; where none exists, the tests
    that name the module (``"foundations.linear"`` or ``ml100.bpe``), as the mirror test accepts."""
    tests = ROOT / "parity_tests"
    own = sorted(tests.rglob(f"test_{day.module}.py"))
    if own:
        return own
    named = f"ml100.{day.module}" if day.neutral else f"{day.phase}.{day.module}"
    return sorted(path for path in tests.rglob("test_*.py") if named in path.read_text() and path.name != "test_mirror.py")


def run_checks(day: Day, backend: str, learner_file: Path) -> list[Check]:
    """Run the day's tests in one pytest process with ``learner_file`` in place of the tree's module."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "ml100.exercise_plugin",
                   "--exercise-module", module_name(day, backend), "--exercise-file", str(learner_file.resolve()),
                   "--exercise-backend", "" if day.neutral else backend, "--exercise-report", str(report),
                   # A learner's run is not the project's evidence: it leaves the parity dashboard's data alone.
                   "--parity-json=",
                   *(str(path) for path in test_files(day))]
        finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if not report.is_file():
            # pytest stopped before running a test (the file does not import, a usage error): show what it
            # said, without TF's start-up log lines (logged before TF reads TF_CPP_MIN_LOG_LEVEL).
            said = drop_quiet_lines(finished.stdout + finished.stderr, min_level=3).strip()
            raise ExerciseError(f"the tests could not run with {learner_file}:\n{said}")
        rows = json.loads(report.read_text())
    return [Check(short_id(row["test"]), row["passed"], row["message"]) for row in rows]


def short_id(nodeid: str) -> str:
    """``test_linear.py::test_linear_parity[float64]``: the test's id without its folder."""
    path, separator, test = nodeid.partition("::")
    return Path(path).name + separator + test


def table(checks: list[Check]) -> str:
    """One line per check, ``PASS`` or ``FAIL`` and the test; under a failure, indented, its first
    message (the tensor that differs, the pair and the errors); then the count."""
    rows = []
    for check in checks:
        rows.append(f"{'PASS' if check.passed else 'FAIL'}  {check.test}")
        if not check.passed:
            rows.append(f"      {check.message}")
    passed = sum(check.passed for check in checks)
    return "\n".join([*rows, f"{passed} of {len(checks)} checks passed"])


def check(number: int, backend: str, directory: Path = DEFAULT_DIR) -> tuple[list[Check], Path]:
    """Grade the learner's file for day ``number`` and ``backend``: every check of the day's tests."""
    check_backend(backend)
    day = find_day(number)
    if not (ROOT / "parity_tests").is_dir():
        raise ExerciseError(f"grading runs the parity tests of a source checkout, and {ROOT} has none: "
                            "clone the repository and pip install -e it")
    if importlib.util.find_spec("pytest") is None or importlib.util.find_spec("hypothesis") is None:
        raise ExerciseError('grading runs the parity tests, which need pytest and hypothesis: pip install -e ".[all,test]"')
    learner_file = exercise_path(day, backend, directory)
    if not learner_file.is_file():
        raise ExerciseError(f"no exercise at {learner_file}: write one first with `{command('start', number, backend, directory)}`")
    try:
        compile(learner_file.read_text(), str(learner_file), "exec")
    except SyntaxError as error:
        raise ExerciseError(f"{learner_file} line {error.lineno}: {error.msg}: fix it before checking") from None
    checks = run_checks(day, backend, learner_file)
    if not checks:
        raise ExerciseError(f"no tests ran for day {number} ({day.path}): expected parity_tests/**/test_{day.module}.py")
    return checks, learner_file
