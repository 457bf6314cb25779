"""Share mode, three people on one app: every REST endpoint tried with another person's ids
answers exactly as it does for ids nobody has (404, the same body but for the id), changes
nothing, and lists leak nothing; the admin sees and steers everyone's; a kill -9 mid-turn keeps
the owner of every row.

One app process (conftest's `room`, shared with tests/test_isolation_browser.py: other
conversations may be there), real HTTP, HTTP Basic per person, the emulated LLM."""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import ROOM, AppProcess, query, wait_until

pytestmark = pytest.mark.slow  # the real app, as a process

PEOPLE = ROOM
ID = re.compile(r"(turn-)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def as_(room: AppProcess, name: str) -> httpx.Client:
    return httpx.Client(base_url=room.url, auth=(name, PEOPLE[name]), timeout=30)


@pytest.fixture(scope="module")
def bobs(room: AppProcess) -> dict[str, str]:
    """Bob's conversation with one finished turn: the ids the others will try."""
    with as_(room, "bob") as bob:
        cid = bob.post("/api/conversations", json={"title": "bob's secret plans"}).json()["id"]
        sent = bob.post(f"/api/conversations/{cid}/messages",
                        json={"content": "zanzibarish budget question"})
        assert sent.status_code == 200, sent.text
        body = sent.json()
        link = bob.post(f"/api/conversations/{cid}/links", json={})
        assert link.status_code == 201, link.text
    reply = body["assistant_message"]
    return {"cid": cid, "mid": body["user_message"]["id"], "rid": reply["id"],
            "turn": reply["workflow_id"], "link": link.json()["id"]}


def endpoints(ids: dict[str, str]) -> list[tuple[str, str, Any]]:
    c, m, r, t = ids["cid"], ids["mid"], ids["rid"], ids["turn"]
    return [
        ("GET", f"/api/conversations/{c}", None),
        ("PATCH", f"/api/conversations/{c}", {"title": "mine now"}),
        ("GET", f"/api/conversations/{c}/export", None),
        ("GET", f"/api/conversations/{c}/export?format=markdown", None),
        ("GET", f"/api/conversations/{c}/messages", None),
        ("POST", f"/api/conversations/{c}/messages", {"content": "hello"}),
        ("POST", f"/api/conversations/{c}/messages/{m}/retry", None),
        ("POST", f"/api/conversations/{c}/messages/{r}/continue", None),
        ("POST", f"/api/conversations/{c}/messages/{m}/edit", {"content": "edited"}),
        ("POST", f"/api/conversations/{c}/messages/{m}/branch", None),
        ("POST", f"/api/conversations/{c}/messages/{r}/select", None),
        ("GET", f"/api/conversations/{c}/links", None),
        ("POST", f"/api/conversations/{c}/links", {}),
        ("DELETE", f"/api/conversations/{c}/links/{ids['link']}", None),
        ("GET", f"/api/turns/{t}/events", None),
        ("GET", f"/api/turns/{t}/events?render=html", None),
        ("POST", f"/api/turns/{t}/stop", None),
        ("GET", f"/api/workflows/{t}", None),
        ("GET", f"/api/workflows/{t}/steps", None),
        ("POST", f"/api/workflows/{t}/cancel", None),
        ("POST", f"/api/workflows/{t}/resume", None),
        ("POST", f"/api/workflows/{t}/fork", {"start_step": 3}),
        ("GET", f"/api/workflows?conversation_id={c}", None),
        ("DELETE", f"/api/conversations/{c}", None),
    ]


def nobodys() -> dict[str, str]:
    return {"cid": str(uuid.uuid4()), "mid": str(uuid.uuid4()), "rid": str(uuid.uuid4()),
            "turn": f"turn-{uuid.uuid4()}", "link": str(uuid.uuid4())}


def shape(response: httpx.Response) -> tuple[int, str]:
    """The answer with every id in it replaced: what must not differ."""
    return response.status_code, ID.sub("<id>", response.text)


def test_every_endpoint_answers_someone_elses_ids_like_missing_ones(
        room: AppProcess, bobs: dict[str, str]) -> None:
    before = query(room.env["DATABASE_URL"],
                   "SELECT count(*), max(title) FROM messages m JOIN conversations c"
                   " ON c.id = m.conversation_id WHERE c.id = %s", (bobs["cid"],))
    with as_(room, "carol") as carol:
        for (method, path, body), (_, missing_path, _) in zip(endpoints(bobs),
                                                               endpoints(nobodys())):
            theirs = carol.request(method, path, json=body)
            missing = carol.request(method, missing_path, json=body)
            assert theirs.status_code in (404, 200), (method, path, theirs.text)
            assert shape(theirs) == shape(missing), (method, path)
            assert "zanzibarish" not in theirs.text and "secret plans" not in theirs.text
    after = query(room.env["DATABASE_URL"],
                  "SELECT count(*), max(title) FROM messages m JOIN conversations c"
                  " ON c.id = m.conversation_id WHERE c.id = %s", (bobs["cid"],))
    assert after == before == [(2, "bob's secret plans")]
    with as_(room, "bob") as bob:
        assert bob.get(f"/api/conversations/{bobs['cid']}").status_code == 200
        assert len(bob.get(f"/api/conversations/{bobs['cid']}/links").json()) == 1


def test_lists_and_search_show_only_ones_own(room: AppProcess, bobs: dict[str, str]) -> None:
    with as_(room, "carol") as carol:
        mine = carol.post("/api/conversations", json={"title": "carol's"}).json()["id"]
        listed = carol.get("/api/conversations").json()
        owned = {str(r[0]) for r in query(
            room.env["DATABASE_URL"], "SELECT c.id FROM conversations c JOIN accounts a ON"
            " a.id = c.owner_id WHERE a.name = 'carol'")}
        assert mine in owned and bobs["cid"] not in owned
        assert sorted(c["id"] for c in listed) == sorted(owned)  # hers, all, and only hers
        assert carol.get("/api/conversations", params={"q": "zanzibarish"}).json() == []
        turns = carol.get("/api/workflows").json()
        assert bobs["turn"] not in {t["workflow_id"] for t in turns}
    with as_(room, "bob") as bob:
        found = bob.get("/api/conversations", params={"q": "zanzibarish"}).json()
        assert [c["id"] for c in found] == [bobs["cid"]]
        assert mine not in {c["id"] for c in bob.get("/api/conversations").json()}
        assert bobs["turn"] in {t["workflow_id"] for t in bob.get("/api/workflows").json()}


def test_the_admin_sees_and_steers_everyones(room: AppProcess, bobs: dict[str, str]) -> None:
    with as_(room, "alice") as alice:
        seen = alice.get(f"/api/conversations/{bobs['cid']}")
        assert seen.status_code == 200 and seen.json()["owner"] == "bob"
        listed = alice.get("/api/conversations").json()
        assert bobs["cid"] in {c["id"] for c in listed}
        only_bob = alice.get("/api/conversations", params={"owner": "bob"}).json()
        assert {c["owner"] for c in only_bob} == {"bob"}
        turns = {t["workflow_id"]: t for t in alice.get("/api/workflows").json()}
        assert turns[bobs["turn"]]["owner"] == "bob"
        fork = alice.post(f"/api/workflows/{bobs['turn']}/fork", json={"start_step": 3})
        assert fork.status_code == 202, fork.text
        forked = fork.json()["workflow_id"]
        wait_until(lambda: alice.get(f"/api/workflows/{forked}").json()["status"] == "SUCCESS")
    with as_(room, "bob") as bob:
        replies = [m for m in bob.get(f"/api/conversations/{bobs['cid']}/messages").json()
                   if m["role"] == "assistant"]
        assert forked in {m["workflow_id"] for m in replies}  # the fork answered in bob's


def test_a_kill_9_mid_turn_keeps_the_owner_of_every_row(
        room: AppProcess, room_llm: EmulatedLLM) -> None:
    llm = room_llm
    with as_(room, "carol") as carol:
        cid = carol.post("/api/conversations").json()["id"]
    llm.script({"action": "hang"})
    seen = len(llm.requests)

    def send() -> None:
        try:
            with as_(room, "carol") as carol:
                carol.post(f"/api/conversations/{cid}/messages",
                           json={"content": "survive as carol"}, headers={"Idempotency-Key": "k"})
        except httpx.HTTPError:
            pass  # the app dies under this request
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    wait_until(lambda: len(llm.requests) > seen)
    room.kill9()
    sender.join(10)
    llm.release()
    room.start(timeout=240)
    with as_(room, "carol") as carol:
        again = carol.post(f"/api/conversations/{cid}/messages",
                           json={"content": "survive as carol"}, headers={"Idempotency-Key": "k"})
        assert again.status_code == 200, again.text
    with as_(room, "bob") as bob:
        assert bob.get(f"/api/conversations/{cid}/messages").status_code == 404
    owners = query(room.env["DATABASE_URL"],
                   "SELECT a.name, m.role, m.status FROM messages m JOIN conversations c"
                   " ON c.id = m.conversation_id JOIN accounts a ON a.id = c.owner_id"
                   " WHERE c.id = %s ORDER BY m.seq, m.role DESC", (cid,))
    assert owners == [("carol", "user", "complete"), ("carol", "assistant", "complete")]
    admitted = query(room.env["DATABASE_URL"],
                     "SELECT a.name FROM turn_admissions t JOIN accounts a ON a.id = t.owner_id"
                     " WHERE t.conversation_id = %s", (cid,))
    assert admitted == [("carol",)]
