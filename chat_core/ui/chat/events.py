"""Which event runs which handler, with which inputs and outputs. Every event lists the outputs
its handler may change, and only those: Gradio rebuilds each output an event names, changed or
not, so a streamed update that named the whole page would cost a dozen rebuilds.

Starting a turn on the page is a chain, as in Gradio's chatbot demos: the first step accepts
the turn and shows it pending (the input locked, Stop offered); the page's own script then
draws the reply as it is written, from the app's event stream (live_reply.py: no request to
Gradio per update); and `finish` draws it as stored and gives the input back with the newest
turn's actions. Opening a conversation is the same chain: its first step shows it, and
follows a reply still being generated.

The public API names (`api_name`) stay those the page always had; the chain steps after the
first are private. API clients call one event per action; those that start a turn get the
whole chain in one call from api.py."""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from chat_core.ui.chat.api import ApiAnswers
from chat_core.ui.chat.handlers import ChatHandlers
from chat_core.ui.chat.inline_io import INLINE, converted
from chat_core.ui.chat.live_reply import FOLLOW_JS, STOP_JS

# Chat events are not capped by Gradio: each waits on the service, and the LLM client's
# semaphore is the real cap (LLM_MAX_CONCURRENCY).
UNCAPPED: dict[str, Any] = {"concurrency_limit": None}
PRIVATE: dict[str, Any] = {"api_visibility": "private"}
# The page's own steps that answer once skip Gradio's queue, as ChatInterface's do: one
# request, where a queued event costs a join, an event stream and the queue's bookkeeping.
DIRECT: dict[str, Any] = {"queue": False}
# For chained steps: Gradio's default ("once") skips a step while the same step of another
# chain of the page is pending.
MULTIPLE: dict[str, Any] = {"trigger_mode": "multiple"}
# Where a chain's thumbs' step goes (ChatEvents._follow).
LIT_AFTER_FIRST, LIT_AFTER_FINISH = "first", "finish"


