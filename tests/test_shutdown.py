"""Once the app has begun to stop (app.py calls ChatService.begin_shutdown when uvicorn starts
shutting down): no new turn is accepted, finished turns are still answered, a turn in flight is
reported as going on in the next process. Here the hub is closed while the server still serves,
so each answer can be checked."""

from __future__ import annotations

import json
import threading

import httpx

from chat_core.emulated_llm import EmulatedLLM
from tests.helpers import InProcessApp, query, wait_until


def _events(app: InProcessApp, turn_id: str) -> list[tuple[str, dict]]:
    out = []
    with httpx.stream("GET", f"{app.url}/api/turns/{turn_id}/events", timeout=30) as r:
        event = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
    return out


def test_once_stopping_new_turns_are_refused_and_finished_ones_still_answered(
        app: InProcessApp, llm: EmulatedLLM) -> None:
    db = app.settings.database_url or ""
    with app.client() as http:
        done = http.post("/api/conversations").json()["id"]
        first = http.post(f"/api/conversations/{done}/messages", json={"content": "finished"},
                          headers={"Idempotency-Key": "k-done"}).json()
        finished_turn = first["assistant_message"]["workflow_id"]
        llm.settings.reply_tokens = 400
        llm.settings.tpot_ms = 50
        busy = http.post("/api/conversations").json()["id"]
    waiting: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: waiting.append(httpx.post(
        f"{app.url}/api/conversations/{busy}/messages", json={"content": "still going"},
        timeout=60)), daemon=True)
    sender.start()
    in_flight = wait_until(lambda: query(db, "SELECT workflow_id FROM messages WHERE"
                                         " conversation_id = %s AND role = 'assistant' AND"
                                         " status = 'streaming'", (busy,)))[0][0]
    rows_before = query(db, "SELECT count(*) FROM messages")[0][0]
    conversations_before = query(db, "SELECT count(*) FROM conversations")[0][0]

    assert app.loop is not None and app.service is not None
    app.loop.call_soon_threadsafe(app.service.begin_shutdown)
    wait_until(lambda: app.service is not None and app.service.hub.closing)
    sender.join(10)
    # The request waiting for the reply in flight is answered at once.
    assert len(waiting) == 1 and waiting[0].status_code == 503, waiting
    assert waiting[0].json()["turn_id"] == in_flight

    with app.client() as http:
        # A new message, a retry and an edit are refused before anything is written.
        refused = [
            http.post(f"/api/conversations/{done}/messages", json={"content": "too late"}),
            http.post(f"/api/conversations/{done}/messages/{first['user_message']['id']}"
                      "/retry"),
            http.post(f"/api/conversations/{done}/messages/{first['user_message']['id']}"
                      "/edit", json={"content": "edited too late"}),
        ]
        for r in refused:
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "shutting_down"
            assert "send the request again once the app is back" in r.json()["error"]
        assert query(db, "SELECT count(*) FROM messages")[0][0] == rows_before
        assert query(db, "SELECT count(*) FROM conversations")[0][0] == conversations_before
        # What was saved is still served.
        assert len(http.get(f"/api/conversations/{done}/messages").json()) == 2
    # A finished turn's stream still ends with its reply...
    events = _events(app, finished_turn)
    assert events[-1][0] == "done" and events[-1][1]["status"] == "complete", events
    # ...and one in flight says it goes on in the next process.
    events = _events(app, in_flight)
    assert events[-1][0] == "error", events
    assert events[-1][1]["code"] == "shutting_down" and events[-1][1]["status"] == 503
    assert in_flight in events[-1][1]["error"]
