"""The Gradio UI: a Chat tab, a Workflows tab and an Account tab.

`build_ui(service)` returns the Blocks, so tests and app.py build the same thing. Handlers only
call ChatService: no SQL and no LLM calls here. Every handler is async, so many users stream at
once without tying up Gradio's thread pool; the load on the LLM server is capped in the LLM
client (LLM_MAX_CONCURRENCY), not here.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from chat_core.secrets_mask import mask_url
from chat_core.service import ChatService
from chat_core.ui.chat import CONVERSATION_KEY, ChatTab
from chat_core.ui.chat.layout import ACTIONS_CSS
from chat_core.ui.account_tab import build_account_tab
from chat_core.ui.compare import build_compare_tab, compare_css
from chat_core.ui.workflows_tab import build_workflows_tab

__all__ = ["build_ui", "backend_line", "CSS", "CONVERSATION_KEY"]


# A phone (390 px wide is the common size): the conversation list becomes a drawer opened by
# #list-toggle (layout._list_toggle); the chat takes the width and is sized to fit the screen
# under the header, with the message box and the turn's buttons (#composer) kept at the bottom
# of the screen when the page is longer; everything tappable is at least 44 px (Apple's and
# Google's minimum); a long word or code line wraps or scrolls in its own block, never the page.
# Above the breakpoint the desktop layout is unchanged: the toggle is hidden, and the two rules
# outside @media (clip, the page's padding) draw the same there as Gradio's own.
PHONE_MAX_WIDTH_PX = 768  # where Gradio's own sidebar turns into a drawer too
# The pane takes the screen's height less what is around it on a phone, measured at 390 x 844:
# 310 px above it (header, tabs, title, export), 170 px below (the message box, the turn's
# buttons while a reply streams, the gaps). So the newest reply is not under the box.
PHONE_PANE_HEIGHT = "max(260px, calc(100dvh - 480px))"
PHONE_CSS = """
#list-toggle { display: none; }
/* Gradio clips its container with overflow: hidden, which makes it a scroll container and
   keeps anything sticky inside from sticking; clip cuts the same and lets #composer stick. */
.gradio-container { overflow: clip !important; }
/* Gradio's 32 px each side of the page, 12 px at phone width: the padding is outside the part
   of the page that the rules in @media below can reach, so the step is written as a clamp. */
