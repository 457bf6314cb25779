"""The Gradio UI: a Chat tab (conversation sidebar, streaming chat pane) and a Workflows tab.

`build_ui(service)` returns the Blocks, so tests and app.py build the same thing. Handlers only
call ChatService: no SQL and no LLM calls here. Every handler is async, so many users stream at
once without tying up Gradio's thread pool; the load on the LLM server is capped in the LLM
client (LLM_MAX_CONCURRENCY), not here.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import gradio as gr
import pandas as pd

from .errors import ChatError
from .service import ChatService
from .turn_progress import Snapshot
from .turn_workflow import STEP_NAMES
from .ui_render import chat_messages, reply_markdown, safe_markdown
from .workflow_admin import WORKFLOW_STATES

CONVERSATION_KEY = "durable-chat-conversation"
# A streaming reply updates the page at most this often: 10 updates a second read as smooth
# streaming. Each update costs Gradio a few milliseconds of CPU (it re-sends the chat's
# messages), so with many streams at once the interval grows to keep the whole process under
# UI_MAX_UPDATES_PER_SEC; the first words and the final text are never delayed.
UI_UPDATE_SEC = 0.1
UI_MAX_UPDATES_PER_SEC = 150
# Turns a conversation shows when opened; the whole history stays in the database and the API.
SHOWN_TURNS = 100
TURN_COLUMNS = ["workflow", "conversation", "status", "reply", "started", "seconds",
                "recoveries", "error"]
STEP_COLUMNS = ["step", "name", "started", "ms", "error"]

CSS = """
#sidebar .wrap { flex-direction: column; }
/* The chat pane shows what is stored; a "clear" that only empties the view would mislead. */
#chatbot button[aria-label="Clear"] { display: none; }
#backend-line { font-size: 0.9em; opacity: 0.85; }
"""


def backend_line(service: ChatService) -> str:
    b = service.backend
    model = service.llm.current_model_id() or b.get("model") or "unknown model"
    if b.get("kind") == "local":
        where = "local llama.cpp server on this machine's CPU, started by the app"
    else:
        where = f"vLLM / OpenAI-compatible server at {b.get('base_url')}"
    return f"**Model:** `{model}` · {where}"


def build_ui(service: ChatService, share_mode: bool = False) -> gr.Blocks:
    limit = service.settings.max_message_chars
    with gr.Blocks(title="Durable chat", fill_height=True) as demo:
        with gr.Row():
            gr.Markdown("## Durable chat")
            header = gr.Markdown(backend_line(service), elem_id="backend-line")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat") as chat_tab:
                chat = _build_chat_tab(service, share_mode, limit)
            with gr.Tab("Workflows", id="workflows") as workflows_tab:
                timer = _build_workflows_tab(service, workflows_tab)
        chat_tab.select(lambda: gr.Timer(active=False), outputs=[timer], queue=False,
                        api_visibility="private")
        demo.load(chat["on_load"], inputs=[chat["conversation"]], outputs=chat["outputs"],
                  api_name="load_chat")
        demo.load(lambda: backend_line(service), outputs=[header], api_visibility="private")
    return demo


# -- chat tab ----------------------------------------------------------------------------------


_streams = [0]  # replies being streamed to pages by this process


def _build_chat_tab(service: ChatService, share_mode: bool, limit: int) -> dict[str, Any]:
    # The open conversation survives reloads and app restarts in the browser's localStorage.
    # BrowserState encrypts with a per-launch random key unless given one, which would forget
    # it on restart; the value is only a conversation id, checked on the server, so a fixed key
    # is enough.
    conversation = gr.BrowserState(None, storage_key=CONVERSATION_KEY,
                                   secret="durable-chat/open-conversation")
    turn = gr.State(None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=220):
            new_chat = gr.Button("+ New chat", variant="primary", elem_id="new-chat")
            conversations = gr.Radio(choices=[], label="Conversations", elem_id="sidebar",
                                     interactive=True)
        with gr.Column(scale=4):
            chatbot = gr.Chatbot(label="Conversation", height=560, elem_id="chatbot",
                                 autoscroll=True, sanitize_html=True, buttons=["copy"],
                                 placeholder="Start a conversation: type below and press Enter."
                                 " Shift+Enter adds a line.")
            notice = gr.Markdown("", elem_id="notice")
            with gr.Row():
                box = gr.Textbox(placeholder="Message (Enter sends, Shift+Enter for a new line)",
                                 show_label=False, lines=1, max_lines=12, max_length=limit,
                                 scale=8, autofocus=True, elem_id="message-box",
                                 submit_btn="Send")
            with gr.Row():
                stop = gr.Button("■ Stop", visible=False, variant="stop", elem_id="stop",
                                 size="sm")
                retry = gr.Button("↻ Retry", visible=False, elem_id="retry", size="sm")

    outputs = [conversation, conversations, chatbot, notice, box, stop, retry, turn]

    async def sidebar(selected: str | None, first_message: str | None = None) -> Any:
        rows = await service.list_conversations(limit=100)
        # A new conversation gets its title when its first turn saves the message, which may
        # not have happened yet: show the title it will get.
        choices = [(c["title"] or (service.title_for(first_message) if first_message and
                                   c["id"] == selected else "New conversation"), c["id"])
                   for c in rows]
        return gr.update(choices=choices, value=selected if selected in
                         {c["id"] for c in rows} else None)

    # Each property update makes Gradio rebuild that component (a few ms of CPU per update), so
    # handlers send only the ones that change.
    def idle(failed: bool, after_busy: bool = False) -> dict[Any, Any]:
        """Input enabled; Retry offered when the newest reply failed or was cancelled."""
        out: dict[Any, Any] = {box: gr.update(interactive=True), stop: gr.update(visible=False),
                               turn: None}
        if failed or not after_busy:  # busy() already hid Retry
            out[retry] = gr.update(visible=failed)
        return out

    def last_failed(messages: list[dict[str, Any]]) -> bool:
        last = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
        return last is not None and last["status"] in ("error", "cancelled")

    def busy(turn_id: str) -> dict[Any, Any]:
        return {box: gr.update(value="", interactive=False), stop: gr.update(visible=True),
                retry: gr.update(visible=False), turn: turn_id}

    async def follow(turn_id: str, shown: list[dict[str, str]], conv_id: str
                     ) -> AsyncIterator[dict[Any, Any]]:
        """Stream one reply into the chat pane; its last snapshot is its stored final state."""
        status = "error"
        _streams[0] += 1
        interval = max(UI_UPDATE_SEC, _streams[0] / UI_MAX_UPDATES_PER_SEC)
        try:
            async for snap in service.watch_turn(turn_id, min_interval=interval):
                status = snap.status
                yield {chatbot: shown + [_live(snap, share_mode)]}
        except ChatError as exc:
            yield {notice: f"⚠️ {safe_markdown(exc.message)}"}
        finally:
            _streams[0] -= 1
        note = ("⚠️ The reply failed; your message is saved. Press Retry to try again."
                if status == "error" else "")
        yield {notice: note, **idle(status in ("error", "cancelled"), after_busy=True)}

    async def show(conv_id: str | None) -> AsyncIterator[dict[Any, Any]]:
        """Show a conversation; if a reply is being generated, follow it (re-attach)."""
        if conv_id is None:
            yield {conversation: None, chatbot: [], notice: "",
                   conversations: await sidebar(None), **idle(False)}
            return
        try:
            messages = await service.list_messages(conv_id, last_turns=SHOWN_TURNS)
        except ChatError:
            yield {conversation: None, chatbot: [], notice: "",
                   conversations: await sidebar(None), **idle(False)}
            return
        shown = chat_messages(messages, share_mode)
        earlier = messages[0]["seq"] - 1 if messages else 0
        note = (f"Showing the newest {SHOWN_TURNS} turns; {earlier} earlier turns are in the "
                "history (REST API: GET /api/conversations/{id}/messages)." if earlier else "")
        in_flight = await service.in_flight(conv_id)
        if not in_flight:
            yield {conversation: conv_id, chatbot: shown, notice: note,
                   conversations: await sidebar(conv_id), **idle(last_failed(messages))}
            return
        turn_id = in_flight[-1]["workflow_id"]
        if shown and shown[-1]["role"] == "assistant":
            shown = shown[:-1]
        yield {conversation: conv_id, chatbot: shown, notice: note,
               conversations: await sidebar(conv_id), **busy(turn_id)}
        async for update in follow(turn_id, shown, conv_id):
            yield update

    async def on_load(conv_id: str | None) -> AsyncIterator[dict[Any, Any]]:
        async for update in show(conv_id):
            yield update

    async def on_select(conv_id: str | None) -> AsyncIterator[dict[Any, Any]]:
        async for update in show(conv_id):
            yield update

    async def on_new() -> AsyncIterator[dict[Any, Any]]:
        async for update in show(None):
            yield update

    async def on_send(text: str, conv_id: str | None, shown: list[dict[str, Any]]
                      ) -> AsyncIterator[dict[Any, Any]]:
        try:
            if conv_id is None:
                conv_id = (await service.create_conversation())["id"]
            started = await service.start_turn(conv_id, text)
        except ChatError as exc:
            # Nothing is lost: the text stays in the box, the error says what to change.
            yield {notice: f"⚠️ {safe_markdown(exc.message)}", box: gr.update(value=text)}
            return
        shown = list(shown or []) + [{"role": "user", "content": safe_markdown(text, share_mode)}]
        first = {conversation: conv_id, chatbot: shown + [{"role": "assistant", "content": "…"}],
                 notice: "", **busy(started.turn_id)}
        if not shown[:-1]:
            first[conversations] = await sidebar(conv_id, text)  # a new conversation: list it
        yield first
        async for update in follow(started.turn_id, shown, conv_id):
            yield update

    async def on_retry(conv_id: str | None) -> AsyncIterator[dict[Any, Any]]:
        if conv_id is None:
            return
        messages = await service.list_messages(conv_id, last_turns=SHOWN_TURNS)
        last_user = next((m for m in reversed(messages) if m["role"] == "user"), None)
        if last_user is None:
            return
        try:
            started = await service.retry_turn(conv_id, last_user["id"])
        except ChatError as exc:
            yield {notice: f"⚠️ {safe_markdown(exc.message)}"}
            return
        shown = chat_messages(messages, share_mode)
        if shown and shown[-1]["role"] == "assistant":
            shown = shown[:-1]
        yield {chatbot: shown + [{"role": "assistant", "content": "…"}], notice: "",
               **busy(started.turn_id)}
        async for update in follow(started.turn_id, shown, conv_id):
            yield update

    async def on_stop(turn_id: str | None) -> None:
        if turn_id:
            await service.stop_turn(turn_id)

    # Chat events are not capped by Gradio (concurrency_limit=None): each is an async
    # generator waiting on the service; the LLM client's semaphore is the real cap.
    events: dict[str, Any] = dict(outputs=outputs, concurrency_limit=None)
    box.submit(on_send, inputs=[box, conversation, chatbot], api_name="send", **events)
    conversations.select(on_select, inputs=[conversations], api_name="select", **events)
    new_chat.click(on_new, api_name="new_chat", **events)
    retry.click(on_retry, inputs=[conversation], api_name="retry", **events)
    stop.click(on_stop, inputs=[turn], api_name="stop", concurrency_limit=None)
    return {"conversation": conversation, "outputs": outputs, "on_load": on_load}


def _clock(stamp: str | None) -> str:
    """"2026-11-25T19:49:52.094Z" -> "2026-11-25 19:49:52" (UTC)."""
    return stamp[:19].replace("T", " ") if stamp else ""


def _seconds(ms: float | None) -> str:
    return "" if ms is None else f"{ms / 1000:.2f}"


def _live(snap: Snapshot, share_mode: bool) -> dict[str, str]:
    return {"role": "assistant", "content": reply_markdown(
        {"status": snap.status, "content": snap.text, "error": snap.error}, share_mode)}


# -- workflows tab -----------------------------------------------------------------------------


def _build_workflows_tab(service: ChatService, tab: gr.Tab) -> gr.Timer:
    gr.Markdown("Every chat turn is a DBOS workflow, checkpointed step by step in PostgreSQL. "
                "The table refreshes every 2 s while this tab is open. Select a row to see its "
                "steps; Cancel stops a running turn, Resume restarts a cancelled one from its "
                "last finished step, Fork runs a turn again from a step as a new branch reply.")
    with gr.Row(equal_height=True):
        status = gr.Dropdown(["all", *WORKFLOW_STATES], value="all", label="Status filter",
                             elem_id="wf-status", scale=1, min_width=160)
        selected = gr.Textbox(label="Selected workflow", elem_id="wf-selected", scale=3,
                              placeholder="select a row below, or paste a workflow id")
        refresh = gr.Button("Refresh", scale=0, min_width=100)
    table = gr.Dataframe(headers=TURN_COLUMNS, interactive=False, wrap=True,
                         elem_id="wf-table", max_height=380,
                         column_widths=["25%", "23%", "10%", "9%", "11%", "8%", "6%", "8%"])
    with gr.Row(equal_height=True):
        cancel = gr.Button("Cancel", variant="stop", elem_id="wf-cancel", scale=1)
        resume = gr.Button("Resume", elem_id="wf-resume", scale=1)
        fork_step = gr.Dropdown([(f"{i}. {name}", i) for i, name in enumerate(STEP_NAMES, 1)],
                                value=3, show_label=False, scale=1, elem_id="wf-fork-step",
                                min_width=160)
        fork = gr.Button("Fork from step", elem_id="wf-fork", scale=1)
    result = gr.Markdown("", elem_id="wf-result")
    steps = gr.Dataframe(headers=STEP_COLUMNS, interactive=False, elem_id="wf-steps",
                         label="Steps of the selected workflow")
    timer = gr.Timer(2.0, active=False)

    async def load_table(state: str) -> pd.DataFrame:
        rows = await service.workflows.list_turns(None if state == "all" else state, limit=100)
        return pd.DataFrame([[r["workflow_id"], r["conversation_title"] or r["conversation_id"],
                              r["status"], r["reply_status"], _clock(r["started_at"]),
                              _seconds(r["duration_ms"]), max(0, (r["recovery_attempts"] or 1) - 1),
                              r["error"] or ""] for r in rows], columns=TURN_COLUMNS)

    async def load_steps(workflow_id: str) -> pd.DataFrame:
        workflow_id = (workflow_id or "").strip()
        if not workflow_id:
            return pd.DataFrame(columns=STEP_COLUMNS)
        try:
            rows = await service.workflows.steps(workflow_id)
        except ChatError:
            return pd.DataFrame(columns=STEP_COLUMNS)
        return pd.DataFrame([[r["step"], r["name"], _clock(r["started_at"]), r["duration_ms"],
                              r["error"] or ""] for r in rows], columns=STEP_COLUMNS)

    async def tick(state: str, workflow_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        return await load_table(state), await load_steps(workflow_id)

    def pick(frame: pd.DataFrame, evt: gr.SelectData) -> str:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return str(frame.iloc[row]["workflow"])

    async def act(action: str, workflow_id: str, step: int, state: str
                  ) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        workflow_id = (workflow_id or "").strip()
        try:
            if action == "cancel":
                info = await service.workflows.cancel(workflow_id)
                message = f"Cancelled `{workflow_id}`: now {info['status']}."
            elif action == "resume":
                info = await service.workflows.resume(workflow_id)
                message = f"Resumed `{workflow_id}`: now {info['status']}."
            else:
                info = await service.workflows.fork(workflow_id, int(step))
                message = (f"Forked `{workflow_id}` from step {step} as `{info['workflow_id']}`;"
                           " its reply is added next to the original.")
        except ChatError as exc:
            message = f"⚠️ {safe_markdown(exc.message)}"
        return message, await load_table(state), await load_steps(workflow_id)

    async def do_cancel(w: str, s: int, st: str) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        return await act("cancel", w, s, st)

    async def do_resume(w: str, s: int, st: str) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        return await act("resume", w, s, st)

    async def do_fork(w: str, s: int, st: str) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        return await act("fork", w, s, st)

    tab.select(lambda: gr.Timer(active=True), outputs=[timer], queue=False,
               api_visibility="private").then(tick, inputs=[status, selected],
                                              outputs=[table, steps], api_name="workflows")
    timer.tick(tick, inputs=[status, selected], outputs=[table, steps], api_name="tick",
               concurrency_limit=None, show_progress="hidden")
    refresh.click(tick, inputs=[status, selected], outputs=[table, steps],
                  api_visibility="private")
    status.change(load_table, inputs=[status], outputs=[table], api_visibility="private")
    table.select(pick, inputs=[table], outputs=[selected], api_visibility="private").then(
        load_steps, inputs=[selected], outputs=[steps], api_visibility="private")
    selected.submit(load_steps, inputs=[selected], outputs=[steps], api_name="steps")
    action_io = dict(inputs=[selected, fork_step, status], outputs=[result, table, steps])
    cancel.click(do_cancel, api_name="cancel_workflow", **action_io)
    resume.click(do_resume, api_name="resume_workflow", **action_io)
    fork.click(do_fork, api_name="fork_workflow", **action_io)
    return timer
