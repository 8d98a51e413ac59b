"""``ml100 exercise``: skeletons generated for every built day and backend, graded by the parity harness.

The grading tests run ``ml100 exercise check`` on day 6 (the dense layer, the smallest day with a
hand-written backward): each is one pytest subprocess (the frameworks' import dominates its time).
"""
import ast
import importlib
import importlib.util
import sys

import pytest

from ml100.backends import BACKENDS
from ml100.cli import main
from ml100.curriculum import DAYS, status
from ml100.exercise import (KEPT_FUNCTIONS, days_label, exercise_path, find_day, has_docstring,
                            module_name, skeleton, source_path)

BUILT = [(day, backend) for day, implemented in status() if implemented and day.module
         for backend in (["numpy"] if day.neutral else list(BACKENDS))]


def day_backend_id(pair) -> str:
    day, backend = pair
    return f"day{day.number:02d}-{backend}"


def functions_by_name(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """Every function and method at module or class level, by qualified name, constructors included."""
    found = {}

    def visit(body, prefix):
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[f"{prefix}{node.name}"] = node

    visit(tree.body, "")
    return found


def import_beside(day, backend, path):
    """Execute the skeleton at ``path`` as a sibling of the tree's module (same package, so its
    relative imports resolve; another name, so the tree's own module is untouched)."""
    parent, _, leaf = module_name(day, backend).rpartition(".")
    importlib.import_module(parent)
    name = f"{parent}._skeleton_of_{leaf}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@pytest.mark.parametrize("pair", BUILT, ids=day_backend_id)
def test_every_built_day_has_a_skeleton_that_keeps_the_structure_and_blanks_every_body(pair, tmp_path):
    """Same imports, constants, classes, signatures, decorators and docstrings as the tree's file;
    ``__init__`` as it was; every other body ``raise NotImplementedError("<qualname>: write this (day N)")``;
    and the skeleton imports, with the tree module's public names."""
    day, backend = pair
    source = source_path(day, backend).read_text()
    original, blank = ast.parse(source), ast.parse(skeleton(source, days_label(day)))
    # Module level: everything but the functions is unchanged (imports, constants, class headers).
    assert [ast.dump(node) for node in original.body if not isinstance(node, (ast.FunctionDef, ast.ClassDef))] == \
           [ast.dump(node) for node in blank.body if not isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    before, after = functions_by_name(original), functions_by_name(blank)
    assert list(before) == list(after)
    for qualname, node in after.items():
        old = before[qualname]
        assert ast.dump(node.args) == ast.dump(old.args) and [ast.dump(d) for d in node.decorator_list] == \
               [ast.dump(d) for d in old.decorator_list], qualname
        assert ast.get_docstring(node) == ast.get_docstring(old), qualname
        if qualname.rpartition(".")[2] in KEPT_FUNCTIONS and "." in qualname:
            assert ast.dump(node) == ast.dump(old), f"{qualname} is kept as written"
            continue
        statements = node.body[1:] if has_docstring(node) else node.body
        assert len(statements) == 1, f"{qualname} keeps statements besides the raise"
        assert ast.unparse(statements[0]) == \
               f"raise NotImplementedError('{qualname}: write this ({days_label(day)})')", qualname
    path = tmp_path / "skeleton.py"
    path.write_text(skeleton(source, days_label(day)))
    tree_module = importlib.import_module(module_name(day, backend))
    module = import_beside(day, backend, path)
    public = {name for name in vars(tree_module) if not name.startswith("_")}
    assert public <= set(vars(module)), f"missing from the skeleton: {sorted(public - set(vars(module)))}"


def test_skeleton_keeps_comments_as_an_outline_and_handles_one_line_functions():
    source = '''"""A module."""
import math

SCALE = 2.0  # a constant stays


class Layer:
    """A layer."""

    size = 3

    def __init__(self, n):
        # The constructor stays whole.
        self.n = n

    @property
    def width(self):
        """The width."""
        # Why: twice the size.
        w = self.n * SCALE  # (N,)
        return w  # noqa: RET504


def one_line(x): return math.sqrt(x)


def documented_only():
    """Nothing to write."""
'''
    assert skeleton(source, "day 1") == '''"""A module."""
import math

SCALE = 2.0  # a constant stays


class Layer:
    """A layer."""

    size = 3

    def __init__(self, n):
        # The constructor stays whole.
        self.n = n

    @property
    def width(self):
        """The width."""
        # Why: twice the size.
        # w: (N,)
        raise NotImplementedError("Layer.width: write this (day 1)")


def one_line(x): raise NotImplementedError("one_line: write this (day 1)")


def documented_only():
    """Nothing to write."""
'''


def test_a_module_of_several_days_names_them_all():
    assert days_label(find_day(9)) == "days 9-10"
    assert days_label(find_day(6)) == "day 6"


def test_the_skeleton_sits_at_the_tree_path_under_the_exercise_folder(tmp_path):
    assert exercise_path(find_day(6), "tf", tmp_path) == tmp_path / "tf_impl" / "foundations" / "linear.py"
    neutral = next(day for day, implemented in status() if implemented and day.neutral)
    assert exercise_path(neutral, "torch", tmp_path) == tmp_path / "ml100" / f"{neutral.module}.py"


# --- refusals ---------------------------------------------------------------------------------


def refused(argv, capsys) -> str:
    """Run the command, expect a refusal (a non-zero exit), return its one message."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code != 0
    return str(stop.value.code) if isinstance(stop.value.code, str) else capsys.readouterr().err


@pytest.mark.parametrize("day, message", [
    (0, "unknown day 0: the curriculum has days 1 to 100"),
    (101, "unknown day 101: the curriculum has days 1 to 100"),
    (70, "day 70 (Capstone: MLP vs CNN vs ViT vs Mixer on digits — accuracy, parameters, speed) is a capstone"),
])
def test_start_refuses_days_without_an_exercise(day, message, tmp_path, capsys):
    assert message in refused(["exercise", "start", str(day), "--backend", "numpy", "--dir", str(tmp_path)], capsys)


def test_start_refuses_a_day_not_built_yet(tmp_path, capsys, monkeypatch):
    # Day 6 made "not built" so the test does not depend on which days exist today.
    monkeypatch.setattr("ml100.exercise.status", lambda: [(day, day.number != 6) for day in DAYS])
    message = refused(["exercise", "start", "6", "--backend", "numpy", "--dir", str(tmp_path)], capsys)
    assert "day 6 (foundations/linear.py) is not built yet" in message


def test_an_unknown_backend_is_refused_with_the_choices(tmp_path, capsys):
    message = refused(["exercise", "start", "6", "--backend", "jax", "--dir", str(tmp_path)], capsys)
    assert "invalid choice: 'jax' (choose from 'numpy', 'torch', 'tf')" in message


def test_start_refuses_to_overwrite_without_force(tmp_path, capsys):
    argv = ["exercise", "start", "6", "--backend", "torch", "--dir", str(tmp_path)]
    assert main(argv) == 0
    path = tmp_path / "torch_impl" / "foundations" / "linear.py"
    assert "Linear.forward" in capsys.readouterr().out
    path.write_text("# my work\n")
    assert "already exists (your work?)" in refused(argv, capsys)
    assert path.read_text() == "# my work\n"
    assert main([*argv, "--force"]) == 0
    assert 'raise NotImplementedError("Linear.forward: write this (day 6)")' in path.read_text()


def test_check_refuses_a_missing_skeleton_a_syntax_error_and_force(tmp_path, capsys):
    argv = ["exercise", "check", "6", "--backend", "numpy", "--dir", str(tmp_path)]
    assert f"no exercise at {tmp_path}/numpy_impl/foundations/linear.py: write one first with " \
           f"`ml100 exercise start 6 --backend numpy --dir {tmp_path}`" in refused(argv, capsys)
    path = tmp_path / "numpy_impl" / "foundations" / "linear.py"
    path.parent.mkdir(parents=True)
    path.write_text("def forward(x:\n")
    assert f"{path} line 1: " in refused(argv, capsys)
    assert "--force is for `start`" in refused([*argv, "--force"], capsys)


# --- grading (one pytest subprocess each) ------------------------------------------------------


def grade(tmp_path, capsys, edit=None) -> tuple[int, list[str]]:
    """Day 6 in NumPy: the tree's own file (``edit``-ed) or, with ``edit=None``, the untouched
    skeleton, checked; returns the exit code and the table's rows."""
    argv = ["--backend", "numpy", "--dir", str(tmp_path)]
    if edit is None:
        assert main(["exercise", "start", "6", *argv]) == 0
    else:
        path = exercise_path(find_day(6), "numpy", tmp_path)
        path.parent.mkdir(parents=True)
        path.write_text(edit(source_path(find_day(6), "numpy").read_text()))
    capsys.readouterr()
    tree_file = source_path(find_day(6), "numpy").read_bytes()
    code = main(["exercise", "check", "6", *argv])
    rows = capsys.readouterr().out.splitlines()
    assert source_path(find_day(6), "numpy").read_bytes() == tree_file, "check must never write the tree's file"
    assert rows[0] == f"day 6, numpy: {tmp_path}/numpy_impl/foundations/linear.py"
    return code, rows[1:]


def parity_row(rows: list[str]) -> tuple[str, str]:
    """The float64 parity check's line and the line under it (a failure's message)."""
    index = next(i for i, row in enumerate(rows) if row.endswith("test_linear.py::test_linear_parity[float64]"))
    return rows[index], rows[index + 1]


def test_the_untouched_skeleton_fails_naming_the_function_to_write(tmp_path, capsys):
    code, rows = grade(tmp_path, capsys)
    assert code == 1
    passed, _, total = rows[-1].removesuffix(" checks passed").partition(" of ")
    assert 0 < int(passed) < int(total)
    assert parity_row(rows) == ("FAIL  test_linear.py::test_linear_parity[float64]",
                                "      NotImplementedError: Linear.forward: write this (day 6)")
    # The constructor was kept: argument checks pass; the other trees' parametrizations are not run.
    assert any(row.startswith("PASS  test_linear.py::test_bad_constructor_arguments_raise_one_clear_error") for row in rows)
    assert not any("-torch]" in row or "-tf]" in row for row in rows)


def test_the_trees_own_file_passes(tmp_path, capsys):
    code, rows = grade(tmp_path, capsys, edit=lambda source: source)
    assert code == 0, "\n".join(rows)
    assert all(row.startswith("PASS") for row in rows[:-1])
    assert rows[-1] == f"{len(rows) - 1} of {len(rows) - 1} checks passed"


def reshaped_weight(source: str) -> str:
    """The classic slip: ``W.reshape(in, out)`` where ``W.T`` was meant — the right shape, the wrong numbers."""
    line = 'y = x @ self.params["weight"].T  # (..., out)'
    assert line in source
    return source.replace(line, 'y = x @ self.params["weight"].reshape(self.in_features, self.out_features)  # (..., out)')


def missing_bias_gradient(source: str) -> str:
    lines = '        if "bias" in self.params:\n            self.grads["bias"] += g_rows.sum(axis=0)  # (out,)\n'
    assert lines in source
    return source.replace(lines, "")


@pytest.mark.parametrize("bug, tensor", [(reshaped_weight, "output[0] [numpy vs torch]"),
                                         (missing_bias_gradient, "grad of bias [numpy vs torch]")])
def test_a_planted_bug_is_caught_and_its_tensor_named(bug, tensor, tmp_path, capsys):
    code, rows = grade(tmp_path, capsys, edit=bug)
    assert code == 1
    result, message = parity_row(rows)
    assert result.startswith("FAIL") and message.startswith(f"      {tensor}: max abs err ") and "max rel err" in message, message



def test_a_file_that_fails_to_import_is_refused_with_its_error(tmp_path, capsys):
    path = exercise_path(find_day(6), "torch", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('raise RuntimeError("unfinished")\n')
    message = refused(["exercise", "check", "6", "--backend", "torch", "--dir", str(tmp_path)], capsys)
    assert message == (f"ml100 exercise check: the tests could not run with {path}:\n"
                       f"ERROR: {path.resolve()} could not be imported as torch_impl.foundations.linear: RuntimeError: unfinished")
