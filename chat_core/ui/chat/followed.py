"""Which turn each open page follows now: what the page's own state cannot tell the finish step
of an earlier chain of the same page.

A page (one Gradio session) may have several chains following a reply: one per chain that
began following one (a message sent, a conversation opened or re-opened). Only the newest may
draw into the pane; an older one drawing would cover the conversation the page shows now, and
whichever ended last would stay. The steps that show a conversation or start a turn record the
turn the page follows (None: nothing in flight shown); a finish step checks it before drawing
(handlers.finish)."""

from __future__ import annotations

from typing import Any

from chat_core.accounts.expiring_cache import ExpiringCache

# How long, and for how many pages, a page's followed turn is remembered. A page forgotten
# here follows on, as before this existed: nothing gets stuck.
FOLLOWED_SEC = 24 * 3600.0
MAX_PAGES = 10_000


class FollowedTurns:
    def __init__(self) -> None:
        self._turns: ExpiringCache[str | None] = ExpiringCache(FOLLOWED_SEC, MAX_PAGES)

    def record(self, request: Any, turn: Any) -> None:
        """The page of `request` (its Gradio session) follows `turn` now (a Following, or
        None). Calls made without a page (tests, notebooks) are not recorded."""
        page = getattr(request, "session_hash", None)
        if page:
            self._turns.put(page, turn.get("id") if isinstance(turn, dict) else None)

    def moved_on(self, request: Any, turn: dict[str, Any]) -> bool:
        """Whether the page of `request` follows another turn than `turn` now."""
        page = getattr(request, "session_hash", None)
        return bool(page) and self._turns.get(page, turn.get("id")) != turn.get("id")
