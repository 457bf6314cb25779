"""Start-up failures end with one clear line that says what to do, and no secret in it."""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import ROOT, AppProcess, base_env, free_port

SECRET = "s3cret-Passw0rd"

pytestmark = pytest.mark.slow  # every test here starts the app as a process


def _run_app(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DATA_DIR": str(tmp_path), **env}
    return subprocess.run([sys.executable, str(ROOT / "app.py")], env=full, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_postgres_down_at_start(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = _run_app({"DATABASE_URL": f"postgresql://app:{SECRET}@127.0.0.1:{port}/chat",
                       "VLLM_BASE_URL": "http://127.0.0.1:9"}, tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot connect to PostgreSQL at postgresql://app:***@")
    assert "start the server" in lines[0] and "DATABASE_URL" in lines[0]
    assert SECRET not in result.stderr + result.stdout


def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    result = _run_app({"PORT": "eighty"}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: PORT must be a whole number, got 'eighty'"


@pytest.mark.parametrize("url,words", [
    (f"http://user:{SECRET}@gpu-box:50x0", "has port '50x0'"),
    ("http://gpu box:5000", "must not contain spaces"),
])
def test_malformed_llm_url_is_one_line(database_url: str, tmp_path: Path, url: str,
                                       words: str) -> None:
    """Not a traceback from the HTTP client once the database is up: the settings error, at
    once, with the password masked."""
    result = _run_app({"DATABASE_URL": database_url, "VLLM_BASE_URL": url}, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: VLLM_BASE_URL ") and words in lines[0]
    assert "unset it to use the local CPU model" in lines[0]
    assert SECRET not in result.stderr + result.stdout


@pytest.fixture(scope="module")
def logged_app(database_url: str, llm: EmulatedLLM,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """app.py with a telling password in DATABASE_URL (the local server trusts connections, so
    any password is accepted) and everything logged. One process for the two tests below (a
    start costs 5-10 s): the idle connection is held on it first, then the password test stops
    it and reads all it logged."""
    tmp = tmp_path_factory.mktemp("logged")
    url = database_url.replace("postgres@", f"postgres:{SECRET}@")
    app = AppProcess(base_env(url, llm.base_url, tmp, LOG_LEVEL="DEBUG", DBOS_LOG_LEVEL="DEBUG"),
                     tmp / "app.log")
    yield app
    app.stop()


def _running(app: AppProcess) -> AppProcess:
    """`app` serving: started unless a test before left it running."""
    if app.proc is None or app.proc.poll() is not None:
        app.start()
    return app


def test_an_idle_connection_stays_open(logged_app: AppProcess) -> None:
    """A client's pooled connection is still there after a pause longer than uvicorn's default
    keep-alive (5 s): closing it raced the client's next request under load."""
    app = _running(logged_app)
    conn = http.client.HTTPConnection("127.0.0.1", int(app.env["PORT"]), timeout=10)
    try:
        sockets = []
        for pause in (0, 6):
            time.sleep(pause)
            conn.request("GET", "/healthz")  # raises RemoteDisconnected if it was closed
            response = conn.getresponse()
            assert response.status == 200 and response.read()
            sockets.append(conn.sock)
        assert sockets[0] is sockets[1]  # the same connection, not a new one
    finally:
        conn.close()


def test_password_never_reaches_logs_or_responses(logged_app: AppProcess,
                                                  llm: EmulatedLLM) -> None:
    app = _running(logged_app)
    try:
        bodies = [httpx.get(f"{app.url}{path}").text for path in
                  ("/healthz", "/api/conversations", "/api/conversations/x", "/nope",
                   "/api/workflows")]
        llm.stop()
        bodies.append(httpx.get(f"{app.url}/healthz").text)
        llm.start()
    finally:
        app.stop()
    assert all(SECRET not in body for body in bodies)
    log = app.log_path.read_text()  # from its start to its stop
    assert "postgres:***@" in log or "DBOS launched" in log
    assert SECRET not in log
