"""Turns reach the LLM in the order they arrived, even when they arrive together.

A burst of 64 messages starts 64 workflows at once, and each takes two steps (saving the
message, reading the history) before its LLM request. Left alone, all 64 advance together:
their SQL and DBOS's checkpoints interleave on one event loop and DBOS's thread pool, so the
first message's request leaves when the 64th's does (measured: every first token of a burst of
64 came 1.4-1.9 s after sending, the first one's too). Let through a few at a time, in arrival
order, the first turn's request leaves after its own steps, the second's after two turns' worth,
and so on: the same work, with first come, first to the LLM (docs/performance.md).

A turn takes its place in the order (`enter`) when its workflow starts and leaves it (`leave`)
when its LLM step starts, so that retries and waits for the LLM are never held inside. It steps
out while it waits for an earlier turn of its conversation (which may be waiting to enter) and
comes back in with its arrival number: ahead of the turns that arrived after it. Capacity 0
lets every turn through at once (TURN_START_CONCURRENCY=0: as before). One event loop: no locks.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class StartOrder:
    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"TURN_START_CONCURRENCY must be 0 or more, got {capacity}")
        self.capacity = capacity
        self._inside: set[str] = set()
        self._arrival: dict[str, int] = {}
        self._waiting: list[tuple[int, str, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    async def enter(self, turn_id: str) -> None:
        """Wait for a place among the turns before their LLM request, by arrival (a turn
        coming back keeps its first arrival number)."""
        if self.capacity == 0 or turn_id in self._inside:
            return
        number = self._arrival.setdefault(turn_id, next(self._arrivals))
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (number, turn_id, granted))
        self._let_in()
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.leave(turn_id)  # let in as it was cancelled: pass the place on
            else:
                self._waiting = [w for w in self._waiting if w[2] is not granted]
                heapq.heapify(self._waiting)
                self._arrival.pop(turn_id, None)
            raise

    def step_out(self, turn_id: str) -> bool:
        """Give the place up for a wait, keeping the arrival number; True if one was held."""
        if turn_id not in self._inside:
            return False
        self._inside.discard(turn_id)
        self._let_in()
        return True

    def leave(self, turn_id: str) -> None:
        """Done with the steps before the LLM (or ended): the place goes to the next."""
        self._arrival.pop(turn_id, None)
        self.step_out(turn_id)

    @property
    def inside(self) -> int:
        return len(self._inside)

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiting if not w[2].done())

    def _let_in(self) -> None:
        while self._waiting and len(self._inside) < self.capacity:
            _, turn_id, granted = heapq.heappop(self._waiting)
            if not granted.done():
                self._inside.add(turn_id)
                granted.set_result(None)
