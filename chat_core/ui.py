"""The Gradio UI. It only calls ChatService: no SQL, no LLM calls here."""

from __future__ import annotations

from typing import Any, AsyncIterator

import gradio as gr

from .errors import ChatError
from .service import ChatService


def build_ui(service: ChatService) -> gr.Blocks:
    backend = service.backend
    with gr.Blocks(title="Durable chat") as demo:
        gr.Markdown(f"### Durable chat\nModel: `{backend.get('model', '?')}` "
                    f"({backend.get('kind', '?')} backend)")
        conversation = gr.State(None)
        chatbot = gr.Chatbot(label="Conversation")
        box = gr.Textbox(placeholder="Type a message and press Enter", show_label=False)

        async def send(text: str, conv: str | None, history: list[dict[str, Any]]
                       ) -> AsyncIterator[tuple[Any, ...]]:
            try:
                if conv is None:
                    conv = (await service.create_conversation())["id"]
                turn = await service.start_turn(conv, text)
            except ChatError as exc:
                raise gr.Error(exc.message) from None
            history = history + [{"role": "user", "content": text},
                                 {"role": "assistant", "content": ""}]
            yield "", conv, history
            async for snap in service.watch_turn(turn.turn_id):
                history[-1] = {"role": "assistant",
                               "content": snap.text or (snap.error or "")}
                yield "", conv, history

        box.submit(send, [box, conversation, chatbot], [box, conversation, chatbot],
                   api_name="send")
    return demo
