"""The ``ml100`` command: list the curriculum, run an example with any backend.

    ml100 list                                  # the 100 days and which are implemented
    ml100 list --markdown > docs/curriculum.md  # the same as the docs' table
    ml100 run train_mlp --backend tf            # examples/train_mlp.py with its own arguments
    ml100 run train_mlp --compare --dtype float64
"""
from __future__ import annotations

import argparse
import runpy
import sys

from .curriculum import ROOT, markdown, status

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
        module = day.path or "(example)"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ml100", description="The 100-day ML curriculum in NumPy, PyTorch and TensorFlow.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the curriculum days and which are implemented")
    listing.add_argument("--markdown", action="store_true", help="print the table of docs/curriculum.md")
    run = commands.add_parser("run", help="run an example script, e.g. `ml100 run train_mlp --backend torch`")
    run.add_argument("example", help="example name (a file in examples/)")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the example")
    options = parser.parse_args(argv)
    if options.command == "list":
        return list_days(options.markdown)
    return run_example(options.example, options.args)


if __name__ == "__main__":
    sys.exit(main())
