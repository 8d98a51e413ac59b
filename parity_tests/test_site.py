"""The docs site's build hooks (``ml100/site.py``), its link check (``ml100/site_check.py``) and the
parity dashboard's data (``parity_tests/harness/dashboard.py``). The site itself is built with
``mkdocs build --strict`` and opened in Chromium by ``.ci/run``; these tests pin the pieces."""
import json
import logging
import re

import numpy as np
import pytest

from ml100 import site
from ml100.curriculum import DAYS, ROOT, status
from ml100.site_check import dead_links
from parity_tests.harness.dashboard import SCHEMA, Collector, merged
from parity_tests.harness.record import Comparison, listening, record

DAY7_PAGE = site.DOCS / "days" / "day07.md"


def test_inline_and_display_math_become_mathml_outside_code():
    markdown = ("With $x^2$ and\n$$\\frac{a}{b}$$\n`$not math$` and\n```python\ncost = \"$5\"  # $y$\n```\n"
                "it costs $5 and $6, or \\$7.")
    stashed, formulas = site.stash_math(markdown, "test")
    assert len(formulas) == 2
    assert formulas[0].startswith("<math") and 'display="inline"' in formulas[0] and "<msup>" in formulas[0]
    assert 'display="block"' in formulas[1] and "<mfrac>" in formulas[1]
    # Code spans, fences, prices and escaped dollars are left alone.
    assert "`$not math$`" in stashed and 'cost = "$5"  # $y$' in stashed and "$5 and $6" in stashed and "\\$7" in stashed
    assert site.restore_math(stashed, formulas).count("<math") == 2


def test_inline_math_wraps_a_line_but_never_a_blank_line():
    _, formulas = site.stash_math("a $x +\ny$ b", "test")
    assert len(formulas) == 1 and "<mi>y</mi>" in formulas[0]
    _, formulas = site.stash_math("a $x +\n\ny$ b", "test")
    assert formulas == []


def test_unknown_tex_is_a_warning_that_fails_a_strict_build(caplog):
    with caplog.at_level(logging.WARNING, logger="mkdocs.plugins.ml100"):
        site.stash_math("$\\notacommand x$", "days/day99.md")
    assert "days/day99.md" in caplog.text and "\\notacommand" in caplog.text


def test_symbols_latex2mathml_lacks_are_written_as_symbols(caplog):
    with caplog.at_level(logging.WARNING, logger="mkdocs.plugins.ml100"):
        _, formulas = site.stash_math("$\\lfloor x \\rfloor + \\lVert v \\rVert + \\arg\\max$", "test")
    assert caplog.text == "" and "⌊" in formulas[0] and "⌋" in formulas[0] and "&#x02016;" in formulas[0]


def test_links_outside_docs_go_to_source_pages():
    assert site.resolve_link("../../numpy_impl/foundations/mlp.py", DAY7_PAGE) == "code/numpy_impl/foundations/mlp.py.md"
    assert site.resolve_link("../conventions.md", DAY7_PAGE) == "conventions.md"
    assert site.resolve_link("docs/days/day07.md", ROOT / "README.md") == "days/day07.md"
    assert site.resolve_link("../../README.md", DAY7_PAGE) == "index.md"
    assert site.resolve_link("https://pytorch.org", DAY7_PAGE) is None


def test_a_link_to_a_folder_is_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="mkdocs.plugins.ml100"):
        assert site.resolve_link("../../numpy_impl/", DAY7_PAGE) is None
    assert "neither a file nor a page" in caplog.text


def test_rewritten_links_are_relative_to_the_page_and_skip_code():
    markdown = "[NumPy](../../numpy_impl/foundations/mlp.py#L3) and `[x](../../numpy_impl/foundations/mlp.py)`"
    rewritten = site.rewrite_links(markdown, DAY7_PAGE, "days/day07.md")
    assert rewritten.startswith("[NumPy](../code/numpy_impl/foundations/mlp.py.md#L3)")
    assert rewritten.endswith("`[x](../../numpy_impl/foundations/mlp.py)`")


def test_every_linked_file_exists_and_lies_outside_docs():
    linked = site.linked_files()
    assert "numpy_impl/foundations/mlp.py" in linked and "parity_tests/foundations/test_mlp.py" in linked
    assert all((ROOT / path).is_file() and not (ROOT / path).is_relative_to(site.DOCS) for path in linked)


def test_side_by_side_shows_the_three_files_as_they_are():
    day = DAYS[6]
    section = site.side_by_side(day, "days/day07.md")
    assert [label for label in re.findall(r'^=== "([^"]+)"', section, re.M)] == ["NumPy", "PyTorch", "TensorFlow", "What differs"]
    for tree in ("numpy", "torch", "tf"):
        source = (ROOT / f"{tree}_impl/foundations/mlp.py").read_text()
        # Pulled from the file when the site is built: every line of it, indented into its tab.
        assert "\n".join("    " + line if line else line for line in source.rstrip("\n").split("\n")) in section
    assert "--- numpy_impl/foundations/mlp.py\n    +++ torch_impl/foundations/mlp.py" in section
    assert "[`test_mlp.py`](../code/parity_tests/foundations/test_mlp.py.md)" in section


