"""Following a round's two replies into their panes, at the Chat tab's pace.

Both replies come merged from ComparisonService.watch_round, (side, snapshot) as either grows.
The panes are redrawn at most every Streams.interval() (the Chat tab's budget, shared with its
streams: this is one more stream while it runs); a reply's end is never held back."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

from chat_core.comparisons.service import ComparisonRound, ComparisonService
from chat_core.turns.progress import Snapshot
from chat_core.ui.chat.streaming import Streams, waiting_entry
from chat_core.ui.chat.view import live_entry


def round_of(following: dict[str, Any]) -> ComparisonRound:
    """The round a `following` state names (handlers.following_state)."""
    return ComparisonService.round_of(following["comparison"], following["turns"],
                                      following["conversations"])


def entry(snap: Snapshot, share_mode: bool) -> dict[str, str]:
    """A reply's pane entry as it stands: its text, or where it waits for the LLM."""
    if snap.ahead is not None and not snap.text:
        return waiting_entry(snap.ahead)
    return live_entry(snap, share_mode)


async def follow_round(cs: ComparisonService, rnd: ComparisonRound
                       ) -> AsyncIterator[dict[str, Snapshot]]:
    """The latest snapshot of each side that has one, each time the panes should be redrawn;
    ends when both replies have finished."""
    latest: dict[str, Snapshot] = {}
    due = 0.0
    Streams.live += 1
    try:
        async for side, snap in cs.watch_round(rnd):
            latest[side] = snap
            now = time.monotonic()
            if snap.finished or now >= due:
                due = now + Streams.interval()
                yield dict(latest)
    finally:
        Streams.live -= 1
