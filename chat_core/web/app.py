"""The one web server of a process: the REST API and the Gradio UI on the same port.

A FastAPI app carries the REST routes and mounts the Gradio Blocks at "/". We run uvicorn
ourselves (app.py) rather than through Blocks.launch(), so that the workflows, the database pool
and every request share one event loop, and DBOS is launched before the server accepts anything.

Share mode (a public Gradio link) locks things down: login required for the UI and (HTTP Basic,
same credentials) for the REST API, Gradio's direct-call API closed so every call goes through
the queue, the monitoring page off, links in replies shown as text (chat_core/ui/render.py).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Awaitable, Callable

import gradio as gr
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from chat_core.service import ChatService
from chat_core.ui.page import CSS
from chat_core.web.api import install_rest_api
from chat_core.web.gradio_guard import GradioGuard
from chat_core.web.login_throttle import (LoginThrottle, LoginThrottleMiddleware,
                                          client_address, too_many_attempts)
from chat_core.web.request_guards import allowed_hosts, install_request_guards

Credentials = list[tuple[str, str]]


def parse_credentials(text: str) -> Credentials:
    """"user:password" pairs separated by commas (SHARE_AUTH). Passwords of fewer than 8
    characters are refused: a share link is on the public internet."""
    pairs: Credentials = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ValueError("SHARE_AUTH must look like user:password (several separated by "
                             "commas)")
        if len(password) < 8:
            raise ValueError(f"the SHARE_AUTH password of {user!r} is shorter than 8 characters;"
                             " a share link is public, choose a longer one")
        pairs.append((user, password))
    return pairs


def basic_credentials(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) from an `Authorization: Basic` header, as UTF-8 bytes, or None when
    the header is missing or malformed. Bytes throughout: a header with non-ASCII characters,
    or credentials that decode to non-ASCII text, must be a 401, not a 500."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


def _credentials_match(user: bytes, password: bytes, credentials: Credentials) -> bool:
    """Compared as UTF-8 bytes in constant time (compare_digest refuses non-ASCII str), every
    pair checked so that the time does not tell which user exists."""
    matched = False
    for u, p in credentials:
        matched |= hmac.compare_digest(user, u.encode()) & hmac.compare_digest(password,
                                                                                p.encode())
    return matched


def _basic_auth_ok(header: str | None, credentials: Credentials) -> bool:
    given = basic_credentials(header)
    return given is not None and _credentials_match(*given, credentials)


def _unauthorized() -> Response:
    return JSONResponse({"error": "log in with the SHARE_AUTH credentials (HTTP Basic)",
                         "code": "unauthorized"}, status_code=401,
                        headers={"WWW-Authenticate": 'Basic realm="durable-chat"'})


def build_web_app(service: ChatService, ui: gr.Blocks, *,
                  credentials: Credentials | None = None, share_mode: bool = False) -> FastAPI:
    app = FastAPI(title="Durable chat", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    if credentials:
        # One throttle for both doors (login_throttle.py); app.state lets tests move its clock.
        throttle = app.state.login_throttle = LoginThrottle()
        trusted = frozenset(filter(None, (p.strip() for p in
                                          service.settings.trusted_proxies.split(","))))
        app.add_middleware(LoginThrottleMiddleware, throttle=throttle, trusted_proxies=trusted)

        @app.middleware("http")
        async def require_login(request: Request,
                                call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            path = request.url.path
            if not (path.startswith("/api/") or path == "/healthz"):
                return await call_next(request)
            given = basic_credentials(request.headers.get("authorization"))
            if given is None:
                return _unauthorized()
            account = given[0].decode("utf-8", "replace")
            address = client_address(request.scope, trusted)
            wait = throttle.check(account, address)  # before any password comparison
            if wait > 0:
                return too_many_attempts(wait)
            if not _credentials_match(*given, credentials):
                return _unauthorized()
            throttle.succeeded(account, address)
            return await call_next(request)

    install_rest_api(app, service)
    # Many users stream at once: no per-event cap in Gradio (the LLM client caps LLM load);
    # a bounded queue answers "busy" instead of growing without limit. In share mode the
    # direct-call API is closed, so every call goes through the queue and its limits.
    ui.queue(default_concurrency_limit=None, max_size=2048, api_open=not share_mode)
    # Gradio resolves matplotlib's backend around every event (for gr.Plot); the first time, it
    # imports matplotlib and pyplot: about 0.19 s more on the first reply after a start
    # (measured). Done here, before the server accepts anyone.
    warm_matplotlib = getattr(gr.utils, "MatplotlibBackendMananger", None)
    if warm_matplotlib is not None:
        with warm_matplotlib():
            pass
    gr.mount_gradio_app(
        app, ui, path="/", auth=credentials or None, css=CSS,
        auth_message="Durable chat: log in with the credentials from SHARE_AUTH.",
        # show_error=False: an unexpected exception's text (psycopg's carries SQL) stays in the
        # log; handlers show ChatError messages as notices themselves, and gr.Error still shows.
        enable_monitoring=False if share_mode else None, show_error=False, max_file_size="10mb",
        footer_links=["api"] if not share_mode else [],
    )
    # Gradio checks the paths named in event inputs only once its Blocks has launched, which
    # mount_gradio_app never marks; GradioGuard refuses them before Gradio sees them anyway.
    ui.has_launched = True
    app.add_middleware(GradioGuard, blocks=ui, login_required=bool(credentials))
    settings = service.settings
    install_request_guards(app, allowed_hosts(settings.host, settings.allowed_hosts.split(","),
                                              share_mode=share_mode))
    return app