def test_a_neutral_day_and_the_capstone_have_one_tab():
    assert site.twin_files(DAYS[47]) == {"Python": "ml100/bpe.py"}
    assert site.twin_files(DAYS[69]) == {"Python": "examples/capstone_digits.py"}
    assert "What differs" not in site.side_by_side(DAYS[47], "days/day48.md")


def test_the_section_goes_after_three_implementations():
    page = site.insert_side_by_side(DAY7_PAGE.read_text(), DAYS[6], "days/day07.md")
    headings = re.findall(r"^## (.+)$", page, re.M)
    assert headings[headings.index("Three implementations") + 1] == "Side by side { data-search-exclude }"


def test_a_fence_is_longer_than_any_backtick_run_inside():
    assert site.fenced("a ```` b", "text").startswith("`````text\n")


def test_navigation_lists_every_day_page_once():
    pages = [page for entry in site.navigation() for value in entry.values()
             for page in (value if isinstance(value, list) else [value])]
    day_pages = sorted(f"days/{path.name}" for path in (site.DOCS / "days").glob("day*.md"))
    assert sorted(page for page in pages if page.startswith("days/")) == day_pages
    assert len(pages) == len(set(pages))
    assert all((site.DOCS / page).is_file() for page in pages if page not in ("index.md", "parity.md"))


def test_pairs_of_trees_and_references():
    assert site.split_pair("tf vs numpy") == ("numpy", "tf")
    assert site.split_pair("numpy twice vs torch") is None
    assert site.reference_name("torch vs torch.nn") == "torch.nn"
    assert site.reference_name("torch.nn.Sequential vs numpy") == "torch.nn.Sequential"
    assert site.reference_name("ours vs torchmetrics") == "ours vs torchmetrics"


def test_dashboard_tables_take_the_largest_error_and_mark_a_failure():
    rows = [{"pair": "numpy vs torch", "dtype": "float64", "max_rel_err": 2e-16},
            {"pair": "torch vs numpy", "dtype": "float64", "max_rel_err": 5e-16},
            {"pair": "tf vs torch", "dtype": "float64", "max_rel_err": 3e-9},
            {"pair": "numpy vs torch.nn.Sequential", "dtype": "float64", "max_rel_err": 4e-16},
            {"pair": "tf vs torch.nn.Sequential", "dtype": "float32", "max_rel_err": 2e-7}]
    trees, references = site.dashboard_tables({"parity_tests/foundations/test_mlp.py": rows}, {"float64": 1e-9, "float32": 1e-4})
    assert [row for row in trees if row.startswith("| [7]")] == [
        "| [7](days/day07.md) | mlp | 5.0e-16 | – | **3.0e-09 ✗** | – | – | – |"]
    assert [row for row in references if row.startswith("| [7]")] == [
        "| [7](days/day07.md) | mlp | `torch.nn.Sequential` | 4.0e-16 | 2.0e-07 |"]


def test_the_dashboard_page_without_a_test_run(monkeypatch, tmp_path):
    monkeypatch.setattr(site, "PARITY_JSON", tmp_path / "missing.json")
    assert "run `python -m pytest`" in site.dashboard_page()


def test_the_collector_keeps_the_largest_error_per_file_pair_and_dtype():
    collector = Collector()
    collector.files.add("parity_tests/foundations/test_ran_but_compared_nothing.py")
    collector.test = "parity_tests/foundations/test_mlp.py::test_a[float64]"
    with listening(collector):
        record("output", "numpy vs torch", "float64", 1e-16)
        record("grad of x", "numpy vs torch", "float64", 3e-16)
        record("output", "numpy vs torch", "float32", 1e-7)
    record("output", "numpy vs torch", "float64", 1.0)  # after the block: not heard
    files = collector.by_file()
    assert files["parity_tests/foundations/test_ran_but_compared_nothing.py"] == []
    float64 = [row for row in files["parity_tests/foundations/test_mlp.py"] if row["dtype"] == "float64"]
    assert float64 == [{"pair": "numpy vs torch", "dtype": "float64", "max_rel_err": 3e-16, "tensor": "grad of x",
                        "test": "parity_tests/foundations/test_mlp.py::test_a[float64]", "comparisons": 2}]


def test_a_run_replaces_its_files_rows_and_keeps_the_others(tmp_path):
    path = tmp_path / "parity.json"
    path.write_text(json.dumps({"schema": SCHEMA, "files": {"a.py": [{"old": 1}], "b.py": [{"old": 2}]}}))
    data = merged(path, {"b.py": [{"new": 3}]})
    assert data["files"] == {"a.py": [{"old": 1}], "b.py": [{"new": 3}]}
    assert data["tolerances"] == {"float64": 1e-9, "float32": 1e-4, "exact": 0.0}
    path.write_text(json.dumps({"schema": SCHEMA + 1, "files": {"a.py": []}}))
    assert merged(path, {"b.py": []})["files"] == {"b.py": []}


