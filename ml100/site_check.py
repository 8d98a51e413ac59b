"""The docs site checked in a real browser: ``python -m ml100.site_check`` after ``mkdocs build --strict``.

It serves ``build/site`` on localhost and drives Debian's Chromium (``apt-get install chromium``;
Playwright's own browser download is not reachable here) through Playwright, on every page except
the generated source pages:

- no console error, uncaught exception, failed request or HTTP error while the page loads;
- the equations render: every ``<math>`` element is laid out as math (CSS ``display`` math) with a
  non-empty box, none holds an ``<merror>``, and no TeX delimiter or formula placeholder is left in
  the text;
- on each day page, clicking every tab of the side-by-side view shows that tab's code (and the
  other tabs' code hides);

and, without the browser, every link of every page (source pages included) points to a file of
the site and, with an ``#anchor``, to an id on that page. Screenshots go to ``build/screenshots``.
Any problem is listed and the exit status is 1.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import re
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .curriculum import ROOT

CHROMIUM = "/usr/bin/chromium"
#: Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: Pages photographed: (file, what to click first or None, screenshot name).
SCREENSHOTS = (("index.html", None, "home"), ("days/day07.html", "NumPy", "day07_numpy"),
               ("days/day07.html", "PyTorch", "day07_pytorch"), ("days/day07.html", "What differs", "day07_diff"),
               ("days/day32.html", None, "day32_math"), ("parity.html", None, "parity_dashboard"))


class LinksAndIds(HTMLParser):
    """The ``href``/``src`` values and the element ids of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.add(attributes["id"])
        for name in ("href", "src"):
            if attributes.get(name):
                self.links.append(attributes[name])


def parse(page: Path) -> LinksAndIds:
    parser = LinksAndIds()
    parser.feed(page.read_text())
    return parser


