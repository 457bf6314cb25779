"""The analytics API: DataFrames of conversations, messages, turns and steps, and the exact
request of a turn, from the database the app wrote; on DATABASE_URL and on the embedded one."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from chat_core.data.analytics import Analytics
from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import (AppProcess, InProcessApp, base_env, create_database, drop_database,
                           free_port)


@pytest.mark.slow  # the real app
def test_frames_reflect_what_happened(app: InProcessApp, llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        http.patch(f"/api/conversations/{cid}", json={"settings": {"temperature": 0.3}})
        llm.script({"action": "error", "status": 503})
        first = http.post(f"/api/conversations/{cid}/messages",
                          json={"content": "analyse me"}).json()
        http.post(f"/api/conversations/{cid}/messages", json={"content": "and me"})
    workflow_id = first["assistant_message"]["workflow_id"]
    with Analytics.connect(app.settings.database_url) as data:
        conversations = data.conversations()
        row = conversations.set_index(conversations.id.astype(str)).loc[cid]
        assert (row.user_messages, row.replies) == (2, 2)
        replies = data.messages(role="assistant", conversation_id=cid)
        assert list(replies.temperature) == [0.3, 0.3]
        assert list(replies.llm_attempts) == [2, 1]  # the 503 was retried
        assert (replies.tokens_per_sec > 0).all() and (replies.ttft_ms > 0).all()
        turns = data.turns().set_index("workflow_id")
        assert turns.loc[workflow_id, "status"] == "SUCCESS"
        assert turns.loc[workflow_id, "llm_attempts"] == 2
        assert turns.loc[workflow_id, "recoveries"] == 0
        steps = data.steps([workflow_id])
        assert list(steps.name) == ["save_user_message", "read_history", "call_llm",
                                    "save_reply"]
        assert (steps.duration_ms >= 0).all()
        request = data.turn_request(workflow_id)
        assert request["messages"] == [{"role": "user", "content": "analyse me"}]
        assert request["temperature"] == 0.3
        with pytest.raises(LookupError):
            data.turn_request("turn-nope")
        assert data.messages(since="2999-01-01").empty


@pytest.mark.slow  # an app process with its embedded PostgreSQL
def test_the_embedded_database_is_read_too(llm: EmulatedLLM, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    env: dict[str, str | None] = {**base_env("unused", llm.base_url, tmp_path),
                                  "DATABASE_URL": None, "PORT": str(free_port())}
    app = AppProcess(env, tmp_path / "app.log").start()
    try:
        cid = httpx.post(f"{app.url}/api/conversations").json()["id"]
        httpx.post(f"{app.url}/api/conversations/{cid}/messages", json={"content": "hi"},
                   timeout=30)
    finally:
        app.stop()
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with Analytics.connect(data_dir=tmp_path) as data:
        assert list(data.conversations().id.astype(str)) == [cid]
        assert len(data.turns()) == 1


def test_an_empty_database_says_what_to_do() -> None:
    url = create_database("chat_empty")
    try:
        with pytest.raises(RuntimeError, match="run the app"):
            Analytics.connect(url)
    finally:
        drop_database(url)
