"""Live progress of the turns generating in this process, for streaming to clients.

Tokens go from the LLM step to every watcher through memory, never through the database, so
streaming costs nothing per token. The database holds a checkpoint of the partial text every
STREAM_CHECKPOINT_SEC for readers in other processes (service.watch_turn falls back to it).
Everything here runs on the one event loop that runs the workflows.
"""

from __future__ import annotations
from chat_core.states import FINAL, PENDING, STREAMING


import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable

# Watchers of a streaming reply are woken at most this often: tokens that come faster (a GPU at
# low load writes 100 a second) go out together, one wake-up and one event for several, where
# each one cost a wake-up, a snapshot and an event of every watcher (docs/performance.md).
# Tokens further apart go out as each comes; the first text of an attempt, a new attempt, the
# wait for the LLM and the end always at once.
WAKE_EVERY_SEC = 0.02


class WakeTimer:
    """One timer for the deferred wake-ups of many turns, where each streaming turn armed and
    cancelled its own every WAKE_EVERY_SEC (a synthetic stream of 32 turns spent a fifth to a
    third less CPU per token with one, docs/performance.md). A turn deferred now is woken at
    the timer's next firing, at most WAKE_EVERY_SEC on; one woken less than half an interval
    before that waits for the firing after, so a turn is woken about once an interval at
    most. The timer runs only while a turn waits."""

    def __init__(self) -> None:
        self._due: dict[TurnProgress, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def defer(self, progress: TurnProgress) -> None:
        loop = asyncio.get_running_loop()
        self._due[progress] = None
        # A timer of a loop that has ended (tests run hubs on several) would never fire.
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_later(WAKE_EVERY_SEC, self._fire)

    def _fire(self) -> None:
        self._timer = None
        due, self._due = self._due, {}
        soon = time.monotonic() - WAKE_EVERY_SEC / 2
        for progress in due:
            if not progress.deferred:
                continue
            if progress.notified_at > soon:
                self._due[progress] = None
                continue
            try:
                progress._notify()
            except Exception as exc:  # one turn's failure must not stall the others' text
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "waking a turn's watchers failed", "exception": exc})
        if self._due:
            self._timer = asyncio.get_running_loop().call_later(WAKE_EVERY_SEC, self._fire)


@dataclass(frozen=True)
class Snapshot:
    turn_id: str
    reply_id: str
    status: str
    text: str
    # Bumped when a failed attempt is retried and the text starts over.
    attempt: int
    error: str | None = None
    # While the turn waits for the LLM (its cap reached): how many turns will be let in before
    # it (llm/fair_gate.py); None when it is not waiting.
    ahead: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL


class TurnProgress:
    def __init__(self, turn_id: str, reply_id: str, owner: str = "",
                 wake_timer: WakeTimer | None = None) -> None:
        self.turn_id = turn_id
        self.reply_id = reply_id
        # The person whose turn this is (their account id; "" in local mode): whom the turn's
        # live progress may be shown to, and whose share of the LLM it waits in.
        self.owner = owner
        # Its conversation, where known (a turn started or handed to a worker here).
        self.conversation_id = ""
        # Cleared while DBOS is being asked to start or queue its workflow (turns/turn_start.py):
        # a turn followed from before its workflow's row exists has nothing a delete of its
        # conversation could cancel until then.
        self.recorded = asyncio.Event()
        self.recorded.set()
        # A copy of a turn run by a turn worker (turns/relay.py), not run here.
        self.relayed = False
        self.status = PENDING
        self.error: str | None = None
        self.attempt = 0
        self.ahead: int | None = None
        self.stop_event = asyncio.Event()
        self._finished = asyncio.Event()
        self._pieces: list[str] = []
        # The text of _pieces[:_joined]: joined as it grows, not from the start each time.
        self._text = ""
        self._joined = 0
        self._changed = asyncio.Event()
        self.notified_at = 0.0
        # Text has come that the watchers are to be told of at `_wake_timer`'s next firing.
        self.deferred = False
        self._wake_timer = wake_timer or WakeTimer()
        # Set when the process stops: watchers end (the turn goes on in the next process).
        self.closing = False
        # Told of every change watchers are told of (turns/relay.py publishes it to the web
        # process when this process is a turn worker).
        self.observer: Callable[[TurnProgress], None] | None = None

    @property
    def text(self) -> str:
        pieces = self._pieces
        if self._joined < len(pieces):
            self._text += pieces[-1] if self._joined == len(pieces) - 1 \
                else "".join(pieces[self._joined:])
            self._joined = len(pieces)
        return self._text

    @property
    def finished(self) -> bool:
        """Without building a snapshot, which joins the text: asked for every relayed event."""
        return self.status in FINAL

    def snapshot(self) -> Snapshot:
        return Snapshot(self.turn_id, self.reply_id, self.status, self.text, self.attempt,
                        self.error, self.ahead)

    def _notify(self) -> None:
        self.deferred = False
        self.notified_at = time.monotonic()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self.observer is not None:
            self.observer(self)

    def start_attempt(self) -> None:
        if self._pieces or self.attempt > 0 or self.status != PENDING:
            self.attempt += 1
        self._pieces.clear()
        self._text, self._joined = "", 0
        self.status = STREAMING
        self.ahead = None
        self._notify()

    def waiting(self, ahead: int | None) -> None:
        """The gate's word on this turn: `ahead` turns before it, or None once it is in."""
        if ahead != self.ahead:
            self.ahead = ahead
            self._notify()

    def append(self, delta: str) -> None:
        """Add text; wake the watchers now when WAKE_EVERY_SEC has passed since they were last
        woken (or it is an attempt's first text), else at the wake timer's next firing (a
        wake-up already due takes this text too)."""
        self._pieces.append(delta)
        if self.deferred:
            return
        if len(self._pieces) == 1 or \
                time.monotonic() - self.notified_at >= WAKE_EVERY_SEC:
            self._notify()
        else:
            self._wake_timer.defer(self)
            self.deferred = True

    def finish(self, status: str, text: str, error: str | None = None) -> None:
        self.status = status
        self.error = error
        self.ahead = None
        self._pieces = [text]
        self._text, self._joined = text, 1
        self._finished.set()
        self._notify()

    def mirror(self, attempt: int, offset: int, delta: str, status: str,
               ahead: int | None) -> bool:
        """Apply what the process running this turn published (turns/relay.py): `delta` is
        the text from `offset` on of attempt `attempt`. False when it does not follow on from
        what this copy holds (a notification was lost): the copy can no longer be trusted."""
        if attempt < self.attempt:
            return True  # a late word about an attempt already replaced
        if attempt > self.attempt or offset == 0:  # a new attempt, or the whole text again
            self.attempt = attempt
            self._pieces.clear()
            self._text, self._joined = "", 0
        if offset != len(self.text):
            return False
        if delta:
            self._pieces.append(delta)
        self.status, self.ahead = status, ahead
        self._notify()
        return True

    @property
    def stop_requested(self) -> bool:
        return self.stop_event.is_set()

    @property
    def chunks(self) -> int:
        return len(self._pieces)

    def request_stop(self) -> None:
        self.stop_event.set()

    async def watch(self, min_interval: float = 0.0) -> AsyncIterator[Snapshot]:
        """Yield a snapshot now and after every change, coalescing changes that arrive while
        the consumer is busy, and at most one per `min_interval` seconds (a UI needs no more
        than about 20 updates a second); the final state comes at once, and ends it."""
        while True:
            changed = self._changed
            if self.closing and not self._finished.is_set():
                return
            snap = self.snapshot()
            yield snap
            if snap.finished:
                return
            shown_at = time.monotonic()
            await changed.wait()
            delay = shown_at + min_interval - time.monotonic()
            # The first words show at once; after that, updates are spaced out.
            if delay > 0 and snap.text and not self._finished.is_set():
                try:
                    await asyncio.wait_for(self._finished.wait(), delay)
                except asyncio.TimeoutError:
                    pass
            elif delay > 0 and snap.ahead is not None:
                await self._pace_waiting(shown_at + min_interval)

    async def _pace_waiting(self, until: float) -> None:
        """A waiting turn's place changes each time any turn is let in: show it at most once
        per interval, but the turn's own start (or end) at once."""
        while self.ahead is not None and not self._finished.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                return


