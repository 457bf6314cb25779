"""Following one reply for a page, at a pace the process can afford.

A streaming reply updates the page at most every UI_UPDATE_SEC: 10 updates a second read as
smooth streaming. Each update renders the whole reply again (Markdown, then the sanitizer) and
goes out on the page's event stream (live_reply.py), so with many streams at once the interval
grows to keep the whole process under UI_MAX_UPDATES_PER_SEC; the first words and the final
text are never delayed. A reply slow to
render (Markdown built to be costly: 20,000 "[" take 0.4 s) is drawn less often, so that one
stream never holds the event loop for more than 1 / RENDER_BUDGET_FACTOR of the time. While the
turn waits for the LLM the placeholder says how many turns are ahead of it (waiting_entry)."""

from __future__ import annotations

import time
from typing import AsyncIterator

from chat_core.errors import ChatError, ShuttingDown
from chat_core.service import ChatService
from chat_core.states import ERROR
from chat_core.ui.chat.view import RESTARTING_NOTICE, Following, live_entry
from chat_core.ui.streamed_render import StreamedRender
from chat_core.ui.render import warning

UI_UPDATE_SEC = 0.1
UI_MAX_UPDATES_PER_SEC = 150
RENDER_BUDGET_FACTOR = 10
RESTARTING = "restarting"  # how a reply ended for this page when the app began to stop
WAITING_MARK = "⏳ waiting"


class Streams:
    """Replies being streamed to pages by this process (one event loop: a plain counter)."""
    live = 0

    @classmethod
    def interval(cls) -> float:
        return max(UI_UPDATE_SEC, cls.live / UI_MAX_UPDATES_PER_SEC)


def waiting_entry(ahead: int) -> dict[str, str]:
    """The pane's entry for a reply whose turn waits for the LLM (its cap reached): where it
    stands, so a full room reads as a queue that moves, not as a hang."""
    where = "next in line" if ahead == 0 else f"{ahead} ahead"
    return {"role": "assistant", "content": f"<p><em>{WAITING_MARK}, {where}</em></p>"}


async def follow_reply(service: ChatService, turn: Following, share_mode: bool
                       ) -> AsyncIterator[tuple[dict[str, str] | None, Following]]:
    """(the reply's pane entry, the turn with how it stands) each time the pane should be
    redrawn; a last (None, turn) when the watch ended on an error, with the turn's `notice`.
    The turn's `status` stays "error" when no snapshot came at all."""
    state: Following = {**turn, "status": ERROR, "finished": False}
    Streams.live += 1
    due = 0.0
    renderer = StreamedRender(share_mode)
    try:
        async for snap in service.watch_turn(turn["id"], min_interval=Streams.interval()):
            state = {**state, "status": snap.status, "finished": snap.finished,
                     "reply_id": snap.reply_id}
            began = time.monotonic()
            if not snap.finished and began < due:
                continue
            entry = live_entry(snap, share_mode, renderer) if snap.ahead is None or snap.text \
                else waiting_entry(snap.ahead)
            due = began + RENDER_BUDGET_FACTOR * (time.monotonic() - began)
            yield entry, state
    except ShuttingDown:
        yield None, {**state, "status": RESTARTING, "notice": RESTARTING_NOTICE}
    except ChatError as exc:
        yield None, {**state, "notice": warning(exc)}
    finally:
        Streams.live -= 1