.gradio-container > .main.app {
  padding-inline: clamp(var(--size-3), (100vw - %(max)dpx) * 1000, var(--size-8));
}
@media (max-width: %(max)dpx) {
  #page-header { flex-direction: column; gap: 0; }
  #page-header h2 { margin: 0; }
  #backend-line p { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  #list-toggle, #list-toggle .html-container { display: block; padding: 0; }
  #list-toggle { flex: 0 0 auto; width: auto !important; }
  #list-toggle button {
    min-height: 44px; padding: 0 var(--size-4); font-weight: 600;
    border: 1px solid var(--border-color-primary); border-radius: var(--button-large-radius);
    background: var(--button-secondary-background-fill);
    color: var(--button-secondary-text-color);
  }
  #conversation-list {
    position: fixed; top: 0; bottom: 0; left: 0; z-index: 1000;
    width: min(85vw, 340px) !important; min-width: 0 !important;
    padding: var(--size-4); overflow-y: auto; overscroll-behavior: contain;
    background: var(--background-fill-primary); box-shadow: var(--shadow-drop-lg);
    transform: translateX(-100%%); visibility: hidden;
    transition: transform 0.2s ease, visibility 0s 0.2s;
  }
  #chat-layout.list-open #conversation-list {
    transform: none; visibility: visible; transition: transform 0.2s ease;
  }
  #list-toggle .list-backdrop {
    display: none; position: fixed; inset: 0; z-index: 999; background: rgba(0, 0, 0, 0.4);
  }
  #chat-layout.list-open .list-backdrop { display: block; }
  #chat-column { min-width: 0 !important; }
  /* The toggle and the title on one line, the format, Export and Delete on the next. */
  #conversation-header { flex-wrap: wrap; align-items: flex-end; gap: var(--size-2); }
  #conversation-header > .form { display: contents; }
  #conversation-header > .form > .block {
    border: 1px solid var(--block-border-color) !important;
    border-radius: var(--block-radius) !important;
  }
  #title { flex: 1 1 60%% !important; }
  #export-format { flex: 1 1 30%% !important; }
  #export-format [data-testid="block-info"] { display: none; }
  #chatbot { height: %(pane)s !important; }
  #composer {
    position: sticky; bottom: 0; z-index: 10; gap: var(--size-2); padding-bottom: var(--size-2);
    background: var(--background-fill-primary);
  }
  #chat-layout button, #sidebar label { min-height: 44px; }
  #message-box button { min-width: 44px; }
  #chatbot .icon-button { min-width: 44px; }
  /* Messages wrap long words and scroll wide code by themselves (Gradio's CSS); titles not. */
  #sidebar label { overflow-wrap: anywhere; min-width: 0; }
}
@media (max-width: %(max)dpx) and (prefers-reduced-motion: reduce) {
  #conversation-list, #chat-layout.list-open #conversation-list { transition: none; }
}
""" % {"max": PHONE_MAX_WIDTH_PX, "pane": PHONE_PANE_HEIGHT}

CSS = """
#sidebar .wrap { flex-direction: column; }
/* The chat pane shows what is stored; a "clear" that only empties the view would mislead. */
#chatbot button[aria-label="Clear"] { display: none; }
#backend-line { font-size: 0.9em; opacity: 0.85; }
/* User messages are escaped plain text (render.user_html): keep their line breaks. */
#chatbot [data-testid="user"] { white-space: pre-wrap; }
""" + ACTIONS_CSS + PHONE_CSS + compare_css(PHONE_MAX_WIDTH_PX)


_SHOWN_STATE = {"up": "up", "down": "down", "unknown": "not checked yet"}


def backend_line(service: ChatService) -> str:
    """The page's top line: the default model and where it runs; with several LLM servers,
    each server (masked) with its state and models, as last seen (servers_line)."""
    b = service.backend
    model = service.llm.current_model_id() or b.get("model") or "unknown model"
    # (getattr: stand-ins for the service in tests have no registry.)
    servers = getattr(service, "servers", None)
    states = servers.known_servers() if servers is not None else []
    if len(states) > 1:
        return f"**Model:** `{model}` (default) · " + servers_line(states)
    if b.get("kind") == "local":
        where = "local llama.cpp server on this machine's CPU, started by the app"
    else:
        # Every visitor sees this line: never the password of VLLM_BASE_URL.
        where = f"vLLM / OpenAI-compatible server at {mask_url(str(b.get('base_url')))}"
    return f"**Model:** `{model}` · {where}"


def servers_line(states: list[dict[str, Any]]) -> str:
    """Each server as "url (up): `model`, ..." (the URL is masked by llm/servers.py)."""
    parts = []
    for state in states:
        models = ", ".join(f"`{m}`" for m in state["models"]) or "no models listed"
        parts.append(f"{state['server']} ({_SHOWN_STATE.get(state['state'], state['state'])}):"
                     f" {models}")
    return "**Servers:** " + " · ".join(parts)


async def fresh_backend_line(service: ChatService) -> str:
    """The top line after looking at the servers again (when last seen over 30 s ago)."""
    servers = getattr(service, "servers", None)
    if servers is not None:
        await servers.refresh()
    return backend_line(service)


def build_ui(service: ChatService, share_mode: bool = False) -> gr.Blocks:
    # delete_cache: Gradio keeps a copy of every exported file it served; drop them hourly.
    with gr.Blocks(title="Durable chat", fill_height=True, analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:
        with gr.Row(elem_id="page-header"):
            gr.Markdown("## Durable chat")
            header = gr.Markdown(backend_line(service), elem_id="backend-line")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat") as chat_tab:
                chat = ChatTab(service, share_mode)
            with gr.Tab("Compare", id="compare") as compare_tab:
                build_compare_tab(service, compare_tab, share_mode)
            with gr.Tab("Workflows", id="workflows") as workflows_tab:
                timer = build_workflows_tab(service, workflows_tab)
            with gr.Tab("Account", id="account") as account_tab:
                account = build_account_tab(service, chat.conversation)
        account.show_on(account_tab.select, api_name="tab_account")
        for tab in (chat_tab, compare_tab):  # the Workflows table refreshes while shown only
            tab.select(lambda: gr.Timer(active=False), outputs=[timer], queue=False,
                       api_visibility="private")
        # Back from the Workflows tab: show what a fork, cancel or resume changed.
        chat.show_on(chat_tab.select, api_name="tab_chat", api_visibility="private")
        chat.show_on(demo.load, api_name="load_chat")
        async def top_line() -> str:
            return await fresh_backend_line(service)

        demo.load(top_line, outputs=[header], api_visibility="private")
    return demo
