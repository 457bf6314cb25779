"""The event loop and HTTP parser the app serves with (FAST_IO=1; off by default, see config).

Every token of every reply is a few wake-ups of the one event loop (the LLM stream's read,
the reply's watchers, the SSE write to the client), so the loop's own cost per callback and
the HTTP parser's per request are much of what a token and a turn cost the app
(docs/performance.md). uvloop (libuv) and httptools (llhttp) are the fast implementations
uvicorn itself picks when they are installed; FAST_IO=0 keeps the standard library's loop and
uvicorn's pure-Python h11 parser, for comparison or on a platform without them (uvloop has no
Windows build: the app then runs on asyncio's loop by itself).

httptools itself sets no limit on a request's line and headers, and grows a long header by
copying it at each piece that arrives (quadratic CPU on the one event loop, before any of our
middleware sees the request). h11 refuses heads over 16 KiB; BoundedHttpTools keeps that limit.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

T = TypeVar("T")
log = logging.getLogger(__name__)


def loop_factory(fast: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for and importable; None: asyncio's default."""
    if not fast:
        return None
    try:
        import uvloop
    except ImportError as exc:  # not installed (Windows), or broken
        log.warning("uvloop cannot be imported (%s): serving on asyncio's event loop", exc)
        return None
    return uvloop.new_event_loop


# What h11 (uvicorn's default parser) allows a request's line and headers.
MAX_REQUEST_HEAD_BYTES = 16 * 1024
HEAD_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain;"
                  b" charset=utf-8\r\ncontent-length: 44\r\nconnection: close\r\n\r\n"
                  b"The request's line and headers are too large")


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing (431) a request whose line and headers pass
    MAX_REQUEST_HEAD_BYTES. Counted per network read once a request has begun, so a read
    that also ends an earlier pipelined request counts a little more than its head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
                self._in_head = False
                self.transport.write(HEAD_TOO_LARGE)
                self.transport.close()


def http_protocol(fast: bool) -> type[asyncio.Protocol] | str:
    """uvicorn's `http` setting: bounded httptools (a requirement on every platform), or h11."""
    return BoundedHttpTools if fast else "h11"


def run(main: Coroutine[Any, Any, T], fast: bool) -> T:
    """asyncio.run on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(fast)) as runner:
        return runner.run(main)


def describe(server_config: Any) -> str:
    """The loop and HTTP protocol a started uvicorn server runs on, for the log."""
    return (f"{type(asyncio.get_running_loop()).__module__.split('.')[0]}'s event loop, "
            f"{server_config.http_protocol_class.__name__}")
