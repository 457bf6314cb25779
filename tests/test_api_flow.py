"""The seed's REST flow, end to end: real HTTP, real PostgreSQL, an OpenAI-compatible server."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import InProcessApp, query

pytestmark = pytest.mark.slow  # the real app on PostgreSQL

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _is_message(m: dict, role: str) -> None:
    assert set(m) >= {"id", "role", "content", "created_at"}
    assert m["role"] == role
    assert ISO.match(m["created_at"]), m["created_at"]


def test_seed_flow_create_send_list(app: InProcessApp, llm: EmulatedLLM) -> None:
    with app.client() as http:
        created = http.post("/api/conversations")
        assert created.status_code == 201
        conv = created.json()
        assert set(conv) >= {"id", "created_at"}

        sent = http.post(f"/api/conversations/{conv['id']}/messages",
                         json={"content": "Hello AI!"})
        assert sent.status_code == 200, sent.text
        body = sent.json()
        _is_message(body["user_message"], "user")
        _is_message(body["assistant_message"], "assistant")
        assert body["user_message"]["content"] == "Hello AI!"
        assert body["assistant_message"]["content"].startswith("Reply to [Hello AI!]")

        listed = http.get(f"/api/conversations/{conv['id']}/messages").json()
        assert [(m["role"], m["content"]) for m in listed] == [
            ("user", "Hello AI!"), ("assistant", body["assistant_message"]["content"])]
        assert [m["id"] for m in listed] == [body["user_message"]["id"],
                                             body["assistant_message"]["id"]]

        conversations = http.get("/api/conversations").json()
        assert conv["id"] in [c["id"] for c in conversations]
    # The LLM saw exactly the user's message, and the reply row records how it was made.
    assert llm.user_messages_seen() == ["Hello AI!"]
    row = query(app.settings.database_url or "", "SELECT model, prompt_tokens, completion_tokens,"
                " ttft_ms, latency_ms, workflow_id FROM messages WHERE role = 'assistant'"
                " AND conversation_id = %s", (conv["id"],))
    model, prompt_tokens, completion_tokens, ttft, latency, workflow_id = row[0]
    assert model == llm.settings.model
    assert prompt_tokens > 0 and completion_tokens > 0
    assert 0 <= ttft <= latency
    assert workflow_id == body["assistant_message"]["workflow_id"]


def test_history_is_sent_and_each_reply_answers_its_message(app: InProcessApp,
                                                           llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        for text in ("first", "second", "third"):
            reply = http.post(f"/api/conversations/{cid}/messages", json={"content": text})
            assert reply.json()["assistant_message"]["content"].startswith(f"Reply to [{text}]")
    last = llm.requests[-1]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in last if m["role"] == "user"] == ["first", "second", "third"]


def test_conversations_are_listed_newest_first_with_a_title(app: InProcessApp) -> None:
    with app.client() as http:
        a = http.post("/api/conversations").json()["id"]
        b = http.post("/api/conversations", json={"title": "Named"}).json()["id"]
        http.post(f"/api/conversations/{a}/messages", json={"content": "Plan a trip to Lisbon"})
        listed = http.get("/api/conversations").json()
    ids = [c["id"] for c in listed]
    assert ids.index(a) < ids.index(b)  # a has the newer activity
    titles = {c["id"]: c["title"] for c in listed}
    assert titles[a] == "Plan a trip to Lisbon"
    assert titles[b] == "Named"
    stamps = [datetime.fromisoformat(c["updated_at"].replace("Z", "+00:00")) for c in listed]
    assert stamps == sorted(stamps, reverse=True)


def test_healthz_reports_database_and_model(app: InProcessApp, llm: EmulatedLLM) -> None:
    with app.client() as http:
        health = http.get("/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert body["model"] == llm.settings.model
    assert body["database_ms"] >= 0


def test_streaming_send_emits_deltas_then_both_messages(app: InProcessApp,
                                                        llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 6
    llm.settings.tpot_ms = 30
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        events = []
        with http.stream("POST", f"/api/conversations/{cid}/messages?stream=true",
                         json={"content": "stream me"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    events.append((event, json.loads(line[6:])))
    kinds = [e for e, _ in events]
    assert kinds[0] == "turn" and kinds[-1] == "done"
    deltas = "".join(d["text"] for e, d in events if e == "delta")
    assert kinds.count("delta") >= 2
    done = events[-1][1]
    assert deltas == done["assistant_message"]["content"]
    assert done["assistant_message"]["content"].startswith("Reply to [stream me]")
