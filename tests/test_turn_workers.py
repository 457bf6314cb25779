"""TURN_WORKERS: turns run by worker processes through DBOS's queue, their progress relayed to
the web process that serves the people following them (turns/worker_pool.py, relay.py).

The app here checkpoints a streaming reply every 30 s, so what reaches a watcher sooner than
that, and a stop that takes effect sooner, came through the relay, not the database."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from playwright.sync_api import Page

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.browser_support import bot_text, browser, open_app, page, send, watch_reply
from tests.helpers import (AppProcess, base_env, create_database, drop_database, query,
                           wait_until)

pytestmark = pytest.mark.slow  # an app with two worker processes

CAP = 4  # LLM_MAX_CONCURRENCY: the whole app's, whichever worker runs a turn

__all__ = ["browser", "page"]  # fixtures


@pytest.fixture(scope="module")
def workers_app(database_url: str, llm: EmulatedLLM,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    tmp = tmp_path_factory.mktemp("workers")
    app = AppProcess(base_env(database_url, llm.base_url, tmp, TURN_WORKERS="2",
                              STREAM_CHECKPOINT_SEC="30", LLM_MAX_CONCURRENCY=str(CAP)),
                     tmp / "app.log")
    app.start()
    yield app
    app.stop()


def _workers(app: AppProcess) -> dict[str, int]:
    """The app's worker processes: name -> pid."""
    out = subprocess.run(["pgrep", "-a", "-P", str(app.pid)], capture_output=True, text=True)
    found = {}
    for line in out.stdout.splitlines():
        pid, _, cmd = line.partition(" ")
        if "chat_core.turns.worker_main" in cmd:
            found[cmd.split("--name ")[1].split()[0]] = int(pid)
    return found


