"""The fair gate's preemption (chat_core/llm/fair_gate.py): a burst that arrived first holds
every place of the LLM, so round-robin alone makes the others wait for whole replies. With
preemption, a waiting turn whose owner holds two places fewer than another owner takes one of
theirs: the newest of that owner's turns yields, queues again ahead of its owner's later turns
and goes on later. Fast: no app, no database; every wait is on the gate's own events."""

from __future__ import annotations

import asyncio

from chat_core.llm.fair_gate import FairGate
from tests.test_fair_gate import on_a_loop, settle


class Turn:
    """A turn as the workflow runs it: it holds its place until it finishes, or until the gate
    asks for the place back, and then queues again with its arrival number. `spells` are the
    times it was let in; `yields` counts the places it gave up."""

    def __init__(self, gate: FairGate, owner: str, name: str, log: list[str]) -> None:
        self.gate, self.owner, self.name, self.log = gate, owner, name, log
        self.done = asyncio.Event()
        self.spells = 0
        self.yields = 0
        self.holding = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        seq = None
        while True:
            async with self.gate.turn(self.owner, None, None, seq) as place:
                seq, self.holding = place.seq, True
                self.spells += 1
                self.log.append(self.name)
                asked = asyncio.create_task(_asked_back(place))
                finished = asyncio.create_task(self.done.wait())
                await asyncio.wait({asked, finished}, return_when=asyncio.FIRST_COMPLETED)
                asked.cancel()
                finished.cancel()
                self.holding = False
                if self.done.is_set():
                    return
                self.yields += 1


async def _asked_back(place) -> None:  # type: ignore[no-untyped-def]
    while not place.preempted:
        await asyncio.sleep(0)


async def send(gate: FairGate, owner: str, count: int, log: list[str]) -> list[Turn]:
    turns = [Turn(gate, owner, f"{owner}{i}", log) for i in range(count)]
    await settle()
    return turns


def holding(turns: list[Turn]) -> list[str]:
    return [t.name for t in turns if t.holding]


async def finish(turns: list[Turn]) -> None:
    for t in turns:
        t.done.set()
    await settle()
    await asyncio.gather(*(t.task for t in turns))


@on_a_loop
async def test_ten_people_arriving_after_a_burst_get_places_at_once() -> None:
    gate = FairGate(8, preempt=True)
    log: list[str] = []
    burst = await send(gate, "burst", 50, log)
    assert holding(burst) == [f"burst{i}" for i in range(8)]
    others = [t for i in range(10) for t in await send(gate, f"p{i}_", 1, log)]
    await settle()
    # Places go from the burst to the others until the burst holds no more than anyone
    # else who waits could: 7 of the 10 are in, the burst keeps one (its oldest).
    assert holding(burst) == ["burst0"]
    assert len(holding(others)) == 7 and holding(others) == [t.name for t in others[:7]]
    assert [t.yields for t in burst[:8]] == [0] + [1] * 7
    assert gate.preemptions == 7
    assert gate.load().running == 8
    # As the others finish, the three still waiting come next, then the burst in its order.
    await finish([t for t in others if t.holding])
    assert sorted(holding(others)) == ["p7_0", "p8_0", "p9_0"]
    await finish(others)
    assert holding(burst) == [f"burst{i}" for i in range(8)]
    await finish(burst)
    assert gate.load().owners == ()
    burst_order = [n for n in log if n.startswith("burst")]
    assert burst_order[:8] == [f"burst{i}" for i in range(8)]
    # The turns that yielded came back first (oldest first), before the burst's later turns.
    assert burst_order[8:15] == [f"burst{i}" for i in range(1, 8)]
    assert burst_order[15:] == [f"burst{i}" for i in range(8, 50)]


@on_a_loop
async def test_a_place_never_goes_back_and_forth_between_two_people() -> None:
    gate = FairGate(4, preempt=True)
    log: list[str] = []
    a = await send(gate, "a", 3, log)
    b = await send(gate, "b", 3, log)
    await settle()
    # a holds 3, b waits with 0 held: a gives one up (3 vs 0+2); then 2 vs 2: no more.
    assert holding(a) == ["a0", "a1"] and holding(b) == ["b0", "b1"]
    assert gate.preemptions == 1
    await finish(a + b)
    assert gate.preemptions == 1


@on_a_loop
async def test_without_preemption_or_in_arrival_order_nobody_yields() -> None:
    for gate in (FairGate(8), FairGate(8, fair=False, preempt=True)):
        log: list[str] = []
        burst = await send(gate, "burst", 10, log)
        others = await send(gate, "p", 1, log)
        assert holding(burst) == [f"burst{i}" for i in range(8)] and not holding(others)
        assert gate.preemptions == 0
        await finish(burst + others)


