"""The head start under a cap of one request at the LLM (LLM_MAX_CONCURRENCY=1): a head start
waiting in the gate for its place. Its own module: the app under test binds the turn
workflows' dependencies for the whole process, so it must not share a module with another
in-process app."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from chat_core.turns import workflow
from tests.helpers import InProcessApp, base_env, wait_until
from tests.test_head_start import Stream, conversation

pytestmark = pytest.mark.slow  # the real app on PostgreSQL


@pytest.fixture(scope="module")
def capped_app(database_url: str, llm: EmulatedLLM, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[InProcessApp]:
    """One request at the LLM at a time: a head start can wait in the gate."""
    tmp: Path = tmp_path_factory.mktemp("head-capped")
    server = InProcessApp(base_env(database_url, llm.base_url, tmp, TURN_HEAD_START="1",
                                   LLM_MAX_CONCURRENCY="1")).start()
    yield server
    server.stop()


def test_stopped_while_its_head_start_waits_for_the_llm_it_never_asks(
        capped_app: InProcessApp, llm: EmulatedLLM) -> None:
    """B's head start waits behind A for the one place at the LLM; B's step adopts it, then
    B is stopped. When A's place frees, the next turn (C) gets it: B asks nothing."""
    llm.script({"action": "hang"})
    a = Stream(capped_app, conversation(capped_app), "A")
    wait_until(lambda: len(llm.requests) == 1, timeout=20)
    b = Stream(capped_app, conversation(capped_app), "B")
    heads = workflow._d().head_starts
    assert heads is not None
    wait_until(lambda: b.events and len(heads) == 0, timeout=20)  # both taken by their steps
    turn_b = b.events[0][1]["turn_id"]
    assert httpx.post(f"{capped_app.url}/api/turns/{turn_b}/stop", timeout=10).status_code == 200
    b.thread.join(30)
    assert b.names()[-1] == "done"
    llm.release()
    a.thread.join(30)
    c = Stream(capped_app, conversation(capped_app), "C")
    c.thread.join(30)
    assert c.text().startswith("Reply to [C]")
    assert [r["messages"][-1]["content"] for r in llm.requests] == ["A", "C"]


