"""One call per action, for API clients (gradio_client, /gradio_api/call/): they do not follow the
page's `.then()` chains, so the actions that start a turn answer them from a single event that
runs the same handlers as the page, start to end: the turn accepted, the reply as it grows
(which the page itself takes from the app's event stream, live_reply.py), the turn settled. As Gradio's own ChatInterface does for its /chat endpoint, these events hang on a
button that is never shown, and skip Gradio's postprocessing: they send plain values (the
pane's messages as {"role", "content"} with the content as HTML), so a streamed update costs
next to nothing; a handler's property update (the sidebar's new choices) goes out once as is.

Their outputs, in this order (API clients read them by position; State outputs are not sent):
the conversation id, the selected conversation in the sidebar, the pane, the notice, the text
left in the message box (a refused message stays there).

Each call is made as its caller (the `gr.Request` Gradio passes, resolved once per call): in
share mode, someone else's conversation answers like a missing one."""

from __future__ import annotations

from typing import Any, AsyncIterator

import gradio as gr

from chat_core.service import ChatService
from chat_core.ui.chat.handlers import Caller, ChatHandlers, Changes

Row = list[Any]


def api_outputs(handlers: ChatHandlers) -> list[Any]:
    ui = handlers.ui
    return [ui.conversation, ui.conversations, ui.chatbot, ui.notice, ui.box, ui.turn, ui.view]


class ApiAnswers:
    def __init__(self, handlers: ChatHandlers) -> None:
        self.handlers = handlers
        self.outputs = api_outputs(handlers)

    async def send(self, text: str, conversation_id: str | None, view: dict[str, Any] | None,
                   request: Caller = None) -> AsyncIterator[Row]:
        service = await self.handlers.service_for(request)
        first = await self.handlers.start(service, text, conversation_id, view, page=False)
        async for row in self._through(service, first, conversation_id, view):
            yield row

    async def retry(self, conversation_id: str | None, view: dict[str, Any] | None,
                    request: Caller = None) -> AsyncIterator[Row]:
        async for row in self._again(conversation_id, view, "retry", request):
            yield row

    async def continue_reply(self, conversation_id: str | None, view: dict[str, Any] | None,
                             request: Caller = None) -> AsyncIterator[Row]:
        async for row in self._again(conversation_id, view, "continue", request):
            yield row

    async def _again(self, conversation_id: str | None, view: dict[str, Any] | None,
                     action: str, request: Caller) -> AsyncIterator[Row]:
        service = await self.handlers.service_for(request)
        first = await self.handlers.again(service, conversation_id, view, action)
        async for row in self._through(service, first, conversation_id, view):
            yield row

    async def _through(self, service: ChatService, first: Any, conversation_id: str | None,
                       view: dict[str, Any] | None) -> AsyncIterator[Row]:
        """The turn `first` started (if any), followed to its end, as rows of plain values."""
        ui = self.handlers.ui
        # The pane, the notice and the box are left as they are until a handler sets them
        # (gr.skip(): a refused message that cannot go back in the box stays there); by the
        # time the reply streams every output has a value, and a row of values costs nothing.
        values: dict[Any, Any] = {
            ui.conversation: conversation_id, ui.conversations: conversation_id,
            ui.chatbot: gr.skip(), ui.notice: gr.skip(), ui.box: gr.skip(), ui.turn: None,
            ui.view: view or {}}
        yield self._row(values, _apply(values, first))
        turn = values[ui.turn]
        if not turn:
            return
        async for pane, state in self.handlers.follow(service, turn):
            values[ui.turn] = state
            if pane is not None:
                values[ui.chatbot] = pane
            if state.get("notice"):
                values[ui.notice] = state["notice"]
            yield self._row(values)
        settled = self.handlers.settle(turn, values[ui.turn])
        yield self._row(values, _apply(values, settled))

    def _row(self, values: dict[Any, Any], updates: Changes | None = None) -> Row:
        """The outputs in order: plain values, but an update a handler made goes out as it is
        once, so that the session's component takes its other properties too (the sidebar's
        choices, which a later /select checks its input against)."""
        updates = updates or {}
        return [updates.get(component, values[component]) for component in self.outputs]


def _apply(values: dict[Any, Any], changes: Changes | Any) -> Changes:
    """Fold a handler's changes into the plain values (an update's value, if it has one; the
    outputs API clients do not get, the buttons, are left out; so is `gr.skip()`). Returns the
    updates among them."""
    updates: Changes = {}
    if not isinstance(changes, dict) or changes.get("__type__") == "update":
        return updates
    for component, change in changes.items():
        if component not in values:
            continue
        if isinstance(change, dict) and change.get("__type__") == "update":
            updates[component] = change
            if "value" in change:
                values[component] = change["value"]
        else:
            values[component] = change
    return updates
