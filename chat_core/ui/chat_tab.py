"""The Chat tab: conversation sidebar with search, the streaming chat pane, and the actions a
conversation offers (stop, retry, regenerate, continue, alternatives, edit, rename, delete,
settings, export, import). Handlers only call ChatService."""

from __future__ import annotations

import atexit
import html
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import gradio as gr

from chat_core.data.conversation_export import MAX_IMPORT_BYTES
from chat_core.errors import ChatError, ShuttingDown
from chat_core.web.gradio_guard import is_uploaded_file
from chat_core.service import ChatService
from chat_core.turns.progress import Snapshot
from chat_core.ui.render import conversation_view, reply_markdown, safe_markdown, user_html

CONVERSATION_KEY = "durable-chat-conversation"
# A streaming reply updates the page at most this often: 10 updates a second read as smooth
# streaming. Each update costs Gradio a few milliseconds of CPU (it re-sends the chat's
# messages), so with many streams at once the interval grows to keep the whole process under
# UI_MAX_UPDATES_PER_SEC; the first words and the final text are never delayed.
UI_UPDATE_SEC = 0.1
UI_MAX_UPDATES_PER_SEC = 150
# A streamed reply is redrawn at most once per this many times its last render's duration.
RENDER_BUDGET_FACTOR = 10
# Turns a conversation shows when opened; the whole history stays in the database and the API.
SHOWN_TURNS = 100

_streams = [0]  # replies being streamed to pages by this process


def _warn(exc: ChatError) -> str:
    return f"⚠️ {safe_markdown(exc.message)}"


