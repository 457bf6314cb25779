"""A backlog of turns waiting for the earlier turns of their conversations (issue 13): they are
woken when those finish, in any process, instead of polling; a backlog recovered at start
drains in order; a dead turn at the head of a conversation is closed by the safety re-check.

The apps here are started in this process one after the other on the module's database (the
earlier one stopped with turns in flight, which stay PENDING and are recovered by the next)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from chat_core.turns import workflow as turn_workflow
from chat_core.testing.emulated_llm import EmulatedLLM, EmulatorSettings
from chat_core.store.migrations import apply_migrations
from chat_core.turns.wakeups import TurnWakeups
from tests.helpers import InProcessApp, base_env, query, wait_until

pytestmark = pytest.mark.slow  # the real app working through piled-up turns


# -- the listener, against the database's trigger ------------------------------------------


def _pending_turns(url: str, conversation: uuid.UUID, count: int) -> list[str]:
    """A conversation with `count` user messages, each with a pending reply; the reply ids."""
    replies = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO conversations (id, last_seq) VALUES (%s, %s)",
                     (conversation, count))
        for seq in range(1, count + 1):
            user, reply = uuid.uuid4(), uuid.uuid4()
            conn.execute("INSERT INTO messages (id, conversation_id, seq, role, content) VALUES"
                         " (%s, %s, %s, 'user', 'q')", (user, conversation, seq))
            conn.execute("INSERT INTO messages (id, conversation_id, seq, role, parent_id, status,"
                         " workflow_id) VALUES (%s, %s, %s, 'assistant', %s, 'pending', %s)",
                         (reply, conversation, seq, user, f"turn-{reply}"))
            replies.append(str(reply))
    return replies


def _finish(url: str, reply_id: str) -> None:
    """What another process's save_reply does (any UPDATE to a final status notifies)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE messages SET status = 'complete' WHERE id = %s", (reply_id,))


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def test_a_waiter_wakes_once_every_reply_it_waits_for_is_final_in_any_process(
        database_url: str) -> None:
    asyncio.run(apply_migrations(database_url))
    here, elsewhere = uuid.uuid4(), uuid.uuid4()
    a, b = _pending_turns(database_url, here, 2)
    (other,) = _pending_turns(database_url, elsewhere, 1)

    async def scenario() -> None:
        wakeups = TurnWakeups(database_url)
        await wakeups.start()
        try:
            assert wakeups.listening
            with wakeups.waiter(str(here)) as waiter, \
                    wakeups.waiter(str(elsewhere)) as bystander:
                waiter.checking()
                waiter.expect([a, b])
                bystander.checking()
                bystander.expect([other])
                await asyncio.to_thread(_finish, database_url, a)
                await _until(lambda: wakeups.notifications == 1)
                assert not waiter.woken  # b is still in flight
                await asyncio.to_thread(_finish, database_url, b)
                assert await waiter.wait(10)
                assert not bystander.woken  # another conversation's news

                # A reply finished while the waiter was querying counts as done.
                waiter.checking()
                with psycopg.connect(database_url, autocommit=True) as conn:
                    conn.execute("DELETE FROM messages WHERE id = %s", (other,))
                await _until(lambda: wakeups.notifications == 3)
                bystander.expect([other])  # what a query that ran before the delete saw
                assert await bystander.wait(0)
        finally:
            await wakeups.stop()

    asyncio.run(scenario())


def test_after_the_listener_reconnects_every_waiter_looks_again(database_url: str) -> None:
    asyncio.run(apply_migrations(database_url))
    conversation = uuid.uuid4()
    (reply,) = _pending_turns(database_url, conversation, 1)

    async def scenario() -> None:
        wakeups = TurnWakeups(database_url, reconnect_sec=0.05)
        await wakeups.start()
        try:
            with wakeups.waiter(str(conversation)) as waiter:
                waiter.checking()
                waiter.expect([reply])
                # PostgreSQL restarting: notifications sent meanwhile are lost.
                with psycopg.connect(database_url, autocommit=True) as conn:
                    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                                 " application_name = 'durable-chat-wakeups' AND datname ="
                                 " current_database()")
                assert await waiter.wait(10)
                assert wakeups.connects == 2
        finally:
            await wakeups.stop()

    asyncio.run(scenario())


# -- the app: a backlog recovered at start ---------------------------------------------------


@pytest.fixture()
def slow_llm() -> Iterator[EmulatedLLM]:
    server = EmulatedLLM(EmulatorSettings())
    server.start()
    yield server
    server.stop()


def _stop_with_turns_in_flight(app: InProcessApp, llm: EmulatedLLM, heads: int) -> None:
    """Stop the app while `heads` turns hang in the LLM and the rest wait behind them: all stay
    PENDING, to be recovered by the next app on this executor id."""
    wait_until(lambda: len(llm.requests) >= heads, timeout=60)
    app.stop()
    llm.settings.script.clear()
    llm.release()
    llm.requests.clear()


