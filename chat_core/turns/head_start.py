"""A turn's LLM request sent as the turn is accepted, before its durable steps have run
(TURN_HEAD_START, on by default; 0 turns it off).

In a burst, a turn's first token waits for its bookkeeping: the workflow's start, saving the
message and reading the history, each a DBOS step with its checkpoint. On one event loop a
burst of 64 spends most of a second on that before the last turn's request leaves
(docs/performance.md). A head start sends the request at once, from the history as it is when
the turn is accepted, and streams its tokens to the turn's watchers; the turn's LLM step then
adopts the request when it asks the same (same messages, parameters, model, room), and
otherwise cancels it and sends its own, the watchers told that the text starts over.

Nothing durable depends on it: a crash before the step loses only the request (the recovered
turn sends its own), the step alone records the reply, and the LLM's caps and the fair share
apply as to any request (it holds its place in the gate from the start). Only a turn with a new
message sent without an Idempotency-Key (a repeated key may name a turn that has run), in a
conversation with no turn in flight, started in this process, gets one. A place the fair share
asks back is given up only once the step has adopted the request.

Its cost: a turn killed before its LLM step has cost the LLM one request more (the recovered
turn cannot take over a request its dead process sent). Measured in docs/performance.md.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from chat_core.llm.client import Completion, DeltaCallback
from chat_core.llm.fair_gate import Place
from chat_core.turns.progress import TurnProgress


@dataclass(frozen=True)
class Ask:
    """What a request asks of the LLM: a head start is adopted only for the same."""
    messages: tuple[tuple[str, str], ...]
    temperature: float
    top_p: float
    max_tokens: int
    model: str | None

    @classmethod
    def of(cls, messages: list[dict[str, str]], params: Any, max_tokens: int) -> "Ask":
        """`params`: the turn's (its model "" or absent: the default)."""
        return cls(tuple((m["role"], m["content"]) for m in messages),
                   float(params["temperature"]), float(params["top_p"]), int(max_tokens),
                   params.get("model") or None)


@dataclass
class HeadStart:
    turn_id: str
    progress: TurnProgress
    # What it asks, once the history is read (None until then: not adopted).
    ask: Ask | None = None
    task: "asyncio.Task[Completion] | None" = None
    # The gate's place, once let in (the adopting step yields it like its own).
    place: Place | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    # The adopting step's on_delta: the deltas that come after the adoption go there.
    forward: DeltaCallback | None = None

    async def on_delta(self, delta: str) -> bool:
        if self.forward is not None:
            return await self.forward(delta)
        self.progress.append(delta)
        return self.progress.stop_requested

    def let_in(self, place: Place) -> None:
        self.place = place
        self.entered.set()

    async def adopt(self, on_delta: DeltaCallback) -> Place | None:
        """Take the request over: later deltas go to `on_delta`; the place it holds (None if
        it ended before it was let in)."""
        self.forward = on_delta
        assert self.task is not None
        entered = asyncio.ensure_future(self.entered.wait())
        try:
            await asyncio.wait({entered, self.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            entered.cancel()
        return self.place

    async def result(self) -> Completion:
        assert self.task is not None
        return await self.task

    async def cancel(self) -> None:
        """Stop it; an error it ended with is dropped with it (the step reports its own)."""
        if self.task is None:
            return
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class HeadStarts:
    """The head starts of this process's turns, until their LLM step takes (or refuses) them
    or their workflow ends. One event loop: no locks."""

    def __init__(self) -> None:
        self._waiting: dict[str, HeadStart] = {}
        self._asked: set[str] = set()  # turns whose step has looked: too late to begin one

    def begin(self, turn_id: str, progress: TurnProgress,
              send: Callable[[HeadStart], Awaitable[Completion]]) -> HeadStart | None:
        """Start `send(head)` for the turn (it sets `head.ask`, then asks the LLM), unless
        its step has already looked for one."""
        if turn_id in self._asked or turn_id in self._waiting:
            return None
        head = HeadStart(turn_id, progress)
        head.task = asyncio.ensure_future(send(head))
        self._waiting[turn_id] = head
        return head

    def take(self, turn_id: str) -> HeadStart | None:
        """The turn's head start, for its LLM step (which adopts or cancels it); from now on
        none begins for the turn."""
        self._asked.add(turn_id)
        return self._waiting.pop(turn_id, None)

    async def drop(self, turn_id: str) -> None:
        """The turn's workflow ended: cancel a head start never taken, forget the turn."""
        self._asked.discard(turn_id)
        head = self._waiting.pop(turn_id, None)
        if head is not None:
            await head.cancel()

    def discard(self, turn_id: str) -> None:
        """The turn's workflow did not start here: as `drop`, without waiting for the request
        to end (from a callback)."""
        self._asked.discard(turn_id)
        head = self._waiting.pop(turn_id, None)
        if head is not None and head.task is not None:
            head.task.cancel()
            head.task.add_done_callback(_ignore_error)

    def __len__(self) -> int:
        return len(self._waiting)


def _ignore_error(task: "asyncio.Task[Completion]") -> None:
    """An error the discarded request ended with goes with it (no turn reports it)."""
    if not task.cancelled():
        task.exception()
