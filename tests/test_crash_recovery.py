"""Crash recovery for real: app.py as a subprocess, killed with -9 during the LLM call and at
each step boundary, then started again. The tables must hold the user message once and exactly
one reply that answers it.

One app process serves the module: each test kills or stops it as its scenario says and starts
it again, and the next test goes on with the process that restart left running (a start costs
5-10 s; before, each test started one of its own first). Every test still sees its own kill and
its own recovery, on conversations of its own."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from gradio_client import Client

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import AppProcess, base_env, close_soon, query, wait_until

pytestmark = pytest.mark.slow  # app processes killed and restarted


def _turn_rows(url: str, cid: str) -> list[tuple]:
    return query(url, "SELECT role, content, status FROM messages WHERE conversation_id = %s"
                 " ORDER BY seq, role DESC, created_at", (cid,))


def _finished(url: str, cid: str) -> list[tuple] | None:
    rows = _turn_rows(url, cid)
    if rows and all(r[2] not in ("pending", "streaming") for r in rows):
        return rows
    return None


def _unfinished_workflows(url: str) -> int:
    return query(url, "SELECT count(*) FROM dbos.workflow_status WHERE status IN"
                 " ('PENDING', 'ENQUEUED')")[0][0]


def _turn_of(url: str, cid: str) -> str:
    return query(url, "SELECT workflow_id FROM messages WHERE conversation_id = %s AND role ="
                 " 'assistant'", (cid,))[0][0]


def _assert_one_answered_turn(url: str, cid: str, text: str) -> None:
    wait_until(lambda: _unfinished_workflows(url) == 0, timeout=60)
    rows = _finished(url, cid)
    assert rows is not None, _turn_rows(url, cid)
    assert len(rows) == 2, rows
    (role_u, content_u, _), (role_a, content_a, status_a) = rows
    assert (role_u, content_u) == ("user", text)
    assert role_a == "assistant" and status_a == "complete"
    assert content_a.startswith(f"Reply to [{text}]")


def _send_in_background(url: str, cid: str, text: str, key: str) -> threading.Thread:
    def post() -> None:
        try:
            httpx.post(f"{url}/api/conversations/{cid}/messages", json={"content": text},
                       headers={"Idempotency-Key": key}, timeout=60)
        except httpx.HTTPError:
            pass  # the app dies under this request

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def shared_app(database_url: str, llm: EmulatedLLM,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    tmp = tmp_path_factory.mktemp("crash")
    env = base_env(database_url, llm.base_url, tmp, CHAT_FAULT_FILE=str(tmp / "fault"),
                   EXECUTOR_ID="crash-test")
    app = AppProcess(env, tmp / "app.log")
    yield app
    app.stop()


@pytest.fixture()
def app(shared_app: AppProcess) -> AppProcess:
    """The module's app process (here `app` is not conftest's in-process app), running:
    started if this is the first test or an earlier one failed before its restart. No turn is
    left in flight by the test before (each waits for its own to finish), and no crash point
    is armed."""
    Path(shared_app.env["CHAT_FAULT_FILE"]).unlink(missing_ok=True)
    if shared_app.proc is None or shared_app.proc.poll() is not None:
        shared_app.start()
    return shared_app


def _log_since(app: AppProcess, offset: int) -> str:
    """What the app logged from `offset` (a size of its log file) on: this test's part."""
    return app.log_path.read_bytes()[offset:].decode(errors="replace")


def test_kill_9_while_the_llm_is_generating(app: AppProcess, llm: EmulatedLLM,
                                            database_url: str) -> None:
    cid = httpx.post(f"{app.url}/api/conversations").json()["id"]
    llm.script({"action": "hang"})
    sender = _send_in_background(app.url, cid, "survive the crash", "k1")
    wait_until(lambda: len(llm.requests) == 1)
    assert _turn_rows(database_url, cid)[0][:2] == ("user", "survive the crash")
    app.kill9()
    sender.join(10)
    llm.release()
    app.start()  # recovers the turn by itself
    _assert_one_answered_turn(database_url, cid, "survive the crash")
    # The client retries its request after the crash: the same turn comes back.
    again = httpx.post(f"{app.url}/api/conversations/{cid}/messages",
                       json={"content": "survive the crash"},
                       headers={"Idempotency-Key": "k1"}, timeout=30)
    assert again.status_code == 200
    assert again.json()["assistant_message"]["content"].startswith(
        "Reply to [survive the crash]")
    _assert_one_answered_turn(database_url, cid, "survive the crash")
    assert llm.user_messages_seen() == ["survive the crash"] * 2  # hung call, then re-run


