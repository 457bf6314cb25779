"""Turns of one conversation queued for turn workers are saved in the order they were accepted
(chat_core/turns/queued_order.py): which turns a queued turn waits for, and how the worker
waits for them. No database, no DBOS: the waits read a stand-in for the reply rows."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from chat_core.turns import queued_order
from chat_core.turns.progress import TurnHub
from chat_core.states import COMPLETE


def test_a_queued_turn_waits_for_its_conversations_unfinished_turns_only() -> None:
    async def check() -> None:
        hub = TurnHub()
        for turn, conversation in (("a", "c1"), ("b", "c1"), ("x", "c2"), ("c", "c1")):
            hub.track(turn, f"reply-{turn}").conversation_id = conversation
        hub.finish("a", COMPLETE, "done")
        assert queued_order.earlier_turns(hub.in_flight(), "c1", "c") == [["b", "reply-b"]]
        assert queued_order.earlier_turns(hub.in_flight(), "c3", "d") == []
    asyncio.run(check())


class Rows:
    """The earlier reply's row appears after `missing` looks."""

    def __init__(self, missing: int) -> None:
        self.missing, self.looks = missing, 0

    async def reply_state(self, reply_id: uuid.UUID) -> Any:
        self.looks += 1
        return None if self.looks <= self.missing else {"status": "streaming"}


def wait(rows: Rows, wait_sec: float = 30.0) -> None:
    after = [[f"turn-{i}", str(uuid.uuid4())] for i in range(2)]
    asyncio.run(queued_order.wait_for_earlier_saves(rows, after, wait_sec))


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(queued_order, "POLL_SEC", 0.001)
    monkeypatch.setattr(queued_order, "STATUS_EVERY", 5)
    asked: list[str] = []

    async def running(turn_id: str) -> bool:
        asked.append(turn_id)
        return True
    monkeypatch.setattr(queued_order, "still_running", running)
    return asked


def test_the_message_is_saved_once_the_earlier_ones_are() -> None:
    rows = Rows(missing=3)
    wait(rows)
    assert rows.looks == 3 + 2  # looked until the first row came, then once for the second


def test_an_earlier_turn_that_ended_unsaved_holds_nothing_up(
        quick: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    async def ended(turn_id: str) -> bool:
        quick.append(turn_id)
        return False
    monkeypatch.setattr(queued_order, "still_running", ended)
    rows = Rows(missing=10**6)
    wait(rows)
    assert quick == ["turn-0", "turn-1"] and rows.looks == 2 * 5


def test_the_wait_gives_up_after_the_order_wait(quick: list[str]) -> None:
    rows = Rows(missing=10**6)
    wait(rows, wait_sec=0.05)
    assert quick and rows.looks > 5  # the turn's own order wait takes over from here
