"""The docs site's build hooks (``mkdocs.yml``: ``hooks: [ml100/site.py]``): what MkDocs cannot know
about this repository, added at build time from the repository itself, never from copies.

- **Side by side.** Each day page gets a section with the day's three implementations in tabs
  (NumPy · PyTorch · TensorFlow, read from the trees when the site is built) and a tab "What
  differs" with the line diffs between the twins, then links to the day's tests.
- **Source pages.** A link from a page to a file outside ``docs/`` (a module, a test, an example)
  becomes a link to a generated page that shows that file, so the site has no dead links and the
  Markdown files still work on their own (their links are relative paths in the repository).
- **Math.** ``$...$`` and ``$$...$$`` become MathML at build time (``latex2mathml``): the pages
  need no JavaScript and no network to show an equation. TeX the converter cannot read fails the
  strict build.
- **Generated pages.** The home page is the README; "Parity dashboard" renders
  ``build/parity.json``, which the test run writes (``parity_tests/harness/dashboard.py``); the
  navigation follows the curriculum.
"""
from __future__ import annotations

import difflib
import html
import json
import logging
import posixpath
import re
from pathlib import Path

from latex2mathml.converter import convert as latex_to_mathml
from mkdocs.structure.files import File

# Absolute imports: MkDocs loads a hook file by its path, not as a module of the package.
from ml100.backends import BACKENDS
from ml100.curriculum import DAYS, ROOT, Day, status
from ml100.exercise import DEFAULT_DIR, command
from ml100.notebooks import day_tests, notebook_name, sources

log = logging.getLogger("mkdocs.plugins.ml100")

DOCS = ROOT / "docs"
#: Generated pages that show a repository file live at ``code/<path in the repository>.md``.
CODE_DIR = "code"
PARITY_JSON = ROOT / "build" / "parity.json"
TREE_LABELS = {"numpy": "NumPy", "torch": "PyTorch", "tf": "TensorFlow"}
PHASE_TITLES = {"foundations": "Phase 1 · Foundations", "generative": "Phase 2 · Sequences and generative models",
                "modern": "Phase 3 · Modern architectures"}
#: Languages for the code fences of source pages, by suffix; any other file shows as plain text.
LANGUAGES = {".py": "python", ".md": "markdown", ".toml": "toml", ".yml": "yaml", ".yaml": "yaml", ".json": "json",
             ".sh": "bash", ".txt": "text"}

# Fenced code blocks and inline code spans: never searched for math or rewritten.
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[^\n]*\n.*?^(?P=indent)(?P=fence)[ \t]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
# $$display$$ first, then $inline$: no space inside the dollars, no digit right after the closing
# one (so "$5 and $6" is not math), and an escaped \$ is never a delimiter. Inline math may wrap
# onto the next line of its paragraph, never across a blank line.
_MATH = re.compile(r"\$\$(?P<display>.+?)\$\$|(?<![\\$\w])\$(?=[^\s$])(?P<inline>(?:[^$\n]|\n(?![ \t]*\n))+?)(?<![\s\\])\$(?![\w$])",
                   re.S)
# Markdown links and images with a relative target: ](target) or ](target "title").
_LINK = re.compile(r"(?P<head>\]\()(?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?(?P<tail>(?:\s+\"[^\"]*\")?\))")
_PLACEHOLDER = "ML100MATH{}X"
_PLACEHOLDERS = re.compile(r"ML100MATH(\d+)X")
# What latex2mathml leaves as a literal command is written as the symbol it means.
_TEX_SYMBOLS = {r"\lfloor": "⌊", r"\rfloor": "⌋", r"\lVert": r"\|", r"\rVert": r"\|", r"\arg": r"\operatorname{arg}"}


# -- outside code --------------------------------------------------------------------------------

def outside_code(markdown: str, rewrite) -> str:
    """``markdown`` with ``rewrite`` applied to every stretch that is neither a fenced block nor an
    inline code span."""
    def prose(text: str) -> str:
        pieces, last = [], 0
        for span in _INLINE_CODE.finditer(text):
            pieces += [rewrite(text[last:span.start()]), span.group(0)]
            last = span.end()
        return "".join(pieces + [rewrite(text[last:])])

    pieces, last = [], 0
    for fence in _FENCE.finditer(markdown):
        pieces += [prose(markdown[last:fence.start()]), fence.group(0)]
        last = fence.end()
    return "".join(pieces + [prose(markdown[last:])])


