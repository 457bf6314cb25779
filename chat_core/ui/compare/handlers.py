"""The Compare tab's event handlers: one method per thing a person does, each calling the
comparisons' service as that person (ui/people.service_for) and answering with what changes on
the page: a dict from component to its new value or `gr.update(...)`.

Every input is the client's and is treated as hostile: ids and settings are checked by the
service (someone else's comparison answers like a missing one), and what the panes show is
always drawn from the service's view, never from a Chatbot value the page sends. A round is
three steps, chained on the page (events.py): `send` (or `open`, when a reply is already being
written) shows the prompt with pending replies, `stream` draws both replies as they grow, and
`settle` draws the comparison as stored and opens the vote."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from typing import Any, AsyncIterator

import gradio as gr

from chat_core.comparisons.service import ComparisonRound, ComparisonService
from chat_core.data.leaderboard import win_rate_figure
from chat_core.errors import ChatError, NotFound, ShuttingDown
from chat_core.service import ChatService
from chat_core.states import SIDES
from chat_core.ui.chat.view import PENDING_REPLY, RESTARTING_NOTICE, Pane
from chat_core.ui.compare.layout import CompareLayout
from chat_core.ui.compare.streaming import entry, follow_round, round_of
from chat_core.ui.compare.view import (board_frame, can_vote, heading, in_flight, list_choices,
                                       panes, pending, status_line)
from chat_core.ui.people import own_only, service_for
from chat_core.ui.render import user_html

Changes = dict[Any, Any]  # component -> value or gr.update(...)
Caller = gr.Request | None  # None: a call from a test, never from Gradio
NO_COMPARISON = "Send a prompt first: a vote judges a comparison's replies."
LISTED = 50
MAX_PAGES_REMEMBERED = 10_000


def _page(request: Caller) -> str:
    """Which page (Gradio session) a call comes from."""
    return str(getattr(request, "session_hash", None) or "local")


def side_spec(model: Any, label: Any, temperature: Any, system_prompt: Any) -> dict[str, Any]:
    """A side as the service takes it, from the setup fields; an empty field is left out
    (the default model, no label, no system prompt). Anything else goes to the service as
    sent, which refuses what it cannot use."""
    spec: dict[str, Any] = {}
    settings = {"temperature": temperature, "system_prompt": system_prompt}
    settings = {k: v for k, v in settings.items() if v is not None and v != ""}
    for key, value in (("model", model), ("label", label), ("settings", settings)):
        if value is not None and value != "" and value != {}:
            spec[key] = value
    return spec


class CompareHandlers:
    def __init__(self, service: ChatService, ui: CompareLayout, share_mode: bool = False
                 ) -> None:
        # The app's service: every read or change goes through the caller's (service_for).
        self.service = service
        self.ui = ui
        self.share_mode = share_mode
        # Per page (Gradio session): the round whose replies its panes show now. A stream
        # whose round is no longer shown (another comparison opened, a new one set up or
        # sent) stops drawing, so it can never paint one comparison's replies over another's
        # (Gradio's `cancels` cannot name every stream chain from every event).
        self.shown_rounds: OrderedDict[str, str | None] = OrderedDict()

    def show_round(self, request: Caller, following: dict[str, Any] | None) -> None:
        key = _page(request)
        self.shown_rounds[key] = following["token"] if following else None
        self.shown_rounds.move_to_end(key)
        while len(self.shown_rounds) > MAX_PAGES_REMEMBERED:
            self.shown_rounds.popitem(last=False)

    def still_shown(self, request: Caller, following: dict[str, Any]) -> bool:
        return self.shown_rounds.get(_page(request)) == following["token"]

    async def comparisons(self, request: Caller) -> ComparisonService:
        """The caller's own comparisons (an admin's too: the tab is where one compares; the
        leaderboard alone shows an admin everyone's votes)."""
        return own_only(await service_for(self.service, request)).comparisons()

    # -- what a comparison looks like ----------------------------------------------------------

    def votes(self, open_: bool) -> Changes:
        return {button: gr.update(interactive=open_) for button in self.ui.votes.values()}

    def face(self, view: dict[str, Any]) -> Changes:
        """The panes as stored, the headings, the vote and the line under the panes."""
        ui, shown = self.ui, panes(view, self.share_mode)
        writing = in_flight(view)
        out = {ui.status: status_line(view), **self.votes(can_vote(view))}
        for side in SIDES:
            out[ui.panes[side]] = shown[side] + ([dict(PENDING_REPLY)] if side in writing
                                                 else [])
            out[ui.headings[side]] = heading(view, side)
        return out

    async def listing(self, cs: ComparisonService, selected: str | None) -> Any:
        """The past comparisons (blind names until their vote), `selected` chosen."""
        try:
            choices = list_choices(await cs.list(LISTED))
        except ChatError:
            return gr.update(value=selected)
        ids = {value for _, value in choices}
        return gr.update(choices=choices, value=selected if selected in ids else None)

    def following_state(self, view: dict[str, Any], turns: dict[str, str],
                        shown: dict[str, Pane]) -> dict[str, Any]:
        """What the stream step follows: the round's turns, the panes before their replies,
        and a token that tells this round's end from a later one's. The token names the round
        (its turns), not the call: a page may open the same comparison twice at once (a list's
        pick can fire twice), and the stream step reads whichever call's state Gradio stored
        last, which need not be the call that marked its round shown last."""
        sides = view.get("sides") or {}
        token = uuid.uuid5(uuid.NAMESPACE_URL, "compare-round:" + view["id"] + ":" + ",".join(
            f"{side}={turns[side]}" for side in sorted(turns))).hex
        return {"token": token, "comparison": view["id"], "turns": turns,
                "conversations": {s: (sides.get(s) or {}).get("conversation_id")
                                  for s in turns},
                "shown": shown}

    def blank(self) -> Changes:
        """No comparison open: the setup of a new one."""
        ui = self.ui
        out = {ui.comparison: None, ui.following: None, ui.setup: gr.update(visible=True),
               ui.status: "", ui.box: gr.update(interactive=True),
               ui.history: gr.update(value=None), **self.votes(False)}
        for side in SIDES:
            out[ui.panes[side]] = []
            out[ui.headings[side]] = heading(None, side)
        return out

    # -- opening one ---------------------------------------------------------------------------

    async def open(self, comparison_id: Any, request: Caller = None) -> Any:
        """Show a comparison (or the setup of a new one). Replies still being written, after a
        reload or an app restart too, are shown pending and followed by the stream step."""
        cs = await self.comparisons(request)
        # Nothing (or nothing one may see) open: the setup. The round shown is left as it is:
        # the tab's own select event may be handled after a comparison picked from the list
        # right after it, and must not stop that comparison's stream.
        if not isinstance(comparison_id, str) or not comparison_id:
            return {**self.blank(), self.ui.history: await self.listing(cs, None)}
        try:
            view = await cs.get(comparison_id)
        except NotFound:  # deleted, someone else's, or not an id: as if none was open
            return {**self.blank(), self.ui.history: await self.listing(cs, None)}
        except ChatError as exc:
            gr.Warning(exc.message)
            return gr.skip()
        return await self.opened(cs, view, request)

    async def pick(self, comparison_id: Any, shown_id: Any, request: Caller = None) -> Any:
        """A comparison chosen in the list. The one already open is left as it is: the list
        fires its event again when it is closed on the same choice, and a read of the
        comparison made just before a vote could land after the vote's answer and draw the
        comparison as it was, unjudged, over it."""
        if isinstance(comparison_id, str) and comparison_id and comparison_id == shown_id:
            return gr.skip()
        return await self.open(comparison_id, request)

    async def opened(self, cs: ComparisonService, view: dict[str, Any],
                     request: Caller = None) -> Changes:
        ui, writing = self.ui, in_flight(view)
        following = None
        if writing:
            following = self.following_state(view, writing, panes(view, self.share_mode))
        self.show_round(request, following)
        return {**self.face(view), ui.comparison: view["id"], ui.following: following,
                ui.setup: gr.update(visible=False), ui.box: gr.update(interactive=not writing),
                ui.history: await self.listing(cs, view["id"])}

    async def new_comparison(self, request: Caller = None) -> Changes:
        """The New button: the setup of a new comparison; a round still streaming stops
        drawing into the panes."""
        cs = await self.comparisons(request)
        self.show_round(request, None)
        return {**self.blank(), self.ui.history: await self.listing(cs, None)}

    # -- a round -------------------------------------------------------------------------------

    async def send(self, text: Any, comparison_id: Any, blind: Any, model_a: Any,
                   label_a: Any, temperature_a: Any, system_a: Any, model_b: Any, label_b: Any,
                   temperature_b: Any, system_b: Any, request: Caller = None) -> Any:
        """Start a comparison with its first round, or the next round of the open one (the
        sides' fields, layout.CompareLayout.side_inputs, only count for a new comparison). A
        refusal is a warning with the service's words; the prompt stays in the box."""
        cs = await self.comparisons(request)
        try:
            if isinstance(comparison_id, str) and comparison_id:
                rnd = await cs.send(comparison_id, text)
            else:
                rnd = await cs.create(text, side_spec(model_a, label_a, temperature_a, system_a),
                                      side_spec(model_b, label_b, temperature_b, system_b),
                                      blind=blind)
            view = await cs.get(rnd.comparison_id)
        except ChatError as exc:
            gr.Warning(exc.message)
            return {self.ui.following: None}
        return await self.started(cs, view, rnd, text, request)

    async def started(self, cs: ComparisonService, view: dict[str, Any],
                      rnd: ComparisonRound, text: str, request: Caller = None) -> Changes:
        """A round just accepted: both panes end with the prompt and a pending reply."""
        ui = self.ui
        shown = panes(before_round(view, rnd), self.share_mode)
        shown = {side: shown[side] + [{"role": "user", "content": user_html(text)}]
                 for side in SIDES}
        turns = {side: turn.turn_id for side, turn in rnd.turns.items()}
        following = self.following_state(view, turns, shown)
        self.show_round(request, following)
        out = {ui.status: "", **self.votes(False), ui.comparison: view["id"],
               ui.following: following,
               ui.setup: gr.update(visible=False), ui.box: gr.update(value="", interactive=False),
               ui.history: await self.listing(cs, view["id"])}
        drawn = pending(shown, turns)
        for side in SIDES:
            out[ui.panes[side]] = drawn[side]
            out[ui.headings[side]] = heading(view, side)
        return out

    async def stream(self, following: Any, request: Caller = None) -> AsyncIterator[Any]:
        """Draw both replies as they grow: outputs [pane A, pane B, ended]. `ended` (a State)
        is written once, last: which round ended and any notice, for `settle`."""
        if not isinstance(following, dict) or not following.get("turns"):
            yield gr.skip()  # (an empty generator would blank its outputs on the page)
            return
        cs = await self.comparisons(request)
        ended = {"token": following["token"], "notice": None}
        # Every update gives each followed pane whole, a side not yet heard from with its
        # pending reply: Gradio sends a stream's updates as differences from the one before,
        # and a skip in between leaves the page unable to apply the next.
        live = {side: following["shown"][side] + [dict(PENDING_REPLY)]
                if side in following["turns"] else gr.skip() for side in SIDES}
        try:
            async for latest in follow_round(cs, round_of(following)):
                if not self.still_shown(request, following):
                    yield [gr.skip(), gr.skip(), gr.skip()]  # the page shows another now
                    return
                for side, snap in latest.items():
                    live[side] = following["shown"][side] + [entry(snap, self.share_mode)]
                yield [live["a"], live["b"], gr.skip()]
        except ShuttingDown:
            gr.Warning(RESTARTING_NOTICE, duration=None)
        except ChatError as exc:
            ended["notice"] = exc.message
        if not self.still_shown(request, following):
            yield [gr.skip(), gr.skip(), gr.skip()]
            return
        yield [live["a"], live["b"], ended]

    async def settle(self, following: Any, ended: Any, request: Caller = None) -> Any:
        """After the stream: the comparison as stored, the vote open once both replies have
        finished, the prompt box back; nothing when the page has moved on to another round or
        comparison since (the tokens differ)."""
        if not isinstance(following, dict) or not isinstance(ended, dict) or \
                ended.get("token") != following.get("token"):
            return gr.skip()
        ui = self.ui
        if ended.get("notice"):
            gr.Warning(ended["notice"])
        try:
            view = await (await self.comparisons(request)).get(following["comparison"])
        except ChatError as exc:
            gr.Warning(exc.message)
            return {ui.box: gr.update(interactive=True), ui.following: None}
        return {**self.face(view), ui.box: gr.update(interactive=True), ui.following: None}

    # -- the vote and the leaderboard ----------------------------------------------------------

    def voter(self, winner: str) -> Any:
        """The handler of one vote button (each casts its own winner)."""
        async def vote(comparison_id: Any, request: Caller = None) -> Any:
            return await self.vote(winner, comparison_id, request)
        vote.__name__ = f"vote_{winner}"
        return vote

    async def vote(self, winner: str, comparison_id: Any, request: Caller = None) -> Any:
        """Judge the open comparison's latest round; the names show, the vote closes."""
        if not isinstance(comparison_id, str) or not comparison_id:
            gr.Warning(NO_COMPARISON)
            return gr.skip()
        cs = await self.comparisons(request)
        try:
            view = await cs.vote(comparison_id, winner)
        except ChatError as exc:
            gr.Warning(exc.message)
            return gr.skip()
        return {**self.face(view), self.ui.history: await self.listing(cs, view["id"])}

    async def board(self, request: Caller = None) -> Any:
        """The leaderboard's table and its win-rate picture (drawn off the event loop)."""
        cs = (await service_for(self.service, request)).comparisons()
        try:
            board = await cs.leaderboard()
        except ChatError as exc:
            gr.Warning(exc.message)
            return gr.skip(), gr.skip()
        figure = await asyncio.to_thread(win_rate_figure, board)
        return board_frame(board), figure

    async def pickers(self, request: Caller = None) -> tuple[Any, Any]:
        """Every server's models in both sides' pickers ("" is the default model)."""
        service = await service_for(self.service, request)
        try:
            models = await service.list_models()
        except ChatError:
            models = []
        choices = [("Default", "")] + [(m["id"], m["id"]) for m in models
                                       if isinstance(m.get("id"), str)]
        return gr.update(choices=choices), gr.update(choices=choices)


def before_round(view: dict[str, Any], rnd: ComparisonRound) -> dict[str, Any]:
    """The view without the round's rows (which it may or may not show yet) and with nothing
    in flight: what the panes showed before the round."""
    rows = {i for turn in rnd.turns.values() for i in (turn.user_message_id, turn.reply_id)}
    sides = {side: {**info, "messages": [m for m in info.get("messages") or []
                                         if m.get("id") not in rows]}
             for side, info in (view.get("sides") or {}).items()}
    return {**view, "sides": sides, "in_flight": []}
