"""What the Compare tab shows, as plain data: no Gradio, no service.

A comparison's view (ComparisonService.get) becomes two panes, two headings, the list's labels
and whether the vote is open. Blindness is kept here too, not only in the service: while a
blind comparison is not revealed, every name the tab draws for a side is its blind name
("Model A"), whatever the view carries, so one slip elsewhere cannot show the page a model.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from chat_core.states import BLIND_NAMES, BOTH_BAD, FINAL, SIDES, TIE, WINNER_A, WINNER_B
from chat_core.ui.chat.view import PENDING_REPLY, Pane, without_last_reply
from chat_core.ui.render import conversation_view, safe_markdown

# The vote buttons, in order: the winner each one casts and its words.
VOTE_WORDS = {WINNER_A: "A is better", WINNER_B: "B is better", TIE: "Tie",
              BOTH_BAD: "Both are bad"}
BOARD_COLUMNS = ["rank", "contender", "rating", "95% interval", "battles", "wins", "losses",
                 "ties", "win rate"]
OPEN_VOTE = "Both replies are in: which is better? Vote below; the names show after the vote."


def hidden(view: dict[str, Any]) -> bool:
    """Whether the sides' names are still to be hidden: a blind comparison before its vote.
    Anything but an explicit "not blind" or "revealed" counts as hidden."""
    return view.get("blind") is not False and view.get("revealed") is not True


def side_name(view: dict[str, Any], side: str) -> str:
    """How the tab names a side: "Model A" while hidden, else its label or model."""
    info = (view.get("sides") or {}).get(side) or {}
    name = info.get("name")
    if hidden(view) or not isinstance(name, str) or not name:
        return BLIND_NAMES[side]
    return name


def _messages(view: dict[str, Any], side: str) -> list[dict[str, Any]]:
    """A side's messages, each reply's model the side's name as the tab shows it (the facts
    line under a reply names its model)."""
    info = (view.get("sides") or {}).get(side) or {}
    name = side_name(view, side)
    return [{**m, "model": name} if m.get("role") == "assistant" else m
            for m in info.get("messages") or [] if isinstance(m, dict)]


def in_flight(view: dict[str, Any]) -> dict[str, str]:
    """The replies being written, side -> turn id (the last one of a side, if several)."""
    return {f["side"]: f["turn_id"] for f in view.get("in_flight") or []
            if isinstance(f, dict) and f.get("side") in SIDES and isinstance(f.get("turn_id"), str)}


def panes(view: dict[str, Any], share_mode: bool = False) -> dict[str, Pane]:
    """Each side's pane as stored. A side whose reply is being written ends at its user
    message: the stream draws the reply after it."""
    writing = in_flight(view)
    out: dict[str, Pane] = {}
    for side in SIDES:
        shown, _ = conversation_view(_messages(view, side), share_mode)
        out[side] = without_last_reply(shown) if side in writing else shown
    return out


def pending(shown: dict[str, Pane], sides: Any) -> dict[str, Pane]:
    """The panes with a pending reply after each of `sides`' user message."""
    return {side: shown[side] + ([dict(PENDING_REPLY)] if side in sides else [])
            for side in SIDES}


def heading(view: dict[str, Any] | None, side: str) -> str:
    """The heading over a side's pane: its blind name until the vote, then "A: <name>", with
    a trophy for the winner."""
    if not view or hidden(view):
        return f"### {BLIND_NAMES[side]}"
    trophy = " 🏆" if view.get("winner") == side else ""
    return f"### {side.upper()}: {safe_markdown(side_name(view, side))}{trophy}"


def _last_reply_finished(view: dict[str, Any], side: str) -> bool:
    replies = [m for m in _messages(view, side) if m.get("role") == "assistant"]
    return bool(replies) and replies[-1].get("status") in FINAL


def can_vote(view: dict[str, Any] | None) -> bool:
    """The vote is open: not cast yet, nothing being written, both sides' replies finished."""
    if not view or view.get("winner") is not None or in_flight(view):
        return False
    return all(_last_reply_finished(view, side) for side in SIDES)


def vote_notice(view: dict[str, Any]) -> str:
    """What the page says once the vote is cast: the vote, and who the sides were."""
    winner = view.get("winner")
    said = VOTE_WORDS.get(winner, "") if isinstance(winner, str) else ""
    who = " · ".join(f"{side.upper()} was **{safe_markdown(side_name(view, side))}**"
                     for side in SIDES)
    return f"Your vote: **{said}**. {who}."


def status_line(view: dict[str, Any] | None) -> str:
    """The line under the panes for a comparison as it stands."""
    if not view:
        return ""
    if view.get("winner") is not None:
        return vote_notice(view)
    return OPEN_VOTE if can_vote(view) else ""


def list_label(summary: dict[str, Any]) -> str:
    """A past comparison in the list: its title, its sides (blind names until its vote) and
    whether it was judged."""
    names = summary.get("names") or {}
    sides = [BLIND_NAMES[s] if hidden(summary) or not isinstance(names.get(s), str)
             else names[s] for s in SIDES]
    title = summary.get("title") if isinstance(summary.get("title"), str) else ""
    voted = " · voted" if summary.get("winner") is not None else ""
    return f"{title or 'Untitled'} · {sides[0]} vs {sides[1]}{voted}"


def list_choices(summaries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(list_label(s), str(s["id"])) for s in summaries if s.get("id")]


def board_frame(board: dict[str, Any]) -> pd.DataFrame:
    """The leaderboard as a table: best rating first, with its interval and record."""
    rows = []
    contenders = sorted(board.get("contenders") or [], key=lambda c: -float(c["rating"]))
    for rank, c in enumerate(contenders, 1):
        rows.append([rank, str(c["name"]), round(float(c["rating"])), _interval(c),
                     c["battles"], c["wins"], c["losses"], c["ties"],
                     f"{100 * float(c['win_rate']):.0f}%"])
    return pd.DataFrame(rows, columns=BOARD_COLUMNS)


def _interval(contender: dict[str, Any]) -> str:
    low, high = contender.get("ci_low"), contender.get("ci_high")
    return "" if low is None or high is None else f"{float(low):.0f} – {float(high):.0f}"
