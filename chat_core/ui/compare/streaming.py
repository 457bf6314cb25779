"""Following a round's two replies into their panes, at the Chat tab's pace.

Both replies come merged from ComparisonService.watch_round, (side, snapshot) as either grows.
The panes are redrawn at most every Streams.interval() (the Chat tab's budget, shared with its
streams: this is one more stream while it runs); a reply's end is never held back."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

from chat_core.comparisons.service import ComparisonRound, ComparisonService
from chat_core.service import Turn
from chat_core.turns.progress import Snapshot
from chat_core.turns.workflow import reply_id_for, user_message_id_for
from chat_core.ui.chat.streaming import Streams, waiting_entry
from chat_core.ui.chat.view import live_entry


def round_of(following: dict[str, Any]) -> ComparisonRound:
    """The round a `following` state names (handlers.following_state): each side's turn,
    with the ids its rows have by construction."""
    turns = {}
    for side, turn_id in following["turns"].items():
        turns[side] = Turn(turn_id, following["conversations"].get(side) or "",
                           str(user_message_id_for(turn_id)), str(reply_id_for(turn_id)))
    return ComparisonRound(following["comparison"], turns)


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
