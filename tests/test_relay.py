"""The relay of a turn worker's progress (turns/relay.py), publisher to copy, without
PostgreSQL in between: what goes into the notifications, and what the web process's copy of a
turn shows from them, including when one is lost. tests/test_turn_workers.py runs it for real."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson

from chat_core.turns.progress import TurnHub, TurnProgress
from chat_core.turns.relay import MAX_PAYLOAD_BYTES, ProgressPublisher, ProgressRelay, pack


class SavedReplies:
    """What the relay reads of a finished turn: its reply row."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}

    async def get_message(self, mid: uuid.UUID) -> dict[str, Any] | None:
        return self.rows.get(mid)


def _relayed(publisher: ProgressPublisher, progress: TurnProgress, relay: ProgressRelay) -> None:
    for payload in pack(publisher.events(progress)):
        assert len(payload.encode()) <= MAX_PAYLOAD_BYTES < 8000
        relay.heard(payload)


def _pair() -> tuple[ProgressPublisher, TurnHub, TurnHub, ProgressRelay, SavedReplies]:
    publisher = ProgressPublisher("postgresql://unused", "host-8080-w1")
    worker_hub, web_hub = TurnHub(), TurnHub()
    saved = SavedReplies()
    return publisher, worker_hub, web_hub, ProgressRelay(web_hub, saved), saved  # type: ignore[arg-type]


def test_a_long_reply_of_any_characters_arrives_whole_in_payloads_postgres_takes() -> None:
    async def main() -> None:
        publisher, worker_hub, web_hub, relay, _ = _pair()
        turn = worker_hub.track("turn-1", str(uuid.uuid4()), "owner-a")
        turn.start_attempt()
        text = "".join(["héllo 🙂 ", "\x00\x1f\"\\ ", "字" * 3], ) * 900
        turn.append(text[:5])
        _relayed(publisher, turn, relay)
        turn.append(text[5:])
        _relayed(publisher, turn, relay)
        copy = web_hub.get("turn-1")
        assert copy is not None and copy.text == text and copy.owner == "owner-a"
        assert copy.status == "streaming" and relay.gaps == 0
    asyncio.run(main())


def test_nothing_is_sent_when_nothing_changed_and_the_queue_place_is() -> None:
    async def main() -> None:
        publisher, worker_hub, web_hub, relay, _ = _pair()
        turn = worker_hub.track("turn-1", str(uuid.uuid4()))
        turn.waiting(3)
        _relayed(publisher, turn, relay)
        assert web_hub.get("turn-1").ahead == 3  # type: ignore[union-attr]
        turn.start_attempt()
        turn.append("a")
        assert len(publisher.events(turn)) == 1
        assert publisher.events(turn) == []
    asyncio.run(main())


def test_a_lost_notification_ends_the_copy_and_its_watchers_read_the_database() -> None:
    async def main() -> None:
        publisher, worker_hub, web_hub, relay, _ = _pair()
        turn = worker_hub.track("turn-1", str(uuid.uuid4()))
        turn.start_attempt()
        turn.append("first ")
        _relayed(publisher, turn, relay)
        copy = web_hub.get("turn-1")
        assert copy is not None
        watching = copy.watch()
        assert (await anext(watching)).text == "first "
        turn.append("lost ")
        publisher.events(turn)  # sent, never heard
        turn.append("third")
        _relayed(publisher, turn, relay)
        assert relay.gaps == 1 and web_hub.get("turn-1") is None
        # The watcher stops waiting on the copy (service.watch_turn then reads the database).
        async with asyncio.timeout(1):
            assert [s async for s in watching] == []
    asyncio.run(main())


def test_a_new_attempt_starts_the_copys_text_over() -> None:
    async def main() -> None:
        publisher, worker_hub, web_hub, relay, _ = _pair()
        turn = worker_hub.track("turn-1", str(uuid.uuid4()))
        turn.start_attempt()
        turn.append("a head start's words")
        _relayed(publisher, turn, relay)
        turn.start_attempt()  # the step asked something else: the text starts over
        turn.append("the step's")
        _relayed(publisher, turn, relay)
        copy = web_hub.get("turn-1")
        assert copy is not None and copy.text == "the step's" and copy.attempt == 1
    asyncio.run(main())


