"""The LLM client against a real OpenAI-compatible server: context fitting, outages, a server
killed mid-stream, wrong and changed model names. Every failure is a clear, recorded error and
the user's message stays."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from typing import Iterator

import pytest

from chat_core.testing.emulated_llm import EmulatedLLM, server_token_count
from chat_core.errors import LLMRejected, LLMUnavailable
from chat_core.llm.client import LLMClient
from tests.helpers import InProcessApp, query, wait_until


def _messages(app: InProcessApp, cid: str) -> list[tuple]:
    return query(app.settings.database_url or "", "SELECT role, status, content, error FROM"
                 " messages WHERE conversation_id = %s ORDER BY seq, role DESC, created_at",
                 (cid,))


@pytest.mark.slow  # the real app
@pytest.mark.parametrize("tokenizer", [True, False], ids=["server-tokenizer", "byte-bound"])
def test_long_conversation_is_fitted_to_the_window(app: InProcessApp, llm: EmulatedLLM,
                                                   tokenizer: bool) -> None:
    llm.settings.max_model_len = 2048
    llm.settings.tokenizer = tokenizer
    client = app.service.llm
    client._tokenizer_path = None  # as after a restart of the server
    app.call(client.model_info(refresh=True))  # the server "restarted" with a smaller window
    try:
        with app.client() as http:
            cid = http.post("/api/conversations").json()["id"]
            for n in range(40):
                text = f"turn {n}: {'counted' if tokenizer else 'bounded'} " + "words " * 60
                reply = http.post(f"/api/conversations/{cid}/messages", json={"content": text})
                assert reply.status_code == 200, reply.text
            last_reply = reply.json()["assistant_message"]
        last = llm.requests[-1]
        # The server accepted every request (it rejects one that is too long), and the last
        # one still ends with the newest message while the oldest turns were dropped.
        assert server_token_count(last["messages"]) + last["max_tokens"] <= 2048
        assert last["messages"][-1]["content"].startswith("turn 39:")
        assert not any(m["content"].startswith("turn 0:") for m in last["messages"])
        # Exact counts use the window well; the byte bound keeps less, but never too much.
        assert (3 if tokenizer else 1) <= len(last["messages"]) < 79
        assert last_reply["params"]["exact_token_counts"] is tokenizer
        assert last_reply["params"]["dropped_messages"] > 0
    finally:
        llm.settings.max_model_len = 8192
        client._tokenizer_path = None
        app.call(client.model_info(refresh=True))


@pytest.mark.slow  # the real app
def test_unreachable_server_gives_a_clear_recorded_error(app: InProcessApp,
                                                        llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        llm.stop()
        try:
            failed = http.post(f"/api/conversations/{cid}/messages", json={"content": "anyone?"})
        finally:
            llm.start()
        assert failed.status_code == 502
        error = failed.json()["error"]
        assert "refused the connection" in error and "scripts/start_vllm.sh" in error
        rows = _messages(app, cid)
        assert rows[0][:3] == ("user", "complete", "anyone?")
        assert rows[1][1] == "error" and rows[1][3] == error
        retried = http.post(f"/api/conversations/{cid}/messages/{failed.json()['user_message']['id']}/retry")
        assert retried.status_code == 200


@pytest.mark.slow  # the real app
def test_server_killed_mid_stream(app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 50
    llm.settings.tpot_ms = 50
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        turn = app.call(app.service.start_turn(cid, "interrupted"))
        hub = app.service.hub
        wait_until(lambda: " w2" in getattr(hub.get(turn.turn_id), "text", ""), timeout=10)
        llm.stop()  # the server dies with the stream open, and stays down
        try:
            with pytest.raises(Exception) as failure:
                app.call(app.service.wait_turn(turn))
        finally:
            llm.start()
        assert "refused" in str(failure.value) or "closed" in str(failure.value)
        rows = _messages(app, cid)
        assert rows[0][:3] == ("user", "complete", "interrupted")
        assert rows[1][1] == "error"
        listed = http.get(f"/api/conversations/{cid}/messages").json()
        assert listed[1]["status"] == "error" and listed[1]["error"]


@pytest.mark.slow  # the real app
def test_model_change_on_the_server_is_picked_up(app: InProcessApp, llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        assert http.post(f"/api/conversations/{cid}/messages",
                         json={"content": "before"}).status_code == 200
        llm.settings.model = "another-model-after-restart"
        try:
            reply = http.post(f"/api/conversations/{cid}/messages", json={"content": "after"})
            assert reply.status_code == 200, reply.text
            assert reply.json()["assistant_message"]["model"] == "another-model-after-restart"
        finally:
            llm.settings.model = "emulated-llama-3.1-8b"
            http.post(f"/api/conversations/{cid}/messages", json={"content": "reset"})


def test_configured_model_that_is_not_served(llm: EmulatedLLM) -> None:
    async def run() -> str:
        client = LLMClient(llm.base_url, model="llama-9000")
        try:
            await client.stream_chat([{"role": "user", "content": "hi"}], temperature=0.7,
                                     max_tokens=8, top_p=1, on_delta=_never_stop)
        except LLMRejected as exc:
            return exc.message
        finally:
            await client.close()
        return "no error"

    message = asyncio.run(run())
    assert "'llama-9000' (LLM_MODEL) is not served" in message
    assert llm.settings.model in message  # says what it serves instead


def test_client_errors_are_classified(llm: EmulatedLLM) -> None:
    async def attempt(action: dict) -> Exception:
        llm.script(action)
        client = LLMClient(llm.base_url)
        try:
            await client.stream_chat([{"role": "user", "content": "hi"}], temperature=0.7,
                                     max_tokens=8, top_p=1, on_delta=_never_stop)
        except (LLMRejected, LLMUnavailable) as exc:
            return exc
        finally:
            await client.close()
        raise AssertionError("no error")

    assert isinstance(asyncio.run(attempt({"action": "error", "status": 503})), LLMUnavailable)
    assert isinstance(asyncio.run(attempt({"action": "error", "status": 429})), LLMUnavailable)
    assert isinstance(asyncio.run(attempt({"action": "error", "status": 400})), LLMRejected)
    assert isinstance(asyncio.run(attempt({"action": "drop", "after_tokens": 1})),
                      LLMUnavailable)


def test_hung_server_times_out(llm: EmulatedLLM) -> None:
    async def run() -> LLMUnavailable:
        llm.script({"action": "hang", "max_sec": 30})
        client = LLMClient(llm.base_url, read_timeout_sec=0.5)
        started = time.monotonic()
        try:
            await client.stream_chat([{"role": "user", "content": "hi"}], temperature=0.7,
                                     max_tokens=8, top_p=1, on_delta=_never_stop)
        except LLMUnavailable as exc:
            assert time.monotonic() - started < 5
            return exc
        finally:
            await client.close()
            llm.release()
        raise AssertionError("no timeout")

    assert "timeout" in asyncio.run(run()).message


@contextlib.contextmanager
def _log_lines() -> Iterator[io.StringIO]:
    """What the app and DBOS log meanwhile (DBOS's logger does not propagate to the root), as
    an operator's console shows it, tracebacks included."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(), logging.getLogger("dbos")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield out
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@pytest.mark.slow  # the real app
@pytest.mark.parametrize("failure,words", [
    ({"action": "error", "status": 503}, "answered 503"),
    ({"action": "drop", "after_tokens": 1}, "closed the connection in the middle of the reply"),
], ids=["503", "stream-cut"])
def test_each_failed_llm_attempt_logs_one_line(app: InProcessApp, llm: EmulatedLLM,
                                               failure: dict, words: str) -> None:
    llm.script(failure, failure)
    with app.client() as http, _log_lines() as log:
        cid = http.post("/api/conversations").json()["id"]
        sent = http.post(f"/api/conversations/{cid}/messages", json={"content": "flaky"})
    assert sent.status_code == 200, sent.text
    turn = sent.json()["assistant_message"]["workflow_id"]
    output = log.getvalue()
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    # LLM_MAX_ATTEMPTS=3, LLM_RETRY_INTERVAL_SEC=0.2, LLM_RETRY_BACKOFF=1.5 (tests/helpers.py)
    assert len(lines) == 2, output
    for line, attempt, wait in zip(lines, (1, 2), ("0.2", "0.3")):
        assert line.startswith(f"WARNING dbos: turn {turn}: LLM attempt {attempt}/3 failed: "
                               f"vLLM server at {llm.base_url} "), line
        assert words in line and line.endswith(f"; retrying in {wait} s"), line


@pytest.mark.slow  # the real app
def test_a_turn_that_gives_up_logs_one_line_more(app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.script(*[{"action": "error", "status": 503}] * 3)
    with app.client() as http, _log_lines() as log:
        cid = http.post("/api/conversations").json()["id"]
        sent = http.post(f"/api/conversations/{cid}/messages", json={"content": "down"})
    assert sent.status_code == 502, sent.text
    output = log.getvalue()
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 3, output
    assert "LLM attempt 1/3 failed" in lines[0] and "LLM attempt 2/3 failed" in lines[1]
    assert " failed: vLLM server at " in lines[2] and "gave up after 3 attempts" in lines[2]


async def _never_stop(delta: str) -> bool:
    return False
