"""A new turn's workflow start waits for its head start's request (turns/turn_start.py), and a
process that begins to stop meanwhile records nothing: the person is told to send again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chat_core.errors import ShuttingDown
from chat_core.turns import turn_start
from chat_core.turns.head_start import HeadStart
from chat_core.turns.progress import TurnHub


def test_a_process_stopping_while_the_request_goes_starts_no_workflow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []

    async def start_workflow(turn_id: str, request: Any) -> Any:
        started.append(turn_id)

    monkeypatch.setattr(turn_start, "_start_workflow", start_workflow)

    async def scenario() -> None:
        hub = TurnHub()
        head = HeadStart("t1", hub.track("t1", "r1"))
        start = asyncio.ensure_future(turn_start._start_after(hub, "t1", {}, head))
        await asyncio.sleep(0.01)
        assert not start.done()  # waiting for the request to be on its way
        hub.close()
        head.sent.set()
        with pytest.raises(ShuttingDown, match="send the request again"):
            await start
        # Without a head start (or with one on its way) the workflow starts.
        other = HeadStart("t2", TurnHub().track("t2", "r2"))
        other.sent.set()
        await turn_start._start_after(TurnHub(), "t2", {}, other)

    asyncio.run(scenario())
    assert started == ["t2"]
