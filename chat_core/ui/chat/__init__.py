"""The Chat tab: the conversation sidebar with search, the streaming chat pane, and what a
conversation offers (stop, retry, regenerate, continue, alternatives, edit, rename, delete,
settings, export, import). Read it in this order:

    layout.py     the components (`ChatLayout`), and nothing else
    view.py       what the pane and the turn's actions show, as plain data
    handlers.py   one handler per thing a person does (`ChatHandlers`), calling ChatService only
    streaming.py  a reply followed into the pane, paced
    events.py     which event runs which handler; the chains that start and follow a turn
    api.py        the same actions in one call each, for API clients
    files.py      exported files, imported files
"""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from chat_core.service import ChatService
from chat_core.ui.chat.events import ChatEvents
from chat_core.ui.chat.handlers import ChatHandlers
from chat_core.ui.chat.layout import CONVERSATION_KEY, ChatLayout, build_layout

__all__ = ["ChatTab", "ChatHandlers", "ChatLayout", "CONVERSATION_KEY"]


class ChatTab:
    """The tab's components, handlers and events, built in the current Blocks context."""

    def __init__(self, service: ChatService, share_mode: bool = False) -> None:
        # An admin's choice to list everyone's conversations (shown to admins only).
        self.everyone = gr.Checkbox(False, label="List everyone's conversations (admin)",
                                    visible=False, elem_id="everyone", container=False)
        self.ui = build_layout(service.settings.max_message_chars)
        self.handlers = ChatHandlers(service, self.ui, share_mode, self.everyone)
        self.events = ChatEvents(self.handlers)
        self.events.wire()

    def show_on(self, listener: Callable[..., Any], **kwargs: Any) -> None:
        """Show the open conversation when `listener` fires, e.g. `demo.load` or a tab's
        `select` (back from the Workflows tab: what a fork, cancel or resume changed)."""
        self.events.show_on(listener, **kwargs)

    @property
    def conversation(self) -> gr.BrowserState:
        return self.ui.conversation