# -- math ----------------------------------------------------------------------------------------

def to_mathml(tex: str, display: bool, where: str) -> str:
    """One formula as MathML; an unreadable one is logged as a warning, which fails ``--strict``."""
    for tex_command, symbol in _TEX_SYMBOLS.items():
        tex = re.sub(re.escape(tex_command) + r"(?![A-Za-z])", lambda _: symbol, tex)
    try:
        mathml = latex_to_mathml(tex.strip(), display="block" if display else "inline")
    except Exception as error:  # noqa: BLE001 - the converter raises many types; all mean "cannot read"
        log.warning(f"{where}: cannot convert ${tex}$ to MathML: {error}")
        return f"<code>{tex}</code>"
    left_over = re.findall(r">(\\[A-Za-z]+)<", mathml)
    if left_over:
        log.warning(f"{where}: ${tex}$: latex2mathml does not know {', '.join(sorted(set(left_over)))}")
    return mathml


def stash_math(markdown: str, where: str) -> tuple[str, list[str]]:
    """Formulas out of the Markdown (so emphasis, tables and escapes never touch them) into MathML,
    with a placeholder left in each one's place."""
    formulas: list[str] = []

    def stash(match: re.Match) -> str:
        display = match.group("display") is not None
        formulas.append(to_mathml(match.group("display") if display else match.group("inline"), display, where))
        return _PLACEHOLDER.format(len(formulas) - 1)

    return outside_code(markdown, lambda text: _MATH.sub(stash, text)), formulas


def html_text(markup: str) -> str:
    """The text of a piece of HTML or MathML: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def restore_math(page_html: str, formulas: list[str]) -> str:
    return _PLACEHOLDERS.sub(lambda match: formulas[int(match.group(1))], page_html)


# -- links to the repository ---------------------------------------------------------------------

def code_page(repo_path: str) -> str:
    """The generated page (docs-relative) that shows the repository file ``repo_path``."""
    return f"{CODE_DIR}/{repo_path}.md"


def resolve_link(target: str, origin: Path) -> str | None:
    """Where a relative link from the file ``origin`` goes on the site, as a docs-relative path:
    a page or image inside ``docs/``, the README's page (``index.md``), or a file's source page; None
    for a URL or an absolute path."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
        return None
    path = (origin.parent / target).resolve()
    if path.is_relative_to(DOCS) and (path.is_file() or not path.exists()):
        # A page or image of the site (MkDocs reports a missing one), relative to docs/.
        return path.relative_to(DOCS).as_posix()
    if path == ROOT / "README.md":
        return "index.md"
    if path.is_file() and path.is_relative_to(ROOT):
        return code_page(path.relative_to(ROOT).as_posix())
    log.warning(f"{origin.relative_to(ROOT)}: the link {target} is neither a file nor a page")
    return None


def rewrite_links(markdown: str, origin: Path, page_uri: str) -> str:
    """Relative links to files outside ``docs/`` -> their pages on the site, relative to ``page_uri``."""
    def rewrite(match: re.Match) -> str:
        resolved = resolve_link(match.group("target"), origin)
        if resolved is None:
            return match.group(0)
        relative = posixpath.relpath(resolved, posixpath.dirname(page_uri) or ".")
        return f"{match.group('head')}{relative}{match.group('anchor') or ''}{match.group('tail')}"

    return outside_code(markdown, lambda text: _LINK.sub(rewrite, text))


def linked_files() -> set[str]:
    """Every repository file outside ``docs/`` that the docs or the README link to, plus the files
    the side-by-side sections link to (each day's tests)."""
    linked = set()
    for origin in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for match in _LINK.finditer(outside_code(origin.read_text(), lambda text: text)):
            resolved = resolve_link(match.group("target"), origin)
            if resolved and resolved.startswith(CODE_DIR + "/"):
                linked.add(resolved[len(CODE_DIR) + 1:-len(".md")])
    for day, done in status():
        if done:
            linked.update(test.relative_to(ROOT).as_posix() for test in day_tests(day))
    return linked


