"""With no DATABASE_URL the app runs its own PostgreSQL in DATA_DIR, and leaves none running."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import AppProcess, base_env, free_port


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
