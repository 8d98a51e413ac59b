"""The ``ml100`` command: list the curriculum, run an example with any backend.

    ml100 list                                  # the 100 days and which are implemented
    ml100 list --markdown > docs/curriculum.md  # the same as the docs' table
    ml100 run train_mlp --backend tf            # examples/train_mlp.py with its own arguments
    ml100 run train_mlp --compare --dtype float64
    ml100 exercise start 6 --backend numpy      # a skeleton of day 6's module to write (docs/exercises.md)
    ml100 exercise check 6 --backend numpy      # grade it with the day's parity tests
    ml100 notebooks build [--days 1 7]          # a Jupyter notebook per built day, in build/notebooks (docs/notebooks.md)
    ml100 notebooks run                         # execute them all in one kernel
"""
from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path

from .backends import BACKENDS
from .curriculum import ROOT, markdown, status
from .exercise import DEFAULT_DIR, ExerciseError, check, command, functions_to_write, start, table
from .notebooks import DEFAULT_OUT, NotebookError, build_notebooks, built_notebooks, run_notebooks

EXAMPLES = ROOT / "examples"


def available_examples() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.py")) if EXAMPLES.is_dir() else []


def list_days(as_markdown: bool = False) -> int:
    if as_markdown:
        print(markdown(), end="")
        return 0
    rows = status()
    done = sum(implemented for _, implemented in rows)
    phase = None
    for day, implemented in rows:
        if day.phase != phase:
            phase = day.phase
            print(f"\n{phase}/")
        mark = "done" if implemented else "    "
        module = day.where or "(example)"
        print(f"  [{mark}] day {day.number:3d}  {module:38s} {day.topic}")
    print(f"\n{done} of {len(rows)} days implemented in all three trees (numpy_impl, torch_impl, tf_impl)")
    return 0


def run_example(name: str, args: list[str]) -> int:
    examples = available_examples()
    if not examples:
        raise SystemExit(f"no examples found at {EXAMPLES}: run ml100 from a source checkout (pip install -e .)")
    if name not in examples:
        raise SystemExit(f"unknown example {name!r}; expected one of: {', '.join(examples)}")
    sys.argv = [str(EXAMPLES / f"{name}.py"), *args]
    runpy.run_path(sys.argv[0], run_name="__main__")
    return 0


def exercise(action: str, day: int, backend: str, directory: Path, force: bool) -> int:
    """``start``: write the day's skeleton and say what to write; ``check``: print the graded table.
    Exit code 0 when every check passes, 1 otherwise; a refused request is one line on stderr."""
    try:
        if action == "start":
            path = start(day, backend, directory, force)
            names = functions_to_write(path.read_text())
            print(f"wrote {path}: {len(names)} to write: {', '.join(names)}")
            print(f"then: {command('check', day, backend, directory)}")
            return 0
        checks, path = check(day, backend, directory)
    except (ExerciseError, ValueError) as error:
        raise SystemExit(f"ml100 exercise {action}: {error}") from None
    print(f"day {day}, {backend}: {path}")
    print(table(checks))
    return 0 if all(row.passed for row in checks) else 1


def notebooks(action: str, days: list[int] | None, out: Path) -> int:
    """``build``: write the day notebooks and list them; ``run``: execute every notebook in ``out`` in
    one kernel, a line per notebook. A refused request or a failed notebook is one message on stderr."""
    try:
        if action == "build":
            started = time.perf_counter()
            paths = build_notebooks(days, out)
            print(f"wrote {plural(len(paths), 'notebook')} to {out} in {time.perf_counter() - started:.1f} s")
            return 0
        started = time.perf_counter()
        times = run_notebooks(built_notebooks(out))
    except NotebookError as error:
        raise SystemExit(f"ml100 notebooks {action}: {error}") from None
    print(f"ran {plural(len(times), 'notebook')} in one kernel in {time.perf_counter() - started:.1f} s")
    return 0


def plural(count: int, noun: str) -> str:
    """``1 notebook``, ``69 notebooks``."""
    return f"{count} {noun}{'s' * (count != 1)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ml100", description="The 100-day ML curriculum in NumPy, PyTorch and TensorFlow.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the curriculum days and which are implemented")
    listing.add_argument("--markdown", action="store_true", help="print the table of docs/curriculum.md")
    run = commands.add_parser("run", help="run an example script, e.g. `ml100 run train_mlp --backend torch`")
    run.add_argument("example", help="example name (a file in examples/)")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the example")
    practice = commands.add_parser("exercise", help="write a day's module yourself: `start` a skeleton, `check` it (docs/exercises.md)")
    practice.add_argument("action", choices=["start", "check"])
    practice.add_argument("day", type=int, help="curriculum day (`ml100 list` shows the built ones)")
    practice.add_argument("--backend", choices=list(BACKENDS), required=True, help="which tree's module to write")
    practice.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="folder of your exercises (default: ./exercises)")
    practice.add_argument("--force", action="store_true", help="start: overwrite an existing skeleton")
    books = commands.add_parser("notebooks", help="a Jupyter notebook per built day: `build`, then `run` (docs/notebooks.md)")
    books.add_argument("action", choices=["build", "run"])
    books.add_argument("--days", type=int, nargs="+", help="build: only these days (default: every built day)")
    books.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the notebooks' folder (default: {DEFAULT_OUT})")
    options = parser.parse_args(argv)
    if options.command == "list":
        return list_days(options.markdown)
    if options.command == "exercise":
        if options.force and options.action == "check":
            practice.error("--force is for `start` (it overwrites a skeleton); `check` never writes")
        return exercise(options.action, options.day, options.backend, options.dir, options.force)
    if options.command == "notebooks":
        if options.days is not None and options.action == "run":
            books.error("--days is for `build`; `run` executes every notebook in --out")
        return notebooks(options.action, options.days, options.out)
    return run_example(options.example, options.args)


if __name__ == "__main__":
    sys.exit(main())