def test_the_end_is_the_saved_reply_not_what_was_relayed() -> None:
    async def main() -> None:
        publisher, worker_hub, web_hub, relay, saved = _pair()
        reply_id = uuid.uuid4()
        turn = worker_hub.track("turn-1", str(reply_id))
        turn.start_attempt()
        turn.append("partial")
        _relayed(publisher, turn, relay)
        saved.rows[reply_id] = {"status": "complete", "content": "the whole reply",
                                "error": None}
        turn.finish("complete", "the whole reply")
        events = publisher.events(turn)
        assert events == [{"t": "turn-1", "f": "complete"}]
        relay.heard(orjson.dumps(events).decode())
        copy = web_hub.get("turn-1")
        assert copy is not None
        async with asyncio.timeout(1):
            final = [s async for s in copy.watch()][-1]
        assert (final.status, final.text) == ("complete", "the whole reply")
    asyncio.run(main())


def test_a_dead_worker_drops_only_its_own_turns_copies() -> None:
    async def main() -> None:
        web_hub = TurnHub()
        relay = ProgressRelay(web_hub, SavedReplies())  # type: ignore[arg-type]
        for index in (1, 2):
            publisher = ProgressPublisher("postgresql://unused", f"host-8080-w{index}")
            turn = TurnHub().track(f"turn-{index}", str(uuid.uuid4()))
            turn.start_attempt()
            turn.append("words")
            _relayed(publisher, turn, relay)
        relay.worker_exited("host-8080-w1")
        assert web_hub.get("turn-1") is None
        assert web_hub.get("turn-2") is not None
    asyncio.run(main())


def test_events_join_into_as_few_payloads_as_fit() -> None:
    events = [{"t": f"turn-{i}", "a": 0, "o": 0, "d": "x" * 500} for i in range(40)]
    payloads = pack(events)
    assert 2 <= len(payloads) <= 4
    assert [e for p in payloads for e in orjson.loads(p)] == events
    assert pack([]) == []


def test_an_end_with_no_saved_reply_hands_the_watchers_to_the_database() -> None:
    """A turn that fails closes its reply first (workflow.chat_turn); an end heard while the
    row is still in flight is not trusted: the copy is dropped, its watchers read the row
    (service.watch_turn, which also ends when the workflow failed)."""
    async def main() -> None:
        publisher, worker_hub, web_hub, relay, saved = _pair()
        reply_id = uuid.uuid4()
        turn = worker_hub.track("turn-1", str(reply_id))
        turn.start_attempt()
        _relayed(publisher, turn, relay)
        copy = web_hub.get("turn-1")
        assert copy is not None
        watching = copy.watch()
        await anext(watching)
        saved.rows[reply_id] = {"status": "pending", "content": "", "error": None}
        turn.finish("error", "", "waited too long for the turn before it")
        _relayed(publisher, turn, relay)
        async with asyncio.timeout(1):
            assert [s async for s in watching] == []
        assert web_hub.get("turn-1") is None
    asyncio.run(main())


def test_a_failed_send_goes_again_whole() -> None:
    async def main() -> None:
        publisher, worker_hub, web_hub, relay, _ = _pair()
        turn = worker_hub.track("turn-1", str(uuid.uuid4()))
        turn.start_attempt()
        turn.append("heard ")
        _relayed(publisher, turn, relay)
        turn.append("lost with its connection")
        publisher.events(turn)  # sent on a connection that failed...
        publisher._resend({"turn-1": turn})  # ...so it goes again, from the start
        _relayed(publisher, turn, relay)
        copy = web_hub.get("turn-1")
        assert copy is not None and copy.text == "heard lost with its connection"
        assert relay.gaps == 0
    asyncio.run(main())
