"""The Chat tab's components, and nothing else: no handler, no event. `ChatLayout` names every
component a handler reads or changes; the element ids are what the browser tests and the CSS
use. The one script here, the phone's toggle of the conversation list, runs in the browser only.

The newest turn's buttons (Stop while a reply is generated; then Retry, Regenerate, Continue,
and the arrows through its alternatives) all stay on the page: the classes of their row,
`actions`, say which of them show (ACTIONS_CSS, view.TurnActions.classes). Showing and hiding
them is then one update of one component: Gradio rebuilds every component an event updates
(or leaves alone among its outputs), so seven buttons updated one by one cost seven rebuilds
on every turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from chat_core.states import (MAX_RATING_COMMENT_CHARS, MAX_RATING_TAG_CHARS, MAX_RATING_TAGS,
                              MAX_SEARCH_CHARS, MAX_SYSTEM_PROMPT_CHARS, MAX_TITLE_CHARS,
                              SETTING_LIMITS, SETTING_STEP)

CONVERSATION_KEY = "durable-chat-conversation"


@dataclass(frozen=True)
class ChatLayout:
    # What the page remembers. The open conversation survives reloads and app restarts in the
    # browser's localStorage; `turn` is the reply being streamed (for Stop and the steps after
    # it); `live` is its id where the page's script can read it (live_reply.py: a State's
    # value never leaves the server); `view` is what the pane shows: message ids and the
    # newest turn's alternatives.
    conversation: gr.BrowserState
    turn: gr.State
    live: gr.Textbox
    view: gr.State
    # The sidebar.
    new_chat: gr.Button
    search: gr.Textbox
    conversations: gr.Radio
    upload: gr.UploadButton
    # The conversation's header.
    title: gr.Textbox
    export_format: gr.Dropdown
    export: gr.Button
    delete: gr.Button
    confirm_row: gr.Row
    confirm: gr.Button
    keep: gr.Button
    exported: gr.File
    # The pane, the message box and the newest turn's actions (see the module docstring).
    chatbot: gr.Chatbot
    notice: gr.Markdown
    # Tags and a comment for the reply just rated with a thumb (shown once one is pressed);
    # `rated` is that reply as the server resolved it (a State: the page cannot name one).
    rated: gr.State
    rating_row: gr.Row
    rating_tags: gr.Textbox
    rating_comment: gr.Textbox
    save_rating: gr.Button
    box: gr.Textbox
    actions: gr.Row
    stop: gr.Button
    retry: gr.Button
    regenerate: gr.Button
    proceed: gr.Button
    previous: gr.Button
    position: gr.Markdown
    following: gr.Button
    # The conversation's settings.
    system_prompt: gr.Textbox
    temperature: gr.Slider
    top_p: gr.Slider
    max_tokens: gr.Number
    save_settings: gr.Button
    # The conversation's model, saved as soon as it is chosen (GET /api/models's ids).
    model: gr.Dropdown
    # Never shown: the trigger of the API-only events (see events.py).
    api_only: gr.Button

    @property
    def settings_fields(self) -> list[Any]:
        return [self.system_prompt, self.temperature, self.top_p, self.max_tokens]


def build_layout(max_message_chars: int) -> ChatLayout:
    """The components, placed in the current Blocks context."""
    parts: dict[str, Any] = {
        # BrowserState encrypts with a per-launch random key unless given one, which would
        # forget the conversation on restart; the value is only a conversation id, checked on
        # the server, so a fixed key is enough.
        "conversation": gr.BrowserState(None, storage_key=CONVERSATION_KEY,
                                        secret="durable-chat/open-conversation"),
        "turn": gr.State(None),
        "rated": gr.State(None),
        "live": gr.Textbox("", visible=False, elem_id="live-turn"),
        "view": gr.State({}),
    }
    # On a phone the list column is a drawer (page.PHONE_CSS) opened by the toggle next to the
    # title; on a wider screen the toggle is hidden and nothing else changes.
    with gr.Row(equal_height=False, elem_id="chat-layout"):
        with gr.Column(scale=1, min_width=240, elem_id="conversation-list"):
            parts.update(_sidebar())
        with gr.Column(scale=4, elem_id="chat-column"):
            parts.update(_header())
            parts.update(_pane(max_message_chars))
            parts.update(_rating_details())
            # The message box and the turn's buttons: what stays in reach at the bottom of a
            # phone's screen.
            with gr.Column(elem_id="composer"):
                parts["box"] = _message_box(max_message_chars)
                with gr.Row(elem_id="actions") as actions:
                    parts.update(_actions())
            parts["actions"] = actions
            with gr.Accordion("Settings for this conversation", open=False,
                              elem_id="settings"):
                parts.update(_settings())
    parts["api_only"] = gr.Button("API", visible=False)
    return ChatLayout(**parts)


def _sidebar() -> dict[str, Any]:
    parts = {
        "new_chat": gr.Button("+ New chat", variant="primary", elem_id="new-chat"),
        "search": gr.Textbox(placeholder="Search messages, then Enter", show_label=False,
                             elem_id="search", max_length=MAX_SEARCH_CHARS),
        "conversations": gr.Radio(choices=[], label="Conversations", elem_id="sidebar",
                                  interactive=True),
    }
    with gr.Row():
        parts["upload"] = gr.UploadButton("Import JSON", file_types=[".json"], size="sm",
                                          elem_id="import")
    return parts


def _header() -> dict[str, Any]:
    parts: dict[str, Any] = {}
    with gr.Row(equal_height=True, elem_id="conversation-header"):
        _list_toggle()
        parts["title"] = gr.Textbox(label="Title (Enter to rename)", elem_id="title", scale=4,
                                    max_length=MAX_TITLE_CHARS, interactive=True)
        parts["export_format"] = gr.Dropdown(["json", "markdown"], value="json",
                                             label="Export", scale=1, min_width=110,
                                             elem_id="export-format")
        parts["export"] = gr.Button("Export", size="sm", scale=0, min_width=80,
                                    elem_id="export")
        parts["delete"] = gr.Button("Delete", variant="stop", size="sm", scale=0,
                                    min_width=80, elem_id="delete")
    with gr.Row(visible=False, elem_id="confirm-delete") as confirm_row:
        gr.Markdown("**Delete this conversation and all its messages?** A reply being "
                    "generated is cancelled first.")
        parts["confirm"] = gr.Button("Delete for good", variant="stop", size="sm",
                                     elem_id="confirm-delete-yes")
        parts["keep"] = gr.Button("Keep it", size="sm", elem_id="confirm-delete-no")
    parts["confirm_row"] = confirm_row
    parts["exported"] = gr.File(label="Exported file", visible=False, elem_id="exported")
    return parts


def _pane(max_message_chars: int) -> dict[str, Any]:
    return {
        # Messages arrive as sanitized HTML (render.py): no second Markdown pass, and no LaTeX
        # (KaTeX can be made to fetch). Gradio's copy buttons would copy a message's value,
        # which is HTML here: select the text to copy it instead.
        "chatbot": gr.Chatbot(label="Conversation", height=520, elem_id="chatbot",
                              autoscroll=True, sanitize_html=True, buttons=[],
                              render_markdown=False, latex_delimiters=[], editable="user",
                              placeholder="Start a conversation: type below and press Enter."
                              " Shift+Enter adds a line. Edit a message of yours to branch."),
        "notice": gr.Markdown("", elem_id="notice"),
    }


def _rating_details() -> dict[str, Any]:
    """Optional words on the reply just rated: hidden until a thumb is pressed."""
    with gr.Row(visible=False, equal_height=True, elem_id="rating-details") as row:
        tags = gr.Textbox(label="Tags (comma-separated)", scale=2, elem_id="rating-tags",
                          placeholder="accurate, too long",
                          max_length=MAX_RATING_TAGS * (MAX_RATING_TAG_CHARS + 2))
        comment = gr.Textbox(label="Comment", scale=3, elem_id="rating-comment",
                             max_length=MAX_RATING_COMMENT_CHARS)
        save = gr.Button("Save", size="sm", scale=0, min_width=80, elem_id="save-rating")
    return {"rating_row": row, "rating_tags": tags, "rating_comment": comment,
            "save_rating": save}


def _message_box(max_message_chars: int) -> gr.Textbox:
    return gr.Textbox(placeholder="Message (Enter sends, Shift+Enter for a new line)",
                      show_label=False, lines=1, max_lines=12, max_length=max_message_chars,
                      autofocus=True, elem_id="message-box", submit_btn="Send")


# The drawer's state is a class on #chat-layout, set in the browser only: opening the list
# costs no round trip, and the server keeps no per-page state for it. It closes once a
# conversation is chosen or a new one started (what the person opened it for), on a tap beside
# it, and on Escape.
_TOGGLE_JS = """
const layout = element.closest('#chat-layout') || document.getElementById('chat-layout');
const button = element.querySelector('button');
const setOpen = (open) => {
  layout.classList.toggle('list-open', open);
  button.setAttribute('aria-expanded', String(open));
};
button.addEventListener('click', () => setOpen(!layout.classList.contains('list-open')));
element.querySelector('.list-backdrop').addEventListener('click', () => setOpen(false));
layout.addEventListener('click', (e) => {
  if (e.target.closest('#sidebar label, #new-chat')) setOpen(false);
});
document.addEventListener('keydown', (e) => { if (e.key === 'Escape') setOpen(false); });
"""


def _list_toggle() -> gr.HTML:
    return gr.HTML('<button type="button" aria-controls="conversation-list" '
                   'aria-expanded="false">☰ Chats</button>'
                   '<div class="list-backdrop"></div>',
                   js_on_load=_TOGGLE_JS, apply_default_css=False, elem_id="list-toggle")


def _actions() -> dict[str, Any]:
    small: dict[str, Any] = dict(size="sm", scale=0, min_width=110)
    arrow = {**small, "min_width": 44}
    return {
        "stop": gr.Button("■ Stop", variant="stop", elem_id="stop", **small),
        "retry": gr.Button("↻ Retry", elem_id="retry", **small),
        "regenerate": gr.Button("↻ Regenerate", elem_id="regenerate", **small),
        "proceed": gr.Button("→ Continue", elem_id="continue", **small),
        "previous": gr.Button("◀", elem_id="alt-prev", **arrow),
        "position": gr.Markdown("", elem_id="alt-position"),
        "following": gr.Button("▶", elem_id="alt-next", **arrow),
    }


# Which of the turn's buttons show, by the classes of their row (view.TurnActions.classes). A
# hidden button is out of the layout and out of the keyboard's reach; an arrow at the end of
# the alternatives is dimmed and ignores clicks (the handler ignores a step past the end too).
ACTIONS_CSS = """
#actions:not(.busy) #stop, #actions:not(.retry) #retry,
#actions:not(.regenerate) #regenerate, #actions:not(.continue) #continue,
#actions:not(.alternatives) :is(#alt-prev, #alt-position, #alt-next) { display: none !important; }
#actions.first #alt-prev, #actions.last #alt-next { pointer-events: none; opacity: 0.5; }
"""


def _settings() -> dict[str, Any]:
    temperature, top_p, max_tokens = (SETTING_LIMITS[k] for k in
                                      ("temperature", "top_p", "max_tokens"))
    parts = {"system_prompt": gr.Textbox(label="System prompt", lines=2, max_lines=8,
                                         max_length=MAX_SYSTEM_PROMPT_CHARS,
                                         elem_id="system-prompt")}
    with gr.Row():
        parts["temperature"] = gr.Slider(*temperature, step=SETTING_STEP, label="Temperature",
                                         elem_id="temperature")
        # top_p must stay above 0: the slider starts one step up.
        parts["top_p"] = gr.Slider(SETTING_STEP, top_p[1], step=SETTING_STEP, label="Top p",
                                   elem_id="top-p")
        parts["max_tokens"] = gr.Number(label="Max tokens", precision=0, minimum=max_tokens[0],
                                        maximum=max_tokens[1], elem_id="max-tokens")
    parts["save_settings"] = gr.Button("Save settings", size="sm", elem_id="save-settings")
    # Filled when a conversation is shown (handlers.settings_of), from every server's models.
    parts["model"] = gr.Dropdown(choices=[("Default", "")], value="", label="Model",
                                 info="saved for this conversation as soon as it is chosen",
                                 elem_id="model")
    return parts
