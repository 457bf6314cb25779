"""The event loop and HTTP parser the app serves with (FAST_IO, on by default).

Every token of every reply is a few wake-ups of the one event loop (the LLM stream's read,
the reply's watchers, the SSE write to the client), so the loop's own cost per callback and
the HTTP parser's per request are much of what a token and a turn cost the app
(docs/performance.md). uvloop (libuv) and httptools (llhttp) are the fast implementations
uvicorn itself picks when they are installed; FAST_IO=0 keeps the standard library's loop and
uvicorn's pure-Python h11 parser, for comparison or on a platform without them (uvloop has no
Windows build: the app then runs on asyncio's loop by itself).
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def loop_factory(fast: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for and installed; None: asyncio's default."""
    if fast and _has("uvloop"):
        import uvloop
        return uvloop.new_event_loop
    if fast:
        log.info("uvloop is not installed: serving on asyncio's event loop")
    return None


def http_protocol(fast: bool) -> str:
    """uvicorn's `http` setting: httptools when asked for and installed, else h11."""
    return "httptools" if fast and _has("httptools") else "h11"


def run(main: Coroutine[Any, Any, T], fast: bool) -> T:
    """asyncio.run on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(fast)) as runner:
        log.info("serving on %s's event loop with the %s HTTP parser",
                 type(runner.get_loop()).__module__.split(".")[0], http_protocol(fast))
        return runner.run(main)
