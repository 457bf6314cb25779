"""What a turn promises: idempotent retries, per-conversation order, LLM outages survived or
recorded, and retrying a failed turn."""

from __future__ import annotations

import concurrent.futures

import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import InProcessApp, query, wait_until

pytestmark = pytest.mark.slow  # the real app on PostgreSQL


def _rows(app: InProcessApp, cid: str) -> list[tuple]:
    return query(app.settings.database_url or "",
                 "SELECT role, content, status, seq FROM messages WHERE conversation_id = %s"
                 " ORDER BY seq, role DESC, created_at", (cid,))


def test_same_idempotency_key_returns_the_same_turn(app: InProcessApp, llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        headers = {"Idempotency-Key": "client-msg-1"}
        first = http.post(f"/api/conversations/{cid}/messages", json={"content": "once"},
                          headers=headers).json()
        again = http.post(f"/api/conversations/{cid}/messages", json={"content": "once"},
                          headers=headers).json()
    assert again == first
    assert [r[:2] for r in _rows(app, cid)] == [("user", "once"),
                                               ("assistant", first["assistant_message"]["content"])]
    assert llm.user_messages_seen() == ["once"]


def test_concurrent_duplicates_make_one_turn(app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.settings.ttft_ms = 300
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]

        def send() -> dict:
            with app.client() as c:
                return c.post(f"/api/conversations/{cid}/messages", json={"content": "dup"},
                              headers={"Idempotency-Key": "k-42"}).json()

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: send(), range(4)))
    assert all(r == results[0] for r in results)
    assert len(_rows(app, cid)) == 2
    assert llm.user_messages_seen() == ["dup"]


def test_reusing_a_key_for_another_message_is_refused(app: InProcessApp) -> None:
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        http.post(f"/api/conversations/{cid}/messages", json={"content": "original"},
                  headers={"Idempotency-Key": "same"})
        clash = http.post(f"/api/conversations/{cid}/messages", json={"content": "different"},
                          headers={"Idempotency-Key": "same"})
    assert clash.status_code == 422
    assert "Idempotency-Key" in clash.json()["error"]
    assert [r[1] for r in _rows(app, cid) if r[0] == "user"] == ["original"]


def test_the_same_key_in_two_conversations_names_two_turns(app: InProcessApp) -> None:
    with app.client() as http:
        a = http.post("/api/conversations").json()["id"]
        b = http.post("/api/conversations").json()["id"]
        ra = http.post(f"/api/conversations/{a}/messages", json={"content": "x"},
                       headers={"Idempotency-Key": "shared"}).json()
        rb = http.post(f"/api/conversations/{b}/messages", json={"content": "x"},
                       headers={"Idempotency-Key": "shared"}).json()
    assert ra["user_message"]["id"] != rb["user_message"]["id"]
    assert len(_rows(app, a)) == 2 and len(_rows(app, b)) == 2


def test_two_messages_at_once_are_answered_in_order(app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.settings.ttft_ms = 200
    llm.settings.tpot_ms = 20
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]

    def send(text: str) -> dict:
        with app.client() as c:
            return c.post(f"/api/conversations/{cid}/messages", json={"content": text}).json()

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(send, "one")
        # "one" is accepted first: its message is saved (seq 1) before "two" is sent, while
        # its reply is still being generated (the first token takes 200 ms).
        wait_until(lambda: len(_rows(app, cid)) >= 1)
        second = pool.submit(send, "two")
        one, two = first.result(), second.result()
    assert one["user_message"]["seq"] == 1 and two["user_message"]["seq"] == 2
    # The second request the LLM received carries the first turn's reply as history.
    assert llm.user_messages_seen() == ["one", "two"]
    history = llm.requests[1]["messages"]
    assert [m["content"] for m in history] == ["one", one["assistant_message"]["content"], "two"]
    assert two["assistant_message"]["content"].startswith("Reply to [two]")


def test_concurrent_conversations_never_mix(app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.settings.tpot_ms = 5
    with app.client() as http:
        cids = [http.post("/api/conversations").json()["id"] for _ in range(8)]

    def chat(cid: str) -> list[tuple[str, str]]:
        pairs = []
        with app.client() as c:
            for n in range(3):
                text = f"{cid}:{n}"
                reply = c.post(f"/api/conversations/{cid}/messages", json={"content": text})
                pairs.append((text, reply.json()["assistant_message"]["content"]))
        return pairs

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for pairs in pool.map(chat, cids):
            for text, reply in pairs:
                assert reply.startswith(f"Reply to [{text}]")
    for cid in cids:
        rows = _rows(app, cid)
        assert [r[1] for r in rows if r[0] == "user"] == [f"{cid}:{n}" for n in range(3)]


def test_llm_outage_then_recovery_within_the_bound(app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.script({"action": "error", "status": 503}, {"action": "error", "status": 500})
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        reply = http.post(f"/api/conversations/{cid}/messages", json={"content": "persist"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["assistant_message"]["content"].startswith("Reply to [persist]")
    assert len(llm.requests) == 3  # two failures, then the answer
    assert [r[2] for r in _rows(app, cid)] == ["complete", "complete"]


def test_llm_outage_past_the_bound_records_an_error_and_keeps_the_message(
        app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.script(*[{"action": "error", "status": 502}] * 3)  # LLM_MAX_ATTEMPTS=3 in tests
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        failed = http.post(f"/api/conversations/{cid}/messages", json={"content": "lost?"})
        assert failed.status_code == 502
        body = failed.json()
        assert "502" in body["error"] and "retry" in body["error"]
        assert body["user_message"]["content"] == "lost?"
        assert body["assistant_message"]["status"] == "error"
        listed = http.get(f"/api/conversations/{cid}/messages").json()
        assert [(m["role"], m["status"]) for m in listed] == [("user", "complete"),
                                                             ("assistant", "error")]
        assert listed[1]["error"] == body["assistant_message"]["error"]

        # The server is back: retrying answers the same message, keeping the failed attempt.
        retried = http.post(
            f"/api/conversations/{cid}/messages/{body['user_message']['id']}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["user_message"]["id"] == body["user_message"]["id"]
        assert retried.json()["assistant_message"]["content"].startswith("Reply to [lost?]")
    assert [(r[0], r[2]) for r in _rows(app, cid)] == [
        ("user", "complete"), ("assistant", "error"), ("assistant", "complete")]


def test_a_rejected_request_is_not_retried(app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.script({"action": "error", "status": 400, "message": "bad sampling parameters"})
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        failed = http.post(f"/api/conversations/{cid}/messages", json={"content": "x"})
    assert failed.status_code == 502
    assert "bad sampling parameters" in failed.json()["error"]
    assert len(llm.requests) == 1


def test_stream_cut_mid_reply_is_retried_from_scratch(app: InProcessApp,
                                                     llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 6
    llm.script({"action": "drop", "after_tokens": 3})
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        reply = http.post(f"/api/conversations/{cid}/messages", json={"content": "cut"})
    assert reply.status_code == 200, reply.text
    content = reply.json()["assistant_message"]["content"]
    assert content == "Reply to [cut] w0 w1 w2 w3 w4"  # whole, not the cut attempt plus more
    assert len(llm.requests) == 2