def _gone(pid: int) -> bool:
    """Ended (a zombie waiting for the test process, a subreaper, to reap it counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def _stream(url: str, text: str, timeout: float = 60) -> Iterator[dict[str, Any]]:
    cid = httpx.post(f"{url}/api/conversations", timeout=10).json()["id"]
    with httpx.stream("POST", f"{url}/api/conversations/{cid}/messages?stream=true",
                      json={"content": text}, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data:"):
                yield json.loads(line[5:])


def _streaming(url: str, text: str) -> tuple[Iterator[dict[str, Any]], str]:
    """A message sent with ?stream=true whose reply has begun: its events, and its turn."""
    events = _stream(url, text)
    turn_id = next(events)["turn_id"]
    next(e for e in events if e.get("text"))
    return events, turn_id


def _executor(database_url: str, turn_id: str) -> str:
    return query(database_url, "SELECT executor_id FROM dbos.workflow_status WHERE"
                 " workflow_uuid = %s", (turn_id,))[0][0]


def test_a_turn_runs_in_a_worker_and_streams_token_by_token(
        workers_app: AppProcess, llm: EmulatedLLM, database_url: str) -> None:
    llm.settings.reply_tokens = 30
    llm.settings.tpot_ms = 40
    events = list(_stream(workers_app.url, "relay me"))
    turn_id = events[0]["turn_id"]
    texts = [e["text"] for e in events if "text" in e]
    final = events[-1]
    assert final["assistant_message"]["status"] == "complete", events[-3:]
    assert final["assistant_message"]["content"].startswith("Reply to [relay me]")
    # Token by token: dozens of pieces in 1.2 s, where the database had no checkpoint yet.
    assert len(texts) >= 15, texts
    assert _executor(database_url, turn_id).endswith(("-w1", "-w2"))
    assert query(database_url, "SELECT count(*) FROM messages WHERE workflow_id = %s",
                 (turn_id,))[0][0] == 2  # the message and its reply, once each


def test_a_repeated_request_gets_the_first_ones_reply(workers_app: AppProcess,
                                                      llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 5
    llm.settings.tpot_ms = 10
    cid = httpx.post(f"{workers_app.url}/api/conversations", timeout=10).json()["id"]

    def send() -> httpx.Response:
        return httpx.post(f"{workers_app.url}/api/conversations/{cid}/messages",
                          json={"content": "once"}, headers={"Idempotency-Key": "k-1"},
                          timeout=30)

    first, again = send(), send()  # the second after the first has finished
    assert first.status_code == again.status_code == 200, again.text
    assert again.json()["assistant_message"] == first.json()["assistant_message"]
    assert llm.user_messages_seen().count("once") == 1


def test_the_chat_tab_streams_reattaches_and_stops_a_workers_turn(
        page: Page, workers_app: AppProcess, llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 250
    llm.settings.tpot_ms = 40  # 10 s, checkpointed only every 30 s
    open_app(page, workers_app.url)
    page.click("#new-chat")
    send(page, "from a worker to the page")
    seen = watch_reply(page, " w10")
    assert len([s for s in seen if s.startswith("Reply to [from a worker to the page]")]) >= 3
    page.reload()
    page.wait_for_selector("#message-box textarea")
    seen = watch_reply(page, " w120")  # followed live again, from the relay
    assert any(" w120" not in s for s in seen), seen
    page.click("#stop")
    wait_until(lambda: "(stopped)" in bot_text(page), timeout=20)
    assert " w249" not in bot_text(page)
    wait_until(lambda: page.locator("#message-box textarea").is_enabled(), timeout=10)


def test_a_burst_is_shared_by_both_workers_and_every_reply_arrives(
        workers_app: AppProcess, llm: EmulatedLLM, database_url: str) -> None:
    llm.settings.reply_tokens = 10
    llm.settings.tpot_ms = 30
    llm.max_active_streams = 0

    def one(i: int) -> tuple[str, str]:
        events = list(_stream(workers_app.url, f"burst {i}"))
        return events[0]["turn_id"], events[-1]["assistant_message"]["content"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert all(text.startswith(f"Reply to [burst {i}]") for i, (_, text) in enumerate(results))
    executors = {_executor(database_url, turn_id)[-3:] for turn_id, _ in results}
    assert executors == {"-w1", "-w2"}
    assert llm.max_active_streams == CAP  # the app's cap, not one per worker


def test_the_health_check_counts_the_running_workers(workers_app: AppProcess) -> None:
    health = httpx.get(f"{workers_app.url}/healthz", timeout=10).json()
    assert health["turn_workers"] == {"running": 2, "configured": 2}


def test_a_relay_connection_lost_mid_reply_still_ends_the_stream(
        workers_app: AppProcess, llm: EmulatedLLM, database_url: str) -> None:
    llm.settings.reply_tokens = 400
    llm.settings.tpot_ms = 40
    events, turn_id = _streaming(workers_app.url, "lose the relay")
    query(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
          " application_name = 'durable-chat-relay'")
    assert httpx.post(f"{workers_app.url}/api/turns/{turn_id}/stop",
                      timeout=10).status_code == 200
    final = [e for e in events][-1]  # the end reaches the page, or the stream would hang
    assert final["assistant_message"]["status"] == "stopped", final


def test_stop_before_any_worker_has_the_turn(workers_app: AppProcess,
                                             llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 400
    llm.settings.tpot_ms = 40
    workers = list(_workers(workers_app).values())
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        events = _stream(workers_app.url, "stop me while queued")
        turn_id = next(events)["turn_id"]
        assert httpx.post(f"{workers_app.url}/api/turns/{turn_id}/stop",
                          timeout=10).status_code == 200
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    final = [e for e in events][-1]
    assert final["assistant_message"]["status"] == "stopped", final
    assert len(final["assistant_message"]["content"].split()) < 60


def test_messages_sent_together_to_one_conversation_answer_in_order(
        workers_app: AppProcess, llm: EmulatedLLM, database_url: str) -> None:
    llm.settings.reply_tokens = 8
    llm.settings.tpot_ms = 30
    cid = httpx.post(f"{workers_app.url}/api/conversations", timeout=10).json()["id"]
    texts = [f"ordered {i}" for i in range(6)]

    def send(text: str) -> httpx.Response:
        return httpx.post(f"{workers_app.url}/api/conversations/{cid}/messages",
                          json={"content": text}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert [r.status_code for r in pool.map(send, texts)] == [200] * 6
    rows = query(database_url, "SELECT m.role, m.content FROM messages m WHERE"
                 " m.conversation_id = %s AND (m.role = 'user' OR m.active)"
                 " ORDER BY m.seq, m.role = 'assistant'", (cid,))
    assert [role for role, _ in rows] == ["user", "assistant"] * 6
    # Each reply answers the message before it, having seen every earlier exchange whole.
    for (_, asked), (_, answer) in zip(rows[::2], rows[1::2]):
        assert answer.startswith(f"Reply to [{asked}]")
    for request in (r for r in llm.requests if "ordered" in str(r["messages"][-1])):
        history = request["messages"][:-1]
        assert [m["role"] for m in history if m["role"] != "system"] == \
            ["user", "assistant"] * (len([m for m in history if m["role"] == "user"]))


def test_stop_reaches_the_worker_at_once(workers_app: AppProcess, llm: EmulatedLLM,
                                         database_url: str) -> None:
    llm.settings.reply_tokens = 400
    llm.settings.tpot_ms = 50  # 20 s for the whole reply
    events, turn_id = _streaming(workers_app.url, "stop me")
    stopped = httpx.post(f"{workers_app.url}/api/turns/{turn_id}/stop", timeout=10)
    assert stopped.status_code == 200, stopped.text
    final = [e for e in events][-1]
    assert final["assistant_message"]["status"] == "stopped", final
    # Stopped by the worker within a few tokens, not at a checkpoint 30 s away.
    words = final["assistant_message"]["content"].split()
    assert 1 <= len(words) < 60, words


def test_a_killed_worker_is_replaced_and_its_turn_finishes_once(
        workers_app: AppProcess, llm: EmulatedLLM, database_url: str) -> None:
    llm.settings.reply_tokens = 40
    llm.settings.tpot_ms = 50
    events, turn_id = _streaming(workers_app.url, "survive a worker crash")
    worker = "worker-" + _executor(database_url, turn_id)[-1]
    before = _workers(workers_app)
    os.kill(before[worker], signal.SIGKILL)
    # The person's stream goes on (from the database, then from the new worker) to the end.
    final = [e for e in events][-1]
    assert final["assistant_message"]["status"] == "complete", final
    assert final["assistant_message"]["content"].startswith("Reply to [survive a worker crash]")
    after = wait_until(lambda: (w := _workers(workers_app)).get(worker) not in
                       (None, before[worker]) and w)
    assert set(after) == {"worker-1", "worker-2"}
    assert query(database_url, "SELECT count(*), min(status) FROM messages WHERE"
                 " workflow_id = %s AND role = 'assistant'", (turn_id,)) == [(1, "complete")]
    assert query(database_url, "SELECT status, recovery_attempts > 1 FROM"
                 " dbos.workflow_status WHERE workflow_uuid = %s",
                 (turn_id,)) == [("SUCCESS", True)]


def test_the_workers_die_with_the_app_and_a_start_without_workers_finishes_their_turns(
        llm: EmulatedLLM, tmp_path: Path) -> None:
    llm.settings.reply_tokens = 40
    llm.settings.tpot_ms = 100
    # A database of its own: the module's app's workers would take any turn enqueued here.
    database_url = create_database()
    app = AppProcess(base_env(database_url, llm.base_url, tmp_path, TURN_WORKERS="1"),
                     tmp_path / "app.log")
    app.start()
    try:
        events, turn_id = _streaming(app.url, "outlive the app")
        worker = _workers(app)["worker-1"]
        app.kill9()
        wait_until(lambda: _gone(worker))
        events.close()
        # Started again without workers: the web process takes the dead worker's turn over.
        app = AppProcess(base_env(database_url, llm.base_url, tmp_path, TURN_WORKERS="0",
                                  EXECUTOR_ID=app.env["EXECUTOR_ID"]), tmp_path / "app.log")
        app.start()
        wait_until(lambda: query(database_url, "SELECT status FROM messages WHERE workflow_id"
                                 " = %s AND role = 'assistant'", (turn_id,)) == [("complete",)],
                   timeout=60)
        assert _executor(database_url, turn_id) == app.env["EXECUTOR_ID"]
    finally:
        app.stop()
        drop_database(database_url)


def test_a_turn_failing_before_its_reply_is_saved_ends_its_stream_and_a_reattach(
        llm: EmulatedLLM, tmp_path: Path) -> None:
    """A turn that waits too long for the one before it fails in its history step, with its
    reply unsaved: the person's stream ends with the error, and so does a re-attach."""
    database_url = create_database()
    app = AppProcess(base_env(database_url, llm.base_url, tmp_path, TURN_WORKERS="1",
                              TURN_ORDER_WAIT_SEC="1", STREAM_CHECKPOINT_SEC="30"),
                     tmp_path / "app.log")
    app.start()
    try:
        llm.settings.reply_tokens = 400
        llm.settings.tpot_ms = 40  # 16 s: the second turn gives up waiting for it
        cid = httpx.post(f"{app.url}/api/conversations", timeout=10).json()["id"]
        url = f"{app.url}/api/conversations/{cid}/messages?stream=true"
        with httpx.stream("POST", url, json={"content": "slow first"}, timeout=60) as one:
            lines = one.iter_lines()
            first = json.loads(next(x for x in lines if x.startswith("data:"))[5:])
            with httpx.stream("POST", url, json={"content": "second"}, timeout=60) as two:
                events = [x for x in two.iter_lines() if x.startswith(("event:", "data:"))]
            second = json.loads(events[1][5:])["turn_id"]
            assert events[-2] == "event: error", events[-4:]
            assert "has not finished after" in events[-1], events[-1]
            again = [x for x in httpx.get(f"{app.url}/api/turns/{second}/events",
                                          timeout=30).text.splitlines() if x]
            assert again[-2] == "event: done", again[-3:]
            assert json.loads(again[-1][5:])["status"] == "error", again[-3:]
            httpx.post(f"{app.url}/api/turns/{first['turn_id']}/stop", timeout=10)
    finally:
        app.stop()
        drop_database(database_url)