def fenced(text: str, language: str, indent: str = "", options: str = "") -> str:
    """``text`` in a code fence longer than any backtick run inside it, every line indented."""
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    lines = [f"{fence}{language}{(' ' + options) if options else ''}", *text.rstrip("\n").split("\n"), fence]
    return "\n".join(indent + line if line else line for line in lines)


def source_page(repo_path: str) -> str:
    """The Markdown of the page that shows one repository file."""
    path = ROOT / repo_path
    language = LANGUAGES.get(path.suffix, "text")
    code = fenced(path.read_text(), language, options='linenums="1"')
    # Left out of the search index: the pages of the site are searched, and the code is searched in the editor.
    return f"---\nsearch:\n  exclude: true\n---\n\n# `{repo_path}`\n\n{code}\n"


# -- side by side --------------------------------------------------------------------------------

def day_of_page(src_uri: str) -> Day | None:
    match = re.fullmatch(r"days/day(\d+)\.md", src_uri)
    return DAYS[int(match.group(1)) - 1] if match else None


def twin_files(day: Day) -> dict[str, str]:
    """Tab label -> repository path of what the day implements: the three twins, or the one neutral
    module or capstone example (:func:`ml100.notebooks.sources`)."""
    return {TREE_LABELS.get(key, "Python"): path for key, path in sources(day.number).items()}


