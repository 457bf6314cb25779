"""The docs stay usable as the code moves: the README stays a short first page, and every link,
anchor, file path, module path and cited test in README.md, SECURITY.md and docs/*.md exists.
A failure names the page and the reference to fix (or the file that was moved without its
mentions)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 200
PAGES = sorted([ROOT / "README.md", ROOT / "SECURITY.md", *(ROOT / "docs").glob("*.md")])

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w./-])((?:chat_core|tests|scripts|migrations|notebooks)/[\w./-]*)")
TEST_ID = re.compile(r"(?<![\w/])(tests/\w+\.py)::(\w+)")
MODULE = re.compile(r"(?<![\w./])(chat_core(?:\.\w+)+)")


def _ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(ROOT).as_posix() for p in paths]


def _prose(text: str) -> str:
    """The page without code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_readme_is_a_short_first_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: move the detail to a "
        "page in docs/ and link it from 'Where to read more'")


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_relative_link_reaches_a_file_and_heading(page: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(ROOT).as_posix()})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{page.relative_to(ROOT)} links to what is not there: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_project_path_named_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = sorted({p.rstrip(".") for p in PATH.findall(text)
                      if not (ROOT / p.rstrip(".")).exists()})
    assert not missing, (f"{page.relative_to(ROOT)} names paths that do not exist (moved or "
                         f"renamed? say where they are now): {missing}")


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_module_named_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = sorted({name for name in MODULE.findall(text) if not _resolves(name)})
    assert not missing, f"{page.relative_to(ROOT)} names modules that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_cited_test_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = [f"{path}::{name}" for path, name in TEST_ID.findall(text)
               if not (ROOT / path).is_file()
               or not re.search(rf"^\s*(async\s+)?def {name}\(",
                                (ROOT / path).read_text(encoding="utf-8"), flags=re.M)]
    assert not missing, (f"{page.relative_to(ROOT)} cites tests that do not exist (the claim "
                         f"has lost its test, or the test was renamed): {missing}")


def _resolves(dotted: str) -> bool:
    """`chat_core.data.analytics.Analytics`: packages, then a module, then a name it defines."""
    parts = dotted.split(".")
    path = ROOT / parts[0]
    for i, part in enumerate(parts[1:], start=1):
        if (path / part).is_dir():
            path = path / part
            continue
        module = path / f"{part}.py"
        if module.is_file():
            rest = parts[i + 1:]
            return not rest or rest[0] in _top_level_names(module)
        return part in _top_level_names(path / "__init__.py")
    return True


def _top_level_names(module: Path) -> set[str]:
    if not module.is_file():
        return set()
    names: set[str] = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names
