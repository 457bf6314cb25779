"""The shape issue 14 gave the code, kept: functions a newcomer can read at once, DBOS used
through its public API, reply states spelled once. (Fast: reads the source, runs nothing.)"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

from chat_core.config import PROJECT_ROOT
from chat_core.states import REPLY_STATES

PACKAGE = PROJECT_ROOT / "chat_core"
MAX_FUNCTION_LINES = 80
# The one private DBOS name the code needs, and why: docs/architecture.md ("Public DBOS only").
PRIVATE_DBOS_ALLOWED = {("turn_start.py", "dbos._core")}


def _sources(include_testing: bool = False) -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if include_testing or "testing" not in p.relative_to(PACKAGE).parts]


def test_no_function_in_chat_core_is_longer_than_80_lines() -> None:
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} "
                                f"{node.name} ({lines} lines)")
    assert not long, f"split these into named pieces: {long}"


def test_dbos_is_imported_through_its_public_api() -> None:
    private = set()
    for path in _sources(include_testing=True):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dbos._"):
                private.add((path.name, node.module))
            elif isinstance(node, ast.Import):
                private |= {(path.name, a.name) for a in node.names if a.name.startswith("dbos._")}
    assert private <= PRIVATE_DBOS_ALLOWED, private - PRIVATE_DBOS_ALLOWED


# "error" and "stopped" are also a field's name and an LLM finish reason: for them only SQL
# comparisons are looked for.
_ALSO_OTHER_WORDS = {"error", "stopped"}


def test_reply_states_are_not_spelled_out_in_the_code() -> None:
    """Outside chat_core/states.py a reply state is a constant, in Python and in SQL text."""
    only_states = [s for s in REPLY_STATES if s not in _ALSO_OTHER_WORDS]
    quoted = re.compile("[\"'](" + "|".join(only_states) + ")[\"']|status\\s*(=|<>|IN)\\s*\\(?'(?!\\{)")
    found = []
    for path in _sources():
        if path.name == "states.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if quoted.search(code):
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{number}: {line.strip()}")
    assert not found, "use chat_core.states:\n" + "\n".join(found)


def test_no_rest_route_depends_on_a_plain_function() -> None:
    """FastAPI runs a plain `def` dependency (or route) on its thread pool: a hop per request
    (chat_core/web/api/deps.py)."""
    from fastapi import FastAPI
    from fastapi.routing import APIRoute

    from chat_core.web.api import install_rest_api

    app = FastAPI()
    install_rest_api(app, object())  # type: ignore[arg-type]

    def on_the_loop(call: Any) -> bool:
        return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)

    def plain(dependant: Any) -> list[str]:
        call = dependant.call
        found = [f"{call.__module__}.{call.__qualname__}"] \
            if call is not None and not on_the_loop(call) else []
        return found + [name for sub in dependant.dependencies for name in plain(sub)]

    routes: list[APIRoute] = []
    # The app's own dependencies, and those given to include_router, apply to every route.
    shared = [d.dependency for d in app.router.dependencies]

    def walk(entries: list[Any]) -> None:
        for entry in entries:
            if hasattr(entry, "original_router"):  # FastAPI keeps an included router whole
                shared.extend(d.dependency for d in entry.include_context.dependencies)
                walk(entry.original_router.routes)
            elif isinstance(entry, APIRoute):
                routes.append(entry)

    walk(list(app.routes))
    assert len(routes) > 30
    threaded = sorted({f"{name} (in {r.path})" for r in routes for name in plain(r.dependant)}
                      | {f"{d.__module__}.{d.__qualname__} (every route)" for d in shared
                         if not on_the_loop(d)})
    assert not threaded, f"make these async def: {threaded}"
