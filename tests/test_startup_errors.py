"""Start-up failures end with one clear line that says what to do, and no secret in it."""

from __future__ import annotations

import http.client
import time
from typing import Iterator

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import AppProcess, EarlyExits, base_env, free_port

SECRET = "s3cret-Passw0rd"

pytestmark = pytest.mark.slow  # every test here starts the app as a process


MALFORMED_LLM_URLS = [
    (f"http://user:{SECRET}@gpu-box:50x0", "has port '50x0'"),
    ("http://gpu box:5000", "must not contain spaces"),
]


@pytest.fixture(scope="module")
def refusals(database_url: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EarlyExits]:
    """The runs of app.py the tests below expect to refuse, all started at once, by name:
    postgres-down (seconds: the app is imported before the database refuses), bad-setting,
    and each of MALFORMED_LLM_URLS by its URL."""
    runs = EarlyExits()

    def start(name: str, env: dict[str, str]) -> None:
        tmp = tmp_path_factory.mktemp("refusal")
        runs.start(name, {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "DATA_DIR": str(tmp),
                          **env}, tmp)

    port = free_port()  # nothing listens there
    start("postgres-down", {"DATABASE_URL": f"postgresql://app:{SECRET}@127.0.0.1:{port}/chat",
                            "VLLM_BASE_URL": "http://127.0.0.1:9"})
    start("bad-setting", {"PORT": "eighty"})
    for url, _ in MALFORMED_LLM_URLS:
        start(url, {"DATABASE_URL": database_url, "VLLM_BASE_URL": url})
    yield runs
    runs.close()


def test_postgres_down_at_start(refusals: EarlyExits) -> None:
    result = refusals.result("postgres-down")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot connect to PostgreSQL at postgresql://app:***@")
    assert "start the server" in lines[0] and "DATABASE_URL" in lines[0]
    assert SECRET not in result.stderr + result.stdout


def test_bad_setting_is_one_line(refusals: EarlyExits) -> None:
    result = refusals.result("bad-setting")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: PORT must be a whole number, got 'eighty'"


@pytest.mark.parametrize("url,words", MALFORMED_LLM_URLS)
def test_malformed_llm_url_is_one_line(refusals: EarlyExits, url: str, words: str) -> None:
    """Not a traceback from the HTTP client once the database is up: the settings error, at
    once, with the password masked."""
    result = refusals.result(url)
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