def build_chat_tab(service: ChatService, share_mode: bool) -> dict[str, Any]:
    limit = service.settings.max_message_chars
    # The open conversation survives reloads and app restarts in the browser's localStorage.
    # BrowserState encrypts with a per-launch random key unless given one, which would forget
    # it on restart; the value is only a conversation id, checked on the server, so a fixed key
    # is enough.
    conversation = gr.BrowserState(None, storage_key=CONVERSATION_KEY,
                                   secret="durable-chat/open-conversation")
    turn = gr.State(None)   # the turn being streamed, for Stop
    view = gr.State({})     # what the pane shows: message ids, the last turn's alternatives
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=240):
            new_chat = gr.Button("+ New chat", variant="primary", elem_id="new-chat")
            search = gr.Textbox(placeholder="Search messages, then Enter", show_label=False,
                                elem_id="search", max_length=200)
            conversations = gr.Radio(choices=[], label="Conversations", elem_id="sidebar",
                                     interactive=True)
            with gr.Row():
                upload = gr.UploadButton("Import JSON", file_types=[".json"], size="sm",
                                         elem_id="import")
        with gr.Column(scale=4):
            with gr.Row(equal_height=True):
                title = gr.Textbox(label="Title (Enter to rename)", elem_id="title", scale=4,
                                   max_length=200, interactive=True)
                export_format = gr.Dropdown(["json", "markdown"], value="json", label="Export",
                                            scale=1, min_width=110, elem_id="export-format")
                export = gr.Button("Export", size="sm", scale=0, min_width=80,
                                   elem_id="export")
                delete = gr.Button("Delete", variant="stop", size="sm", scale=0,
                                   min_width=80, elem_id="delete")
            with gr.Row(visible=False, elem_id="confirm-delete") as confirm_row:
                gr.Markdown("**Delete this conversation and all its messages?** A reply being "
                            "generated is cancelled first.")
                confirm = gr.Button("Delete for good", variant="stop", size="sm",
                                    elem_id="confirm-delete-yes")
                keep = gr.Button("Keep it", size="sm", elem_id="confirm-delete-no")
            exported = gr.File(label="Exported file", visible=False, elem_id="exported")
            # Messages arrive as sanitized HTML (ui_render.py): no second Markdown pass, and
            # no LaTeX (KaTeX can be made to fetch).
            chatbot = gr.Chatbot(label="Conversation", height=520, elem_id="chatbot",
                                 autoscroll=True, sanitize_html=True,
                                 # Gradio's copy buttons copy a message's value, which is
                                 # HTML here: select the text to copy it instead.
                                 buttons=[],
                                 render_markdown=False, latex_delimiters=[],
                                 editable="user",
                                 placeholder="Start a conversation: type below and press Enter."
                                 " Shift+Enter adds a line. Edit a message of yours to branch.")
            notice = gr.Markdown("", elem_id="notice")
            box = gr.Textbox(placeholder="Message (Enter sends, Shift+Enter for a new line)",
                             show_label=False, lines=1, max_lines=12, max_length=limit,
                             autofocus=True, elem_id="message-box", submit_btn="Send")
            with gr.Row(elem_id="actions"):
                small: dict[str, Any] = dict(visible=False, size="sm", scale=0, min_width=110)
                stop = gr.Button("■ Stop", variant="stop", elem_id="stop", **small)
                retry = gr.Button("↻ Retry", elem_id="retry", **small)
                regenerate = gr.Button("↻ Regenerate", elem_id="regenerate", **small)
                proceed = gr.Button("→ Continue", elem_id="continue", **small)
                previous = gr.Button("◀", elem_id="alt-prev",
                                     **{**small, "min_width": 44})
                position = gr.Markdown("", visible=False, elem_id="alt-position")
                following = gr.Button("▶", elem_id="alt-next", **{**small, "min_width": 44})
            with gr.Accordion("Settings for this conversation", open=False,
                              elem_id="settings"):
                system_prompt = gr.Textbox(label="System prompt", lines=2, max_lines=8,
                                           max_length=8000, elem_id="system-prompt")
                with gr.Row():
                    temperature = gr.Slider(0, 2, step=0.05, label="Temperature",
                                            elem_id="temperature")
                    top_p = gr.Slider(0.05, 1, step=0.05, label="Top p", elem_id="top-p")
                    max_tokens = gr.Number(label="Max tokens", precision=0, minimum=1,
                                           maximum=32768, elem_id="max-tokens")
                save_settings = gr.Button("Save settings", size="sm", elem_id="save-settings")

    actions = [retry, regenerate, proceed, previous, position, following]
    settings_fields = [system_prompt, temperature, top_p, max_tokens]
    # The settings fields follow the open conversation (also while their panel is open), so
    # that Save never writes one conversation's settings to another.
    outputs = [conversation, conversations, chatbot, notice, box, stop, turn, view, title,
               *actions, *settings_fields]

    # -- helpers -------------------------------------------------------------------------------

    async def sidebar(selected: str | None, first_message: str | None = None) -> Any:
        rows = await service.list_conversations(limit=100)
        # A new conversation gets its title when its first turn saves the message, which may
        # not have happened yet: show the title it will get.
        choices = [(c["title"] or (service.title_for(first_message) if first_message and
                                   c["id"] == selected else "New conversation"), c["id"])
                   for c in rows]
        return gr.update(choices=choices, value=selected if selected in
                         {c["id"] for c in rows} else None)

    def settings_of(conv: dict[str, Any] | None) -> dict[Any, Any]:
        values = service.params_for(conv) if conv is not None else service.default_params()
        return {system_prompt: values["system_prompt"], temperature: values["temperature"],
                top_p: values["top_p"], max_tokens: values["max_tokens"]}

    # Properties sent unchanged cost nothing: chat_core/ui/gradio_skips.py drops them.
    def idle(state: dict[str, Any]) -> dict[Any, Any]:
        """Input enabled, and the actions the newest turn offers."""
        last = state.get("last_reply") or {}
        status = last.get("status")
        alternatives = state.get("alternatives") or []
        many = len(alternatives) > 1
        index = state.get("alt_index", 0)
        return {box: gr.update(interactive=True), stop: gr.update(visible=False), turn: None,
                view: state,
                retry: gr.update(visible=status in ("error", "cancelled")),
                regenerate: gr.update(visible=status in ("complete", "stopped")),
                proceed: gr.update(visible=status == "stopped" or (
                    status == "complete" and last.get("finish_reason") == "length")),
                # Hidden arrows need no other property: none to compare, none to send.
                previous: gr.update(visible=many, **({"interactive": index > 0} if many else {})),
                following: gr.update(visible=many, **(
                    {"interactive": index < len(alternatives) - 1} if many else {})),
                position: gr.update(visible=many, **(
                    {"value": f"{index + 1} / {len(alternatives)}"} if many else {}))}

    def busy(turn_id: str) -> dict[Any, Any]:
        out: dict[Any, Any] = {box: gr.update(value="", interactive=False),
                               stop: gr.update(visible=True), turn: turn_id}
        out.update({action: gr.update(visible=False) for action in actions})
        return out

    async def load_view(conv_id: str) -> tuple[list[dict[str, str]], dict[str, Any], str]:
        messages = await service.list_messages(conv_id, last_turns=SHOWN_TURNS)
        shown, state = conversation_view(messages, share_mode)
        # Send extends what the pane shows from this server-side copy: the Chatbot's value
        # from the browser is never an input (it can name server files; see gradio_guard.py).
        state["shown"] = shown
        earlier = messages[0]["seq"] - 1 if messages else 0
        note = (f"Showing the newest {SHOWN_TURNS} turns; {earlier} earlier turns are in the "
                "history (and the export)." if earlier > 0 else "")
        return shown, state, note

    async def follow(turn_id: str, shown: list[dict[str, str]], conv_id: str
                     ) -> AsyncIterator[dict[Any, Any]]:
        """Stream one reply into the chat pane, then show the turn's actions."""
        _streams[0] += 1
        interval = max(UI_UPDATE_SEC, _streams[0] / UI_MAX_UPDATES_PER_SEC)
        status, finished, reply_id = "error", False, None
        due = 0.0
        try:
            async for snap in service.watch_turn(turn_id, min_interval=interval):
                status, finished, reply_id = snap.status, snap.finished, snap.reply_id
                began = time.monotonic()
                if not finished and began < due:
                    continue
                live = _live(snap, share_mode)
                # A reply slow to render (Markdown built to be costly: 20,000 "[" take
                # 0.4 s) is drawn less often, so that one stream never holds the event loop
                # for more than a tenth of the time; the final text is always drawn.
                due = began + RENDER_BUDGET_FACTOR * (time.monotonic() - began)
                yield {chatbot: shown + [live]}
        except ShuttingDown:
            status = "restarting"
            yield {notice: "⚠️ The app is restarting. Your message and the reply so far are "
                           "saved; the reply finishes when the app is back: reload the page then."}
        except ChatError as exc:
            yield {notice: _warn(exc)}
        finally:
            _streams[0] -= 1
        # The message ids in `view` (which Edit, Continue and the alternatives rely on) must
        # match the entries shown: when they may not line up one to one (past SHOWN_TURNS the
        # oldest turn leaves the pane; another tab added turns; the watch ended early; the
        # reply ended empty and the earlier alternative is shown again), the pane is redrawn
        # from the database. Not otherwise: a redraw costs Gradio a pass over every message.
        final_shown, state, _ = await load_view(conv_id)
        final = idle(state)
        ids = state.get("ids") or []
        if not finished or len(final_shown) != len(shown) + 1 or not ids \
                or ids[-1] != reply_id:
            final[chatbot] = final_shown
        if status == "error":
            final[notice] = ("⚠️ The reply failed; your message is saved. Press Retry to try "
                             "again.")
        yield final

    async def show(conv_id: str | None, note: str = "") -> AsyncIterator[dict[Any, Any]]:
        """Show a conversation; if a reply is being generated, follow it (re-attach)."""
        if conv_id is not None:
            try:
                shown, state, earlier_note = await load_view(conv_id)
                conv = await service.get_conversation(conv_id)
            except ChatError:
                conv_id = None
        if conv_id is None:
            yield {conversation: None, chatbot: [], notice: note, title: "",
                   conversations: await sidebar(None), **idle({}), **settings_of(None)}
            return
        base = {conversation: conv_id, notice: note or earlier_note, title: conv["title"],
                conversations: await sidebar(conv_id), **settings_of(conv)}
        in_flight = await service.in_flight(conv_id)
        if not in_flight:
            yield {**base, chatbot: shown, **idle(state)}
            return
        turn_id = in_flight[-1]["workflow_id"]
        if shown and shown[-1]["role"] == "assistant":
            shown = shown[:-1]
        yield {**base, chatbot: shown, view: state, **busy(turn_id)}
        async for update in follow(turn_id, shown, conv_id):
            yield update

    async def start(conv_id: str, started: Any, shown: list[dict[str, str]], note: str = ""
                    ) -> AsyncIterator[dict[Any, Any]]:
        """A turn just accepted: show it waiting, then stream it."""
        yield {chatbot: shown + [{"role": "assistant", "content": "…"}], notice: note,
               **busy(started.turn_id)}
        async for update in follow(started.turn_id, shown, conv_id):
            yield update

    def without_last_reply(conv_shown: list[dict[str, str]]) -> list[dict[str, str]]:
        return conv_shown[:-1] if conv_shown and conv_shown[-1]["role"] == "assistant" \
            else conv_shown

    # -- handlers ------------------------------------------------------------------------------

    async def on_load(conv_id: str | None) -> AsyncIterator[dict[Any, Any]]:
        async for update in show(conv_id):
            yield update

    async def on_select(conv_id: str | None) -> AsyncIterator[dict[Any, Any]]:
        async for update in show(conv_id):
            yield update

    async def on_new() -> AsyncIterator[dict[Any, Any]]:
        async for update in show(None):
            yield update

    async def on_send(text: str, conv_id: str | None, state: dict[str, Any]
                      ) -> AsyncIterator[dict[Any, Any]]:
        new = conv_id is None
        shown = (state or {}).get("shown") or [] if not new else []
        try:
            if conv_id is None:
                conv_id = (await service.create_conversation())["id"]
            started = await service.start_turn(conv_id, text)
        except ChatError as exc:
            # Nothing is lost: the text stays in the box, the error says what to change. Text
            # that cannot be sent back (not a string, or a lone surrogate, which only a hostile
            # client sends) is left where it is.
            yield {notice: _warn(exc), **({box: text} if _sendable(text) else {})}
            return
        shown = list(shown or []) + [{"role": "user", "content": user_html(text)}]
        if new:  # remember it, list it, title it
            yield {conversation: conv_id, conversations: await sidebar(conv_id, text),
                   title: service.title_for(text)}
        async for update in start(conv_id, started, shown):
            yield update

    async def again(conv_id: str | None, state: dict[str, Any], action: str
                    ) -> AsyncIterator[dict[Any, Any]]:
        """Retry / regenerate / continue the newest turn."""
        if conv_id is None or not state.get("last_user"):
            return
        try:
            if action == "continue":
                started = await service.continue_reply(conv_id, state["last_reply"]["id"])
            else:
                started = await service.retry_turn(conv_id, state["last_user"])
            shown, _, _ = await load_view(conv_id)
        except ChatError as exc:
            yield {notice: _warn(exc)}
            return
        async for update in start(conv_id, started, without_last_reply(shown)):
            yield update

    async def on_retry(conv_id: str | None, state: dict[str, Any]
                       ) -> AsyncIterator[dict[Any, Any]]:
        async for update in again(conv_id, state, "retry"):
            yield update

    async def on_continue(conv_id: str | None, state: dict[str, Any]
                          ) -> AsyncIterator[dict[Any, Any]]:
        async for update in again(conv_id, state, "continue"):
            yield update

    async def browse(conv_id: str | None, state: dict[str, Any], step: int) -> dict[Any, Any]:
        alternatives = state.get("alternatives") or []
        index = state.get("alt_index", 0) + step
        if conv_id is None or not 0 <= index < len(alternatives):
            return {}
        try:
            await service.select_reply(conv_id, alternatives[index])
            shown, new_state, _ = await load_view(conv_id)
        except ChatError as exc:
            return {notice: _warn(exc)}
        return {chatbot: shown, notice: "", **idle(new_state)}

    async def on_previous(conv_id: str | None, state: dict[str, Any]) -> dict[Any, Any]:
        return await browse(conv_id, state, -1)

    async def on_next(conv_id: str | None, state: dict[str, Any]) -> dict[Any, Any]:
        return await browse(conv_id, state, +1)

    async def on_edit(conv_id: str | None, state: dict[str, Any], evt: gr.EditData
                      ) -> AsyncIterator[dict[Any, Any]]:
        """Editing a message of yours branches the conversation there; the original stays."""
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        ids = state.get("ids") or []
        if conv_id is None or not isinstance(index, int) or not 0 <= index < len(ids):
            return
        # The edit box holds the message as shown, HTML-escaped (ui_render.user_html).
        text = html.unescape(evt.value if isinstance(evt.value, str) else _text_of(evt.value))
        try:
            branch, started = await service.edit_message(conv_id, ids[index], text)
            loaded, branch_state, _ = await load_view(branch["id"])
        except ChatError as exc:
            # The original is unchanged: show it again, with the reason.
            async for update in show(conv_id, _warn(exc)):
                yield update
            return
        yield {conversation: branch["id"], title: branch["title"],
               conversations: await sidebar(branch["id"])}
        # The turn may already have saved the edited message (and its reply placeholder):
        # show the turns before it, then the message once.
        turn_rows = {started.user_message_id, started.reply_id}
        shown = [m for m, mid in zip(loaded, branch_state.get("ids") or [])
                 if mid not in turn_rows]
        shown.append({"role": "user", "content": user_html(text)})
        async for update in start(branch["id"], started, shown,
                                  "Edited in a new branch; the original conversation is "
                                  "unchanged."):
            yield update

    async def on_stop(turn_id: str | None) -> None:
        if turn_id:
            await service.stop_turn(turn_id)

    async def on_rename(conv_id: str | None, new_title: str) -> dict[Any, Any]:
        if conv_id is None:
            return {notice: "Send a first message to start the conversation, then rename it."}
        try:
            conv = await service.update_conversation(conv_id, title=new_title)
        except ChatError as exc:
            return {notice: _warn(exc)}
        return {title: conv["title"], notice: "Renamed.", conversations: await sidebar(conv_id)}

    async def on_delete(conv_id: str | None) -> dict[Any, Any]:
        return {confirm_row: gr.update(visible=conv_id is not None)}

    async def on_confirm(conv_id: str | None) -> AsyncIterator[dict[Any, Any]]:
        note = ""
        if conv_id is not None:
            try:
                result = await service.delete_conversation(conv_id)
                note = "Conversation deleted." + (
                    " Its reply in progress was cancelled." if result["cancelled_turns"] else "")
            except ChatError as exc:
                note = _warn(exc)
        yield {confirm_row: gr.update(visible=False)}
        async for update in show(None, note):
            yield update

    async def on_search(query: str | None) -> dict[Any, Any]:
        query = query or ""
        if not query.strip():
            return {conversations: await sidebar(None), notice: ""}
        try:
            hits = await service.search_conversations(query, limit=30)
        except ChatError as exc:
            return {notice: _warn(exc)}
        choices = [(f"{h['title'] or 'Untitled'} — {h['snippet']}", h["id"]) for h in hits]
        return {conversations: gr.update(choices=choices, value=None),
                notice: f"{len(hits)} conversation(s) match “{safe_markdown(query)}”. "
                        "Clear the search box to list them all."}

    async def on_save_settings(conv_id: str | None, prompt: str, temp: float, p: float,
                               tokens: float | None) -> str:
        if conv_id is None:
            return "Send a first message to start the conversation, then set its settings."
        try:
            await service.update_conversation(conv_id, settings={
                "system_prompt": prompt, "temperature": temp, "top_p": p,
                "max_tokens": tokens})
        except ChatError as exc:
            return _warn(exc)
        return "Settings saved: they apply to the next messages of this conversation."

    async def on_export(conv_id: str | None, fmt: str) -> dict[Any, Any]:
        if conv_id is None:
            return {notice: "Open a conversation to export it."}
        try:
            data = await service.export_conversation(conv_id, fmt)
        except ChatError as exc:
            return {notice: _warn(exc)}
        suffix = ".md" if fmt == "markdown" else ".json"
        path = _export_path(f"conversation-{conv_id}{suffix}")
        path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2,
                                                                     ensure_ascii=False))
        return {exported: gr.update(value=str(path), visible=True), notice: ""}

    async def on_import(file: Any) -> AsyncIterator[dict[Any, Any]]:
        path = file if isinstance(file, str) else getattr(file, "name", None)
        try:
            if not path or not is_uploaded_file(str(path)):
                raise ChatError("choose a .json file exported from this app to import it")
            try:
                raw = Path(str(path)).read_bytes()
            except OSError as exc:
                raise ChatError(f"the uploaded file could not be read ({exc.strerror}); "
                                "upload it again") from None
            if len(raw) > MAX_IMPORT_BYTES:
                raise ChatError(f"the file is larger than {MAX_IMPORT_BYTES // 1_000_000} MB")
            try:
                data = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise ChatError(f"the file is not valid JSON ({str(exc)[:120]})") from None
            conv = await service.import_conversation(data)
        except ChatError as exc:
            async for update in show(None, _warn(exc)):
                yield update
            return
        async for update in show(conv["id"], f"Imported as “{safe_markdown(conv['title'])}”."):
            yield update

    # Chat events are not capped by Gradio (concurrency_limit=None): each is an async
    # generator waiting on the service; the LLM client's semaphore is the real cap.
    events: dict[str, Any] = dict(outputs=outputs, concurrency_limit=None)
    box.submit(on_send, inputs=[box, conversation, view], api_name="send", **events)
    conversations.select(on_select, inputs=[conversations], api_name="select", **events)
    new_chat.click(on_new, api_name="new_chat", **events)
    retry.click(on_retry, inputs=[conversation, view], api_name="retry", **events)
    regenerate.click(on_retry, inputs=[conversation, view], api_name="regenerate", **events)
    proceed.click(on_continue, inputs=[conversation, view], api_name="continue", **events)
    previous.click(on_previous, inputs=[conversation, view], api_name="previous",
                   show_progress="hidden", **events)
    following.click(on_next, inputs=[conversation, view], api_name="next",
                    show_progress="hidden", **events)
    chatbot.edit(on_edit, inputs=[conversation, view], api_name="edit", **events)
    stop.click(on_stop, inputs=[turn], api_name="stop", concurrency_limit=None)
    title.submit(on_rename, inputs=[conversation, title], outputs=[title, notice, conversations],
                 api_name="rename")
    delete.click(on_delete, inputs=[conversation], outputs=[confirm_row],
                 api_visibility="private")
    keep.click(lambda: gr.update(visible=False), outputs=[confirm_row],
               api_visibility="private")
    confirm.click(on_confirm, inputs=[conversation], outputs=[*outputs, confirm_row],
                  api_name="delete", concurrency_limit=None)
    search.submit(on_search, inputs=[search], outputs=[conversations, notice],
                  api_name="search")
    # The fields are filled whenever a conversation is shown. Opening the panel does not read
    # them again: that answer could land after the user began typing and overwrite it (seen
    # as a flaky browser test under load).
    save_settings.click(on_save_settings, inputs=[conversation, *settings_fields],
                        outputs=[notice], api_name="save_settings")
    export.click(on_export, inputs=[conversation, export_format], outputs=[exported, notice],
                 api_name="export")
    upload.upload(on_import, inputs=[upload], api_name="import", **events)
    return {"conversation": conversation, "outputs": outputs, "on_load": on_load}


def _sendable(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_of(value: Any) -> str:
    if isinstance(value, list):
        return "".join(part.get("text", "") for part in value if isinstance(part, dict))
    return str(value or "")


def _live(snap: Snapshot, share_mode: bool) -> dict[str, str]:
    return {"role": "assistant", "content": reply_markdown(
        {"status": snap.status, "content": snap.text, "error": snap.error}, share_mode)}


_EXPORT_KEEP_SEC = 600.0
_export_root: Path | None = None


def _export_path(name: str) -> Path:
    """A fresh path for an exported file. Gradio serves its own copy of it, so ours only has to
    outlive the request: exports older than ten minutes go at the next export, and all of them
    when the process exits, instead of piling up in the temp directory."""
    global _export_root
    if _export_root is None:
        _export_root = Path(tempfile.mkdtemp(prefix="durable-chat-exports-"))
        atexit.register(shutil.rmtree, _export_root, True)
    cutoff = time.time() - _EXPORT_KEEP_SEC
    for old in _export_root.iterdir():
        if old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
    folder = _export_root / uuid.uuid4().hex  # one per export: the file keeps a clean name
    folder.mkdir()
    return folder / name
