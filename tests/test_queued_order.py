"""Turns of one conversation queued for turn workers are saved in the order they were accepted
(chat_core/turns/queued_order.py): which turns a queued turn waits for, and how the worker
waits for them. No database, no DBOS: the waits read a stand-in for the reply rows."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

import pytest

from chat_core.turns import queued_order
from chat_core.turns.progress import TurnHub
from chat_core.states import COMPLETE
from tests.helpers import ROOT, create_database, drop_database


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
    """The turn's own reply row (`own`) and the earlier replies' rows, which appear after
    `missing` looks."""

    def __init__(self, missing: int, own: bool = False) -> None:
        self.missing, self.own, self.looks = missing, own, 0

    async def reply_state(self, reply_id: uuid.UUID) -> Any:
        if reply_id == OWN:
            return {"status": "streaming"} if self.own else None
        self.looks += 1
        return None if self.looks <= self.missing else {"status": "streaming"}


OWN = uuid.uuid4()


def wait(rows: Rows, wait_sec: float = 30.0) -> None:
    after = [[f"turn-{i}", str(uuid.uuid4())] for i in range(2)]
    asyncio.run(queued_order.wait_for_earlier_saves(rows, after, str(OWN), wait_sec))


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No waiting between looks; DBOS's answer (still running) recorded per question."""
    monkeypatch.setattr(queued_order, "POLL_SEC", 0.0)
    asked: list[str] = []

    async def running(turn_id: str) -> bool:
        asked.append(turn_id)
        return True
    monkeypatch.setattr(queued_order, "still_running", running)
    return asked


def test_the_message_is_saved_once_the_earlier_ones_are(quick: list[str]) -> None:
    rows = Rows(missing=7)
    wait(rows)
    assert rows.looks == 7 + 2  # looked until the first row came, then once for the second
    assert quick == ["turn-0", "turn-0"]  # at the first look, then every STATUS_EVERY


def test_a_turn_that_saved_its_own_already_waits_for_nothing(quick: list[str]) -> None:
    rows = Rows(missing=10**6, own=True)
    wait(rows)
    assert rows.looks == 0 and quick == []


def test_an_earlier_turn_that_ended_unsaved_holds_nothing_up(
        quick: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    async def ended(turn_id: str) -> bool:
        quick.append(turn_id)
        return False
    monkeypatch.setattr(queued_order, "still_running", ended)
    rows = Rows(missing=10**6)
    wait(rows)
    assert quick == ["turn-0", "turn-1"] and rows.looks == 2  # asked at once, each


def test_the_wait_gives_up_after_the_order_wait(quick: list[str]) -> None:
    rows = Rows(missing=10**6)
    wait(rows, wait_sec=0.0)
    assert rows.looks == 1 and quick == []  # the turn's own order wait takes over from here


ASK_IN_A_WORKFLOW = """
import asyncio, sys
from dbos import DBOS
from chat_core.turns.queued_order import still_running

@DBOS.step(name="one")
async def one() -> int:
    return 1

@DBOS.workflow(name="asks")
async def asks() -> int:
    await still_running("not-a-turn")
    await still_running("not-a-turn")
    return await one()

async def main() -> None:
    handle = await DBOS.start_workflow_async(asks)
    await handle.get_result()
    print([s["function_name"] for s in await DBOS.list_workflow_steps_async(handle.workflow_id)])

DBOS(config={"name": "queued-order-check", "system_database_url": sys.argv[1]})
DBOS.launch()
try:
    asyncio.run(main())
finally:
    DBOS.destroy()
"""


@pytest.mark.slow  # DBOS launched in a process of its own
def test_asking_dbos_from_a_workflow_records_no_step() -> None:
    """Asked in a workflow's body the plain way, DBOS records the question as a step
    ("DBOS.getStatus"), and a replay that asks a different number of times fails on the
    steps that follow. still_running asks from a context of its own."""
    url = create_database("queued")
    try:
        done = subprocess.run([sys.executable, "-c", ASK_IN_A_WORKFLOW,
                               url.replace("postgresql://", "postgresql+psycopg://", 1)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == "['one']"
    finally:
        drop_database(url)