def _accept(app: InProcessApp, conversation: str, texts: list[str]) -> None:
    assert app.service is not None
    for text in texts:
        app.call(app.service.start_turn(conversation, text))


def test_a_backlog_recovered_at_start_drains_in_order_without_polling(
        database_url: str, slow_llm: EmulatedLLM, tmp_path: Path) -> None:
    conversations, turns = 6, 5
    # One turn at a time through the steps before the LLM: a recovered turn waiting for an
    # earlier turn of its conversation must step out of the start order, or the backlog
    # would deadlock behind it.
    env = base_env(database_url, slow_llm.base_url, tmp_path, EXECUTOR_ID="backlog-test",
                   LLM_MAX_CONCURRENCY="4", TURN_START_CONCURRENCY="1")
    slow_llm.script(*[{"action": "hang"}] * 100)
    first = InProcessApp(env).start()
    assert first.service is not None
    cids = [first.call(first.service.create_conversation())["id"] for _ in range(conversations)]
    for n, cid in enumerate(cids):
        _accept(first, cid, [f"c{n}-t{k}" for k in range(turns)])
    _stop_with_turns_in_flight(first, slow_llm, 4)  # LLM_MAX_CONCURRENCY
    assert query(database_url, "SELECT count(*) FROM messages WHERE role = 'assistant' AND"
                 " status IN ('pending', 'streaming') AND conversation_id = ANY(%s::uuid[])",
                 (cids,))[0][0] == conversations * turns

    slow_llm.settings.ttft_ms = 300  # long enough for polling turns to poll many times
    turn_workflow.liveness_checks = 0
    second = InProcessApp(env).start()
    try:
        wait_until(lambda: query(database_url, "SELECT count(*) FROM messages WHERE role ="
                                 " 'assistant' AND status = 'complete' AND conversation_id ="
                                 " ANY(%s::uuid[])", (cids,))[0][0] == conversations * turns,
                   timeout=120)
        assert second.service is not None
        order_checks = second.service.store.order_checks
    finally:
        second.stop()
    # In order (of seq: messages sent at once take their places as their first steps commit):
    # each turn's request carries every earlier turn of its conversation, answered.
    for n, cid in enumerate(cids):
        order = [r[0] for r in query(database_url, "SELECT content FROM messages WHERE"
                                     " conversation_id = %s AND role = 'user' ORDER BY seq",
                                     (cid,))]
        asked = [r for r, last in zip(slow_llm.requests, slow_llm.user_messages_seen())
                 if last.startswith(f"c{n}-")]
        assert len(asked) == turns
        for k, request in enumerate(asked):
            assert [m["content"] for m in request["messages"] if m["role"] == "user"] == \
                order[:k + 1]
            replies = [m["content"] for m in request["messages"] if m["role"] == "assistant"]
            assert len(replies) == k
            assert all(r.startswith(f"Reply to [{t}]") for r, t in zip(replies, order)), replies
    # Waiting cost about two queries per turn (polling cost one every 0.25 s or less), and
    # no DBOS status read at all.
    assert order_checks <= 2 * conversations * turns, order_checks
    assert turn_workflow.liveness_checks == 0


def test_a_dead_turn_at_the_head_is_closed_by_the_safety_recheck(
        database_url: str, slow_llm: EmulatedLLM, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = base_env(database_url, slow_llm.base_url, tmp_path, EXECUTOR_ID="dead-head-test")
    slow_llm.script(*[{"action": "hang"}] * 10)
    first = InProcessApp(env).start()
    assert first.service is not None
    cid = first.call(first.service.create_conversation())["id"]
    head = first.call(first.service.start_turn(cid, "head"))
    first.call(first.service.start_turn(cid, "behind"))
    _stop_with_turns_in_flight(first, slow_llm, 1)
    # Cancelled from outside while no process ran it (the DBOS CLI does this): its reply
    # stays pending, and no notification will ever say it finished.
    query(database_url, "UPDATE dbos.workflow_status SET status = 'CANCELLED' WHERE"
          " workflow_uuid = %s RETURNING 1", (head.turn_id,))

    monkeypatch.setattr(turn_workflow, "SAFETY_RECHECK_SEC", 0.3)
    turn_workflow.liveness_checks = 0
    second = InProcessApp(env).start()
    try:
        rows = wait_until(lambda: _settled(database_url, cid), timeout=60)
    finally:
        second.stop()
    assert rows == [("head", "cancelled", "the turn's workflow ended before its reply was "
                     "finished"), ("behind", "complete", None)]
    assert turn_workflow.liveness_checks >= 1
    # The cancelled turn's reply is not history.
    assert [m["content"] for m in slow_llm.requests[-1]["messages"]] == ["head", "behind"]


def _settled(url: str, cid: str) -> list[tuple] | None:
    rows = query(url, "SELECT u.content, r.status, r.error FROM messages r JOIN messages u ON"
                 " u.id = r.parent_id WHERE r.conversation_id = %s ORDER BY r.seq", (cid,))
    return rows if rows and all(r[1] not in ("pending", "streaming") for r in rows) else None