@on_a_loop
async def test_the_burst_keeps_its_own_order_through_yields() -> None:
    """First come first served within a person holds even when the person's turns yield: a
    turn that gave its place up goes back ahead of its owner's later turns."""
    gate = FairGate(2, preempt=True)
    log: list[str] = []
    a = await send(gate, "a", 4, log)
    b = await send(gate, "b", 1, log)
    assert holding(a) == ["a0"] and holding(b) == ["b0"] and a[1].yields == 1
    await finish(b)
    assert holding(a) == ["a0", "a1"]
    await finish(a)
    assert log == ["a0", "a1", "b0", "a1", "a2", "a3"]


class Holder:
    """A turn that holds its place until released and only then looks whether it was asked
    back: the moments between the gate asking and the turn noticing."""

    def __init__(self, gate: FairGate, owner: str) -> None:
        self.owner = owner
        self.place = None
        self.release = asyncio.Event()
        self.task = asyncio.create_task(self._run(gate))

    async def _run(self, gate: FairGate) -> None:
        async with gate.turn(self.owner) as place:
            self.place = place
            await self.release.wait()

    @property
    def asked_back(self) -> bool:
        return self.place is not None and self.place.preempted


async def holders(gate: FairGate, *owners: str) -> list[Holder]:
    made = [Holder(gate, o) for o in owners]
    await settle()
    return made


async def release(*turns: Holder) -> None:
    for t in turns:
        t.release.set()
    await settle()


@on_a_loop
async def test_a_place_freed_meanwhile_goes_to_the_turn_set_aside_and_nobody_yields() -> None:
    gate = FairGate(2, preempt=True)
    a0, a1 = await holders(gate, "a", "a")
    (b0,) = await holders(gate, "b")
    assert a1.asked_back and not a0.asked_back and b0.place is None
    await release(a0)  # a place frees before a1 noticed
    assert b0.place is not None and not a1.asked_back
    assert gate.load().running == 2 and gate.preemptions == 1
    await release(a1, b0)
    assert gate.load().owners == ()


@on_a_loop
async def test_a_freed_place_goes_to_whoever_holds_fewest_so_none_is_taken_back() -> None:
    gate = FairGate(5, preempt=True)
    c0, c1, a0, a1, b0 = await holders(gate, "c", "c", "a", "a", "b")
    c2, a2, b1 = await holders(gate, "c", "a", "b")
    assert gate.preemptions == 0  # 2, 2 and 1 held: no gap of two
    await release(b0)
    # b holds none now: its next turn gets the place, not c's or a's (each holding 2).
    assert b1.place is not None and c2.place is None and a2.place is None
    assert gate.preemptions == 0
    await release(c0, c1, a0, a1, b1, c2, a2)
    assert gate.load().owners == ()


@on_a_loop
async def test_the_place_asked_back_is_the_latest_arrivals() -> None:
    gate = FairGate(3, preempt=True)
    a = await holders(gate, "a", "a", "a")
    (b0,) = await holders(gate, "b")
    assert [t.asked_back for t in a] == [False, False, True]
    await release(*a, b0)


@on_a_loop
async def test_a_turn_set_aside_and_cancelled_leaves_the_place_where_it_is() -> None:
    gate = FairGate(2, preempt=True)
    a0, a1 = await holders(gate, "a", "a")
    (b0,) = await holders(gate, "b")
    assert a1.asked_back
    assert [(o.owner, o.running, o.waiting) for o in gate.load().owners] == [("a", 2, 0),
                                                                            ("b", 0, 1)]
    b0.task.cancel()
    await settle()
    assert b0.task.cancelled() and not a1.asked_back
    assert [(o.owner, o.running, o.waiting) for o in gate.load().owners] == [("a", 2, 0)]
    await release(a0, a1)
    assert gate.load().owners == ()


class _Stream:
    """The bytes of a chat completion stream, as vLLM sends them: the last token and the
    reply's end in one chunk."""

    def __init__(self, *events: str) -> None:
        self.body = "".join(f"data: {e}\n\n" for e in events).encode()

    async def aiter_bytes(self):  # type: ignore[no-untyped-def]
        yield self.body


@on_a_loop
async def test_a_reply_asked_to_stop_at_its_last_chunk_keeps_the_servers_ending() -> None:
    """A turn asked back at the chunk that ends its reply must not go on after the end (nor a
    stopped-by-hand reply be saved as stopped when it was complete)."""
    from chat_core.llm.client import LLMClient, _StreamedReply

    client = LLMClient("http://127.0.0.1:9")
    reply = _StreamedReply(served_model="m")
    stream = _Stream('{"choices": [{"delta": {"content": "Hello"}, "finish_reason": null}]}',
                     '{"choices": [{"delta": {"content": " world"}, "finish_reason": "stop"}]}',
                     "[DONE]")

    async def stop_now(delta: str) -> bool:
        return delta == " world"

    await client._read_events(stream, reply, stop_now)  # type: ignore[arg-type]
    assert reply.finish_reason == "stop" and "".join(reply.pieces) == "Hello world"
    reply = _StreamedReply(served_model="m")

    async def stop_first(delta: str) -> bool:
        return True

    await client._read_events(stream, reply, stop_first)  # type: ignore[arg-type]
    assert reply.finish_reason == "stopped" and reply.pieces == ["Hello"]
    await client.close()