def twin_diff(old: str, new: str) -> str:
    """What changes between two twins, as a unified diff, with a count of the lines they share."""
    a, b = (ROOT / old).read_text().splitlines(), (ROOT / new).read_text().splitlines()
    shared = sum(block.size for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    diff = "\n".join(difflib.unified_diff(a, b, old, new, n=2, lineterm=""))
    summary = f"`{old}` → `{new}`: {shared} of {len(a)} and {len(b)} lines are the same."
    return summary + "\n\n" + (fenced(diff, "diff") if diff else "The two files are identical.")


def side_by_side(day: Day, page_uri: str) -> str:
    """The section a day page gets: its files in tabs, the twins' diffs, links to its tests."""
    files = twin_files(day)
    # The code is left out of the search index (attr_list's data-search-exclude): the prose is what one searches.
    parts = ["## Side by side { data-search-exclude }", "",
             "The code below is read from the repository when the site is built. "
             "Switching a tab switches every tab group on the page.", ""]
    for label, repo_path in files.items():
        parts += [f'=== "{label}"', "", f"    `{repo_path}`", "", fenced((ROOT / repo_path).read_text(), "python", "    "), ""]
    if len(files) == 3:
        paths = list(files.values())
        parts += ['=== "What differs"', ""]
        for old, new in zip(paths, paths[1:]):
            parts += ["    " + line if line else line for line in twin_diff(old, new).split("\n")] + [""]
    tests = [test.relative_to(ROOT).as_posix() for test in day_tests(day)]
    links = [f"[`{Path(test).name}`]({posixpath.relpath(code_page(test), posixpath.dirname(page_uri))})" for test in tests]
    if links:
        parts += ["Tests: " + ", ".join(links) + ".", ""]
    parts += [practice(day, posixpath.dirname(page_uri)), ""]
    return "\n".join(parts)


def practice(day: Day, page_folder: str) -> str:
    """Where the day's exercise (not for a capstone, which has no module) and notebook come from."""
    exercises, notebooks = (posixpath.relpath(page, page_folder) for page in ("exercises.md", "notebooks.md"))
    notebook = (f"`ml100 notebooks build --days {day.number}` writes `build/notebooks/{notebook_name(day)}`, this page as "
                f"a notebook that runs the day's parity tests ([Notebooks]({notebooks})).")
    if day.module is None:
        return "Notebook: " + notebook
    return (f"Practice: `{command('start', day.number, 'numpy', DEFAULT_DIR)}` writes the day's module with its bodies to "
            f"fill in and `{command('check', day.number, 'numpy', DEFAULT_DIR)}` grades it ([Exercises]({exercises})); "
            + notebook)


def insert_side_by_side(markdown: str, day: Day, page_uri: str) -> str:
    """The side-by-side section, placed after the page's "Three implementations" section."""
    sections = re.split(r"(?m)^(?=## )", markdown)
    for index, section in enumerate(sections):
        if section.startswith("## Three implementations"):
            sections.insert(index + 1, side_by_side(day, page_uri) + "\n")
            return "".join(sections)
    log.warning(f"days/day{day.number:02d}.md has no '## Three implementations' section for the side-by-side view")
    return markdown


# -- parity dashboard ----------------------------------------------------------------------------

def split_pair(pair: str) -> tuple[str, str] | None:
    """``"numpy vs torch"`` -> ``("numpy", "torch")`` when both sides are trees, in the trees' order."""
    sides = [side.strip() for side in pair.split(" vs ")]
    if len(sides) == 2 and all(side in BACKENDS for side in sides) and sides[0] != sides[1]:
        return tuple(sorted(sides, key=list(BACKENDS).index))
    return None


def reference_name(pair: str) -> str:
    """The reference a pair compares with: the side that is not a tree, or the whole pair."""
    sides = [side.strip() for side in pair.split(" vs ")]
    others = [side for side in sides if side not in BACKENDS]
    return others[0] if len(sides) == 2 and len(others) == 1 else pair


def format_error(value: float, tolerance: float) -> str:
    """A relative error; for an exact comparison (tolerance 0: integers) "equal" or the share that differs."""
    if tolerance == 0:
        return "equal" if value == 0 else f"**{value:.0%} differ ✗**"
    text = f"{value:.1e}"
    return text if value <= tolerance else f"**{text} ✗**"


TREE_PAIRS = [(a, b) for i, a in enumerate(BACKENDS) for b in list(BACKENDS)[i + 1:]]


def largest_errors(files: dict[str, list[dict]], day: Day) -> dict[tuple[str, object], float]:
    """(dtype, pair of trees or reference name) -> the largest relative error in the day's tests."""
    worst: dict[tuple[str, object], float] = {}
    for test in day_tests(day):
        for row in files.get(test.relative_to(ROOT).as_posix(), []):
            key = (row["dtype"], split_pair(row["pair"]) or reference_name(row["pair"]))
            worst[key] = max(worst.get(key, 0.0), row["max_rel_err"])
    return worst


def dashboard_tables(files: dict[str, list[dict]], tolerances: dict[str, float]) -> tuple[list[str], list[str]]:
    """Two tables' rows: per day, each pair of trees in every dtype; per day and reference, every dtype."""
    tree_rows, reference_rows = [], []
    for day, done in status():
        if not done or day.module is None:
            continue
        worst = largest_errors(files, day)
        page = f"[{day.number}](days/day{day.number:02d}.md)"
        cells = [format_error(worst[dtype, pair], tolerance) if (dtype, pair) in worst else "–"
                 for dtype, tolerance in tolerances.items() for pair in TREE_PAIRS]
        if any(cell != "–" for cell in cells):
            tree_rows.append(f"| {page} | {day.module} | " + " | ".join(cells) + " |")
        references = sorted({name for _, name in worst if isinstance(name, str)})
        for name in references:
            cells = [format_error(worst[dtype, name], tolerance) if (dtype, name) in worst else "–"
                     for dtype, tolerance in tolerances.items()]
            reference_rows.append(f"| {page} | {day.module} | `{name}` | " + " | ".join(cells) + " |")
    return tree_rows, reference_rows


def dashboard_page() -> str:
    """The Markdown of "Parity dashboard", from the JSON the last test run wrote."""
    data = json.loads(PARITY_JSON.read_text()) if PARITY_JSON.is_file() else {}
    tolerances = data.get("tolerances", {})
    # Wide tables: the page gives up the menu and the table of contents.
    head = ["---", "hide:", "  - navigation", "  - toc", "---", "", "# Parity dashboard", "",
            "For every implemented day, the largest relative error the test run saw between each pair of trees and "
            "against each reference (`torch.nn`, Keras, Hugging Face, …), in float64 and float32: "
            "max |a − b| over the larger tensor's max magnitude, over every output and gradient the day's tests "
            "compare. Integers and booleans (token ids, kept indices, masks) are compared exactly: the column "
            "\"exact\" says equal, or what share of the elements differ. A value above its dtype's tolerance "
            "(`parity_tests/harness/compare.py`) is marked ✗: the run that wrote it failed. A dash: the day's tests "
            "compare no such pair in that dtype.", ""]
    if not data:
        return "\n".join(head + ["No test run has been recorded in this checkout yet: run `python -m pytest`, then build "
                                 "the site again.", ""])
    versions = ", ".join(f"{name} {version}" for name, version in data.get("versions", {}).items())
    count = sum(row["comparisons"] for rows in data["files"].values() for row in rows)
    limits = ", ".join(f"{dtype} {tolerance:.0e}" if tolerance else f"{dtype}: equal" for dtype, tolerance in tolerances.items())
    tree_rows, reference_rows = dashboard_tables(data["files"], tolerances)
    pairs = " | ".join(f"{dtype} {TREE_LABELS[a]} – {TREE_LABELS[b]}" for dtype in tolerances for a, b in TREE_PAIRS)
    dtypes = " | ".join(tolerances)
    return "\n".join(head + [
        f"Written by the test run of {data['written']} ({versions}): {count:,} tensor comparisons in "
        f"{len(data['files'])} test files. Tolerances: {limits}.", "",
        "## Between the trees", "", f"| day | module | {pairs} |", "|---|---|" + "---|" * len(TREE_PAIRS) * len(tolerances),
        *tree_rows, "",
        "## Against the references", "",
        "Each outside implementation fed the same weights and inputs, as the tests name it (a tree's output "
        "against it, or, for the neutral days, ours against it).", "",
        f"| day | module | reference | {dtypes} |", "|---|---|---|" + "---|" * len(tolerances), *reference_rows, ""])


# -- MkDocs hooks --------------------------------------------------------------------------------

def navigation() -> list:
    """Home, the reference pages, then the implemented days by phase."""
    nav: list = [{"Home": "index.md"}, {"Curriculum": "curriculum.md"}, {"Parity dashboard": "parity.md"},
                 {"Conventions": "conventions.md"}, {"Exercises": "exercises.md"}]
    if (DOCS / "notebooks.md").is_file():
        nav.append({"Notebooks": "notebooks.md"})
    nav.append({"About this site": "site.md"})
    for phase, title in PHASE_TITLES.items():
        pages = [f"days/day{day.number:02d}.md" for day in DAYS
                 if day.phase == phase and (DOCS / "days" / f"day{day.number:02d}.md").is_file()]
        if pages:
            nav.append({title: pages})
    return nav


def on_config(config):
    config["nav"] = navigation()
    return config


def on_files(files, config):
    files.append(File.generated(config, "index.md", content=(ROOT / "README.md").read_text()))
    files.append(File.generated(config, "parity.md", content=dashboard_page()))
    for repo_path in sorted(linked_files()):
        files.append(File.generated(config, code_page(repo_path), content=source_page(repo_path)))
    return files


def origin_of(src_uri: str) -> Path:
    """The repository file a page's links are relative to."""
    return ROOT / "README.md" if src_uri == "index.md" else DOCS / src_uri


_formulas: dict[str, list[str]] = {}


def on_page_markdown(markdown, page, config, files):
    src_uri = page.file.src_uri
    if src_uri.startswith(CODE_DIR + "/"):
        return markdown
    day = day_of_page(src_uri)
    if day is not None:
        markdown = insert_side_by_side(markdown, day, src_uri)
    markdown = rewrite_links(markdown, origin_of(src_uri), src_uri)
    markdown, _formulas[src_uri] = stash_math(markdown, src_uri)
    return markdown


def on_page_content(page_html, page, config, files):
    formulas = _formulas.pop(page.file.src_uri, [])

    def as_text(title: str) -> str:
        """A formula in a title (menu, table of contents, browser tab) as its text: plain text there."""
        return _PLACEHOLDERS.sub(lambda match: html_text(formulas[int(match.group(1))]), title)

    page.title = as_text(page.title)
    for item in walk_toc(page.toc):
        item.title = as_text(item.title)
    return restore_math(page_html, formulas)


def walk_toc(items):
    for item in items:
        yield item
        yield from walk_toc(item.children)
