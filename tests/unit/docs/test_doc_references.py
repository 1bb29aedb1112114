"""The docs point only at what exists, and cite each proof once.

A pattern page (docs/patterns/) says how a pattern works and where its code is; a guarantee page
(docs/guarantees/) says what is promised, which tests prove it and where it stops. They link to
each other instead of repeating each other, so a test is cited on one of those pages only. Every
page (docs/ and README.md) may name files, tests and modules: each must exist, and each relative
link must lead to a file and, with an #anchor, to one of its headings.
"""

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
PATTERN_PAGES = sorted((DOCS / "patterns").glob("*.md"))
GUARANTEE_PAGES = sorted((DOCS / "guarantees").glob("*.md"))
GUARANTEES = [page for page in GUARANTEE_PAGES if page.name != "README.md"]

FENCED_BLOCK = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.MULTILINE)
# A file or folder of the repository, as a page names it: `apps/orders/outbox.py`, `tests/chaos/`
# (not a part of a longer path or address: `../../apps/...` is a link, checked as one).
REPO_PATH = re.compile(r"(?<![\w./-])(?:apps|libs|devstack|tests|infra|docs)/[\w./*-]*")
# A module of the shared packages, as a page names it: `orderflow_kit.grpc_client.channel`.
DOTTED_NAME = re.compile(r"\b(orderflow_(?:kit|contracts|devstack|bench))((?:\.\w+)+)")
PACKAGE_DIRS = {
    "orderflow_kit": "libs",
    "orderflow_contracts": "libs",
    "orderflow_devstack": "devstack",
    "orderflow_bench": "devstack",
}
# A test cited on its own: `test_x`, `::test_x` or `test_x[case]`, of the test file cited last.
TEST_NAME = re.compile(r"(?:::)?(test_\w+)(?:\[.*\])?")


class Citation(NamedTuple):
    """A test file a page cites, and the test in it that it names (None: the whole file)."""

    path: str
    name: str | None


def relative(page: Path) -> str:
    return str(page.relative_to(ROOT))


def prose(page: Path) -> str:
    """The page without its fenced blocks (commands and output, not references)."""
    return FENCED_BLOCK.sub("", page.read_text(encoding="utf-8"))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text in lower case, punctuation dropped, spaces as dashes."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = defaultdict(int)
    found: set[str] = set()
    for heading in HEADING.findall(prose(page)):
        anchor = slug(heading)
        found.add(f"{anchor}-{seen[anchor]}" if seen[anchor] else anchor)
        seen[anchor] += 1
    return frozenset(found)


@cache
def defined_names(path: Path) -> frozenset[str]:
    """Every function, class and assigned name of a Python file, at any depth."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return frozenset(names)


def defined_tests(path: str) -> frozenset[str]:
    return frozenset(name for name in defined_names(ROOT / path) if name.startswith("test_"))


def citations(page: Path) -> Iterator[Citation]:
    """The tests a page cites, in order. A test named alone belongs to the test file cited last."""
    last_test_file = None
    for span in CODE_SPAN.findall(prose(page)):
        path, *names = span.split("::")
        if path.startswith("tests/") and path.endswith(".py"):
            if Path(path).name.startswith("test_") and "*" not in path:
                last_test_file = path
            yield from (Citation(path, name.split("[")[0]) for name in names) if names else [Citation(path, None)]
        elif (alone := TEST_NAME.fullmatch(span)) and last_test_file:
            yield Citation(last_test_file, alone.group(1))
        elif alone:
            yield Citation("(no test file cited before it)", alone.group(1))


def cited_tests(page: Path) -> set[tuple[str, str]]:
    """Each test function a page cites: those it names, or every test of a file it names none of."""
    named: dict[str, set[str]] = defaultdict(set)
    for path, name in citations(page):
        if Path(path).name.startswith("test_") and (ROOT / path).is_file():
            named[path] |= {name} if name else set()
    return {(path, test) for path, names in named.items() for test in names or defined_tests(path)}


def importable(package: str, dotted: str) -> bool:
    """Whether `package.module.name` names a module of the package and, after it, a name it defines."""
    folder = ROOT / PACKAGE_DIRS[package] / package
    parts = dotted.strip(".").split(".")
    while parts and (folder / parts[0]).is_dir():
        folder = folder / parts.pop(0)
    if parts and (folder / f"{parts[0]}.py").is_file():
        module = folder / f"{parts.pop(0)}.py"
    else:
        module = folder / "__init__.py"
    return not parts or parts[0] in defined_names(module)


def repository_paths(page: Path) -> set[str]:
    """The files and folders a page names, `tests/x.py::name` as `tests/x.py`."""
    return {found.rstrip(".") for found in REPO_PATH.findall(prose(page))}


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_relative_link_leads_to_a_file_and_heading(page: Path) -> None:
    broken = []
    for target in LINK.findall(CODE_SPAN.sub("", prose(page))):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {relative(linked)}")
    assert not broken, f"{relative(page)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_file_and_module_a_page_names_exists(page: Path) -> None:
    missing = [path for path in repository_paths(page) if not any(ROOT.glob(path.rstrip("/")))]
    missing += [
        package + dotted for package, dotted in DOTTED_NAME.findall(prose(page)) if not importable(package, dotted)
    ]
    assert not missing, f"{relative(page)} names what does not exist: {sorted(missing)}"


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_cited_test_exists(page: Path) -> None:
    missing = []
    for path, name in citations(page):
        if not any(ROOT.glob(path)):
            missing.append(f"{path}::{name}" if name else path)
        elif name and ("*" in path or name not in defined_names(ROOT / path)):
            missing.append(f"{path}::{name}")
    assert not missing, f"{relative(page)} cites tests that do not exist: {missing}"


@pytest.mark.parametrize("page", GUARANTEES, ids=relative)
def test_every_guarantee_page_cites_its_proof(page: Path) -> None:
    assert cited_tests(page), f"{relative(page)} cites no test"


def test_no_test_is_cited_on_two_pattern_or_guarantee_pages() -> None:
    pages_citing: dict[tuple[str, str], list[str]] = defaultdict(list)
    for page in PATTERN_PAGES + GUARANTEE_PAGES:
        for test in cited_tests(page):
            pages_citing[test].append(page.name)
    repeated = {f"{path}::{name}": pages for (path, name), pages in pages_citing.items() if len(pages) > 1}
    assert not repeated, f"cite each test on one page and link to it from the others: {repeated}"
