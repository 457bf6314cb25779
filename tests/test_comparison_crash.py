"""A comparison survives kill -9: app.py as a subprocess on two emulated servers, killed while
both sides' replies stream, and killed between starting the two sides' turns; after the
restart both sides hold the prompt once and exactly one finished reply each."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM, EmulatorSettings
from tests.helpers import AppProcess, base_env, query, wait_until

pytestmark = pytest.mark.slow  # app processes killed and restarted


@pytest.fixture(scope="module")
def two_llms() -> Iterator[tuple[EmulatedLLM, EmulatedLLM]]:
    servers = (EmulatedLLM(EmulatorSettings(model="crash-left")),
               EmulatedLLM(EmulatorSettings(model="crash-right")))
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def app(database_url: str, two_llms: tuple[EmulatedLLM, EmulatedLLM],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    tmp = tmp_path_factory.mktemp("comparison-crash")
    urls = ",".join(server.base_url for server in two_llms)
    env = base_env(database_url, urls, tmp, CHAT_FAULT_FILE=str(tmp / "fault"),
                   EXECUTOR_ID="comparison-crash-test")
    process = AppProcess(env, tmp / "app.log")
    process.start()
    yield process
    process.stop()


def _post_in_background(url: str, body: dict, key: str) -> threading.Thread:
    def post() -> None:
        try:
            httpx.post(f"{url}/api/comparisons", json=body, headers={"Idempotency-Key": key},
                       timeout=60)
        except httpx.HTTPError:
            pass  # the app dies under this request

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def _sides(database_url: str, text: str) -> dict[str, list[tuple]]:
    """Each side's rows (role, content, status), for the comparison whose prompt is `text`."""
    rows = query(database_url,
                 "SELECT c.comparison_side, m.role, m.content, m.status FROM comparisons k"
                 " JOIN conversations c ON c.comparison_id = k.id"
                 " JOIN messages m ON m.conversation_id = c.id WHERE k.title = %s"
                 " ORDER BY c.comparison_side, m.seq, m.role DESC", (text,))
    out: dict[str, list[tuple]] = {"a": [], "b": []}
    for side, *row in rows:
        out[side].append(tuple(row))
    return out


def _both_finished_once(database_url: str, text: str) -> bool:
    sides = _sides(database_url, text)
    return all(len(rows) == 2 and rows[1][2] not in ("pending", "streaming")
               for rows in sides.values())


def _assert_both_answered_once(database_url: str, text: str) -> None:
    wait_until(lambda: _both_finished_once(database_url, text), timeout=60)
    for rows in _sides(database_url, text).values():
        assert rows[0] == ("user", text, "complete")
        role, content, status = rows[1]
        assert (role, status) == ("assistant", "complete")
        assert content.startswith(f"Reply to [{text}]")


def _body(text: str) -> dict:
    return {"content": text, "a": {"model": "crash-left"}, "b": {"model": "crash-right"}}


def test_kill_9_while_both_sides_stream(app: AppProcess, database_url: str,
                                        two_llms: tuple[EmulatedLLM, EmulatedLLM]) -> None:
    text = f"survive together {uuid.uuid4().hex[:6]}"
    for server in two_llms:
        server.requests.clear()
        server.script({"action": "hang"})
    sender = _post_in_background(app.url, _body(text), "both-streaming")
    wait_until(lambda: all(len(server.requests) == 1 for server in two_llms))
    app.kill9()
    sender.join(10)
    for server in two_llms:
        server.release()
    app.start()  # recovers both turns by itself
    _assert_both_answered_once(database_url, text)
    for server in two_llms:  # the hung call, then the recovered one
        assert server.user_messages_seen() == [text, text]


def test_kill_9_between_starting_the_two_sides(app: AppProcess, database_url: str,
                                               two_llms: tuple[EmulatedLLM, EmulatedLLM]
                                               ) -> None:
    text = f"half started {uuid.uuid4().hex[:6]}"
    for server in two_llms:
        server.requests.clear()
    Path(app.env["CHAT_FAULT_FILE"]).write_text("comparison_round:one_started")
    sender = _post_in_background(app.url, _body(text), "half-started")
    assert app.wait_exit(30) == 137, app.log()
    sender.join(10)
    app.start()  # the round resumes and starts the side that was missing
    _assert_both_answered_once(database_url, text)
    # Each side asked its own server, once.
    assert [server.user_messages_seen().count(text) for server in two_llms] in ([1, 1], [2, 1])
    # The client sends its request again: the same comparison comes back, nothing twice.
    again = httpx.post(f"{app.url}/api/comparisons", json=_body(text),
                       headers={"Idempotency-Key": "half-started"}, timeout=60)
    assert again.status_code == 200, again.text
    _assert_both_answered_once(database_url, text)
    assert len(query(database_url, "SELECT id FROM comparisons WHERE title = %s", (text,))) == 1