def dead_links(site: Path) -> tuple[list[str], int]:
    """Every local link of every page that points to no file, or to an anchor its page lacks."""
    pages = {page: parse(page) for page in site.rglob("*.html")}
    problems, checked = [], 0
    for page, parsed in pages.items():
        for link in parsed.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "data:", "javascript:")):
                continue
            checked += 1
            folder = site if parts.path.startswith("/") else page.parent
            target = (folder / unquote(parts.path).lstrip("/")).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            name = page.relative_to(site).as_posix()
            if not target.is_file():
                problems.append(f"{name}: dead link {link}")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if unquote(parts.fragment) not in ids:
                    problems.append(f"{name}: link {link}: no id {parts.fragment!r} on {target.relative_to(site).as_posix()}")
    return problems, checked


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        """No line per request: the check reports problems, not traffic."""


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """The site on a free localhost port, in a daemon thread."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


# Code blocks may hold TeX-like text (a docstring's $...$), so only the prose is searched for left-over TeX.
MATH_REPORT = """() => {
  const maths = [...document.querySelectorAll('article math')];
  const shown = maths.filter(m => m.closest('.tabbed-block, details') === null);
  const flat = shown.filter(m => { const r = m.getBoundingClientRect(); return r.width <= 0 || r.height <= 0; });
  const notMath = maths.filter(m => !getComputedStyle(m).display.includes('math'));
  const prose = [...document.querySelectorAll('article > :not(.highlight):not(.tabbed-set)')]
    .map(e => { const copy = e.cloneNode(true); copy.querySelectorAll('code, math').forEach(c => c.remove()); return copy.textContent; })
    .join('\\n');
  return {count: maths.length, flat: flat.length, notMath: notMath.length,
          errors: document.querySelectorAll('article merror').length,
          placeholders: (document.body.innerText.match(/ML100MATH\\d+X/g) || []).length + (document.title.match(/ML100MATH/g) || []).length,
          tex: (prose.match(/\\$\\$|\\\\(frac|sum|mathbf|qquad)\\b/g) || []).length};
}"""


def check_math(page, name: str) -> list[str]:
    report = page.evaluate(MATH_REPORT)
    problems = []
    if report["flat"]:
        problems.append(f"{name}: {report['flat']} of {report['count']} formulas have an empty box")
    if report["notMath"]:
        problems.append(f"{name}: {report['notMath']} formulas are not laid out as MathML")
    if report["errors"]:
        problems.append(f"{name}: {report['errors']} formulas hold <merror>")
    if report["placeholders"] or report["tex"]:
        problems.append(f"{name}: TeX left unrendered in the text ({report['placeholders']} placeholders, "
                        f"{report['tex']} TeX fragments)")
    return problems


def check_tabs(page, name: str) -> list[str]:
    """Click every tab of the side-by-side view; its panel shows, the others hide."""
    problems = []
    tab_set = page.locator("article .tabbed-set").first
    labels = tab_set.locator(":scope > .tabbed-labels > label")
    panels = tab_set.locator(":scope > .tabbed-content > .tabbed-block")
    for index in range(labels.count()):
        label = labels.nth(index)
        label.click()
        visible = [panels.nth(i).is_visible() for i in range(panels.count())]
        if visible != [i == index for i in range(len(visible))]:
            problems.append(f"{name}: after clicking tab {label.inner_text()!r} the visible panels are {visible}")
        elif panels.nth(index).locator("pre").count() == 0:
            problems.append(f"{name}: tab {label.inner_text()!r} shows no code")
    if labels.count() == 0:
        problems.append(f"{name}: no side-by-side tabs")
    return problems


def browse(site: Path, screenshots: Path) -> tuple[list[str], int]:
    """Open every page but the source pages in Chromium; the problems and the number of pages."""
    from playwright.sync_api import sync_playwright

    server, base = serve(site)
    pages = sorted(path.relative_to(site).as_posix() for path in site.rglob("*.html")
                   if not path.relative_to(site).as_posix().startswith(("code/", "404")))
    problems: list[str] = []
    screenshots.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            events: list[str] = []
            page.on("console", lambda message: message.type == "error" and events.append(f"console error: {message.text}"))
            page.on("pageerror", lambda error: events.append(f"uncaught exception: {error}"))
            # A request the next navigation cancels (net::ERR_ABORTED) is not a failure of the page.
            page.on("requestfailed", lambda request: "ERR_ABORTED" not in (request.failure or "")
                    and events.append(f"request failed: {request.url} ({request.failure})"))
            page.on("response", lambda response: response.status >= 400 and events.append(f"HTTP {response.status}: {response.url}"))
            for name in pages:
                events.clear()
                page.goto(base + name, wait_until="load")
                problems += check_math(page, name)
                if re.fullmatch(r"days/day\d+\.html", name):
                    problems += check_tabs(page, name)
                problems += [f"{name}: {event}" for event in events]
            for name, tab, shot in SCREENSHOTS:
                page.goto(base + name, wait_until="load")
                if tab:
                    tab_set = page.locator("article .tabbed-set").first
                    tab_set.get_by_text(tab, exact=True).click()
                    # The tabs just below the header, once its title animation has settled.
                    tab_set.evaluate("element => { element.scrollIntoView(); window.scrollBy(0, -60); }")
                    page.wait_for_timeout(400)
                page.screenshot(path=str(screenshots / f"{shot}.png"), full_page=False)
            browser.close()
    finally:
        server.shutdown()
    return problems, len(pages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml100.site_check", description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=ROOT / "build" / "site", help="the built site (default: %(default)s)")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "build" / "screenshots",
                        help="where the screenshots go (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        parser.error(f"no built site at {args.site} (no index.html): run `mkdocs build --strict` first")
    if not Path(CHROMIUM).is_file():
        parser.error(f"no browser at {CHROMIUM}: install Debian's chromium (`apt-get install -y chromium`)")
    start = time.perf_counter()
    problems, checked = dead_links(args.site)
    link_seconds = time.perf_counter() - start
    browser_problems, pages = browse(args.site, args.screenshots)
    problems += browser_problems
    print(f"links: {checked} checked in {link_seconds:.1f} s; browser: {pages} pages in "
          f"{time.perf_counter() - start - link_seconds:.1f} s; screenshots in {args.screenshots}")
    for problem in problems:
        print("  " + problem)
    print(f"{len(problems)} problem(s)" if problems else "site check passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