class ChatEvents:
    def __init__(self, handlers: ChatHandlers) -> None:
        self.handlers = handlers
        self.api = ApiAnswers(handlers)
        ui = handlers.ui
        # What each kind of step may change: a conversation shown (ChatHandlers.open), a turn
        # started (send, and retry/continue in the open conversation), the turn settled, an
        # alternative reply shown.
        self.shown = [ui.conversation, ui.conversations, ui.chatbot, ui.notice, ui.box,
                      ui.title, ui.actions, ui.position, *ui.settings_fields, ui.model, ui.turn,
                      ui.live, ui.view]
        self.started = [ui.conversation, ui.conversations, ui.chatbot, ui.notice, ui.box,
                        ui.title, ui.actions, ui.turn, ui.live, ui.rating_row]
        self.again = [ui.chatbot, ui.notice, ui.box, ui.actions, ui.turn, ui.live,
                      ui.rating_row]
        self.settled = [ui.notice, ui.box, ui.actions, ui.position, ui.turn, ui.live, ui.view]
        self.browsed = [ui.chatbot, *self.settled]

    def wire(self) -> None:
        self._turns()
        self._conversations()
        self._header()
        self._everyone()

    def show_on(self, listener: Callable[..., Any], **kwargs: Any) -> None:
        """Show the open conversation when `listener`'s event fires (the page loading, the
        tab selected again), following a reply still being generated; and to an admin, their
        choice of whose conversations the sidebar lists."""
        h, ui = self.handlers, self.handlers.ui
        self._follow(listener(h.open, inputs=[ui.conversation], outputs=self.shown,
                              **UNCAPPED, **kwargs))
        if h.everyone is not None:
            listener(h.everyone_shown, outputs=[h.everyone], show_progress="hidden", **PRIVATE,
                     **DIRECT)

    def _follow(self, first: Any, lit: str | None = LIT_AFTER_FIRST) -> None:
        """Chain the page's drawing of the reply and the finish step after an event that may
        have started a turn; the chain ends with the script's step when there is no reply to
        follow (live_reply.FOLLOW_JS). The thumbs' step (`lit`) follows the first step when
        that step showed a conversation with its view (opening one), or finish when only
        finish has the view (an edit shows its branch's). A turn's own chain lights the
        thumbs itself (a retry's first step, finish: handlers.started,
        handlers.lit_if_moved): one request to Gradio fewer for each message sent."""
        h, ui = self.handlers, self.handlers.ui
        settled = [ui.chatbot, *self.settled]
        # MULTIPLE: a chain's steps must run even while the same steps of an earlier chain
        # still run (a conversation picked while another one's reply streams); that one's
        # script then closes its stream and fails its step, so its finish never runs
        # (live_reply.FOLLOW_JS). The script's step has no server side.
        # show_progress_on: a failed script step marks the components it shows progress on
        # with an error tracker (hidden, but focusable); `live` is never shown.
        chain = first.then(None, inputs=[ui.live], outputs=[ui.live, ui.notice], js=FOLLOW_JS,
                           show_progress="hidden", show_progress_on=[ui.live], **MULTIPLE,
                           **PRIVATE).then(
            converted(h.finish, [ui.turn, ui.live, ui.notice], settled),
            inputs=[ui.turn, ui.live, ui.notice], outputs=settled, **INLINE,
            show_progress="hidden", **MULTIPLE, **PRIVATE, **DIRECT)
        if lit is not None:
            self._lit(first if lit == LIT_AFTER_FIRST else chain)

    def _shown(self, event: Any) -> None:
        """After a step that shows a conversation with no reply to follow (a new chat, an
        import, a delete): the page's stream of the reply it showed before ends (no request to
        the server), and the thumbs are lit."""
        event.then(None, js=STOP_JS, show_progress="hidden", **MULTIPLE, **PRIVATE)
        self._lit(event)

    def _lit(self, event: Any) -> Any:
        """After an event that changed the pane's view: light the thumbs of the rated replies
        (handlers.feedback_shown). The Chatbot keeps a pressed thumb per position, so a new
        conversation or reply there would otherwise show the last one's. (A chained step, not
        the view's change event: Gradio 6 fires that only after queued events.)"""
        h, ui = self.handlers, self.handlers.ui
        return event.then(h.feedback_shown, inputs=[ui.view],
                          outputs=[ui.chatbot, ui.rating_row], show_progress="hidden",
                          **MULTIPLE, **PRIVATE, **DIRECT)

    def _turns(self) -> None:
        h, ui, api = self.handlers, self.handlers.ui, self.api
        context = [ui.conversation, ui.view]
        # The page's first steps are private: their public names belong to the API's events.
        sent = [ui.box, *context, ui.title]
        self._follow(ui.box.submit(converted(h.send, sent, self.started), inputs=sent,
                                   outputs=self.started, **INLINE, api_name="page_send",
                                   **PRIVATE, **DIRECT), lit=None)
        for button, handler, name in ((ui.retry, h.retry, "retry"),
                                      (ui.regenerate, h.retry, "regenerate"),
                                      (ui.proceed, h.continue_reply, "continue")):
            self._follow(button.click(converted(handler, context, self.again), inputs=context,
                                      outputs=self.again, **INLINE, api_name=f"page_{name}",
                                      **PRIVATE, **DIRECT), lit=None)
        self._follow(ui.chatbot.edit(h.edit, inputs=context, outputs=[*self.shown, ui.rating_row],
                                     api_name="edit", **UNCAPPED), lit=LIT_AFTER_FINISH)
        ui.stop.click(h.stop, inputs=[ui.turn], api_name="stop", **UNCAPPED)
        # The thumbs on replies: the pane position is resolved in the pane as the server drew
        # it for this page (the view, a State; handlers.rate).
        ui.chatbot.like(h.rate, inputs=[ui.conversation, ui.view, ui.turn], outputs=[
            ui.notice, ui.rated, ui.rating_row, ui.rating_tags, ui.rating_comment, ui.chatbot,
            ui.view],
            api_name="page_rate", show_progress="hidden", **PRIVATE, **DIRECT)
        for trigger in (ui.save_rating.click, ui.rating_tags.submit, ui.rating_comment.submit):
            trigger(h.save_rating, inputs=[ui.rated, ui.rating_tags, ui.rating_comment],
                    outputs=[ui.notice, ui.rating_row], show_progress="hidden", **PRIVATE,
                    **DIRECT)
        for button, handler, name in ((ui.previous, h.previous, "previous"),
                                      (ui.following, h.next, "next")):
            self._lit(button.click(handler, inputs=context, outputs=self.browsed,
                                   api_name=name, show_progress="hidden", **UNCAPPED))
        # The actions that start a turn, for API clients: one call each (api.py).
        io: dict[str, Any] = {"outputs": self.api.outputs, "postprocess": False, **UNCAPPED}
        ui.api_only.click(api.send, inputs=[ui.box, *context], api_name="send", **io)
        for name, answer in (("retry", api.retry), ("regenerate", api.retry),
                             ("continue", api.continue_reply)):
            ui.api_only.click(answer, inputs=context, api_name=name, **io)

    def _conversations(self) -> None:
        h, ui = self.handlers, self.handlers.ui
        self._follow(ui.conversations.select(h.open, inputs=[ui.conversations],
                                             outputs=self.shown, api_name="select",
                                             **UNCAPPED))
        self._shown(ui.new_chat.click(h.new_chat, outputs=self.shown, api_name="new_chat",
                                      **UNCAPPED))
        ui.search.submit(h.search, inputs=[ui.search], outputs=[ui.conversations, ui.notice],
                         api_name="search")
        self._shown(ui.upload.upload(h.import_file, inputs=[ui.upload], outputs=self.shown,
                                     api_name="import", **UNCAPPED))

    def _everyone(self) -> None:
        h, ui = self.handlers, self.handlers.ui
        if h.everyone is not None:  # `input`: the person's click, not the load's update
            h.everyone.input(h.choose_everyone, inputs=[h.everyone, ui.conversation],
                             outputs=[ui.conversations], show_progress="hidden", **PRIVATE,
                             **DIRECT)

    def _header(self) -> None:
        h, ui = self.handlers, self.handlers.ui
        ui.title.submit(h.rename, inputs=[ui.conversation, ui.title],
                        outputs=[ui.title, ui.notice, ui.conversations], api_name="rename")
        ui.delete.click(h.ask_delete, inputs=[ui.conversation], outputs=[ui.confirm_row],
                        **PRIVATE)
        ui.keep.click(lambda: gr.update(visible=False), outputs=[ui.confirm_row], **PRIVATE)
        self._shown(ui.confirm.click(h.delete, inputs=[ui.conversation],
                                     outputs=[*self.shown, ui.confirm_row], api_name="delete",
                                     **UNCAPPED))
        # The fields are filled whenever a conversation is shown. Opening the panel does not
        # read them again: that answer could land after the user began typing and overwrite
        # it (seen as a flaky browser test under load).
        ui.save_settings.click(h.save_settings, inputs=[ui.conversation, *ui.settings_fields],
                               outputs=[ui.notice], api_name="save_settings")
        ui.model.input(h.choose_model, inputs=[ui.conversation, ui.model], outputs=[ui.notice],
                       api_name="choose_model")
        ui.export.click(h.export, inputs=[ui.conversation, ui.export_format],
                        outputs=[ui.exported, ui.notice], api_name="export")
