"""The Gradio UI: a Chat tab and a Workflows tab.

`build_ui(service)` returns the Blocks, so tests and app.py build the same thing. Handlers only
call ChatService: no SQL and no LLM calls here. Every handler is async, so many users stream at
once without tying up Gradio's thread pool; the load on the LLM server is capped in the LLM
client (LLM_MAX_CONCURRENCY), not here.
"""

from __future__ import annotations

import gradio as gr

from chat_core.secrets_mask import mask_url
from chat_core.service import ChatService
from chat_core.ui.chat import CONVERSATION_KEY, ChatTab
from chat_core.ui.chat.layout import ACTIONS_CSS
from chat_core.ui.workflows_tab import build_workflows_tab

__all__ = ["build_ui", "backend_line", "CSS", "CONVERSATION_KEY"]

CSS = """
#sidebar .wrap { flex-direction: column; }
/* The chat pane shows what is stored; a "clear" that only empties the view would mislead. */
#chatbot button[aria-label="Clear"] { display: none; }
#backend-line { font-size: 0.9em; opacity: 0.85; }
/* User messages are escaped plain text (render.user_html): keep their line breaks. */
#chatbot [data-testid="user"] { white-space: pre-wrap; }
""" + ACTIONS_CSS


def backend_line(service: ChatService) -> str:
    b = service.backend
    model = service.llm.current_model_id() or b.get("model") or "unknown model"
    if b.get("kind") == "local":
        where = "local llama.cpp server on this machine's CPU, started by the app"
    else:
        # Every visitor sees this line: never the password of VLLM_BASE_URL.
        where = f"vLLM / OpenAI-compatible server at {mask_url(str(b.get('base_url')))}"
    return f"**Model:** `{model}` · {where}"


def build_ui(service: ChatService, share_mode: bool = False) -> gr.Blocks:
    # delete_cache: Gradio keeps a copy of every exported file it served; drop them hourly.
    with gr.Blocks(title="Durable chat", fill_height=True, analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:
        with gr.Row():
            gr.Markdown("## Durable chat")
            header = gr.Markdown(backend_line(service), elem_id="backend-line")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat") as chat_tab:
                chat = ChatTab(service, share_mode)
            with gr.Tab("Workflows", id="workflows") as workflows_tab:
                timer = build_workflows_tab(service, workflows_tab)
        chat_tab.select(lambda: gr.Timer(active=False), outputs=[timer], queue=False,
                        api_visibility="private")
        # Back from the Workflows tab: show what a fork, cancel or resume changed.
        chat.show_on(chat_tab.select, api_name="tab_chat", api_visibility="private")
        chat.show_on(demo.load, api_name="load_chat")
        demo.load(lambda: backend_line(service), outputs=[header], api_visibility="private")
    return demo
