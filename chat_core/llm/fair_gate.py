"""Who gets the LLM next when it is busy: round-robin across people, first come first served
within a person (docs/architecture.md, "Fair share of the LLM").

A plain semaphore serves waiters in arrival order, so one person who sends 50 messages at once
holds the LLM until all 50 have started, and the 10 people who sent one message each just after
wait for all of them. The gate keeps one queue per person (owner) instead; when a place frees it
goes to the waiting owner served least recently, and within an owner to their oldest turn. So
with capacity 8, a burst of 50 from one person and one turn each from 10 others, the 10 are the
next 10 served.

Every turn of this process passes the gate before it calls the LLM, with the capacity of the
client's own cap (LLM_MAX_CONCURRENCY), so that cap never queues. With the cross-process cap
(LLM_GLOBAL_CONCURRENCY, llm/slots.py) the turn the gate lets in claims its global slot
(`then`) before the gate lets in the next: the process's turns reach the global slots one at a
time, in the gate's order, so the order within a process holds there too.

Round-robin only decides who gets the next free place, and a turn holds its place for its whole
reply: a burst that arrived first still holds every place while the others wait for whole
replies to end. So with `preempt` (fair mode, on servers that can continue a reply), a waiting
turn whose owner holds at least two places fewer than another owner takes one of that owner's
places: their latest arrival's is asked back (`Place.preempted`); its turn stops at its next
token, keeps its text, and queues again with its arrival number, ahead of its owner's later
turns, to continue the reply from that text when it is let in again (turns/workflow.py). The
waiting turn is set aside for that place and is let in first once it is given up, or at once if
another place frees before (then nobody yields). A gap of two, not one, so that a place never
goes back and forth between two people. With preemption, a free place goes to the waiting owner
holding the fewest places (round-robin among equals): the order preemption would restore anyway.

A waiting turn is told how many turns would be served before it (`on_ahead`), again each time
that changes, and None once it is let in. `load()` is the live picture for admins. Everything
runs on one event loop: no locks, plain counters.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

# Told the number of turns ahead while waiting, None once the turn is let in.
AheadCallback = Callable[[int | None], None]
# Entered once the gate lets a turn in, before the next is let in (a global slot's claim).
ThenFactory = Callable[[], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class OwnerLoad:
    owner: str  # the person's account id; "" for local mode and turns from before accounts
    running: int  # let in: generating, or claiming a global slot
    waiting: int

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "running": self.running, "waiting": self.waiting}


@dataclass(frozen=True)
class GateLoad:
    """The gate at one moment: its capacity, its mode, and each person with a turn in it
    (most running first, then most waiting)."""
    capacity: int
    fair: bool
    owners: tuple[OwnerLoad, ...]

    @property
    def running(self) -> int:
        return sum(o.running for o in self.owners)

    @property
    def waiting(self) -> int:
        return sum(o.waiting for o in self.owners)

    def to_json(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "fair": self.fair, "running": self.running,
                "waiting": self.waiting, "owners": [o.to_json() for o in self.owners]}


class Place:
    """A turn's place in the gate, from the moment it queues until it leaves. `seq` is its
    arrival number: a turn that yielded its place queues again with it, to keep its turn."""
    __slots__ = ("owner", "seq", "granted", "on_ahead", "ahead", "then", "preempted", "heir")

    def __init__(self, owner: str, seq: int, on_ahead: AheadCallback | None,
                 then: bool) -> None:
        self.owner, self.seq, self.on_ahead, self.then = owner, seq, on_ahead, then
        self.granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ahead: int | None = None
        # Asked to give the place up to a turn of someone holding fewer: stop at the next
        # token and queue again.
        self.preempted = False
        # The waiting turn set aside for this place while it is being given up.
        self.heir: Place | None = None



class FairGate:
    """At most `capacity` turns in at once; the rest wait, served round-robin across owners
    (`fair`), or in arrival order (fair=False: LLM_FAIR_SHARE=0, the baseline)."""

    def __init__(self, capacity: int, fair: bool = True, preempt: bool = False) -> None:
        if capacity < 1:
            raise ValueError(f"a gate needs a capacity of at least 1, got {capacity}")
        self.capacity = capacity
        self.fair = fair
        self.preempt = fair and preempt
        # The places let in, per owner, in the order they were let in.
        self._holders: dict[str, list[Place]] = {}
        # Waiting turns set aside for a place being given up, per owner.
        self._set_aside: dict[str, int] = {}
        # Turns set aside whose place has been given up: let in before anyone else.
        self._heirs_ready: deque[Place] = deque()
        self.preemptions = 0
        self._queues: dict[str, deque[Place]] = {}
        self._running: dict[str, int] = {}
        # The grant count at each owner's last grant: the least recent goes first. Kept while
        # the owner has a turn in the gate; an owner who comes back later starts afresh.
        self._last_served: dict[str, int] = {}
        self._grants = 0
        self._arrivals = itertools.count()
        # The turn let in and still claiming its global slot: the next waits for it.
        self._claiming: Place | None = None

    @asynccontextmanager
    async def turn(self, owner: str, on_ahead: AheadCallback | None = None,
                   then: ThenFactory | None = None, seq: int | None = None
                   ) -> AsyncIterator[Place]:
        """Hold one place for the block, waiting for it in the owner's queue (`seq`: the
        arrival number of a turn queueing again after it yielded). A turn cancelled while it
        waits leaves its queue and takes nothing."""
        waiter = self._enqueue(owner, on_ahead, then is not None, seq)
        await self._wait_granted(waiter)
        try:
            async with then() if then is not None else nullcontext():
                self._claimed(waiter)
                yield waiter
        finally:
            self._release(waiter)

    def load(self) -> GateLoad:
        owners = set(self._running) | set(self._queues) | set(self._set_aside)
        rows = [OwnerLoad(o, self._running.get(o, 0),
                          len(self._queues.get(o, ())) + self._set_aside.get(o, 0))
                for o in owners]
        rows.sort(key=lambda r: (-r.running, -r.waiting, r.owner))
        return GateLoad(self.capacity, self.fair, tuple(rows))

    def order(self) -> list[tuple[str, int]]:
        """(owner, arrival number) of every waiting turn, in the order they would be let in
        if nobody else came: what `ahead` counts."""
        return [(w.owner, w.seq) for w in self._serving_order()]

    # -- waiting -------------------------------------------------------------------------------

    def _enqueue(self, owner: str, on_ahead: AheadCallback | None, then: bool,
                 seq: int | None) -> Place:
        waiter = Place(owner, next(self._arrivals) if seq is None else seq, on_ahead, then)
        self._queue_in_order(waiter)
        self._dispatch()
        return waiter

    def _queue_in_order(self, waiter: Place) -> None:
        """Into its owner's queue by arrival number (a turn that yielded goes back ahead of
        its owner's later turns)."""
        queue = self._queues.setdefault(waiter.owner, deque())
        at = len(queue)
        while at > 0 and queue[at - 1].seq > waiter.seq:
            at -= 1
        queue.insert(at, waiter)

    async def _wait_granted(self, waiter: Place) -> None:
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                # Let in at the moment it was cancelled: give the place back.
                self._release(waiter)
            else:
                self._withdraw(waiter)
            raise

    def _withdraw(self, waiter: Place) -> None:
        if waiter in self._heirs_ready:
            self._heirs_ready.remove(waiter)
            self._set_aside_count(waiter.owner, -1)
        for holders in self._holders.values():
            for holder in holders:
                if holder.heir is waiter:  # set aside for a place, which is no longer needed
                    holder.heir, holder.preempted = None, False
                    self._set_aside_count(waiter.owner, -1)
        queue = self._queues.get(waiter.owner)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[waiter.owner]
        self._forget_if_idle(waiter.owner)
        self._dispatch()

    # -- letting in ----------------------------------------------------------------------------

    def _in_use(self) -> int:
        return sum(self._running.values())

    def _dispatch(self) -> None:
        """Let waiters in while there is room, then tell the rest their new places."""
        while self._claiming is None and self._in_use() < self.capacity:
            waiter = self._pop_next()
            if waiter is None:
                break
            self._grant(waiter)
        if self.preempt and self._in_use() >= self.capacity:
            self._preempt()
        for ahead, waiter in enumerate(self._serving_order()):
            self._tell(waiter, ahead)

    def _grant(self, waiter: Place) -> None:
        self._grants += 1
        self._running[waiter.owner] = self._running.get(waiter.owner, 0) + 1
        self._holders.setdefault(waiter.owner, []).append(waiter)
        self._last_served[waiter.owner] = self._grants
        if waiter.then:
            self._claiming = waiter
        waiter.granted.set_result(None)
        self._tell(waiter, None)

    # -- preempting ----------------------------------------------------------------------------

    def _kept(self, owner: str) -> int:
        """The places an owner will hold once the places asked back are given up."""
        return sum(1 for p in self._holders.get(owner, ()) if not p.preempted)

    def _preempt(self) -> None:
        """While some waiting turn's owner holds two places fewer than another owner, set the
        turn aside for a place of that owner and ask for it back: the place of their latest
        arrival, first come first served within a person (a turn that yielded before keeps
        its turn; a place still claiming its global slot gives up before sending a request)."""
        while True:
            victim = max(self._holders, key=self._kept, default=None)
            if victim is None:
                return
            most = self._kept(victim)
            claimant = next((w for w in self._heads_in_serving_order()
                             if self._kept(w.owner) + self._set_aside.get(w.owner, 0) + 2
                             <= most and w.owner != victim), None)
            if claimant is None:
                return
            place = max((p for p in self._holders[victim] if not p.preempted),
                        key=lambda p: p.seq)
            self._take_from_queue(claimant)
            place.preempted, place.heir = True, claimant
            self._set_aside_count(claimant.owner, +1)
            self.preemptions += 1
            self._tell(claimant, 0)

    def _heads_in_serving_order(self) -> list[Place]:
        """Each owner's next turn, in serving order (a cancelled one not yet woken left out)."""
        heads = [q[0] for q in self._queues.values() if not q[0].granted.done()]
        return sorted(heads, key=lambda w: self._owner_key(w.owner, self._kept(w.owner)))

    def _take_from_queue(self, waiter: Place) -> None:
        queue = self._queues[waiter.owner]
        queue.remove(waiter)
        if not queue:
            del self._queues[waiter.owner]

    def _set_aside_count(self, owner: str, change: int) -> None:
        left = self._set_aside.get(owner, 0) + change
        if left > 0:
            self._set_aside[owner] = left
        else:
            self._set_aside.pop(owner, None)

    def _pop_next(self) -> Place | None:
        """The next turn to let in: a turn set aside for a place comes first (its place was
        given up, or a place is free before that happens: then nobody has to yield), then the
        queues, by `_owner_key`."""
        while self._heirs_ready:
            heir = self._heirs_ready.popleft()
            self._set_aside_count(heir.owner, -1)
            if not heir.granted.done():
                return heir
        for holders in self._holders.values():
            for holder in holders:
                if holder.heir is not None:
                    heir, holder.heir, holder.preempted = holder.heir, None, False
                    self._set_aside_count(heir.owner, -1)
                    return heir
        while self._queues:
            owner = min(self._queues, key=lambda o: self._owner_key(o, self._kept(o)))
            queue = self._queues[owner]
            waiter = queue.popleft()
            if not queue:
                del self._queues[owner]
            if not waiter.granted.done():  # else cancelled, its task not yet woken
                return waiter
            self._forget_if_idle(owner)
        return None

    def _owner_key(self, owner: str, held: int, served: int | None = None
                   ) -> tuple[int, int, int]:
        """Whose turn is next: fair mode serves the owner served least recently (round-robin)
        and, with preemption, the owner holding the fewest places before that (the order
        preemption would restore anyway, so a freed place is not let in and taken back);
        arrival order breaks ties, and is all there is in arrival-order mode."""
        head = self._queues[owner][0].seq
        if not self.fair:
            return (0, 0, head)
        last = self._last_served.get(owner, 0) if served is None else served
        return (held if self.preempt else 0, last, head)

    def _serving_order(self) -> list[Place]:
        """The waiting turns in the order `_pop_next` would take them if nobody else came and
        nothing ended: each owner's turns in their order, owners by `_owner_key` as their
        places and last grant change with each turn let in."""
        if not self.fair:
            return sorted((w for q in self._queues.values() for w in q), key=lambda w: w.seq)
        heap = [(self._owner_key(o, self._kept(o)), o, 0) for o in self._queues]
        heapq.heapify(heap)
        order: list[Place] = []
        grants = self._grants
        while heap:
            (held, _, _), owner, depth = heapq.heappop(heap)
            queue = self._queues[owner]
            order.append(queue[depth])
            if depth + 1 < len(queue):
                grants += 1
                key = (held + 1 if self.preempt else 0, grants, queue[depth + 1].seq)
                heapq.heappush(heap, (key, owner, depth + 1))
        return order

    @staticmethod
    def _tell(waiter: Place, ahead: int | None) -> None:
        if waiter.ahead != ahead:
            waiter.ahead = ahead
            if waiter.on_ahead is not None:
                waiter.on_ahead(ahead)

    # -- leaving -------------------------------------------------------------------------------

    def _claimed(self, waiter: Place) -> None:
        if self._claiming is waiter:
            self._claiming = None
            self._dispatch()

    def _release(self, waiter: Place) -> None:
        if self._claiming is waiter:
            self._claiming = None
        left = self._running.get(waiter.owner, 0) - 1
        if left > 0:
            self._running[waiter.owner] = left
        else:
            self._running.pop(waiter.owner, None)
        holders = self._holders.get(waiter.owner, [])
        if waiter in holders:
            holders.remove(waiter)
            if not holders:
                del self._holders[waiter.owner]
        heir, waiter.heir = waiter.heir, None
        if heir is not None:  # the place it was set aside for: first in line for it
            self._heirs_ready.append(heir)
        self._forget_if_idle(waiter.owner)
        self._dispatch()

    def _forget_if_idle(self, owner: str) -> None:
        if owner not in self._running and owner not in self._queues and \
                owner not in self._set_aside:
            self._last_served.pop(owner, None)
