"""Durable chat: a Gradio app whose every turn is a DBOS workflow on PostgreSQL.

    python app.py                 # embedded PostgreSQL + local CPU model, http://127.0.0.1:8080
    DATABASE_URL=postgresql://... VLLM_BASE_URL=http://gpu-box:5000 python app.py
    SHARE_AUTH=alice:long-password python app.py --share    # public Gradio link, login required
    SHARE_AUTH=host:long-password SHARE_INVITE=room-code python app.py --host 0.0.0.0  # a LAN

Any SHARE_AUTH / SHARE_INVITE turns accounts on: everyone logs in (chat_core/web/auth.py).
Start-up order: database, migrations, accounts, LLM, DBOS (which resumes unfinished turns),
then the web server with the REST API and the UI on one port. SIGINT/SIGTERM stop it cleanly; a
turn still running then resumes on the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any, Callable, Iterator

import uvicorn

from chat_core.config import ConfigError, Settings, load_settings
from chat_core.errors import ChatError
from chat_core.logging_setup import configure_logging
from chat_core.web.event_loop import describe, http_protocol, run as run_loop

log = logging.getLogger("app")


# uvicorn cancels the requests still open this long after a shutdown began, logging a
# traceback for each; the requests the app has not answered by ANSWER_OPEN_REQUESTS_SEC are
# answered by AnswerAtShutdown instead, before that.
GRACEFUL_SHUTDOWN_SEC = 3
ANSWER_OPEN_REQUESTS_SEC = 2.0

SHUTTING_DOWN = {
    "error": "the app is shutting down; send the request again once it is back (with the same "
             "Idempotency-Key, if it had one, to get the same turn and its reply)",
    "code": "shutting_down"}


class _Open:
    """One HTTP request in progress, as far as its response has gone."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.path: str = scope.get("path", "")
        self.started = False
        self.finished = False
        self.event_stream = False
        self.cut = False


class AnswerAtShutdown:
    """ASGI wrapper: once the server stops, a request that is still open when `answer_open()`
    is called is ended here with an answer: a 503 `shutting_down` if nothing was sent yet, an
    `error` event for a REST event stream, the end of the body otherwise. The app answers
    waiting requests itself at once (ChatService.begin_shutdown); this covers what it could
    not answer in time, whatever the load (a database too busy to read the saved turn), so that
    uvicorn never cuts a request with a traceback in the log."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._open: dict[asyncio.Task[Any], _Open] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        if scope["type"] != "http" or task is None:
            return await self.app(scope, receive, send)
        state = self._open[task] = _Open(scope)

        async def tracked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state.started = True
                state.event_stream = any(k.lower() == b"content-type" and
                                         v.startswith(b"text/event-stream")
                                         for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                state.finished = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if not state.cut:
                raise
            task.uncancel()
            await self._answer(state, send)
        finally:
            self._open.pop(task, None)

    def answer_open(self) -> int:
        """End every request still open (their tasks, cancelled, answer in __call__)."""
        cut = 0
        for task, state in list(self._open.items()):
            if not state.finished and not task.done():
                state.cut = True
                task.cancel()
                cut += 1
        if cut:
            log.info("answered %d request(s) still open at shutdown with shutting_down", cut)
        return cut

    @staticmethod
    async def _answer(state: _Open, send: Any) -> None:
        body = json.dumps(SHUTTING_DOWN).encode()
        try:
            if not state.started:
                await send({"type": "http.response.start", "status": 503,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode()),
                                        (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
            elif state.event_stream and state.path.startswith("/api/"):
                event = {**SHUTTING_DOWN, "status": 503}
                await send({"type": "http.response.body",
                            "body": f"event: error\ndata: {json.dumps(event)}\n\n".encode()})
            else:
                await send({"type": "http.response.body", "body": b""})
        except Exception:  # the client went away meanwhile: nothing left to answer
            pass


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after its own shutdown, which would interrupt ours; this
    one records the signal and lets app.py finish stopping the runtime first. When the shutdown
    starts it calls `on_shutdown`, so that requests waiting for a reply end with an answer
    before uvicorn's grace period runs out and it cuts them; what is still open after
    ANSWER_OPEN_REQUESTS_SEC is answered by its app, when that is an AnswerAtShutdown."""

    on_shutdown: Callable[[], None] | None = None

    @property
    def guard(self) -> AnswerAtShutdown | None:
        app = self.config.app
        return app if isinstance(app, AnswerAtShutdown) else None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.on_shutdown is not None:
            self.on_shutdown()
        timer, guard = None, self.guard
        if guard is not None:
            timer = asyncio.get_running_loop().call_later(ANSWER_OPEN_REQUESTS_SEC,
                                                          guard.answer_open)
        try:
            await super().shutdown(sockets)
        finally:
            if timer is not None:
                timer.cancel()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="port for the UI and the API (default: PORT "
                        "or 8080)")
    parser.add_argument("--host", help="address to listen on (default: HOST or 127.0.0.1)")
    parser.add_argument("--share", action="store_true",
                        help="also publish a public Gradio share link; needs accounts: "
                        "SHARE_AUTH=user:password (environment or .env)")
    return parser.parse_args(argv)


