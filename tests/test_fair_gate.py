"""The LLM's fair gate (chat_core/llm/fair_gate.py): when the cap is reached, waiting turns are
let in round-robin across people, first come first served within a person, and each knows how
many turns are ahead of it. Fast: no app, no database; every wait is on the gate's own events."""

from __future__ import annotations

import asyncio
import functools
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from chat_core.llm.fair_gate import FairGate
from chat_core.states import COMPLETE
from chat_core.turns.progress import Snapshot, TurnProgress
from chat_core.ui.chat.streaming import follow_reply, waiting_entry
from chat_core.ui.chat.view import following
from chat_core.web.api.streaming import turn_events


def on_a_loop(test: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run an async test on a fresh event loop (the suite has no asyncio plugin)."""
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())  # type: ignore[arg-type]
    return run


async def settle() -> None:
    """Let every ready task run until it blocks again (no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


class Turn:
    """One turn through the gate: it records when it is let in and holds its place until
    released; `aheads` is every place the gate told it while it waited."""

    def __init__(self, gate: FairGate, owner: str, name: str, admitted: list[str],
                 then=None) -> None:
        self.gate, self.owner, self.name, self.admitted = gate, owner, name, admitted
        self.then = then
        self.aheads: list[int | None] = []
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def ahead(self) -> int | None:
        return self.aheads[-1] if self.aheads else None

    def start(self) -> "Turn":
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        async with self.gate.turn(self.owner, self.aheads.append, self.then):
            self.admitted.append(self.name)
            await self.done.wait()


async def send(gate: FairGate, owner: str, count: int, admitted: list[str],
               then=None) -> list[Turn]:
    turns = [Turn(gate, owner, f"{owner}{i}", admitted, then).start() for i in range(count)]
    await settle()
    return turns


async def finish_oldest(running: list[Turn]) -> None:
    running.pop(0).done.set()
    await settle()


async def drain(turns: dict[str, Turn], admitted: list[str]) -> None:
    """Finish running turns, oldest first, until every turn has been let in."""
    while len(admitted) < len(turns):
        running = [turns[n] for n in admitted if not turns[n].done.is_set()]
        await finish_oldest(running)


def by_name(*groups: list[Turn]) -> dict[str, Turn]:
    return {t.name: t for group in groups for t in group}


@on_a_loop
async def test_a_burst_of_50_does_not_starve_10_people_who_send_one_each() -> None:
    gate = FairGate(8)
    admitted: list[str] = []
    burst = await send(gate, "burst", 50, admitted)
    others = [t for i in range(10) for t in await send(gate, f"p{i}_", 1, admitted)]
    assert admitted == [f"burst{i}" for i in range(8)]
    turns = by_name(burst, others)
    await drain(turns, admitted)
    # The 10 are the next 10 let in: each waits for one turn of the burst to end, not 42.
    assert set(admitted[8:18]) == {t.name for t in others}
    assert [n for n in admitted if n.startswith("burst")] == [f"burst{i}" for i in range(50)]
    for t in turns.values():
        t.done.set()
    await settle()
    assert gate.load().owners == ()


@on_a_loop
async def test_in_arrival_order_mode_the_burst_goes_first() -> None:
    """LLM_FAIR_SHARE=0, the benchmark's baseline: what the fair gate is measured against."""
    gate = FairGate(8, fair=False)
    admitted: list[str] = []
    burst = await send(gate, "burst", 50, admitted)
    others = [t for i in range(10) for t in await send(gate, f"p{i}_", 1, admitted)]
    await drain(by_name(burst, others), admitted)
    assert admitted[:50] == [f"burst{i}" for i in range(50)]


@on_a_loop
async def test_round_robin_across_people_first_come_first_served_within_each() -> None:
    gate = FairGate(1)
    admitted: list[str] = []
    a = await send(gate, "a", 5, admitted)
    b = await send(gate, "b", 5, admitted)
    await drain(by_name(a, b), admitted)
    assert admitted == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3", "a4", "b4"]


@on_a_loop
async def test_each_waiting_turn_knows_how_many_are_ahead_and_it_comes_true() -> None:
    gate = FairGate(1)
    admitted: list[str] = []
    a = await send(gate, "a", 4, admitted)        # a0 runs; a1..a3 wait
    b = await send(gate, "b", 2, admitted)
    c = await send(gate, "c", 1, admitted)
    turns = by_name(a, b, c)
    # b and c have had nothing yet, a has: b0, c0, then round-robin a1, b1, a2, a3.
    expected = ["b0", "c0", "a1", "b1", "a2", "a3"]
    assert {n: turns[n].ahead for n in expected} == {n: i for i, n in enumerate(expected)}
    assert turns["a0"].aheads == []  # let in at once: never told to wait
    await finish_oldest([turns["a0"]])
    assert admitted[-1] == "b0" and turns["b0"].ahead is None
    # b was served last now: c0, a1, b1, a2, a3.
    assert {n: turns[n].ahead for n in ["c0", "a1", "b1", "a2", "a3"]} == {
        "c0": 0, "a1": 1, "b1": 2, "a2": 3, "a3": 4}
    # What each was told is the order they are let in.
    snapshot = {n: turns[n].ahead for n in ["c0", "a1", "b1", "a2", "a3"]}
    await drain(turns, admitted)
    assert admitted[2:] == sorted(snapshot, key=lambda n: snapshot[n])
    # Each was told its place only when it changed, counting down.
    assert turns["a3"].aheads == [2, 3, 4, 5, 4, 3, 2, 1, 0, None]


@on_a_loop
async def test_load_shows_each_persons_running_and_waiting_turns() -> None:
    gate = FairGate(3)
    admitted: list[str] = []
    a = await send(gate, "a", 4, admitted)
    b = await send(gate, "b", 1, admitted)
    load = gate.load()
    assert [(o.owner, o.running, o.waiting) for o in load.owners] == [("a", 3, 1), ("b", 0, 1)]
    assert (load.capacity, load.running, load.waiting, load.fair) == (3, 3, 2, True)
    assert load.to_json()["owners"][1] == {"owner": "b", "running": 0, "waiting": 1}
    for t in a + b:
        t.done.set()
    await settle()


@on_a_loop
async def test_a_turn_cancelled_while_waiting_leaves_the_queue_and_frees_nothing() -> None:
    gate = FairGate(1)
    admitted: list[str] = []
    a = await send(gate, "a", 2, admitted)    # a0 runs, a1 waits
    b = await send(gate, "b", 1, admitted)    # b0 waits, ahead of a1
    assert (b[0].ahead, a[1].ahead) == (0, 1)
    assert a[1].task is not None
    a[1].task.cancel()
    await settle()
    assert a[1].task.cancelled()
    # Nothing was let in for it, and it is no longer counted or ahead of anyone.
    assert admitted == ["a0"]
    assert [(o.owner, o.running, o.waiting) for o in gate.load().owners] == [("a", 1, 0),
                                                                             ("b", 0, 1)]
    assert gate.order() == [("b", 2)]  # b0, the third to arrive
    await finish_oldest([a[0]])
    assert admitted == ["a0", "b0"]
    b[0].done.set()
    await settle()
    assert gate.load().owners == ()
    late = await send(gate, "c", 1, admitted)  # the one place is free again
    assert admitted[-1] == "c0"
    late[0].done.set()
    await settle()


@on_a_loop
async def test_a_turn_cancelled_as_it_is_let_in_gives_its_place_back() -> None:
    gate = FairGate(1)
    admitted: list[str] = []
    a = await send(gate, "a", 2, admitted)
    assert a[1].task is not None
    a[0].done.set()
    await asyncio.sleep(0)      # a0 leaves and lets a1 in; a1 has not run yet
    a[1].task.cancel()
    await settle()
    assert a[1].task.cancelled() and admitted == ["a0"]
    assert gate.load().owners == ()
    b = await send(gate, "b", 1, admitted)
    assert admitted == ["a0", "b0"]
    b[0].done.set()
    await settle()


@on_a_loop
async def test_with_a_global_slot_the_process_claims_in_the_gates_order() -> None:
    """The turns let in claim the global slots one at a time: a plain claim would let the
    burst's turns take the global slots in arrival order."""
    global_slot = asyncio.Semaphore(1)
    claimed: list[str] = []

    def claim_as(name: str) -> Callable[[], Any]:
        @asynccontextmanager
        async def claim() -> AsyncIterator[None]:
            async with global_slot:
                claimed.append(name)
                yield
        return claim

    gate = FairGate(4)
    admitted: list[str] = []
    turns = [Turn(gate, owner, f"{owner}{i}", admitted, claim_as(f"{owner}{i}")).start()
             for owner, count in (("a", 5),) for i in range(count)]
    await settle()
    turns.append(Turn(gate, "b", "b0", admitted, claim_as("b0")).start())
    await settle()
    assert claimed == ["a0"] and admitted == ["a0"]
    # a1 holds the claim; b0 is next in this process, ahead of the rest of the burst.
    assert turns[5].ahead == 0
    for _ in range(5):
        running = [t for t in turns if t.name in admitted and not t.done.is_set()]
        await finish_oldest(running)
    assert claimed == ["a0", "a1", "b0", "a2", "a3", "a4"]
    for t in turns:
        t.done.set()
    await settle()


@on_a_loop
async def test_the_gate_tells_the_turns_progress_and_the_chat_and_the_api_show_it() -> None:
    gate = FairGate(1)
    first = TurnProgress("turn-1", "reply-1", owner="a")
    second = TurnProgress("turn-2", "reply-2", owner="a")
    hold = asyncio.Event()

    async def run(progress: TurnProgress) -> None:
        async with gate.turn(progress.owner, progress.waiting):
            await hold.wait()

    tasks = [asyncio.create_task(run(p)) for p in (first, second)]
    await settle()
    assert (first.snapshot().ahead, second.snapshot().ahead) == (None, 0)
    assert "waiting, next in line" in waiting_entry(0)["content"]
    assert "waiting, 3 ahead" in waiting_entry(3)["content"]

    class Service:
        async def watch_turn(self, turn_id: str):
            yield second.snapshot()
            hold.set()
            await settle()
            yield second.snapshot()
            second.finish(COMPLETE, "done")
            yield second.snapshot()

    events = [e async for e in turn_events(Service(), None, "turn-2")]  # type: ignore[arg-type]
    assert events[0] == b'event: waiting\ndata: {"ahead":0}\n\n'
    assert sum(e.startswith(b"event: waiting") for e in events) == 1
    assert second.snapshot().ahead is None
    await asyncio.gather(*tasks)


@on_a_loop
async def test_the_chat_pane_says_how_many_are_ahead_until_the_first_words() -> None:
    class Service:
        async def watch_turn(self, turn_id: str, min_interval: float = 0.0):
            for ahead, text, status in ((2, "", "streaming"), (0, "", "streaming"),
                                        (None, "Hello", "streaming"), (None, "Hello!", COMPLETE)):
                yield Snapshot(turn_id, "reply-1", status, text, 0, None, ahead)

    shown = [entry async for entry, _ in follow_reply(
        Service(), following("turn-1", "conv-1", []), False)]  # type: ignore[arg-type]
    contents = [e["content"] if e else "" for e in shown]
    # (Snapshots that come faster than the pane is drawn are skipped, the last one never.)
    assert "waiting, 2 ahead" in contents[0]
    assert "Hello!" in contents[-1] and "waiting" not in contents[-1]
    assert waiting_entry(0)["content"].count("next in line") == 1


def test_a_gate_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FairGate(0)