@pytest.mark.parametrize("point,llm_calls", [
    ("save_user_message:committed", 1),
    ("read_history:done", 1),
    ("call_llm:streaming", 2),
    ("save_reply:committed", 1),
])
def test_kill_9_at_each_step_boundary(app: AppProcess, llm: EmulatedLLM, database_url: str,
                                      point: str, llm_calls: int) -> None:
    llm.settings.reply_tokens = 6
    llm.settings.tpot_ms = 10
    cid = httpx.post(f"{app.url}/api/conversations").json()["id"]
    Path(app.env["CHAT_FAULT_FILE"]).write_text(point)
    text = f"crash at {point}"
    key = str(uuid.uuid4())
    sender = _send_in_background(app.url, cid, text, key)
    assert app.wait_exit(30) == 137, app.log()
    sender.join(10)
    app.start()
    _assert_one_answered_turn(database_url, cid, text)
    assert llm.user_messages_seen() == [text] * llm_calls
    again = httpx.post(f"{app.url}/api/conversations/{cid}/messages", json={"content": text},
                       headers={"Idempotency-Key": key}, timeout=30)
    assert again.status_code == 200, again.text
    _assert_one_answered_turn(database_url, cid, text)


def test_sigterm_stops_cleanly_and_the_turn_resumes(app: AppProcess, llm: EmulatedLLM,
                                                    database_url: str) -> None:
    logged_before = app.log_path.stat().st_size
    cid = httpx.post(f"{app.url}/api/conversations").json()["id"]
    llm.settings.reply_tokens = 30
    llm.script({"action": "slow", "tpot_ms": 2000})  # still generating when it stops
    answers: list[httpx.Response] = []

    def wait_for_reply() -> None:
        answers.append(httpx.post(f"{app.url}/api/conversations/{cid}/messages",
                                  json={"content": "graceful"},
                                  headers={"Idempotency-Key": "k2"}, timeout=60))

    waiting = threading.Thread(target=wait_for_reply, daemon=True)
    waiting.start()
    wait_until(lambda: len(llm.requests) == 1)
    with httpx.stream("GET", f"{app.url}/api/turns/{_turn_of(database_url, cid)}/events",
                      timeout=60) as events:
        lines = events.iter_lines()
        assert next(lines).startswith("event: ")  # attached before the stop
        assert app.stop() == 0, app.log()
        tail = list(lines)
    waiting.join(10)
    # Both clients were answered, not cut off: what happened, and how to get the reply.
    assert len(answers) == 1 and answers[0].status_code == 503, \
        answers[0].text if answers else app.log()
    body = answers[0].json()
    assert body["code"] == "shutting_down" and body["turn_id"].startswith("turn-")
    assert "Idempotency-Key" in body["error"]
    assert "event: error" in tail and any("shutting_down" in line for line in tail), tail
    log = _log_since(app, logged_before)  # this process's stop, not the kills before it
    assert "resume when the app starts again" in log
    assert "Traceback" not in log, log
    app.start()
    _assert_one_answered_turn(database_url, cid, "graceful")
    again = httpx.post(f"{app.url}/api/conversations/{cid}/messages",
                       json={"content": "graceful"}, headers={"Idempotency-Key": "k2"},
                       timeout=30)
    assert again.status_code == 200 and again.json()["assistant_message"]["status"] == \
        "complete", again.text


def test_the_chat_tab_says_when_the_app_stops_under_a_streaming_reply(
        app: AppProcess, llm: EmulatedLLM, database_url: str) -> None:
    llm.settings.reply_tokens = 200
    llm.settings.tpot_ms = 50
    client = Client(app.url, verbose=False)
    job = client.submit("still streaming at shutdown", None, api_name="/send")

    def streaming() -> bool:
        shown = [o[2] for o in job.outputs() if isinstance(o[2], list) and len(o[2]) > 1]
        return bool(shown) and " w3" in _text(shown[-1][1])

    wait_until(streaming, timeout=30)
    assert app.stop() == 0, app.log()
    wait_until(job.done, timeout=10)
    notices = [o[3] for o in job.outputs() if isinstance(o[3], str)]
    assert any("The app is restarting" in n and "saved" in n for n in notices), notices
    close_soon(client)
    # The next process streams the whole reply again: as long, but not as slow (the stop
    # above needed a slow reply; the finish does not, and 200 tokens at 50 ms took 10 s).
    llm.settings.tpot_ms = 2
    app.start()  # and the reply is finished by the next process
    wait_until(lambda: _unfinished_workflows(database_url) == 0, timeout=60)
    row = query(database_url, "SELECT status, content FROM messages WHERE role = 'assistant'"
                " AND content LIKE 'Reply to [still streaming at shutdown]%%'")
    assert row and row[0][0] == "complete" and row[0][1].endswith(" w198"), row


def _text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, list):  # Gradio 6 gives content as blocks
        content = "".join(block.get("text", "") for block in content)
    return str(content)