async def serve(settings: Settings, share: bool = False) -> None:
    if share and not settings.share_auth:
        raise ConfigError("--share publishes the app on the internet: set SHARE_AUTH=user:password"
                          " (environment or .env) so that only you and the people you let in"
                          " can use it")
    # The rest of the app is imported once the settings passed: that is most of a start's
    # seconds (Gradio alone about half), and a refused setting should be told at once. All of
    # it before the runtime starts: an import holds the event loop, which then runs the turns
    # DBOS recovers.
    from chat_core.accounts.config_accounts import config_accounts
    config_accounts(settings)  # every SHARE_* mistake is told before anything starts
    from chat_core.heap import freeze_startup_heap
    from chat_core.runtime import ChatRuntime
    from chat_core.ui.page import build_ui
    from chat_core.web.app import build_web_app
    from chat_core.web.share_link import open_share_link
    # Gradio imports pyplot around its first event, a person's first reply: now instead.
    import matplotlib.pyplot  # noqa: F401
    # Before the runtime starts: DBOS runs the turns it recovers from then on (heap.py).
    frozen = freeze_startup_heap()
    runtime = ChatRuntime(settings)
    service = await runtime.start()
    try:
        guard = AnswerAtShutdown(build_web_app(service, build_ui(service, share_mode=share),
                                               accounts=runtime.accounts, share_mode=share))
        # Keep-alive well above uvicorn's 5 s: under load a client's next request on a pooled
        # connection raced the server closing it ("Server disconnected", ReadError): the only
        # errors in the benchmark at 256 and 512 conversations. 75 s outlasts common proxies'.
        server = _Server(uvicorn.Config(guard, host=settings.host, port=settings.port,
                                        log_level="warning", lifespan="on",
                                        timeout_keep_alive=75,
                                        http=http_protocol(settings.fast_io),
                                        # The client address is the socket's: X-Forwarded-For
                                        # is believed only from the share tunnel
                                        # (login_throttle.client_address), not from any local
                                        # process as uvicorn would by default.
                                        proxy_headers=False,
                                        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SEC))
        server.on_shutdown = service.begin_shutdown
        serving = asyncio.ensure_future(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:
            log.info("serving on %s; %d objects from start-up frozen (left out of the garbage"
                     " collector's passes)", describe(server.config), frozen)
            login = ", login required" if settings.accounts_enabled else ""
            print(f"* Durable chat on http://{settings.host}:{settings.port}  "
                  f"(model {service.backend.get('model', '?')}, {service.backend.get('kind')} "
                  f"backend{login})", flush=True)
            if share:
                try:
                    url = await asyncio.to_thread(open_share_link, settings.host, settings.port)
                    print(f"* Public share link: {url}  (login required)", flush=True)
                except RuntimeError as exc:
                    print(f"* {exc}", flush=True)
        await serving
        if not server.started:
            raise RuntimeError(f"the web server could not listen on {settings.host}:"
                               f"{settings.port}; is the port in use? Set PORT to another one")
    finally:
        log.info("stopping")
        await runtime.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {}
    if args.port is not None:
        overrides["PORT"] = str(args.port)
    if args.host is not None:
        overrides["HOST"] = args.host
    try:
        settings = load_settings({**os.environ, **overrides})
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        run_loop(serve(settings, share=args.share), fast=settings.fast_io)
    except (ChatError, RuntimeError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, ChatError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