class TurnHub:
    """Registry of the turns in flight in this process, or followed here while a turn worker
    runs them (turns/relay.py)."""

    def __init__(self, keep_finished_sec: float = 30.0) -> None:
        self._turns: dict[str, TurnProgress] = {}
        self._keep_finished_sec = keep_finished_sec
        self.closing = False
        self.closed = asyncio.Event()
        # Given to every turn tracked from now on (see TurnProgress.observer).
        self.observer: Callable[[TurnProgress], None] | None = None
        self._wake_timer = WakeTimer()

    def close(self) -> None:
        """The process is stopping: every watcher of an unfinished turn stops waiting now."""
        self.closing = True
        self.closed.set()
        for progress in self._turns.values():
            progress.closing = True
            progress._notify()

    def track(self, turn_id: str, reply_id: str, owner: str = "") -> TurnProgress:
        progress = self._turns.get(turn_id)
        if progress is None:
            progress = self._turns[turn_id] = TurnProgress(turn_id, reply_id, owner,
                                                              self._wake_timer)
            progress.closing = self.closing
            progress.observer = self.observer
        return progress

    def detach(self, turn_id: str) -> None:
        """Stop following a turn here: its watchers end their wait and read the database
        instead (service.watch_turn), as for a turn run by another process."""
        progress = self._turns.pop(turn_id, None)
        if progress is not None and not progress.finished:
            progress.closing = True
            progress._notify()

    def unfinished(self) -> list[str]:
        return [p.turn_id for p in self.in_flight()]

    def in_flight(self) -> list[TurnProgress]:
        return [p for p in self._turns.values() if not p.finished]

    def of_conversation(self, conversation_id: str) -> list[TurnProgress]:
        """The unfinished turns of a conversation followed here (those started or handed to a
        worker here: recovered ones do not know theirs)."""
        return [p for p in self.in_flight() if p.conversation_id == conversation_id]

    def get(self, turn_id: str) -> TurnProgress | None:
        return self._turns.get(turn_id)

    def finish(self, turn_id: str, status: str, text: str, error: str | None = None) -> None:
        progress = self._turns.get(turn_id)
        if progress is None:
            return
        progress.finish(status, text, error)
        # Late watchers (a page reloaded just now) still find the final state for a while.
        asyncio.get_running_loop().call_later(
            self._keep_finished_sec, self._forget, turn_id, progress)

    def forget(self, turn_id: str) -> None:
        """Drop a finished turn now (it is to run again: resumed)."""
        progress = self._turns.get(turn_id)
        if progress is not None and progress.finished:
            del self._turns[turn_id]

    def _forget(self, turn_id: str, progress: TurnProgress) -> None:
        if self._turns.get(turn_id) is progress:
            del self._turns[turn_id]

    def __len__(self) -> int:
        return len(self._turns)
