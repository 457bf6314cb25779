"""The Chat tab's event handlers: one method per thing a person does, each calling ChatService
and answering with what changes on the page, as Gradio takes it: a dict from component to its
new value or `gr.update(...)`. A handler can be called in a test with any service (a fake will
do) and its answer read by component, without launching Gradio.

Starting a turn is three steps, chained on the page (events.py): a handler here that starts it
and shows the message with a pending reply (`send`, `retry`, `continue_reply`, `edit`, or
`open` when a reply is already being generated); the page's own script, which draws the reply
as it is written (live_reply.py); then `finish`, which draws it as stored and gives the input
back with the newest turn's actions.

Each handler that reads or changes data takes the call's `gr.Request` (Gradio passes it; it is
not an input of the event) and works with the service as that person sees it
(ui/people.service_for): in share mode, someone else's conversation or turn answers exactly
like a missing one. The helpers below the handlers take that service as their first argument,
so a call resolves its person once."""

from __future__ import annotations

import asyncio
import html
import logging
from contextlib import aclosing
from typing import Any, AsyncIterator

import gradio as gr

from chat_core.errors import ChatError, TooManyTurns
from chat_core.service import ChatService
from chat_core.states import ERROR
from chat_core.ui.chat.files import read_import, write_export
from chat_core.ui.chat.followed import FollowedTurns
from chat_core.ui.chat.layout import ChatLayout
from chat_core.ui.chat.live_reply import placeholder
from chat_core.ui.chat.streaming import follow_reply
from chat_core.ui.chat.view import (BEING_WRITTEN_NOTICE, BRANCHED_NOTICE, BUSY_ACTIONS,
                                    FAILED_NOTICE, GONE_NOTICE, NOT_RATED, PENDING_REPLY,
                                    RATED_NOTICE,
                                    SHOWN_TURNS, SIDEBAR_LENGTH, Following, Pane, TurnActions,
                                    earlier_turns_note, edit_text, feedback_of, following,
                                    like_index, like_value, pane_lines_up, sendable,
                                    thumb_of, thumbs_for, thumbs_stand, without_last_reply)
from chat_core.ui.people import own_only, sees_others, service_for
from chat_core.ui.render import conversation_view, safe_markdown, user_html, warning

Changes = dict[Any, Any]  # component -> value or gr.update(...)
Caller = gr.Request | None  # None: a call from a test or a notebook, never from Gradio


def lit(pane: Pane, thumbs: list[str | None]) -> Any:
    """The pane with its replies' thumbs lit as rated. A property update: Gradio builds the
    Chatbot anew for it (about 2.5 ms of CPU), so the steps after which every place keeps its
    reply send the pane's value alone."""
    return gr.update(value=pane, feedback_value=thumbs)


def refusal(exc: ChatError) -> str:
    """The notice for a message that was not sent: what to change, or, over a person's
    limits, when to send it again (the text stays in the box either way)."""
    if not isinstance(exc, TooManyTurns):
        return warning(exc)
    when = "" if f"{exc.retry_after} s" in exc.message else \
        f" Try again in about {exc.retry_after} s."
    return f"⏳ Not sent: {safe_markdown(exc.message)}.{when} Your message is still in the box."


log = logging.getLogger(__name__)


def _dropped(task: "asyncio.Future[Any]") -> None:
    """A read whose answer is not shown (the send was refused): an error other than the
    refusals the service words is still logged."""
    if not task.cancelled() and task.exception() is not None and \
            not isinstance(task.exception(), ChatError):
        log.warning("the conversation list read beside a refused message failed",
                    exc_info=task.exception())


async def _listed_or_none(listing: "asyncio.Future[list[dict[str, Any]]]"
                          ) -> list[dict[str, Any]]:
    """The list read beside a new chat's first message, or none if it failed: the turn has
    started by then, and the page must follow it; the list is whole again on the next load."""
    try:
        return await listing
    except Exception:  # noqa: BLE001 (logged; the reply matters more than the sidebar)
        log.warning("the conversation list could not be read beside a new chat's first "
                    "message; the list shows the new chat alone until the next load",
                    exc_info=True)
        return []


