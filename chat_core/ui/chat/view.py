"""What the chat pane and the newest turn's actions show, as plain data: no Gradio, no service.

A pane is a list of {"role", "content"} entries (content is sanitized HTML, render.py). The
page keeps alongside it a `view` dict (render.conversation_view): the message id behind each
entry, the newest turn's user message and reply, and that reply's alternatives; while a reply
streams, a `turn` dict (`Following`) says which one and what the pane showed before it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from chat_core.states import ANSWERED, COMPLETE, FAILED, STOPPED
from chat_core.turns.progress import Snapshot
from chat_core.ui.render import reply_markdown
from chat_core.ui.streamed_render import StreamedRender

Pane = list[dict[str, str]]
# Turns a conversation shows when opened; the whole history stays in the database and the API.
SHOWN_TURNS = 100
SIDEBAR_LENGTH = 100  # the newest conversations the list shows (search finds the rest)
PENDING_TEXT = "…"  # a reply's place before its first words
PENDING_REPLY = {"role": "assistant", "content": PENDING_TEXT}

FAILED_NOTICE = "⚠️ The reply failed; your message is saved. Press Retry to try again."
RESTARTING_NOTICE = ("⚠️ The app is restarting. Your message and the reply so far are saved; the "
                     "reply finishes when the app is back: reload the page then.")
BRANCHED_NOTICE = "Edited in a new branch; the original conversation is unchanged."


class Following(TypedDict, total=False):
    """The `turn` state while a reply streams: enough for Stop, and for the finish step to draw
    the reply after `shown`. Following it adds how the reply ended (`status`, `finished`,
    `reply_id`, a `notice` when it could not be followed to its end) and the conversation's
    `view` once it ended, for `settle`, and whether the pane was then `redrawn` from
    storage rather than as streamed. `thumbs`: the thumbs the page's Chatbot holds for the
    replies of `shown` when the turn began (None: not known)."""
    id: str
    conversation: str
    reply_id: str | None
    shown: Pane
    status: str
    finished: bool
    notice: str
    view: dict[str, Any]
    redrawn: bool
    thumbs: list[str | None] | None


def following(turn_id: str, conversation: str, shown: Pane, reply_id: str | None = None,
              thumbs: list[str | None] | None = None) -> Following:
    return Following(id=turn_id, conversation=conversation, reply_id=reply_id, shown=shown,
                     thumbs=thumbs)


def live_entry(snap: Snapshot, share_mode: bool,
               renderer: StreamedRender | None = None) -> dict[str, str]:
    """The pane's entry for a reply being generated; `renderer`: the one following it keeps
    its finished blocks rendered."""
    return {"role": "assistant", "content": reply_markdown(
        {"status": snap.status, "content": snap.text, "error": snap.error}, share_mode,
        renderer)}


def without_last_reply(shown: Pane) -> Pane:
    return shown[:-1] if shown and shown[-1]["role"] == "assistant" else shown


def earlier_turns_note(first_seq: int | None) -> str:
    """Said when the pane starts past the conversation's first turn."""
    earlier = first_seq - 1 if first_seq else 0
    return (f"Showing the newest {SHOWN_TURNS} turns; {earlier} earlier turns are in the "
            "history (and the export)." if earlier > 0 else "")


@dataclass(frozen=True)
class TurnActions:
    """Which of the newest turn's actions the page offers once its reply has ended."""
    retry: bool = False
    regenerate: bool = False
    proceed: bool = False
    alternatives: int = 0
    index: int = 0

    @classmethod
    def of(cls, view: dict[str, Any]) -> "TurnActions":
        last = view.get("last_reply") or {}
        status = last.get("status")
        return cls(retry=status in FAILED, regenerate=status in ANSWERED,
                   proceed=status == STOPPED or (
                       status == COMPLETE and last.get("finish_reason") == "length"),
                   alternatives=len(view.get("alternatives") or []),
                   index=view.get("alt_index", 0))

    @property
    def browsable(self) -> bool:
        return self.alternatives > 1

    @property
    def position(self) -> str:
        return f"{self.index + 1} / {self.alternatives}" if self.browsable else ""

    @property
    def classes(self) -> list[str]:
        """The classes of the actions row that show these actions (layout.ACTIONS_CSS)."""
        shown = [name for name, on in (("retry", self.retry), ("regenerate", self.regenerate),
                                       ("continue", self.proceed)) if on]
        if self.browsable:
            shown.append("alternatives")
            shown += ["first"] if self.index <= 0 else []
            shown += ["last"] if self.index >= self.alternatives - 1 else []
        return shown


