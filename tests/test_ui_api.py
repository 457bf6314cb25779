"""The Gradio app through gradio_client against the launched app: create, send with streaming,
list, select, stop, and the Workflows tab's table and steps."""

from __future__ import annotations

import html
import re
import time
from typing import Any, Iterator

import pytest
from gradio_client import Client

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import InProcessApp, close_soon, in_flight_reply, query, wait_until

pytestmark = pytest.mark.slow  # the real app through the Gradio client


@pytest.fixture()
def client(app: InProcessApp) -> Iterator[Client]:
    c = Client(app.url, verbose=False)
    yield c
    close_soon(c)


def _texts(chatbot: list[dict[str, Any]]) -> list[str]:
    """What the pane reads as: messages arrive as sanitized HTML (ui_render.py); a finished
    reply's line of facts (its model, its speed) is left out, and checked in _facts."""
    out = []
    for m in chatbot:
        content = m["content"]
        if isinstance(content, list):  # Gradio 6 gives content as blocks
            content = "".join(block.get("text", "") for block in content)
        content = re.sub(r'<p class="reply-facts">.*?</p>', "", content, flags=re.S)
        out.append(html.unescape(re.sub(r"<[^>]*>", "", content)).strip())
    return out


def _facts(chatbot: list[dict[str, Any]]) -> list[str]:
    return [m for m in (re.findall(r'<p class="reply-facts"><small>(.*?)</small></p>',
                                   str(entry["content"])) for entry in chatbot) if m]


def _latest(outputs: list[tuple]) -> tuple:
    """Gradio sends only what changed ({"__type__": "update"} for the rest): fold the
    streamed outputs into the values the page would show."""
    current: list[Any] = [None] * len(outputs[0])
    for output in outputs:
        for i, value in enumerate(output):
            if isinstance(value, dict) and value.get("__type__") == "update":
                if "value" in value:
                    current[i] = value["value"]
            else:
                current[i] = value
    return tuple(current)


def _chatbot_states(outputs: list[tuple]) -> list[list[str]]:
    return [_texts(o[2]) for o in outputs if isinstance(o[2], list)]


def _send(client: Client, text: str, conv: str | None) -> tuple[list[tuple], tuple]:
    job = client.submit(text, conv, api_name="/send")
    outputs = list(job)
    return outputs, _latest(job.outputs())


