"""``ml100 notebooks`` (docs/notebooks.md): the day notebooks built from the day pages, the test ids
they run, the agreement table, refusals, and one notebook executed end to end in a kernel.

The build's own collection is a pytest subprocess that imports torch and TF again (~10 s); here it is
replaced by a collection inside this session (``collect_here``), so the suite pays for one kernel.
"""
import ast
import re
import sys

import nbformat
import pytest

from ml100 import notebooks
from ml100.cli import main
from ml100.curriculum import DAYS, ROOT
from ml100.notebooks import (EXACT_DAYS, NotebookError, agreement, build_notebooks, built_notebooks, choose, implemented_days,
                             run_notebooks, summarize)
from parity_tests.harness.record import Comparison

#: The MLP (a day with a NumPy backward) and BPE (a neutral day compared exactly).
DAYS_BUILT = (7, 48)


class Collected:
    """A pytest plugin keeping the ids a collection found."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def pytest_collection_finish(self, session) -> None:
        self.ids = [item.nodeid for item in session.items]


def collect_here(paths) -> list[str]:
    """:func:`ml100.notebooks.collect` without its subprocess: collected in this process."""
    collected = Collected()
    code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:unraisableexception", "--parity-json=",
                        *(str(path) for path in paths)], plugins=[collected])
    assert code == pytest.ExitCode.OK
    return collected.ids


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Days 7 and 48's notebooks in a fresh folder, and every id their test files hold."""
    out = tmp_path_factory.mktemp("notebooks")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(notebooks, "collect", collect_here)
        paths = build_notebooks(DAYS_BUILT, out)
    ids = collect_here(path for number in DAYS_BUILT for path in notebooks.day_tests(DAYS[number - 1]))
    return out, paths, ids


def cells(path, kind: str) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == kind]


def test_one_valid_notebook_per_day_named_by_its_module(built):
    out, paths, _ = built
    assert [path.name for path in paths] == ["day07_mlp.ipynb", "day48_bpe.ipynb"]
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert notebook.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("index, number", list(enumerate(DAYS_BUILT)))
def test_the_page_is_markdown_headings_math_and_excerpts(built, index, number):
    page = (ROOT / "docs" / "days" / f"day{number:02d}.md").read_text()
    markdown = "\n".join(cells(built[1][index], "markdown"))
    headings = re.findall(r"^#+ .+$", page, flags=re.MULTILINE)
    assert headings and all(heading in markdown for heading in headings)
    for formula in re.findall(r"\$\$.+?\$\$", page, flags=re.DOTALL):
        assert formula in markdown
    # The page's ```python excerpts are not runnable alone: they stay Markdown, never code cells.
    excerpts = re.findall(r"```python\n(.+?)```", page, flags=re.DOTALL)
    code = "\n".join(cells(built[1][index], "code"))
    assert all(excerpt in markdown and excerpt not in code for excerpt in excerpts)


def test_relative_links_resolve_from_the_notebooks_folder(built):
    out, paths, _ = built
    # Links outside the code excerpts (``self.layers[-1](h)`` is not one).
    markdown = re.sub(r"```.+?```", "", "\n".join(cells(paths[0], "markdown")), flags=re.DOTALL)
    targets = [target.partition("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", markdown)]
    relative = [target for target in targets if target and "://" not in target]
    assert "../" in "".join(relative), relative
    # Links into the code and docs, from the notebook's folder (day 7's page links the three trees).
    missing = [target for target in relative if not (out / target).exists() and not target.endswith(".ipynb")]
    assert not missing
    assert any(target.endswith("numpy_impl/foundations/mlp.py") for target in relative)


def test_code_cells_run_existing_tests_of_the_day(built):
    _, paths, ids = built
    for number, path in zip(DAYS_BUILT, paths):
        code = cells(path, "code")
        assert f"sources({number})" in code[0]
        call = ast.parse(code[1]).body[0].value
        assert call.func.id == "agreement"
        named = [argument.value for argument in call.args]
        assert 1 <= len(named) <= notebooks.TESTS_PER_DAY and set(named) <= set(ids), named
        exact = {keyword.arg: keyword.value.value for keyword in call.keywords}.get("exact")
        assert exact == EXACT_DAYS.get(number)


def test_choice_prefers_the_days_topic_parity_and_float64():
    ids = ["parity_tests/foundations/test_linear_regression.py::test_linear_regression_parity[float32]",
           "parity_tests/foundations/test_linear_regression.py::test_linear_regression_parity[float64]",
           "parity_tests/foundations/test_linear_regression.py::test_linear_regression_gradcheck",
           "parity_tests/foundations/test_linear_regression.py::test_polynomial_features_match_sklearn[2-3-float64]",
           "parity_tests/foundations/test_linear_regression.py::test_bad_input_gives_clear_errors[numpy]",
           "parity_tests/modern/test_mlp_mixer.py::test_parity[float64]"]
    # Day 1 (linear regression) and day 2 (polynomial features) share a module and lead with their own tests.
    assert choose(DAYS[0], ids) == [ids[1], ids[3]]
    assert choose(DAYS[1], ids) == [ids[3], ids[1]]
    # Refusals, the NumPy-only gradcheck and other days' files are never picked.
    assert choose(DAYS[0], [ids[2], ids[4], ids[5]]) == []


@pytest.mark.parametrize("days, message", [
    ([101], "unknown day 101: the curriculum has days 1 to 100"),
    ([0], "unknown day 0"),
    ([100], "day 100 (Capstone: debug a broken network with the toolkit) is not built yet"),
    ([7, 7], "day 7 is given 2 times: name each day once"),
    ([], "no days given"),
])
def test_bad_days_are_refused_by_number(days, message):
    with pytest.raises(NotebookError, match=re.escape(message)):
        implemented_days(days)


