"""FAST_IO: the app serves on uvloop and httptools by default, and on the standard library's
loop and h11 with FAST_IO=0, streaming the same turn either way."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from chat_core.web.event_loop import http_protocol, run
from tests.helpers import AppProcess, base_env


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_fast_loop_is_uvloop_and_the_other_asyncio_s() -> None:
    assert run(_loop_module(), fast=True).startswith("uvloop")
    assert run(_loop_module(), fast=False).startswith("asyncio")
    assert (http_protocol(True), http_protocol(False)) == ("httptools", "h11")


def _streamed_reply(url: str) -> tuple[list[str], str, str]:
    with httpx.Client(base_url=url, timeout=30) as http:
        cid = http.post("/api/conversations").json()["id"]
        kinds, deltas, done = [], "", {}
        with http.stream("POST", f"/api/conversations/{cid}/messages?stream=true",
                         json={"content": "over h11"}) as response:
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    kinds.append(event)
                    data = json.loads(line[6:])
                    deltas += data["text"] if event == "delta" else ""
                    done = data if event == "done" else done
    return kinds, deltas, done["assistant_message"]["content"]


@pytest.mark.slow
def test_fast_io_off_streams_a_turn_on_asyncio_and_h11(database_url: str, llm: EmulatedLLM,
                                                       tmp_path: Path) -> None:
    llm.settings.reply_tokens, llm.settings.tpot_ms = 6, 20
    env = base_env(database_url, llm.base_url, tmp_path, FAST_IO="0", LOG_LEVEL="INFO")
    app = AppProcess(env, tmp_path / "app.log").start()
    try:
        kinds, deltas, reply = _streamed_reply(app.url)
    finally:
        app.stop()
    assert kinds[0] == "turn" and kinds[-1] == "done" and kinds.count("delta") >= 2
    assert deltas == reply and reply.startswith("Reply to [over h11]")
    log = (tmp_path / "app.log").read_text()
    assert "serving on asyncio's event loop with the h11 HTTP parser" in log