def test_send_streams_then_lists_and_selects(client: Client, app: InProcessApp,
                                             llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 12
    llm.settings.tpot_ms = 60
    client.predict(api_name="/new_chat")
    _, final = _send(client, "stream this please", None)
    conv, chatbot, notice = final[0], final[2], final[3]
    texts = _texts(chatbot)
    assert texts[0] == "stream this please"
    assert texts[1].startswith("Reply to [stream this please]") and texts[1].endswith("w10")
    assert "emulated-llama-3.1-8b · " in _facts(chatbot)[0][0]  # under the finished reply
    assert notice == ""
    # Streamed: the reply was seen growing through at least two partial states.
    outputs, _ = _send(client, "and again", conv)
    partial = {texts[3] for texts in _chatbot_states(outputs) if len(texts) == 4}
    partial = {p for p in partial if p.startswith("Reply to [and again]") and
               not p.endswith("w10")}
    assert len(partial) >= 2, partial

    # Listed (REST, same store) and selectable.
    with app.client() as http:
        assert conv in [c["id"] for c in http.get("/api/conversations").json()]
    selected = client.predict(conv, api_name="/select")
    assert _texts(selected[2])[::2] == ["stream this please", "and again"]


def test_stop_keeps_the_partial_reply(client: Client, app: InProcessApp,
                                      llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 200
    llm.settings.tpot_ms = 30
    job = client.submit("a long answer please", None, api_name="/send")
    seen = ""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = _chatbot_states(job.outputs())
        if states and len(states[-1]) > 1:
            seen = states[-1][1]
            if " w3" in seen:
                break
        time.sleep(0.05)
    assert " w3" in seen
    client.predict(api_name="/stop")
    wait_until(job.done, timeout=20)
    latest = _latest(job.outputs())
    conv, chatbot = latest[0], latest[2]
    final = _texts(chatbot)[1]
    assert final.endswith("(stopped)")
    assert " w199" not in final
    row = query(app.settings.database_url or "", "SELECT status, content, finish_reason FROM"
                " messages WHERE conversation_id = %s AND role = 'assistant'", (conv,))[0]
    assert row[0] == "stopped" and row[2] == "stopped"
    assert row[1].startswith("Reply to [a long answer please] w0 w1 w2 w3")
    assert len(llm.requests) == 1


def test_workflows_table_shows_the_turn_and_its_steps(client: Client, app: InProcessApp,
                                                      llm: EmulatedLLM) -> None:
    _, final = _send(client, "visible in the workflows tab", None)
    conv = final[0]
    workflow_id = query(app.settings.database_url or "", "SELECT workflow_id FROM messages"
                        " WHERE conversation_id = %s AND role = 'assistant'", (conv,))[0][0]
    table, _ = client.predict("all", "", api_name="/workflows")
    rows = {r[0]: r for r in table["data"]}
    assert workflow_id in rows
    assert rows[workflow_id][1] == "visible in the workflows tab"
    assert rows[workflow_id][2] == "SUCCESS" and rows[workflow_id][3] == "complete"
    steps = client.predict(workflow_id, api_name="/steps")
    assert [r[1] for r in steps["data"]] == ["save_user_message", "read_history", "call_llm",
                                            "save_reply"]
    assert all(r[3] is not None and r[3] >= 0 for r in steps["data"])
    failed, _ = client.predict("ERROR", "", api_name="/workflows")
    assert workflow_id not in {r[0] for r in failed["data"]}


def test_fork_and_cancel_from_the_workflows_tab(client: Client, app: InProcessApp,
                                                llm: EmulatedLLM) -> None:
    _, final = _send(client, "fork me", None)
    conv = final[0]
    db = app.settings.database_url or ""
    original = query(db, "SELECT workflow_id FROM messages WHERE conversation_id = %s"
                     " AND role = 'assistant'", (conv,))[0][0]
    message, _, _ = client.predict(original, 3, "all", "", "", "", "",
                                   api_name="/fork_workflow")
    assert "Forked" in message
    replies = wait_until(lambda: (r := query(
        db, "SELECT status, content FROM messages WHERE conversation_id = %s AND"
        " role = 'assistant' ORDER BY created_at", (conv,))) and len(r) == 2
        and r[1][0] == "complete" and r)
    assert [r[1].startswith("Reply to [fork me]") for r in replies] == [True, True]
    assert len(llm.requests) == 2  # the fork called the LLM again; the user message was kept
    assert query(db, "SELECT count(*) FROM messages WHERE conversation_id = %s AND"
                 " role = 'user'", (conv,))[0][0] == 1

    # Cancel a turn that hangs in the LLM call: it stops, and says so.
    llm.script({"action": "hang", "max_sec": 60})
    job = client.submit("cancel me", conv, api_name="/send")
    wait_until(lambda: len(llm.requests) == 3)
    running = in_flight_reply(db, conv)
    message, _, _ = client.predict(running, 3, "all", api_name="/cancel_workflow")
    assert "now CANCELLED" in message
    wait_until(job.done, timeout=20)
    llm.release()
    assert query(db, "SELECT status FROM messages WHERE workflow_id = %s AND role ="
                 " 'assistant'", (running,))[0][0] == "cancelled"
    bad, _, _ = client.predict("turn-nope", 3, "all", api_name="/cancel_workflow")
    assert "does not exist" in bad


def test_bad_input_is_refused_and_kept(client: Client, llm: EmulatedLLM,
                                       app: InProcessApp) -> None:
    too_long = "x" * (app.settings.max_message_chars + 1)
    for text in ("   ", "a\x00b", too_long):
        _, final = _send(client, text, None)
        notice, box = final[3], final[4]
        assert notice.startswith("⚠️")
        assert box == text  # nothing lost: the text stays in the box
    assert llm.requests == []


def test_cleared_fields_get_a_notice_not_an_error(client: Client, app: InProcessApp) -> None:
    """What a page sends when a box is cleared or no file was chosen: each handler answers
    with a notice (gradio_client raises AppError if the handler raised)."""
    _, final = _send(client, "a turn to fork", None)
    conv = final[0]
    workflow_id = query(app.settings.database_url or "", "SELECT workflow_id FROM messages"
                        " WHERE conversation_id = %s AND role = 'assistant'", (conv,))[0][0]
    before = query(app.settings.database_url or "", "SELECT count(*) FROM messages")
    message, _, _ = client.predict(workflow_id, None, "all", "", "", "", "",  # no step picked
                                   api_name="/fork_workflow")
    assert message.startswith("⚠️") and "step" in message, message
    message, _, _ = client.predict(workflow_id, 3, "all", "warm", "", "", "",
                                   api_name="/fork_workflow")
    assert message.startswith("⚠️") and "temperature" in message
    # A page that just opened (a new session) clears the search box: the full list comes back.
    fresh = Client(app.url, verbose=False)
    try:
        sidebar, notice = fresh.predict(None, api_name="/search")
    finally:
        close_soon(fresh)
    assert conv in [value for _, value in sidebar["choices"]] and notice == ""
    outputs = [client.predict(None, api_name="/import")]  # one answer: it streams nothing
    assert any(isinstance(o[3], str) and "choose a \\.json file" in o[3] for o in outputs), outputs
    assert query(app.settings.database_url or "", "SELECT count(*) FROM messages") == before