BUSY_ACTIONS = ["busy"]  # while a reply is generated: Stop, and nothing else


def pane_lines_up(view: dict[str, Any], shown: Pane, before: Pane, turn: Following) -> bool:
    """Whether the pane as streamed (`before` plus the reply) matches the conversation as stored
    (`shown`, `view`) one to one, so that the message ids Edit, Continue and the alternatives
    rely on name the entries shown. They may not: past SHOWN_TURNS the oldest turn leaves the
    pane; another tab added turns; the watch ended early; the reply ended empty and the earlier
    alternative is shown again. Then the pane is redrawn, and not otherwise: a redraw costs
    Gradio a pass over every message."""
    ids = view.get("ids") or []
    return bool(turn.get("finished")) and len(shown) == len(before) + 1 and bool(ids) \
        and ids[-1] == turn.get("reply_id")


def edit_text(value: Any) -> str:
    """The text of an edited message as the Chatbot's edit event gives it: a string, or (in
    Gradio 6) a list of content blocks."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(part.get("text", "") for part in value if isinstance(part, dict))
    return str(value or "")


def sendable(text: Any) -> bool:
    """Whether text can be put back in the box: a string that can be encoded (a lone
    surrogate, which only a hostile client sends, cannot go out on the event stream)."""
    if not isinstance(text, str):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- the thumbs on replies (the Chatbot's like event) ---------------------------------------------

# Gradio's Chatbot shows these feedback options as a thumb up and a thumb down.
LIKE, DISLIKE = "Like", "Dislike"
_FEEDBACK = {1: LIKE, -1: DISLIKE}
RATED_NOTICE = {1: "👍 Rated: a good reply.", -1: "👎 Rated: a poor reply.",
                0: "Rating removed."}
NOT_RATED = "⚠️ That rating could not be read; press the thumb again."
GONE_NOTICE = ("⚠️ That reply is no longer shown here (the conversation changed in another "
               "tab?); reload the page, then rate it.")
BEING_WRITTEN_NOTICE = "⚠️ That reply is still being written; rate it once it has finished."


def like_value(liked: Any) -> int | None:
    """The rating a like event asks for, from the client's payload: True (thumb up) 1, False
    (thumb down) -1, "" (the lit thumb pressed again: Gradio 6 sends an empty string) 0; None
    for anything else, which only a hostile client sends."""
    if liked is True:
        return 1
    if liked is False:
        return -1
    return 0 if liked == "" else None


def like_index(index: Any) -> int | None:
    """The pane position a like event names, if it is one (a whole number, not a bool)."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        return None
    return index


def feedback_of(messages: list[dict[str, Any]], ids: list[str]
                ) -> tuple[list[str | None], list[str]]:
    """The thumbs to light, one per reply in the pane (`ids`, the pane's message ids), as the
    Chatbot's feedback_value takes them; and those replies' ids, in the same order."""
    ratings = {m["id"]: (m.get("rating") or {}).get("value") for m in messages
               if m["role"] == "assistant"}
    replies = [i for i in ids if i in ratings]
    return [_FEEDBACK.get(ratings[i]) for i in replies], replies


def thumb_of(value: int) -> str | None:
    """The thumb a rating lights (none for a rating taken back)."""
    return _FEEDBACK.get(value)


def thumbs_stand(stored: list[str | None], page: list[str | None] | None) -> bool:
    """Whether a Chatbot holding the thumbs `page` shows `stored` (one per reply of a pane
    whose replies kept their places, with new ones after them) without being sent them."""
    return page is not None and stored[:len(page)] == page and not any(stored[len(page):])


def thumbs_for(pane: Pane, feedback: list[str | None]) -> list[str | None]:
    """The thumbs of the replies in `pane`, from the feedback of the view it was cut from
    (replies left out at its end, such as the one a retry replaces, get none)."""
    return list(feedback[:sum(1 for m in pane if m.get("role") == "assistant")])