def test_the_comparison_record_is_what_the_tolerance_is_checked_against():
    from parity_tests.harness import compare_tensors
    heard: list[Comparison] = []
    failures: list[str] = []
    with listening(heard.append):
        compare_tensors("output", "numpy vs torch", [1.0, 2.0], [1.0, 2.5], "float64", failures)
    assert heard == [Comparison("output", "numpy vs torch", "float64", 0.2)] and len(failures) == 1


def test_dead_links_and_missing_anchors_are_found(tmp_path):
    (tmp_path / "days").mkdir()
    (tmp_path / "index.html").write_text('<a href="days/a.html#here">a</a> <a href="/days/b.html">b</a> '
                                         '<a href="days/a.html#gone">c</a> <a href="https://example.org">d</a>')
    (tmp_path / "days" / "a.html").write_text('<h2 id="here">x</h2><img src="../missing.png">')
    problems, checked = dead_links(tmp_path)
    assert checked == 4
    assert sorted(problems) == ["days/a.html: dead link ../missing.png", "index.html: dead link /days/b.html",
                                "index.html: link days/a.html#gone: no id 'gone' on days/a.html"]


@pytest.mark.parametrize("day", [day for day, done in status() if done])
def test_every_implemented_day_has_a_page_with_a_place_for_the_code(day):
    page = site.DOCS / "days" / f"day{day.number:02d}.md"
    assert "\n## Three implementations" in page.read_text()


def test_a_formula_in_a_title_reads_as_text_in_the_menu_and_the_toc():
    from types import SimpleNamespace
    markdown = site.on_page_markdown("# The process $q(x_t\\mid x_0)$\n\n## With $\\beta$\n", SimpleNamespace(
        file=SimpleNamespace(src_uri="notes.md")), None, None)
    heading = SimpleNamespace(title="With " + re.search(r"ML100MATH\d+X", markdown.split("\n## ")[1]).group(0), children=[])
    page = SimpleNamespace(file=SimpleNamespace(src_uri="notes.md"), title=markdown.split("\n")[0][2:], toc=[heading])
    html = site.on_page_content("<h1>" + page.title + "</h1>", page, None, None)
    assert page.title == "The process q(xt∣x0)" and heading.title == "With β"
    assert html.startswith("<h1>The process <math") and "ML100MATH" not in html


def test_the_controller_adds_up_the_workers_rows():
    """Under pytest-xdist each worker sends its rows; one (file, pair, dtype) seen by two workers keeps
    the larger error, where it was seen, and the sum of the counts."""
    row = {"pair": "numpy vs torch", "dtype": "float64", "tensor": "output", "test": "t.py::a"}
    controller = Collector()
    controller.absorb({"t.py": [{**row, "max_rel_err": 1e-16, "comparisons": 3}], "u.py": []})
    controller.absorb({"t.py": [{**row, "max_rel_err": 4e-16, "tensor": "grad of x", "test": "t.py::b", "comparisons": 2}]})
    assert controller.by_file() == {"t.py": [{**row, "max_rel_err": 4e-16, "tensor": "grad of x", "test": "t.py::b",
                                              "comparisons": 5}], "u.py": []}


def test_exact_comparisons_are_recorded_as_the_share_that_differs():
    from parity_tests.harness import compare_exact
    heard: list[Comparison] = []
    with listening(heard.append):
        compare_exact("ids", "numpy vs torch", np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4]), [])
        compare_exact("ids", "numpy vs tf", np.array([1, 2]), np.array([1, 2]), [])
        compare_exact("ids", "torch vs tf", np.array([1, 2]), np.array([1, 2], dtype=np.int32), [])
        compare_exact("ids", "tf vs numpy", np.zeros((0,), np.int64), np.zeros((0,), np.int64), [])
    assert [(c.dtype, c.rel_err) for c in heard] == [("exact", 0.25), ("exact", 0.0), ("exact", 1.0), ("exact", 0.0)]


def test_the_dashboard_says_equal_or_the_share_that_differs():
    rows = [{"pair": "numpy vs torch", "dtype": "exact", "max_rel_err": 0.0},
            {"pair": "torch vs tf", "dtype": "exact", "max_rel_err": 0.5},
            {"pair": "ours vs tokenizers", "dtype": "exact", "max_rel_err": 0.0}]
    trees, references = site.dashboard_tables({"parity_tests/modern/test_nms.py": rows}, {"float64": 1e-9, "exact": 0.0})
    assert [row for row in trees if row.startswith("| [59]")] == ["| [59](days/day59.md) | nms | – | – | – | equal | – | **50% differ ✗** |"]
    assert [row for row in references if row.startswith("| [59]")] == ["| [59](days/day59.md) | nms | `ours vs tokenizers` | – | equal |"]
