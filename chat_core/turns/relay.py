"""A turn worker's live progress, relayed to the web process whose watchers follow it.

With TURN_WORKERS, turns run in worker processes (turns/worker_pool.py) while the people who
wait for them are connected to the web process. Each worker publishes what its turns' watchers
would be told (turns/progress.py: at most one change per turn every WAKE_EVERY_SEC, so several
tokens at once) as PostgreSQL notifications on PROGRESS_CHANNEL: one round trip for every
change of every turn gathered while the last one was sent. The web process hears them on its
LISTEN connection (turns/wakeups.py) and keeps a copy of each turn's progress in its TurnHub, so
service.watch_turn, the REST stream and the chat tab follow a worker's turn as they follow one
run in-process.

Nothing durable goes this way. A lost notification (PostgreSQL restarting, the worker's
connection dropped) shows as text that does not follow on from the copy's; that copy is then
dropped and its watchers read the reply's checkpoints in the database, as for a turn run by
any other process. The end of a turn is read from its saved row, never from a notification.

Stopping goes the other way on STOP_CHANNEL (the UPDATE that flags a reply stopped sends it,
ChatStore.request_stop): the process running the turn stops it at once instead of at its next
checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson
import psycopg
from dbos import DBOS

from chat_core.states import FINAL, WORKFLOW_ACTIVE
from chat_core.store.chat_store import ChatStore
from chat_core.turns.progress import TurnHub, TurnProgress

log = logging.getLogger(__name__)

PROGRESS_CHANNEL = "chat_turn_progress"
# PostgreSQL takes payloads below 8,000 bytes.
MAX_PAYLOAD_BYTES = 7_800
# A piece of text per event: at most 4 bytes a character in UTF-8 and 6 in JSON's escapes of
# control characters, so one piece and its event's other fields always fit a payload.
PIECE_CHARS = 1_000
# A worker sends what changed at most this often (see ProgressPublisher._publish).
SEND_EVERY_SEC = 0.01
# A copy not heard from for this long is checked against the database (check_silent).
SILENT_CHECK_SEC = 5.0


@dataclass
class _Sent:
    attempt: int
    chars: int
    status: str
    ahead: int | None


class ProgressPublisher:
    """Worker side: every change of the turns running here, as notifications to the web."""

    def __init__(self, url: str, executor_id: str, reconnect_sec: float = 1.0) -> None:
        self.url = url
        self.executor_id = executor_id
        self.reconnect_sec = reconnect_sec
        self._sent: dict[str, _Sent] = {}
        self._changed: dict[str, TurnProgress] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.notifications = 0  # for tests and diagnostics

    def observe(self, progress: TurnProgress) -> None:
        """TurnProgress.observer: called on the event loop at each change of a turn."""
        self._changed[progress.turn_id] = progress
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="turn-progress-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True,
                        application_name="durable-chat-relay") as conn:
                    await self._publish(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not relay turn progress to the web process (%s); its "
                            "watchers read the saved text meanwhile", type(exc).__name__)
                await asyncio.sleep(self.reconnect_sec)

    async def _publish(self, conn: psycopg.AsyncConnection[Any]) -> None:
        sent_at = 0.0
        while True:
            await self._wake.wait()
            # What changes within SEND_EVERY_SEC of the last send goes with the next one: at
            # load, one round trip and a few payloads for many turns' tokens.
            await asyncio.sleep(max(0.0, sent_at + SEND_EVERY_SEC - time.monotonic()))
            self._wake.clear()
            sent_at = time.monotonic()
            changed, self._changed = self._changed, {}
            payloads = pack([e for p in changed.values() for e in self.events(p)])
            try:
                if payloads:
                    await conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
                                       (PROGRESS_CHANNEL, payloads))
                    self.notifications += len(payloads)
            except BaseException:
                self._resend(changed)
                raise

    def _resend(self, changed: dict[str, TurnProgress]) -> None:
        """A send failed: those turns go again, whole (from offset 0), with the next one."""
        for turn_id, progress in changed.items():
            self._sent.pop(turn_id, None)
            self._changed.setdefault(turn_id, progress)
        self._wake.set()

    def events(self, progress: TurnProgress) -> list[dict[str, Any]]:
        """What changed since the last events of this turn: its new text in pieces, its
        status and place in the LLM's queue; or that it ended."""
        snap = progress.snapshot()
        sent = self._sent.get(snap.turn_id)
        if snap.finished:
            self._sent.pop(snap.turn_id, None)
            return [{"t": snap.turn_id, "f": snap.status}]
        if sent is None or sent.attempt != snap.attempt:
            sent = self._sent[snap.turn_id] = _Sent(snap.attempt, 0, "", None)
        text = snap.text
        if sent.chars == len(text) and (sent.status, sent.ahead) == (snap.status, snap.ahead) \
                and sent.chars:
            return []
        out = []
        for start in range(sent.chars, max(len(text), sent.chars + 1), PIECE_CHARS):
            event: dict[str, Any] = {"t": snap.turn_id, "a": snap.attempt, "o": start,
                                     "d": text[start:start + PIECE_CHARS], "s": snap.status,
                                     "h": snap.ahead}
            if start == 0:  # enough for a web process that did not start the turn to follow it
                event.update(r=snap.reply_id, w=progress.owner, x=self.executor_id)
            out.append(event)
        sent.chars, sent.status, sent.ahead = len(text), snap.status, snap.ahead
        return out


