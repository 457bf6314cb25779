"""A cap on LLM requests in flight across every app process on one database.

Each process caps its own requests with a semaphore (LLM_MAX_CONCURRENCY). With several
processes in front of one vLLM server, LLM_GLOBAL_CONCURRENCY caps them all together: a turn
takes one of that many rows of `llm_slots` before it calls the LLM and frees it after.

Why not a DBOS queue with a global concurrency: a queued workflow runs in whichever process
dequeues it, so a reply would stream from another process than the one serving the user; and
dequeuing is polled, adding up to the polling interval to every turn. Here the fast path is two
small UPDATEs (about a millisecond each); a waiting turn is woken by NOTIFY as soon as a slot is
freed. Each process heartbeats every HEARTBEAT_SEC; the slots of a process silent for LIVENESS_SEC
(it died) are free again, and a restarted process frees its own at once. A recovered turn gets
its own slot back (the holder is the turn's workflow id). The cap is soft in one case: a process
whose event loop stalls longer than LIVENESS_SEC loses its slots to others for a moment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import psycopg

from chat_core.store.database import Database, is_transient

log = logging.getLogger(__name__)

CHANNEL = "llm_slots_freed"
HEARTBEAT_SEC = 2.0
LIVENESS_SEC = 10.0


class GlobalLLMSlots:
    def __init__(self, db: Database, size: int, executor_id: str) -> None:
        self.db = db
        self.size = size
        self.executor_id = executor_id
        self._freed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Size the table (all processes must use the same LLM_GLOBAL_CONCURRENCY), free the
        slots this executor held before it restarted, and listen for freed slots."""
        async with self.db.connection() as conn:
            async with conn.transaction():
                await conn.execute("LOCK TABLE llm_slots IN EXCLUSIVE MODE")
                await conn.execute(
                    "INSERT INTO llm_slots (slot) SELECT g FROM generate_series(0, %s - 1) g"
                    " ON CONFLICT DO NOTHING", (self.size,))
                await conn.execute("DELETE FROM llm_slots WHERE slot >= %s", (self.size,))
                await conn.execute(
                    "UPDATE llm_slots SET holder = NULL, executor_id = NULL, acquired_at = NULL"
                    " WHERE executor_id = %s", (self.executor_id,))
        await self._heartbeat_once()
        self._tasks = [asyncio.create_task(self._listen(), name="llm-slots-listener"),
                       asyncio.create_task(self._heartbeat(), name="llm-slots-heartbeat")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []

    async def _heartbeat_once(self) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO llm_executors (executor_id, heartbeat_at) VALUES"
                " (%s, clock_timestamp()) ON CONFLICT (executor_id) DO UPDATE"
                " SET heartbeat_at = excluded.heartbeat_at", (self.executor_id,))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SEC)
            try:
                await self._heartbeat_once()
            except Exception as exc:  # PostgreSQL restarting: the next beat tries again
                log.warning("LLM slot heartbeat failed: %s", exc)

    async def _listen(self) -> None:
        """Wake waiters when another process frees a slot; reconnects after PostgreSQL
        restarts (waiters also poll, so a missed notification only costs a second)."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.db.url,
                                                                 autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async for _ in conn.notifies():
                        self._pulse()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("llm slot listener reconnecting after %s", exc)
                await asyncio.sleep(1.0)

    def _pulse(self) -> None:
        freed, self._freed = self._freed, asyncio.Event()
        freed.set()

    async def _try_acquire(self, holder: str) -> int | None:
        """One UPDATE of a free slot (or this turn's own). The candidate row is chosen without
        a join: PostgreSQL re-checks a locked row's conditions on its newest version, but not a
        joined table's, so a join here could hand one slot to two turns."""
        slot = await self._claim(holder, [])
        if slot is None:
            async with self.db.connection() as conn:
                cur = await conn.execute(
                    "SELECT executor_id FROM llm_executors WHERE heartbeat_at <"
                    " clock_timestamp() - make_interval(secs => %s)", (LIVENESS_SEC,))
                dead = [r["executor_id"] for r in await cur.fetchall()]
            if dead:
                slot = await self._claim(holder, dead)
        return slot

    async def _claim(self, holder: str, dead_executors: list[str]) -> int | None:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "UPDATE llm_slots SET holder = %(holder)s, executor_id = %(me)s,"
                " acquired_at = clock_timestamp()"
                " WHERE slot = (SELECT slot FROM llm_slots WHERE holder IS NULL"
                "   OR holder = %(holder)s OR executor_id = ANY(%(dead)s)"
                "   ORDER BY (holder = %(holder)s) DESC NULLS LAST, slot"
                "   LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " RETURNING slot",
                {"holder": holder, "me": self.executor_id, "dead": dead_executors})
            row = await cur.fetchone()
        return None if row is None else int(row["slot"])

    async def _release(self, slot: int, holder: str) -> None:
        async with self.db.connection() as conn:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE llm_slots SET holder = NULL, executor_id = NULL, acquired_at = NULL"
                    " WHERE slot = %s AND holder = %s", (slot, holder))
                await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))

    @asynccontextmanager
    async def slot(self, holder: str) -> AsyncIterator[int]:
        """Hold one slot for the duration of the block; waits while all are taken."""
        waited_since = time.monotonic()
        slot = None
        while slot is None:
            freed = self._freed
            try:
                slot = await self._try_acquire(holder)
            except Exception as exc:
                if not is_transient(exc):
                    raise
            if slot is None:
                try:
                    await asyncio.wait_for(freed.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
        waited = time.monotonic() - waited_since
        if waited > 1.0:
            log.info("turn %s waited %.1f s for one of %d global LLM slots", holder, waited,
                     self.size)
        try:
            yield slot
        finally:
            try:
                await asyncio.shield(self._release(slot, holder))
            except Exception as exc:
                log.warning("could not release LLM slot %s: %s", slot, exc)
