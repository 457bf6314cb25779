"""Wake a turn that waits for the earlier turns of its conversation, when they finish.

Turns of one conversation answer in order: a turn's history step waits until every earlier
reply of its conversation is final. Each waiting turn used to poll for that (a query every
0.25 s, a DBOS workflow-status read every 2 s). Measured (issue 13): after ten kill -9 cycles
left about 400 turns pending, the polls held the connection pool, DBOS's threads and both
cores, and the backlog drained at about one reply a second against an LLM that could take 18.

Now the transaction that makes a reply final sends a NOTIFY on CHANNEL with the payload
'<conversation id> <reply id>' (a trigger, migrations/005_notify_final_replies.sql). Each
process holds one LISTEN connection and hands every notification to the waiters of that
conversation, in memory. A waiter knows which replies it waits for and queries again only
once all of them are reported final: about two queries per waiting turn whatever the backlog,
and none while it waits. It works across processes: a reply finished by another process, or
by an operator's UPDATE, wakes the turns waiting here.

Notifications are lost while the listener is disconnected (PostgreSQL restarting); when it is
back it wakes every waiter to look again, and waiters also look again on their own now and
then (turn_workflow.SAFETY_RECHECK_SEC).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator, Callable, Iterable, Iterator

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "chat_turn_final"


class Waiter:
    """One waiting turn: the replies it waits for, and an event set once they are all reported
    final, or when it should look at the database again (the listener reconnected).

    Use: `checking()` before querying for the earlier replies in flight, `expect(ids)` with
    what the query found, then `wait()`. A reply reported final while the query ran counts as
    done (its notification came before `expect`), so no notification slips between the two."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._pending: set[str] = set()
        self._seen: set[str] = set()
        self._stale = False

    def checking(self) -> None:
        self._pending = set()
        self._seen.clear()
        self._stale = False
        self._event.clear()

    def expect(self, reply_ids: Iterable[str]) -> None:
        self._pending = set(reply_ids) - self._seen
        if not self._pending or self._stale:
            self._event.set()

    def reply_final(self, reply_id: str) -> None:
        self._seen.add(reply_id)
        if reply_id in self._pending:
            self._pending.discard(reply_id)
            if not self._pending:
                self._event.set()

    @property
    def woken(self) -> bool:
        return self._event.is_set()

    def look_again(self) -> None:
        self._stale = True
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True when woken, False after `timeout` seconds without news."""
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await self._event.wait()
            return True
        except TimeoutError:
            return False


class TurnWakeups:
    """The LISTEN connection of this process, and the turns waiting here, by conversation.

    Other channels can be heard on the same connection (`hear`, before `start`): turns/relay.py
    hears a turn worker's progress and a request to stop a turn there. Their handlers are told
    `None` after a reconnect, since what was sent meanwhile is lost."""

    def __init__(self, url: str, reconnect_sec: float = 1.0) -> None:
        self.url = url
        self.reconnect_sec = reconnect_sec
        self._waiters: dict[str, set[Waiter]] = {}
        self._heard: dict[str, Callable[[str | None], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        # For tests and diagnostics.
        self.notifications = 0
        self.connects = 0

    async def start(self, wait_sec: float = 10.0) -> None:
        """Listen before any turn is recovered: a reply finished between a waiter's query and
        the first LISTEN would otherwise be noticed only by the slow safety re-check."""
        self._task = asyncio.create_task(self._listen(), name="turn-wakeups")
        try:
            async with asyncio.timeout(wait_sec):
                await self._listening.wait()
        except TimeoutError:
            log.warning("not listening for finished turns yet (PostgreSQL slow?); waiting "
                        "turns look again on their own meanwhile")

    def hear(self, channel: str, handler: Callable[[str | None], None]) -> None:
        self._heard[channel] = handler

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._listening.clear()

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    @contextlib.contextmanager
    def waiter(self, conversation_id: str) -> Iterator[Waiter]:
        waiter = Waiter()
        waiters = self._waiters.setdefault(conversation_id, set())
        waiters.add(waiter)
        try:
            yield waiter
        finally:
            waiters.discard(waiter)
            if not waiters and self._waiters.get(conversation_id) is waiters:
                del self._waiters[conversation_id]

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    def dispatch(self, payload: str) -> None:
        """One notification: '<conversation id> <reply id>'."""
        conversation_id, _, reply_id = payload.partition(" ")
        for waiter in tuple(self._waiters.get(conversation_id, ())):
            waiter.reply_final(reply_id)

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.look_again()

    async def _listen(self) -> None:
        """LISTEN, and dispatch; reconnect after PostgreSQL restarts, waking every waiter,
        since notifications sent meanwhile are lost."""
        while True:
            try:
                async for channel, payload in self._notifications():
                    if channel == CHANNEL:
                        self.notifications += 1
                        self.dispatch(payload)
                    else:
                        self._hand(channel, payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._listening.is_set():
                    log.warning("lost the connection that wakes waiting turns (%s); "
                                "reconnecting", type(exc).__name__)
                self._listening.clear()
            await asyncio.sleep(self.reconnect_sec)

    def _hand(self, channel: str, payload: str | None) -> None:
        try:
            self._heard[channel](payload)
        except Exception:  # a bug in one handler must not deafen the turns waiting here
            log.exception("handling a notification on %s failed", channel)

    async def _notifications(self) -> AsyncIterator[tuple[str, str]]:
        async with await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, application_name="durable-chat-wakeups") as conn:
            for channel in (CHANNEL, *self._heard):
                await conn.execute(f"LISTEN {channel}")
            self.connects += 1
            self._listening.set()
            self._wake_all()
            for channel in self._heard:
                self._hand(channel, None)
            async for note in conn.notifies():
                yield note.channel, note.payload
