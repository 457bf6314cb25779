"""Preemption through the real workflow (share mode, emulated vLLM, PostgreSQL, DBOS): when one
person's turns hold every place of the LLM, another person's turn takes one of them at once;
the turn that gave its place up goes on from its text when it gets one again, and its reply
is one reply, saved once, that reads on where it stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from chat_core.testing.emulated_llm import EmulatedLLM, EmulatorSettings
from tests.helpers import InProcessApp, base_env, query, wait_until

pytestmark = pytest.mark.slow

REPLY_TOKENS = 60


@pytest.fixture(scope="module")
def paced_llm() -> Iterator[EmulatedLLM]:
    """Replies of 60 tokens at 50 ms: three seconds each, long enough to be overtaken."""
    server = EmulatedLLM(EmulatorSettings(tpot_ms=50, reply_tokens=REPLY_TOKENS))
    server.start()
    yield server
    server.stop()


def test_a_turn_of_someone_holding_nothing_takes_a_place_from_a_burst(
        database_url: str, paced_llm: EmulatedLLM, tmp_path: Path) -> None:
    env = base_env(database_url, paced_llm.base_url, tmp_path, LLM_MAX_CONCURRENCY="2",
                   SHARE_AUTH="alice:alice-password,bob:bob-password")
    app = InProcessApp(env).start()
    try:
        service = app.service
        assert service is not None and service.people is not None
        alice, bob = (service.for_person(app.call(service.people.person_by_name(n)))
                      for n in ("alice", "bob"))
        hers = [app.call(alice.create_conversation())["id"] for _ in range(2)]
        her_turns = [app.call(alice.start_turn(cid, f"alice {n}")) for n, cid in enumerate(hers)]
        # Both of her turns hold the two places and stream.
        wait_until(lambda: len(paced_llm.requests) == 2 and _streamed(database_url, hers) == 2)
        his = app.call(bob.create_conversation())["id"]
        his_turn = app.call(bob.start_turn(his, "bob asks"))
        wait_until(lambda: _streamed(database_url, [his]) == 1)
        # His first words came while both of hers were still being written: he did not
        # wait for a whole reply of hers to end.
        finished_when_he_started = _finished(database_url, hers)
        his_reply = app.call(bob.wait_turn(his_turn))["assistant_message"]
        her_replies = [app.call(alice.wait_turn(t))["assistant_message"] for t in her_turns]
    finally:
        app.stop()

    assert his_reply["status"] == "complete" and his_reply["content"].startswith("Reply to [bob")
    assert finished_when_he_started == 0
    continued = [r for r in paced_llm.requests if r["messages"][-1]["role"] == "assistant"]
    assert len(continued) == 1  # one of hers gave its place up, once
    before = continued[0]["messages"][-1]["content"]
    yielded = next(r for r in her_replies if r["content"].startswith(before))
    # One reply: the text so far, then where the server went on from it, saved once.
    assert before.startswith("Reply to [alice") and 0 < len(before.split()) < REPLY_TOKENS
    assert yielded["content"].startswith(before + " (continued)")
    assert yielded["status"] == "complete"
    # Within its own token budget: the request that went on asked for what was left.
    first_ask = next(r for r in paced_llm.requests if r["messages"] == continued[0]["messages"][:-1])
    assert continued[0]["max_tokens"] < first_ask["max_tokens"]
    for cid in [*hers, his]:
        assert query(database_url, "SELECT count(*), min(status) FROM messages WHERE "
                     "conversation_id = %s AND role = 'assistant'", (cid,)) == [(1, "complete")]


def _streamed(database_url: str, cids: list[Any]) -> int:
    return int(query(database_url, "SELECT count(*) FROM messages WHERE role = 'assistant' AND"
                     " content <> '' AND conversation_id = ANY(%s::uuid[])", (cids,))[0][0])


def _finished(database_url: str, cids: list[Any]) -> int:
    return int(query(database_url, "SELECT count(*) FROM messages WHERE role = 'assistant' AND"
                     " status = 'complete' AND conversation_id = ANY(%s::uuid[])",
                     (cids,))[0][0])

