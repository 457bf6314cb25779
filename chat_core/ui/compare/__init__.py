"""The Compare tab: one prompt to two sides (two models, or one model with two settings),
both replies streamed side by side, blind until the vote; past comparisons to reopen; the
leaderboard the votes make. Read it in this order:

    layout.py     the components (`CompareLayout`), and nothing else
    view.py       what the panes, headings, list and vote show, as plain data
    handlers.py   one handler per thing a person does (`CompareHandlers`), calling the
                  comparisons' service only (chat_core/comparisons/service.py)
    streaming.py  a round's two replies followed into their panes, paced
    events.py     which event runs which handler; the chain that starts and follows a round
"""

from __future__ import annotations

import gradio as gr

from chat_core.service import ChatService
from chat_core.ui.compare.events import CompareEvents
from chat_core.ui.compare.handlers import CompareHandlers
from chat_core.ui.compare.layout import CompareLayout, build_layout, compare_css

__all__ = ["build_compare_tab", "compare_css", "CompareHandlers", "CompareLayout"]


def build_compare_tab(service: ChatService, tab: gr.Tab, share_mode: bool = False
                      ) -> CompareHandlers:
    """The tab's components and events, built in the current Blocks context (inside `tab`)."""
    temperature = service.default_params()["temperature"]
    ui = build_layout(service.settings.max_message_chars, temperature)
    handlers = CompareHandlers(service, ui, share_mode)
    CompareEvents(handlers).wire(tab)
    return handlers
