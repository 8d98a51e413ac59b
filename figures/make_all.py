"""Regenerate every figure of the docs: run each ``figures/day*.py`` in its own process.

Usage::

    python figures/make_all.py [--out DIR] [--only PATTERN]

Each script is run as ``python figures/dayNN_<name>.py --out DIR`` (sorted by name), its wall
time is printed, and the exit status is nonzero if any script failed. ``--only`` keeps the
scripts whose file name matches a shell-style pattern (``--only 'day1*'``).
"""
import argparse
import fnmatch
import subprocess
import sys
import time
from pathlib import Path

FIGURES = Path(__file__).resolve().parent
ROOT = FIGURES.parent
DEFAULT_OUT = ROOT / "docs" / "days" / "img"


def start_figure(script_file: str, argv: list[str] | None = None) -> Path:
    """What every figure script does first: parse its ``--out DIR``, switch matplotlib to the
    headless Agg backend, put the repository root on ``sys.path`` (so ``examples/`` and
    ``parity_tests/`` import when run as ``python figures/dayNN_name.py``), and return the path
    ``DIR/dayNN_name.png``, named after the script, with ``DIR`` created."""
    name = Path(script_file).stem
    parser = argparse.ArgumentParser(description=f"Draw {name}.png")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write {name}.png to")
    args = parser.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    args.out.mkdir(parents=True, exist_ok=True)
    return args.out / f"{name}.png"


def figure_scripts(pattern: str) -> list[Path]:
    """The figure scripts whose file name matches ``pattern``, sorted by name."""
    scripts = sorted(FIGURES.glob("day*.py"))
    return [script for script in scripts if fnmatch.fnmatch(script.name, pattern)]


def run_script(script: Path, out: Path) -> tuple[int, float]:
    """Run one script in a fresh interpreter from the repository root; its status and seconds."""
    start = time.perf_counter()
    # A subprocess per script: one figure's imports or global state cannot leak into the next.
    completed = subprocess.run([sys.executable, str(script), "--out", str(out)], cwd=ROOT, check=False)
    return completed.returncode, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder the PNGs are written to")
    parser.add_argument("--only", default="day*.py", help="shell-style pattern on the script's file name")
    args = parser.parse_args(argv)
    # Patterns such as 'day15' should work without the user typing the '*' and '.py'.
    pattern = args.only if any(ch in args.only for ch in "*?[") else f"*{args.only}*"
    scripts = figure_scripts(pattern)
    if not scripts:
        print(f"no figure script matches {pattern!r} in {FIGURES}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for script in scripts:
        status, seconds = run_script(script, args.out.resolve())
        print(f"{'ok  ' if status == 0 else 'FAIL'} {seconds:6.1f} s  {script.name}", flush=True)
        if status != 0:
            failed.append(script.name)
    if failed:
        print(f"{len(failed)} of {len(scripts)} figure scripts failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"{len(scripts)} figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