class ChatHandlers:
    def __init__(self, service: ChatService, ui: ChatLayout, share_mode: bool = False,
                 everyone: gr.Checkbox | None = None) -> None:
        # The app's service: only its settings are read as they are; every read or change of
        # data goes through the caller's (service_for).
        self.service = service
        self.ui = ui
        self.share_mode = share_mode
        # An admin's choice to list everyone's conversations in the sidebar (ChatTab's
        # checkbox), and the admins who made it: kept here, per person, so that no event of
        # the public API gains an input for it.
        self.everyone = everyone
        self.everyone_chosen: set[Any] = set()
        self.followed = FollowedTurns()  # the turn each page follows now (followed.py)

    async def service_for(self, request: Caller) -> ChatService:
        return await service_for(self.service, request)

    # -- what a shown conversation looks like ---------------------------------------------------

    async def load(self, service: ChatService, conversation_id: str
                   ) -> tuple[Pane, dict[str, Any], str]:
        """The pane of a conversation (its newest SHOWN_TURNS turns), its view state, and a note
        when older turns are left out. The pane is kept in the view: Send extends it from
        there, so the Chatbot's value from the browser is never an input (it can name server
        files; see gradio_guard.py)."""
        messages = await service.list_messages(conversation_id, last_turns=SHOWN_TURNS)
        shown, view = conversation_view(messages, self.share_mode)
        view["shown"] = shown
        view["feedback"], view["replies"] = feedback_of(messages, view["ids"])
        return shown, view, earlier_turns_note(messages[0]["seq"] if messages else None)

    def lists_everyone(self, service: ChatService) -> bool:
        """An admin who chose to see everyone's conversations in the sidebar."""
        return sees_others(service) and service.person.id in self.everyone_chosen

    def listing(self, service: ChatService, everyone: bool) -> ChatService:
        """What the sidebar and its search list: a person's own conversations; an admin's
        own too, unless they chose everyone's (`everyone`: lists_everyone, asked once for a
        list read and drawn)."""
        return service if everyone else own_only(service)

    async def sidebar(self, service: ChatService, selected: str | None,
                      first_message: str | None = None) -> Any:
        """The conversation list. A new conversation gets its title when its first turn saves
        the message, which may not have happened yet: it is listed with the title it will get.
        Everyone's (an admin's choice) are listed with their owner."""
        everyone = self.lists_everyone(service)
        rows = await self.listing(service, everyone).conversation_titles(limit=SIDEBAR_LENGTH)
        return self.listed(rows, selected, everyone, first_message)

    def with_new(self, rows: list[dict[str, Any]], conversation: dict[str, Any]
                 ) -> list[dict[str, Any]]:
        """`rows`, read while `conversation` was being made, with it first (the newest)."""
        new = {"id": conversation["id"], "title": conversation.get("title") or "",
               **({"owner": conversation["owner"]} if "owner" in conversation else {})}
        return [new, *(r for r in rows if r["id"] != new["id"])][:SIDEBAR_LENGTH]

    def listed(self, rows: list[dict[str, Any]], selected: str | None, everyone: bool,
               first_message: str | None = None) -> Any:
        choices = []
        for c in rows:
            title = c["title"] or (self.service.title_for(first_message) if first_message and
                                   c["id"] == selected else "New conversation")
            choices.append((f"{title} · {c.get('owner') or 'nobody'}" if everyone else title,
                            c["id"]))
        return gr.update(choices=choices,
                         value=selected if selected in {c["id"] for c in rows} else None)

    def settings_of(self, conversation: dict[str, Any] | None) -> Changes:
        """The settings fields follow the open conversation (also while their panel is open),
        so that Save never writes one conversation's settings to another."""
        values = self.service.params_for(conversation) if conversation is not None \
            else self.service.default_params()
        ui = self.ui
        return {ui.system_prompt: values["system_prompt"], ui.temperature: values["temperature"],
                ui.top_p: values["top_p"], ui.max_tokens: values["max_tokens"],
                ui.model: self.model_choice(values.get("model") or "")}

    def model_choice(self, chosen: str) -> Any:
        """The model picker: "Default" (the first server's model) and every model the
        servers listed when last asked, the conversation's selected."""
        servers = getattr(self.service, "servers", None)  # (stand-ins in tests have none)
        listed = [m for s in (servers.known_servers() if servers is not None else [])
                  for m in s["models"]]
        current = getattr(servers.default, "current_model_id", None) if servers else None
        default = current() if current is not None else None
        choices = [(f"Default ({default})" if default else "Default", "")]
        choices += [(m, m) for m in dict.fromkeys(listed + ([chosen] if chosen else []))]
        return gr.update(choices=choices, value=chosen)

    def idle(self, view: dict[str, Any]) -> Changes:
        """The input enabled, and the actions the newest turn offers."""
        ui, offer = self.ui, TurnActions.of(view)
        return {ui.box: gr.update(interactive=True), ui.turn: None, ui.live: "", ui.view: view,
                ui.actions: gr.update(elem_classes=offer.classes), ui.position: offer.position}

    def busy(self, turn: Following) -> Changes:
        """The input locked and Stop offered while `turn`'s reply is generated."""
        ui = self.ui
        return {ui.box: gr.update(value="", interactive=False), ui.turn: turn,
                ui.live: turn["id"], ui.actions: gr.update(elem_classes=BUSY_ACTIONS)}

    def started(self, conversation_id: str, turn_id: str, reply_id: str, shown: Pane,
                note: str = "", thumbs: list[str | None] | None = None,
                send_thumbs: bool = False, page: bool = True) -> Changes:
        """A turn just accepted: its message shown with a pending reply, the input locked, an
        earlier rating's tags put away (after a retry they would name the reply replaced).
        `thumbs`: the thumbs the page holds for the replies of `shown` (None: not known),
        sent with the pane when the pending reply takes a rated one's place (`send_thumbs`,
        a retry). A new message's place had none: its pane goes out as a value alone (see
        lit), and `finish` sends the thumbs only if storage has others."""
        turn = following(turn_id, conversation_id, shown, reply_id, thumbs)
        pane = shown + [placeholder(turn_id) if page else dict(PENDING_REPLY)]
        return {self.ui.chatbot: lit(pane, thumbs) if send_thumbs and thumbs is not None
                else pane, self.ui.notice: note, self.ui.rating_row: gr.update(visible=False),
                **self.busy(turn)}

    # -- showing a conversation ---------------------------------------------------------------

    async def open(self, conversation_id: str | None, request: Caller = None) -> Changes:
        """Show a conversation (or none: a new chat). If one of its replies is being generated,
        the page shows it pending and its script follows it (a reload re-attaches)."""
        return self.shows(request, await self.show(await self.service_for(request),
                                                   conversation_id))

    async def show(self, service: ChatService, conversation_id: str | None, note: str = ""
                   ) -> Changes:
        ui = self.ui
        if conversation_id is not None:
            try:
                shown, view, earlier = await self.load(service, conversation_id)
                conversation = await service.get_conversation(conversation_id)
            except ChatError:
                conversation_id = None
        if conversation_id is None:
            return {ui.conversation: None, ui.conversations: await self.sidebar(service, None),
                    ui.chatbot: [], ui.notice: note, ui.title: "", **self.idle({}),
                    **self.settings_of(None)}
        out = {ui.conversation: conversation_id, ui.notice: note or earlier,
               ui.conversations: await self.sidebar(service, conversation_id),
               ui.title: conversation["title"], **self.settings_of(conversation)}
        in_flight = await service.in_flight(conversation_id)
        if not in_flight:
            return {**out, ui.chatbot: shown, **self.idle(view)}
        shown = without_last_reply(shown)
        turn = following(in_flight[-1]["workflow_id"], conversation_id, shown)
        return {**out, ui.chatbot: shown + [placeholder(turn["id"])], ui.view: view,
                ui.position: "", **self.busy(turn)}

    async def new_chat(self, request: Caller = None) -> Changes:
        return await self.open(None, request)

    # -- starting a turn ----------------------------------------------------------------------

    async def send(self, text: str, conversation_id: str | None, view: dict[str, Any] | None,
                   title: Any = None, request: Caller = None) -> Changes:
        """`title`: the page's own title field, given back as it is (below)."""
        return self.shows(request, await self.start(await self.service_for(request), text,
                                                    conversation_id, view, title=title))

    async def start(self, service: ChatService, text: str, conversation_id: str | None,
                    view: dict[str, Any] | None, page: bool = True, title: Any = None
                    ) -> Changes:
        ui = self.ui
        new = conversation_id is None
        shown = [] if new else list((view or {}).get("shown") or [])
        listing: asyncio.Future[list[dict[str, Any]]] | None = None
        everyone = self.lists_everyone(service)
        try:
            if conversation_id is None:
                service.check_sendable(text)  # a message refused for its text reads nothing
                # The new chat's list is read while its message starts: one wait less in a burst.
                listing = asyncio.ensure_future(self.listing(service, everyone)
                                                .conversation_titles(limit=SIDEBAR_LENGTH))
                conversation, turn = await service.start_conversation(text)
                conversation_id = conversation["id"]
            else:
                turn = await service.start_turn(conversation_id, text)
        except BaseException as exc:
            if listing is not None:  # not shown: its end (or error) is dropped with it
                listing.add_done_callback(_dropped)
            if not isinstance(exc, ChatError):
                raise
            # Nothing is lost: the text stays in the box, the notice says what to change (or,
            # over the person's limits, when to send it again). Text that cannot be sent back
            # (see view.sendable) is left where it is.
            # The turn the page follows (if any) is left alone: a refusal starts nothing.
            return {ui.notice: refusal(exc), **({ui.box: text} if sendable(text) else {})}
        shown.append({"role": "user", "content": user_html(text)})
        # A new chat's Chatbot holds no thumbs (events._lit), an open conversation's its view's.
        thumbs = [] if new else (view or {}).get("feedback")
        out = self.started(conversation_id, turn.turn_id, turn.reply_id, shown,
                           thumbs=thumbs if isinstance(thumbs, list) else None, page=page)
        if listing is not None:  # remember it, list it, title it
            rows = self.with_new(await _listed_or_none(listing), conversation)
            out.update({ui.conversation: conversation_id,
                        ui.conversations: self.listed(rows, conversation_id, everyone, text),
                        ui.title: self.service.title_for(text)})
        elif page:
            # Gradio rebuilds every output an answer leaves out (a skip is a property update
            # too: for the sidebar, its 100 choices). The conversation, the list's selection
            # and the page's title go back as the plain values they are, which cost nothing.
            out[ui.conversation] = out[ui.conversations] = conversation_id
            if isinstance(title, str):
                out[ui.title] = title
        return out

    async def retry(self, conversation_id: str | None, view: dict[str, Any] | None,
                    request: Caller = None) -> Any:
        """Retry a failed reply, or regenerate one: a new alternative to the newest turn."""
        return self.shows(request, await self.again(
            await self.service_for(request), conversation_id, view, "retry", page=True))

    async def continue_reply(self, conversation_id: str | None, view: dict[str, Any] | None,
                             request: Caller = None) -> Any:
        """Continue a reply that was stopped or cut at max tokens."""
        return self.shows(request, await self.again(
            await self.service_for(request), conversation_id, view, "continue", page=True))

    async def again(self, service: ChatService, conversation_id: str | None,
                    view: dict[str, Any] | None, action: str, page: bool = False) -> Any:
        """Start a retry or a continuation of the newest turn. The page's (`page`) takes the
        thumb of the reply it replaces off its place, and its pending reply is where the page's
        script draws it; API clients get no thumbs and a plain pending reply."""
        view = view or {}
        if conversation_id is None or not view.get("last_user"):
            return gr.skip()
        try:
            if action == "continue":
                reply = (view.get("last_reply") or {}).get("id")
                turn = await service.continue_reply(conversation_id, reply)
            else:
                turn = await service.retry_turn(conversation_id, view["last_user"])
            shown, loaded, _ = await self.load(service, conversation_id)
        except ChatError as exc:
            return {self.ui.notice: refusal(exc)}
        shown = without_last_reply(shown)
        # The new reply takes the last one's place: its thumb goes out with it.
        return self.started(conversation_id, turn.turn_id, turn.reply_id, shown,
                            thumbs=thumbs_for(shown, loaded.get("feedback") or []),
                            send_thumbs=page, page=page)

    async def edit(self, conversation_id: str | None, view: dict[str, Any] | None,
                   evt: gr.EditData, request: Caller = None) -> Any:
        """Editing a message of yours branches the conversation there; the original stays."""
        return self.shows(request, await self.branch(conversation_id, view, evt, request))

    async def branch(self, conversation_id: str | None, view: dict[str, Any] | None,
                     evt: gr.EditData, request: Caller) -> Any:
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        ids = (view or {}).get("ids") or []
        if conversation_id is None or not isinstance(index, int) or not 0 <= index < len(ids):
            return gr.skip()
        # The edit box holds the message as shown, HTML-escaped (render.user_html).
        text = html.unescape(edit_text(evt.value))
        service = await self.service_for(request)
        try:
            branch, turn = await service.edit_message(conversation_id, ids[index], text)
            loaded, branch_view, _ = await self.load(service, branch["id"])
        except ChatError as exc:  # the original, unchanged
            return self.refused_edit(await self.show(service, conversation_id, refusal(exc)),
                                     exc, text)
        # The turn may already have saved the edited message (and its reply placeholder): show
        # the turns before it, then the message once.
        turn_rows = {turn.user_message_id, turn.reply_id}
        shown = [m for m, mid in zip(loaded, branch_view.get("ids") or [])
                 if mid not in turn_rows]
        shown.append({"role": "user", "content": user_html(text)})
        ui = self.ui
        return {ui.conversation: branch["id"], ui.title: branch["title"],
                ui.conversations: await self.sidebar(service, branch["id"]),
                **self.started(branch["id"], turn.turn_id, turn.reply_id, shown,
                               BRANCHED_NOTICE)}

    def refused_edit(self, out: Changes, exc: ChatError, text: str) -> Changes:
        """The conversation shown again (or a new chat, if it is gone) with its own thumbs and
        the rating's row put away: with no reply to follow, this chain ends before the
        thumbs' step (events._follow)."""
        ui = self.ui
        out[ui.chatbot] = lit(out[ui.chatbot], (out.get(ui.view) or {}).get("feedback") or [])
        out[ui.rating_row] = gr.update(visible=False)
        if isinstance(exc, TooManyTurns) and sendable(text):  # the edit is not lost
            out[ui.box] = gr.update(value=text, interactive=True)
        return out

    # -- following it -------------------------------------------------------------------------

    async def follow(self, service: ChatService, turn: Following
                     ) -> AsyncIterator[tuple[Pane | None, Following]]:
        """(the pane, the turn as it stands) each time the pane should be redrawn; the pane is
        None when only the turn changed (the watch ended on an error: its `notice`). The last
        pair is checked against what is stored: the turn gets the conversation's `view`, and
        the pane is the stored one where the streamed one may not match it (view.pane_lines_up).
        """
        shown = turn.get("shown") or []
        pane: Pane | None = None
        state = turn
        async for entry, state in follow_reply(service, turn, self.share_mode):
            if entry is None:
                yield None, state
            elif state.get("finished"):
                pane = shown + [entry]  # drawn below, once checked
            else:
                pane = shown + [entry]
                yield pane, state
        try:
            stored, view, _ = await self.load(service, state["conversation"])
        except ChatError as exc:  # deleted meanwhile, or the database is away
            # Its text is not drawn again over what the page shows now (a new chat, after a
            # delete): only the notice goes on.
            yield None, {**state, "view": {}, "notice": warning(exc)}
            return
        lines_up = pane is not None and pane_lines_up(view, stored, shown, state)
        # Lined up, only the reply is drawn again: as stored, with the line of its facts.
        yield (shown + stored[-1:] if lines_up else stored), {**state, "view": view,
                                                               "redrawn": not lines_up}

    async def finish(self, turn: Following | None, live: Any, notice: Any = None,
                     request: Caller = None) -> Any:
        """After the page has drawn the reply from the app's event stream (live_reply.py): the
        pane as stored, the input back, the newest turn's actions, and a notice if the reply
        failed or could not be followed (settle). Nothing when the page has moved on since this
        chain began: `live`, the turn its script followed, is no longer the page's `turn`, or
        another chain of the page follows another one (followed.py). Should the script not
        have followed it (its stream refused), this waits for the reply's end. `notice`: the
        page's when this step began, given back as it is when the turn leaves none (Gradio
        rebuilds an output an answer leaves out), unless this step had to wait."""
        if not turn or live != turn.get("id") or self.followed.moved_on(request, turn):
            return gr.skip()
        service = await self.service_for(request)
        pane: Pane | None = None
        state: Following = turn
        waited = False
        async with aclosing(self.follow(service, turn)) as steps:
            async for pane, state in steps:
                waited = waited or not state.get("finished")
        if self.followed.moved_on(request, turn):
            return gr.skip()
        out = self.settle(turn, state)
        if "__type__" in out:  # a skip: the turn followed is not this chain's
            return out
        if pane is not None:
            out[self.ui.chatbot] = self.lit_if_moved(pane, state)
        if not waited:  # (having waited for the reply, `notice` may be an older one's)
            out.setdefault(self.ui.notice, notice if isinstance(notice, str) else "")
        return out

    def lit_if_moved(self, pane: Pane, state: Following) -> Any:
        """The final pane, with the thumbs when the Chatbot's would be wrong without them: it
        takes every reply's thumb from its feedback_value again when the pane changes, so they
        go with it when storage has others than the page (rated in another tab, or while the
        reply was written) or the replies moved (the pane redrawn from storage)."""
        feedback = (state.get("view") or {}).get("feedback")
        if isinstance(feedback, list) and (
                state.get("redrawn") or not thumbs_stand(feedback, state.get("thumbs"))):
            return lit(pane, feedback)
        return pane

    def shows(self, request: Caller, out: Any) -> Any:
        """Remember the turn the page follows after a step that shows a conversation or
        starts a turn (its `turn` output; see finish). Returns `out`."""
        if isinstance(out, dict) and self.ui.turn in out:
            self.followed.record(request, out[self.ui.turn])
        return out

    def settle(self, turn: Following | None, ended: Following | None) -> Any:
        """After the reply: the input back, the newest turn's actions, and a notice if the
        reply failed or could not be followed; nothing when the page has moved on to another
        turn or conversation since this chain began (`turn` no longer names the one that
        `ended`)."""
        if not turn or not ended or ended.get("id") != turn.get("id"):
            return gr.skip()
        ui = self.ui
        out = self.idle(ended.get("view") or {})
        if ended.get("status") == ERROR:
            out[ui.notice] = FAILED_NOTICE
        elif ended.get("notice"):
            out[ui.notice] = ended["notice"]
        return out

    async def stop(self, turn: Following | None, request: Caller = None) -> None:
        """Someone else's turn id (the State is the caller's to write) answers like a missing
        one: a notice, nothing stopped."""
        if turn and turn.get("id"):
            service = await self.service_for(request)
            try:
                await service.stop_turn(turn["id"])
            except ChatError as exc:
                gr.Warning(exc.message)

    # -- one-step actions ---------------------------------------------------------------------

    async def browse(self, service: ChatService, conversation_id: str | None,
                     view: dict[str, Any] | None, step: int) -> Any:
        """Show the previous (-1) or next (+1) alternative reply of the newest turn."""
        view = view or {}
        alternatives = view.get("alternatives") or []
        index = view.get("alt_index", 0) + step
        if conversation_id is None or not 0 <= index < len(alternatives):
            return gr.skip()
        try:
            await service.select_reply(conversation_id, alternatives[index])
            shown, new_view, _ = await self.load(service, conversation_id)
        except ChatError as exc:
            return {self.ui.notice: warning(exc)}
        return {self.ui.chatbot: shown, self.ui.notice: "", **self.idle(new_view)}

    async def previous(self, conversation_id: str | None, view: dict[str, Any] | None,
                       request: Caller = None) -> Any:
        return await self.browse(await self.service_for(request), conversation_id, view, -1)

    async def next(self, conversation_id: str | None, view: dict[str, Any] | None,
                   request: Caller = None) -> Any:
        return await self.browse(await self.service_for(request), conversation_id, view, +1)

    async def rate(self, conversation_id: Any, view: dict[str, Any] | None,
                   turn: Following | None, evt: gr.LikeData, request: Caller = None
                   ) -> Changes:
        """A thumb pressed on a reply (up, down, or the lit one again to take it back); the
        tags and comment the reply had are kept, and offered for editing. The event's
        payload is the client's, so nothing in it is trusted: its position is looked up in
        the pane as the server drew it for this page (`view`, a State the page cannot write:
        the reply the person saw there, even if another tab has made or selected another
        since), never an id from the page; a value other than the three Gradio sends is
        refused; and rate_reply rates only the caller's own reply. While a reply is being
        generated (`turn`), its place in the pane is that reply's, not the one it replaces."""
        ui = self.ui
        value = like_value(getattr(evt, "liked", None))
        index = like_index(getattr(evt, "index", None))
        if value is None or index is None or not isinstance(conversation_id, str):
            return {ui.notice: NOT_RATED}
        if isinstance(turn, dict) and index >= len(turn.get("shown") or []):
            return {ui.notice: BEING_WRITTEN_NOTICE}
        ids = view.get("ids") if isinstance(view, dict) else None
        if not isinstance(ids, list) or index >= len(ids) or not isinstance(ids[index], str):
            return {ui.notice: GONE_NOTICE}
        service = await self.service_for(request)
        try:
            had = await service.rating_of(conversation_id, ids[index]) or {}
            rating = await service.rate_reply(conversation_id, ids[index], value,
                                              had.get("tags"), had.get("comment"))
        except ChatError as exc:
            return {ui.notice: warning(exc)}
        rated = {"conversation": conversation_id, "message": ids[index], "value": value}
        return {ui.notice: RATED_NOTICE[value], ui.rated: rated if value else None,
                ui.rating_row: gr.update(visible=bool(value)),
                ui.rating_tags: ", ".join(rating["tags"]), ui.rating_comment: rating["comment"],
                **self.thumbs_held(view, ids[index], value)}

    def thumbs_held(self, view: dict[str, Any], reply: str, value: int) -> Changes:
        """The page lit the pressed thumb itself; its Chatbot and view take it too, so that the
        thumbs the page holds stay those stored and a turn's end need not send them (finish).
        Nothing when the reply is not one the view lists: the turn's end sends them then."""
        feedback, replies = view.get("feedback"), view.get("replies")
        if not isinstance(feedback, list) or not isinstance(replies, list) \
                or reply not in replies or len(feedback) != len(replies):
            return {}
        feedback = list(feedback)
        feedback[replies.index(reply)] = thumb_of(value)
        return {self.ui.chatbot: gr.update(feedback_value=feedback),
                self.ui.view: {**view, "feedback": feedback}}

    async def save_rating(self, rated: dict[str, Any] | None, tags: Any, comment: Any,
                          request: Caller = None) -> Changes:
        """The tags and comment of the reply just rated (the one `rate` resolved)."""
        ui = self.ui
        if not isinstance(rated, dict):
            return {ui.notice: "Press 👍 or 👎 on a reply first, then add tags or a comment.",
                    ui.rating_row: gr.update(visible=False)}
        words = [t.strip() for t in tags.split(",") if t.strip()] if isinstance(tags, str) \
            else tags
        service = await self.service_for(request)
        try:
            await service.rate_reply(rated["conversation"], rated["message"], rated["value"],
                                     words, comment)
        except ChatError as exc:
            return {ui.notice: warning(exc)}
        return {ui.notice: "Saved with your rating.", ui.rating_row: gr.update(visible=False)}

    async def feedback_shown(self, view: dict[str, Any] | None) -> Any:
        """Light the thumbs of the replies shown as they are rated, and put the tags box of
        an earlier rating away: chained after each step that shows another conversation or
        alternative (events._lit; a turn's chain does both itself). (Async
        with nothing to await: Gradio runs a plain function on a worker thread.)"""
        feedback = (view or {}).get("feedback")
        # No conversation (a new chat): no thumb lit, or the last one's would light the next.
        return [gr.update(feedback_value=feedback if isinstance(feedback, list) else []),
                gr.update(visible=False)]

    async def rename(self, conversation_id: str | None, title: str, request: Caller = None
                     ) -> Changes:
        ui = self.ui
        if conversation_id is None:
            return {ui.notice: "Send a first message to start the conversation, then rename it."}
        try:
            service = await self.service_for(request)
            conversation = await service.update_conversation(conversation_id, title=title)
        except ChatError as exc:
            return {ui.notice: warning(exc)}
        return {ui.title: conversation["title"], ui.notice: "Renamed.",
                ui.conversations: await self.sidebar(service, conversation_id)}

    def ask_delete(self, conversation_id: str | None) -> Any:
        return gr.update(visible=conversation_id is not None)

    async def delete(self, conversation_id: str | None, request: Caller = None) -> Changes:
        """Delete for good (its reply in progress is cancelled first), then show a new chat."""
        return self.shows(request, await self.deleted(conversation_id, request))

    async def deleted(self, conversation_id: str | None, request: Caller) -> Changes:
        service = await self.service_for(request)
        note = ""
        if conversation_id is not None:
            try:
                result = await service.delete_conversation(conversation_id)
                note = "Conversation deleted." + (
                    " Its reply in progress was cancelled." if result["cancelled_turns"] else "")
            except ChatError as exc:
                note = warning(exc)
        return {self.ui.confirm_row: gr.update(visible=False),
                **await self.show(service, None, note)}

    async def search(self, query: str | None, request: Caller = None) -> Changes:
        """Searches what the sidebar lists (an admin's own, or everyone's when chosen)."""
        ui = self.ui
        service = await self.service_for(request)
        query = query or ""
        if not query.strip():
            return {ui.conversations: await self.sidebar(service, None), ui.notice: ""}
        try:
            hits = await self.listing(service, self.lists_everyone(service)
                                      ).search_conversations(query, limit=30)
        except ChatError as exc:
            return {ui.notice: warning(exc)}
        choices = [(f"{h['title'] or 'Untitled'} — {h['snippet']}", h["id"]) for h in hits]
        return {ui.conversations: gr.update(choices=choices, value=None),
                ui.notice: f"{len(hits)} conversation(s) match “{safe_markdown(query)}”. "
                           "Clear the search box to list them all."}

    async def save_settings(self, conversation_id: str | None, prompt: str, temperature: float,
                            top_p: float, max_tokens: float | None, request: Caller = None
                            ) -> str:
        if conversation_id is None:
            return "Send a first message to start the conversation, then set its settings."
        service = await self.service_for(request)
        try:
            await service.update_conversation(conversation_id, settings={
                "system_prompt": prompt, "temperature": temperature, "top_p": top_p,
                "max_tokens": max_tokens})
        except ChatError as exc:
            return warning(exc)
        return "Settings saved: they apply to the next messages of this conversation."

    async def choose_model(self, conversation_id: str | None, model: str | None,
                           request: Caller = None) -> str:
        """The conversation's model, from the picker ("": back to the default)."""
        if conversation_id is None:
            return "Send a first message to start the conversation, then choose its model."
        service = await self.service_for(request)
        try:
            await service.update_conversation(conversation_id,
                                              settings={"model": model or None})
        except ChatError as exc:
            return warning(exc)
        return (f"Model set to {safe_markdown(model)}" if model else "Model set to the default") \
            + ": it answers the next messages of this conversation."

    async def export(self, conversation_id: str | None, fmt: str, request: Caller = None
                     ) -> Changes:
        ui = self.ui
        if conversation_id is None:
            return {ui.notice: "Open a conversation to export it."}
        service = await self.service_for(request)
        try:
            data = await service.export_conversation(conversation_id, fmt)
        except ChatError as exc:
            return {ui.notice: warning(exc)}
        path = write_export(conversation_id, fmt, data)
        return {ui.exported: gr.update(value=str(path), visible=True), ui.notice: ""}

    async def import_file(self, file: Any, request: Caller = None) -> Changes:
        """The imported conversation is the caller's."""
        service = await self.service_for(request)
        try:
            conversation = await service.import_conversation(read_import(file))
        except ChatError as exc:
            return self.shows(request, await self.show(service, None, warning(exc)))
        return self.shows(request, await self.show(
            service, conversation["id"], f"Imported as “{safe_markdown(conversation['title'])}”."))

    # -- an admin's choice of what the sidebar lists --------------------------------------------

    async def choose_everyone(self, everyone: Any, selected: str | None,
                              request: Caller = None) -> Any:
        """The sidebar with everyone's conversations (an admin's choice) or their own."""
        service = await self.service_for(request)
        if sees_others(service):
            chosen = self.everyone_chosen
            (chosen.add if everyone is True else chosen.discard)(service.person.id)
        return await self.sidebar(service, selected if isinstance(selected, str) else None)

    async def everyone_shown(self, request: Caller = None) -> Any:
        """The checkbox for the choice: shown to admins only, as they left it."""
        service = await self.service_for(request)
        return gr.update(visible=sees_others(service), value=self.lists_everyone(service))
