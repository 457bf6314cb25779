"""The REST API's shapes where two endpoints show the same thing, and the turn endpoints of a
deleted conversation: the real app in-process, on PostgreSQL and the emulated LLM."""

from __future__ import annotations

import json

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import InProcessApp, wait_until

pytestmark = pytest.mark.slow


def _by_id(items: list[dict]) -> dict[str, dict]:
    return {item["id"]: item for item in items}


def test_a_listed_conversation_is_the_conversation(app: InProcessApp) -> None:
    """The list shows what GET /api/conversations/{id} shows: settings and origin included."""
    with app.client() as http:
        cid = http.post("/api/conversations", json={"title": "Trip"}).json()["id"]
        http.patch(f"/api/conversations/{cid}", json={"settings": {"temperature": 0.3}})
        sent = http.post(f"/api/conversations/{cid}/messages", json={"content": "Lisbon?"})
        mid = sent.json()["assistant_message"]["id"]
        branch = http.post(f"/api/conversations/{cid}/messages/{mid}/branch").json()["id"]
        listed = _by_id(http.get("/api/conversations").json())
        for one in (cid, branch):
            assert listed[one] == http.get(f"/api/conversations/{one}").json()
    assert listed[cid]["settings"] == {"temperature": 0.3}
    assert listed[cid]["origin_conversation_id"] is None
    assert (listed[branch]["origin_conversation_id"], listed[branch]["origin_message_id"]) \
        == (cid, mid)


def test_search_results_keep_their_own_shape(app: InProcessApp) -> None:
    """A search hit is a conversation's id, title and times with the best message: its id,
    rank and snippet (not its settings: the list and GET .../{id} have those)."""
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        http.post(f"/api/conversations/{cid}/messages", json={"content": "Porto tiles"})
        hits = http.get("/api/conversations", params={"q": "tiles"}).json()
    assert set(_by_id(hits)[cid]) == {"id", "title", "created_at", "updated_at", "message_id",
                                      "rank", "snippet"}


def test_the_turn_of_a_deleted_conversation_is_gone(app: InProcessApp, llm: EmulatedLLM,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-attaching to a finished turn whose conversation was deleted used to answer 200 and
    then send nothing, forever; now 404 at once, and so does stopping it."""
    assert app.service is not None
    with app.client(timeout=10) as http:  # a hang fails the test instead of blocking it
        cid = http.post("/api/conversations").json()["id"]
        sent = http.post(f"/api/conversations/{cid}/messages", json={"content": "soon gone"})
        turn_id = sent.json()["assistant_message"]["workflow_id"]
        with http.stream("GET", f"/api/turns/{turn_id}/events") as events:
            assert events.status_code == 200  # attached while the conversation exists
            assert "event: done" in events.read().decode()
        assert http.delete(f"/api/conversations/{cid}").status_code == 200
        # At once, in the process that ran it, whose finished progress is still in memory.
        with http.stream("GET", f"/api/turns/{turn_id}/events") as events:
            assert events.status_code == 404
        assert http.post(f"/api/turns/{turn_id}/stop").status_code == 404
        # As in another process, or 30 s on in this one: its live progress is no longer held.
        held = app.service.hub.get
        monkeypatch.setattr(app.service.hub, "get",
                            lambda tid: None if tid == turn_id else held(tid))
        with http.stream("GET", f"/api/turns/{turn_id}/events") as events:
            assert events.status_code == 404
            assert httpx.Response(404, content=events.read()).json()["code"] == "not_found"
        stopped = http.post(f"/api/turns/{turn_id}/stop")
    assert stopped.status_code == 404, stopped.text
    assert stopped.json()["code"] == "not_found"


def test_the_turn_of_a_conversation_deleted_while_it_ran_is_gone(app: InProcessApp,
                                                                llm: EmulatedLLM) -> None:
    """Deleting a conversation cancels its turn in flight; the turn is then gone too."""
    llm.script({"action": "hang"})
    with app.client(timeout=10) as http:
        cid = http.post("/api/conversations").json()["id"]
        with http.stream("POST", f"/api/conversations/{cid}/messages?stream=true",
                         json={"content": "cut short"}) as events:
            turn_id = _turn_id(events)
            wait_until(lambda: len(llm.requests) == 1)
            assert http.delete(f"/api/conversations/{cid}").status_code == 200
        llm.release()
        assert http.get(f"/api/turns/{turn_id}/events").status_code == 404
        assert http.post(f"/api/turns/{turn_id}/stop").status_code == 404


def _turn_id(events: httpx.Response) -> str:
    """The turn id from the stream's first event (`turn`)."""
    for line in events.iter_lines():
        if line.startswith("data: "):
            return str(json.loads(line[6:])["turn_id"])
    raise AssertionError("the stream ended before its turn event")


def test_a_bug_reaches_the_client_as_json(app: InProcessApp,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Through uvicorn: the 500 is answered (not a dropped connection), in the API's shape,
    with the security headers of every answer."""
    assert app.service is not None

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("SELECT * FROM secrets")

    monkeypatch.setattr(app.service, "list_conversations", broken)
    with app.client(timeout=10) as http:
        answer = http.get("/api/conversations")
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error; see the server log",
                             "code": "internal_error"}
    assert answer.headers["x-frame-options"] == "DENY"