def pack(events: list[dict[str, Any]]) -> list[str]:
    """Events as JSON arrays of at most MAX_PAYLOAD_BYTES each, in their order."""
    payloads: list[str] = []
    batch: list[bytes] = []
    size = 2
    for event in events:
        encoded = orjson.dumps(event)
        if batch and size + len(encoded) + 1 > MAX_PAYLOAD_BYTES:
            payloads.append((b"[" + b",".join(batch) + b"]").decode())
            batch, size = [], 2
        batch.append(encoded)
        size += len(encoded) + 1
    if batch:
        payloads.append((b"[" + b",".join(batch) + b"]").decode())
    return payloads


class ProgressRelay:
    """Web side: copies of the worker's turns in this process's TurnHub."""

    def __init__(self, hub: TurnHub, store: ChatStore) -> None:
        self.hub = hub
        self.store = store
        self._finishing: set[asyncio.Task[None]] = set()
        # The executor (worker) each followed turn runs in, from its events.
        self._where: dict[str, str] = {}
        # When each copy last heard from its worker, or was last checked (check_silent).
        self._heard_at: dict[str, float] = {}
        # Copies that have heard from their worker at least once (for resend_stop).
        self._heard: set[str] = set()
        # Copies someone stopped before their worker was heard from: the stop is sent again
        # once it is (the worker may not have had the turn when it was first sent).
        self.resend_stop: Callable[[str], Awaitable[None]] | None = None
        self.gaps = 0  # copies dropped for a lost notification, for tests and diagnostics

    def heard(self, payload: str | None) -> None:
        """A notification on PROGRESS_CHANNEL, or None after the listener reconnected (what
        was sent meanwhile is lost: every copy in flight is dropped)."""
        if payload is None:
            for turn_id in self.hub.unfinished():
                self._drop(turn_id)
            return
        for event in orjson.loads(payload):
            self._apply(event)

    def worker_exited(self, executor_id: str) -> None:
        """Its turns' copies are dropped: they go on in the worker that replaces it, from their
        last step, and their watchers read the database until then."""
        for turn_id in [t for t, x in self._where.items() if x == executor_id]:
            self._drop(turn_id)

    def _drop(self, turn_id: str) -> None:
        self._forget(turn_id)
        self.hub.detach(turn_id)

    def _forget(self, turn_id: str) -> None:
        self._where.pop(turn_id, None)
        self._heard_at.pop(turn_id, None)
        self._heard.discard(turn_id)

    def _apply(self, event: dict[str, Any]) -> None:
        turn_id = event["t"]
        progress = self.hub.get(turn_id)
        if "x" in event:
            self._where[turn_id] = event["x"]
        if "f" in event:
            self._forget(turn_id)
            if progress is not None and not progress.finished:
                self._spawn(self._finish(progress))
            return
        if progress is None:
            if event["o"] != 0 or "r" not in event:
                return  # joined mid-reply: the database has it
            progress = self.hub.track(turn_id, event["r"], event["w"])
            progress.relayed = True
        if progress.finished:
            return  # ended here (cancelled): the worker has yet to notice
        if turn_id not in self._heard and progress.stop_requested and self.resend_stop:
            self._spawn(self.resend_stop(turn_id))
        self._heard.add(turn_id)
        self._heard_at[turn_id] = time.monotonic()
        if not progress.mirror(event["a"], event["o"], event["d"], event["s"], event["h"]):
            self.gaps += 1
            self._drop(turn_id)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(self, progress: TurnProgress) -> None:
        """The saved reply is the end of the turn, whatever was relayed before it (a turn
        that fails closes its reply with the error before it ends, workflow.chat_turn); no
        saved end yet, the copy is dropped and its watchers read the database."""
        try:
            row = await self.store.get_message(uuid.UUID(progress.reply_id))
        except Exception:
            row = None
        if self.hub.get(progress.turn_id) is not progress:
            return
        if row is not None and row["status"] in FINAL:
            self.hub.finish(progress.turn_id, row["status"], row["content"], row["error"])
        else:
            self.hub.detach(progress.turn_id)

    async def check_silent(self, after_sec: float) -> None:
        """Copies not heard from for `after_sec` whose turn is over or no longer running (its
        end never relayed: a worker's connection lost at that moment, or the turn taken over
        by a process that does not relay) are ended from the database, or dropped so that
        their watchers read it; a turn still running, or queued, stays followed."""
        now = time.monotonic()
        copies = {p.turn_id: p for p in self.hub.in_flight() if p.relayed}
        for turn_id in set(self._heard_at) - set(copies):  # ended here meanwhile
            self._forget(turn_id)
        for turn_id, progress in copies.items():
            if now - self._heard_at.setdefault(turn_id, now) < after_sec:
                continue
            row = await self.store.get_message(uuid.UUID(progress.reply_id))
            ended = row is not None and row["status"] in FINAL
            status = None if ended else await DBOS.get_workflow_status_async(turn_id)
            if self.hub.get(turn_id) is not progress:
                continue  # followed anew meanwhile (resumed)
            if ended:
                self._forget(turn_id)
                self.hub.finish(turn_id, row["status"], row["content"], row["error"])
            elif status is None or status.status not in WORKFLOW_ACTIVE:
                self._drop(turn_id)
            else:
                self._heard_at[turn_id] = now  # running or queued: look again later

    async def watch_silent(self, every_sec: float = SILENT_CHECK_SEC) -> None:
        while True:
            await asyncio.sleep(every_sec)
            try:
                await self.check_silent(every_sec)
            except Exception as exc:  # the database away: the next round looks again
                log.warning("could not check the turns followed from workers (%s)",
                            type(exc).__name__)


def stop_heard(hub: TurnHub, payload: str | None) -> None:
    """A notification on STOP_CHANNEL: the id of a turn someone stopped."""
    progress = hub.get(payload) if payload else None
    if progress is not None:
        progress.request_stop()