@pytest.mark.parametrize("argv, message", [
    (["notebooks", "build", "--days", "7", "101"], "ml100 notebooks build: unknown day 101"),
    (["notebooks", "run", "--out", "{tmp}/nothing"], "no day notebooks in {tmp}/nothing: build them first"),
    (["notebooks", "build", "--days", "7", "--out", "{tmp}/a_file"], "--out {tmp}/a_file is a file, not a folder"),
])
def test_the_command_refuses_before_any_work(argv, message, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as stop:
        main([arg.format(tmp=tmp_path) for arg in argv])
    assert message.format(tmp=tmp_path) in str(stop.value.code)
    assert not (tmp_path / "nothing").exists()


def test_days_with_run_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["notebooks", "run", "--days", "7"])
    assert stop.value.code == 2
    assert "--days is for `build`" in capsys.readouterr().err


def test_a_control_character_in_a_page_is_named(tmp_path, monkeypatch):
    page = tmp_path / "day07.md"
    # "\beta" written through a Python string: a backspace, then "eta".
    page.write_text("# Day 7\n\n$\beta_1$\n")
    monkeypatch.setattr(notebooks, "page_path", lambda day: page)
    monkeypatch.setattr(notebooks, "ROOT", tmp_path)
    with pytest.raises(NotebookError, match="day07.md line 3 holds the control character U[+]0008 at column 2"):
        build_notebooks([7], tmp_path / "out")


def test_the_table_keeps_each_pairs_largest_error_and_marks_a_failure():
    observed = [("t.py::a", Comparison("output", "numpy vs torch", "float64", 1e-16)),
                ("t.py::a", Comparison("grad of w", "numpy vs torch", "float64", 3e-15)),
                ("t.py::b", Comparison("grad of x", "numpy vs torch", "float64", 2e-16)),
                ("t.py::b", Comparison("grad of b|c", "numpy vs tf", "float64", 5e-9)),
                ("t.py::b", Comparison("output", "numpy vs tf", "float32", 5e-5))]
    table = summarize(observed, {"t.py::a": "passed", "t.py::b": "passed"})
    rows = {(row.pair, row.dtype): row for row in table.rows}
    assert list(rows) == [("numpy vs torch", "float64"), ("numpy vs tf", "float64"), ("numpy vs tf", "float32")]
    torch = rows["numpy vs torch", "float64"]
    assert (torch.max_rel_err, torch.tensor, torch.test) == (3e-15, "grad of w", "t.py::a")
    assert (torch.comparisons, torch.tolerance) == (3, 1e-9)
    assert torch.passed and rows["numpy vs tf", "float32"].passed
    assert not rows["numpy vs tf", "float64"].passed and not table.passed
    assert table.counts == {"t.py::a": 2, "t.py::b": 3}
    markdown = table._repr_markdown_()
    assert "| numpy vs tf | float64 | 5.00e-09 | 1e-09 | FAIL | grad of b\\|c |" in markdown
    assert "- `t.py::b`: passed, 3 comparisons" in markdown
    text = str(table)
    assert text.splitlines()[0].split() == ["pair", "dtype", "max", "rel", "err", "tolerance", "result", "tensor", "test",
                                            "comparisons"]
    assert "FAIL" in text and repr(table) == text


def test_a_failed_test_fails_the_table():
    table = summarize([], {"t.py::a": "failed"}, exact="integers, compared exactly")
    assert not table.passed
    assert "Compared without a tolerance: integers, compared exactly." in str(table)


def test_agreement_runs_tests_here_and_refuses_when_nothing_was_compared():
    mlp = "parity_tests/foundations/test_mlp.py::"
    table = agreement(mlp + "test_mlp_parity[relu-ReLU-float64]")
    pairs = {row.pair for row in table.rows}
    assert {"numpy vs torch", "numpy vs tf", "torch vs tf"} <= pairs
    assert table.passed and all(row.dtype == "float64" and row.max_rel_err < 1e-12 for row in table.rows)
    with pytest.raises(NotebookError, match="compared no float tensors"):
        agreement(mlp + "test_mlp_canonical_names_and_shapes")
    with pytest.raises(NotebookError, match="pytest could not run"):
        agreement(mlp + "test_no_such_test")


def test_agreement_refuses_a_process_that_imported_tf_before_torch_dynamo(monkeypatch):
    """As a kernel would be where TF came first: the harness is not imported (it would segfault)."""
    monkeypatch.delitem(sys.modules, "parity_tests.conftest")
    monkeypatch.delitem(sys.modules, "torch._dynamo")
    with pytest.raises(NotebookError, match="TensorFlow was imported in this process before torch._dynamo"):
        agreement("parity_tests/foundations/test_mlp.py::test_mlp_parity[relu-ReLU-float64]")


def test_one_notebook_runs_end_to_end_in_a_kernel(built):
    """Day 7's notebook in a fresh kernel (which imports torch and TF itself: the ~8 s of this file)."""
    out, paths, _ = built
    assert built_notebooks(out) == paths
    (path, seconds), = run_notebooks(paths[:1], say=lambda line: None)
    table = nbformat.read(path, as_version=4).cells[-1].outputs[-1]
    assert table.output_type == "execute_result"
    assert "| numpy vs torch | float64 |" in table.data["text/markdown"]
    assert seconds > 0
