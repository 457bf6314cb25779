"""The HTTP request of a streamed chat completion, on aiohttp.

Why not the openai package's client (httpx2/httpcore2): every token of a stream is its own
network read, and that stack spends about 0.05 ms of CPU per read in Python (anyio, sniffio,
h11's chunked reader, a task lookup); aiohttp's HTTP parser is C and read the same streams for
a third of that (docs/performance.md). The openai client still does everything else (listing
models); only the stream, the cost that grows with every token, comes through here.

This module only opens the request and hands back the response or what went wrong;
llm/client.py reads the events and turns failures into the messages a person sees.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, AsyncIterator

import aiohttp
from orjson import dumps as _dumps, loads as _loads

# The body of an error answer kept for its message (a server's error page can be long).
_ERROR_BODY_BYTES = 64 * 1024
# Kept-alive connections are dropped after this long unused: below the 5 s after which vLLM's
# (uvicorn's) server closes them, so a request never goes out on one the server is closing.
_KEEPALIVE_SEC = 4.0


class StatusError(Exception):
    """The server answered with an error status. `body` is what the openai package would give
    (the JSON's "error" object when there is one, else the JSON or the text), `message` its one
    line ("Error code: 503 - {...}"): the same words reach the chat as before."""

    def __init__(self, status_code: int, body: object, message: str) -> None:
        super().__init__(message)
        self.status_code, self.body, self.message = status_code, body, message


def basic_auth_header(credentials: tuple[str, str]) -> str:
    """HTTP Basic of a URL's user:password, UTF-8 as httpx makes it (aiohttp's own is Latin-1,
    which cannot carry every password)."""
    user, password = credentials
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _encode(body: dict[str, Any]) -> bytes:
    """The request's JSON. orjson refuses a lone surrogate (not valid UTF-8); the standard
    library writes it as an escape, which the server may refuse with a message of its own."""
    try:
        return _dumps(body)
    except TypeError:
        return json.dumps(body).encode("ascii")


def status_error(status: int, raw: bytes) -> StatusError:
    """The error an answer with `status` and body `raw` makes, worded as the openai package
    words it (llm/client.py's messages pick the detail out of `body`)."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        parsed: object = _loads(text)
    except ValueError:
        return StatusError(status, text or None, text or f"Error code: {status}")
    body = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    return StatusError(status, body, f"Error code: {status} - {parsed}")


class ResponseBody:
    """A response's bytes as they arrive, whatever the network gave at once in one piece:
    the interface `LLMClient._read_events` reads (httpx's `aiter_bytes`)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self.response.content.iter_any()


class EventStreamPoster:
    """POSTs to one URL and returns the open response of an event stream. One aiohttp session
    per event loop (a session belongs to the loop it was made on; tests and scripts run
    clients on several), made on first use."""

    def __init__(self, url: str, headers: dict[str, str], connect_timeout_sec: float,
                 read_timeout_sec: float) -> None:
        self.url = url
        self.headers = {**headers, "Content-Type": "application/json",
                        "Accept": "text/event-stream"}
        # Connect: the TCP connection (and DNS); read: the longest silence between two reads,
        # the answer's head included (a hung server); no limit on a whole reply's length.
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_sec,
                                             sock_connect=connect_timeout_sec,
                                             sock_read=read_timeout_sec)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # No cap on connections: the client's semaphore and gate cap the requests.
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=_KEEPALIVE_SEC)
            # trust_env: HTTP(S)_PROXY and NO_PROXY apply, as they did to the openai client.
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout,
                                                  trust_env=True)
            self._loop = loop
        return self._session

    async def open(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """The response, its status 2xx and its body unread. Raises StatusError for an error
        status, aiohttp.ClientError or TimeoutError when the server cannot be reached or does
        not answer in time."""
        response = await self._session_here().post(self.url, data=_encode(body),
                                                   headers=self.headers)
        if response.status < 300:
            return response
        try:
            raw = await response.content.read(_ERROR_BODY_BYTES)
        finally:
            response.close()
        raise status_error(response.status, raw)

    async def close(self) -> None:
        """Close the session of this loop (one made on another loop is dropped: it cannot be
        closed from here, and that loop's end closed its sockets)."""
        session, self._session = self._session, None
        if session is not None and not session.closed and \
                self._loop is asyncio.get_running_loop():
            await session.close()
