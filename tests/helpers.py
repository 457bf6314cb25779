"""Test harness: real PostgreSQL databases, the real app in-process or as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Coroutine, Iterator, TypeVar

import httpx
import psycopg
import uvicorn

from chat_core.testing.app_process import AppProcess, free_port  # noqa: F401 (re-exported)
from chat_core.testing.emulated_llm import EmulatedLLM, EmulatorSettings
from chat_core.config import Settings, load_settings
from chat_core.runtime import ChatRuntime
from chat_core.service import ChatService
from chat_core.ui.page import build_ui
from chat_core.web.app import build_web_app
from chat_core.web.event_loop import http_protocol, run as run_loop

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NO_ENV_FILE = ROOT / "tests" / "no-such.env"
T = TypeVar("T")


def create_database(prefix: str = "chat_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def base_env(database_url: str, llm_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    """Environment of an app under test: fast LLM retries, its own data dir and executor."""
    env = {
        "DATABASE_URL": database_url,
        "VLLM_BASE_URL": llm_url,
        "PORT": str(free_port()),
        "DATA_DIR": str(tmp),
        "EXECUTOR_ID": f"test-{uuid.uuid4().hex[:8]}",
        "LLM_MAX_ATTEMPTS": "3",
        "LLM_RETRY_INTERVAL_SEC": "0.2",
        "LLM_RETRY_BACKOFF": "1.5",
        "LLM_READ_TIMEOUT_SEC": "20",
        "STREAM_CHECKPOINT_SEC": "0.2",
        "LOG_LEVEL": "WARNING",
    }
    if os.environ.get("FAST_IO"):  # the whole suite can run on either event loop
        env["FAST_IO"] = os.environ["FAST_IO"]
    env.update(extra)
    return env


class InProcessApp:
    """The whole app (runtime, REST API, UI) served by uvicorn on a thread with its own event
    loop, as app.py runs it. `call()` runs a service coroutine on that loop."""

    def __init__(self, env: dict[str, str], share: bool = False) -> None:
        self.settings: Settings = load_settings(env, env_file=NO_ENV_FILE)
        self.share = share
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self.runtime: ChatRuntime | None = None
        self.service: ChatService | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 60) -> "InProcessApp":
        self._thread = threading.Thread(target=self._run, daemon=True, name="app-under-test")
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("app did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            run_loop(self._main(), fast=self.settings.fast_io)
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.runtime = ChatRuntime(self.settings)
        self.service = await self.runtime.start()
        try:
            app = build_web_app(self.service, build_ui(self.service, share_mode=self.share),
                                share_mode=self.share)
            self._server = uvicorn.Server(uvicorn.Config(
                app, host="127.0.0.1", port=self.settings.port, log_level="warning",
                lifespan="on", timeout_graceful_shutdown=1, proxy_headers=False,
                http=http_protocol(self.settings.fast_io)))
            self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            serving = asyncio.ensure_future(self._server.serve())
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.01)
            self._ready.set()
            await serving
        finally:
            await self.runtime.stop()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop is not None and self.service is not None:
            # As app.py does when its server starts to shut down.
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self.loop.call_soon_threadsafe(self.service.begin_shutdown)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)


class EarlyExits:
    """Runs of app.py that must end by themselves (refusing to start), all started at once and
    collected by name. A setting refused is told in well under a second (app.py imports the
    rest of the app once the settings pass); one refused later, by the database, spends
    seconds importing the app first: run side by side, two take the wall time of one on a
    2-core machine."""

    def __init__(self) -> None:
        self._runs: dict[str, subprocess.Popen[str]] = {}
        self._cwds: dict[str, Path] = {}

    def start(self, name: str, env: dict[str, str], cwd: Path, *args: str) -> None:
        """app.py with `args`, in `env` alone (not added to this process's environment)."""
        self._cwds[name] = cwd
        self._runs[name] = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), *args], env=env, cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def cwd(self, name: str) -> Path:
        """The directory the run was started in (its DATA_DIR in the tests)."""
        return self._cwds[name]

    def result(self, name: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The run's exit status and output, once it has ended."""
        run = self._runs[name]
        out, err = run.communicate(timeout=timeout)
        return subprocess.CompletedProcess(run.args, run.returncode, out, err)

    def close(self) -> None:
        """Kill what still runs (a test that failed before collecting its run)."""
        for run in self._runs.values():
            if run.poll() is None:
                run.kill()
            run.communicate()


def close_soon(client: Any) -> None:
    """Close a gradio_client Client without waiting for it. close() tells the client's
    heartbeat thread to stop, then waits up to 1 s for it; the thread reads a stream that
    ends only with the server, so the wait always runs out (a second per test) and changes
    nothing: the thread stops at its next line either way."""
    threading.Thread(target=client.close, daemon=True, name="gradio-client-close").start()


def wait_until(predicate: Any, timeout: float = 30, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def in_flight_reply(url: str, conversation_id: str) -> str:
    """The workflow id of the conversation's reply in flight, once its row is saved. A new
    message's LLM request can leave before its workflow's first step saves the rows (the head
    start), so a test that saw the request waits for the row here before acting on the turn."""
    rows = wait_until(lambda: query(url, "SELECT workflow_id FROM messages WHERE"
                                    " conversation_id = %s AND role = 'assistant' AND status"
                                    " IN ('pending', 'streaming')", (conversation_id,)))
    assert len(rows) == 1, rows
    return rows[0][0]


# Three people sharing one app (share mode): alice, the first, is its admin.
ROOM = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-333"}


@contextlib.contextmanager
def shared_room(llm_url: str, tmp: Path, **extra: str) -> Any:
    """app.py as a process, with ROOM's accounts, on a database of its own."""
    url = create_database("room")
    try:
        env = base_env(url, llm_url, tmp, SHARE_AUTH=",".join(f"{n}:{p}" for n, p in
                                                                ROOM.items()), **extra)
        app = AppProcess(env, tmp / "app.log").start(timeout=240)
        try:
            yield app
        finally:
            app.stop()
    finally:
        drop_database(url)


@contextlib.contextmanager
def emulated_servers(*models: EmulatorSettings) -> Iterator[list[EmulatedLLM]]:
    """Emulated LLM servers, one per settings, for a block: the several servers of an app's
    VLLM_BASE_URL list (a model each)."""
    servers = [EmulatedLLM(settings) for settings in models]
    for server in servers:
        server.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@contextlib.contextmanager
def app_on(database_url: str, urls: list[str], tmp: Path, **extra: str
           ) -> Iterator[InProcessApp]:
    """The in-process app on these LLM servers (the first the default), for a block."""
    app = InProcessApp(base_env(database_url, ",".join(urls), tmp, **extra)).start()
    try:
        yield app
    finally:
        app.stop()
