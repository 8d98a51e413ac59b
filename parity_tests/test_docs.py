"""The docs stay navigable as they grow: every relative link lands on a file (and, with ``#anchor``,
on a heading), every test the docs cite by name exists, and every day page has the section that
``docs/conventions.md`` points to for that day's framework differences."""
import ast
import fnmatch
import os
import re
from pathlib import Path

import pytest

from ml100.curriculum import status

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted(ROOT.glob("docs/**/*.md")) + [ROOT / "README.md"]
DAY_PAGES = sorted(ROOT.glob("docs/days/day[0-9][0-9].md"))
#: The days built so far (their module in all three trees); each must have a page.
BUILT_DAYS = [day.number for day, implemented in status() if implemented]
DIFFERENCES_HEADING = "## Framework differences"
DIFFERENCES_ANCHOR = "framework-differences"

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
# [text](target) and ![alt](target); the text may hold brackets one level deep.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
# A test cited in backticks: `test_name`, `test_name[param-id]` or a glob such as `test_count_*`.
CITED_TEST = re.compile(r"`(test_[A-Za-z0-9_*]+)(?:\[[^`\]]*\])?`")


def without_code(text: str) -> str:
    """Markdown with fenced blocks dropped and inline code spans blanked: a ``[x](y)`` inside code
    is not a link. A span becomes the word ``code`` so a link whose text is code still parses."""
    return INLINE_CODE.sub("code", FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: the rendered text (link targets, emphasis and code
    marks dropped), lower-cased, punctuation other than ``-`` and ``_`` removed, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[*`]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file; repeats get ``-1``, ``-2``, … as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = github_slug(heading)
        result.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return result


def relative_links(markdown: str) -> list[str]:
    """Link targets that point inside the repository: no scheme (``https:``, ``mailto:``), not absolute."""
    targets = LINK.findall(without_code(markdown))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not t.startswith("/")]


def defined_functions() -> set[str]:
    """Names of every function (module level, nested or method) defined in ``parity_tests/``."""
    names = set()
    for source in ROOT.glob("parity_tests/**/*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        names.update(node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return names


def test_slugs_and_links_are_read_as_github_reads_them():
    """The helpers themselves, on known cases: GitHub's anchors, and links outside code only."""
    assert github_slug("Framework differences") == "framework-differences"
    assert github_slug("Names, dtypes, randomness") == "names-dtypes-randomness"
    assert github_slug("Day 13: batch normalization") == "day-13-batch-normalization"
    assert github_slug("Where each day's differences live") == "where-each-days-differences-live"
    assert github_slug("The `Module` contract (NumPy)") == "the-module-contract-numpy"
    assert github_slug("Day 1 — Linear regression") == "day-1--linear-regression"
    text = "see [a](b.md#c), `[no](code.md)`, [`x.py`](x.py), [w](https://x.org) and ![i](img.png)"
    assert relative_links(text) == ["b.md#c", "x.py", "img.png"]


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    """Each relative link names an existing file or folder; an ``#anchor`` into a Markdown file
    (or ``#anchor`` alone, into this file) names one of its headings."""
    broken = []
    for target in relative_links(doc.read_text(encoding="utf-8")):
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc.resolve()
        if not linked.exists():
            broken.append(f"{target}: no such file or folder")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with anchor #{anchor} in {os.path.relpath(linked, ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)} has broken links:\n  " + "\n  ".join(broken)


def test_cited_tests_exist():
    """`test_x` (also `test_x[id]`, or a glob `test_x_*`) in any doc is a function in parity_tests/."""
    defined = defined_functions()
    missing = []
    for doc in DOC_FILES:
        for cited in sorted(set(CITED_TEST.findall(doc.read_text(encoding="utf-8")))):
            if not fnmatch.filter(defined, cited):
                missing.append(f"{doc.relative_to(ROOT)}: `{cited}`")
    assert not missing, "docs cite tests that do not exist:\n  " + "\n  ".join(missing)


def test_every_day_page_has_its_framework_differences_section():
    """Every built day has a page; each page has the section and conventions.md links to it."""
    missing_pages = [day for day in BUILT_DAYS if not (ROOT / f"docs/days/day{day:02d}.md").exists()]
    assert not missing_pages, f"no day page for days {missing_pages}"
    conventions = (ROOT / "docs/conventions.md").read_text(encoding="utf-8")
    problems = []
    for page in DAY_PAGES:
        lines = FENCE.sub("", page.read_text(encoding="utf-8")).splitlines()
        if lines.count(DIFFERENCES_HEADING) != 1:
            problems.append(f"{page.name}: expected one '{DIFFERENCES_HEADING}' heading, found {lines.count(DIFFERENCES_HEADING)}")
        if f"(days/{page.name}#{DIFFERENCES_ANCHOR})" not in conventions:
            problems.append(f"conventions.md does not link days/{page.name}#{DIFFERENCES_ANCHOR}")
    assert not problems, "\n".join(problems)


#: Every figure is drawn by ``figures/dayNN_<name>.py`` into ``docs/days/img/dayNN_<name>.png``
#: (``figures/README.md``): the script and the image share a name.
FIGURE_SCRIPTS = sorted(ROOT.glob("figures/day*.py"))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")


def referenced_images() -> dict[Path, list[str]]:
    """Each image a doc links to (resolved path) and the docs that show it."""
    shown: dict[Path, list[str]] = {}
    for doc in DOC_FILES:
        for target in relative_links(doc.read_text(encoding="utf-8")):
            path = (doc.parent / target.partition("#")[0]).resolve()
            if path.suffix.lower() in IMAGE_SUFFIXES:
                shown.setdefault(path, []).append(str(doc.relative_to(ROOT)))
    return shown


def test_every_image_on_a_page_has_its_figure_script():
    """An image a page shows exists and is regenerated by the figure script of the same name."""
    scripts = {script.stem for script in FIGURE_SCRIPTS}
    problems = []
    for image, docs in sorted(referenced_images().items()):
        where = os.path.relpath(image, ROOT)
        if not image.exists():
            problems.append(f"{where} (shown by {', '.join(docs)}) does not exist")
        if image.stem not in scripts:
            problems.append(f"{where} (shown by {', '.join(docs)}) has no figures/{image.stem}.py to draw it")
    assert not problems, "images without their figure script:\n  " + "\n  ".join(problems)


def test_every_figure_script_is_shown_on_a_page():
    """Each ``figures/dayNN_<name>.py`` draws an image that some page shows (no orphan figures)."""
    shown = {image.stem for image in referenced_images()}
    orphans = [f"figures/{script.name}" for script in FIGURE_SCRIPTS if script.stem not in shown]
    assert not orphans, "figure scripts whose image no page shows:\n  " + "\n  ".join(orphans)


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_control_characters(doc):
    """A TeX command written through a Python string loses its backslash (``"\\frac"`` is a form feed
    and "rac"): the page then shows garbage and the notebook build refuses it."""
    for number, line in enumerate(doc.read_text().split("\n"), 1):
        bad = [f"U+{ord(char):04X} at column {column}" for column, char in enumerate(line, 1) if ord(char) < 32 and char != "\t"]
        assert not bad, f"{doc.relative_to(ROOT)} line {number}: control character(s) {', '.join(bad)}"
