"""A room sending at once: every page's streamed reply starts drawing at once.

A page's reply is streamed by one event on Gradio's queue that runs until the reply ends. Gradio
runs at most `max_threads` events at once (40 by default, whatever an event's
concurrency_limit says): in a burst of 64 pages the other 24 saw no text until a whole reply
had ended (~15 s; docs/performance.md, issue 16). The app's Gradio is mounted by
`chat_core.web.app.mount_ui`, which sizes the queue's workers to what it holds. Here a small
Blocks mounted the same way holds more streams open than Gradio's default allows, and each
must have drawn its first update while none of them has finished."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any, AsyncIterator, Iterator

import gradio as gr
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from chat_core.web.app import QUEUE_POLL_SEC, mount_ui
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.slow  # serves a Blocks and holds 48 streams open (about a second)

GRADIO_DEFAULT_WORKERS = 40
PAGES = GRADIO_DEFAULT_WORKERS + 8


class HeldStreams:
    """A Blocks whose one event streams a first update, then holds until released: a reply
    still being generated. Served by uvicorn on a thread with its own event loop."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.released: asyncio.Event | None = None
        with gr.Blocks() as self.ui:
            box = gr.Textbox()
            pane = gr.Textbox()
            box.submit(self.stream, inputs=[box], outputs=[pane], api_name="stream",
                       concurrency_limit=None)  # as the chat's stream step: uncapped
        app = FastAPI()
        mount_ui(app, self.ui)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True,
                                       name="held-streams")

    async def stream(self, text: str) -> AsyncIterator[str]:
        assert self.released is not None
        yield f"first words for {text}"
        await self.released.wait()
        yield f"the whole reply to {text}"

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.released = asyncio.Event()
        await self.server.serve()

    def start(self) -> "HeldStreams":
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), timeout=30)
        assert self.server.started, "the test's Gradio app did not start"
        return self

    def release(self) -> None:
        if self.loop is not None and self.released is not None:
            self.loop.call_soon_threadsafe(self.released.set)

    def stop(self) -> None:
        self.release()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def held() -> Iterator[HeldStreams]:
    server = HeldStreams().start()
    yield server
    server.stop()


async def page(http: httpx.AsyncClient, fn_index: int, n: int, drawn: list[int],
               first_drawn: asyncio.Event) -> list[str]:
    """One page sending its message: join the queue, then follow the event on the session's
    stream, as the page does; every update drawn, in order."""
    session = uuid.uuid4().hex
    joined = await http.post("/gradio_api/queue/join", json={
        "data": [f"page {n}"], "event_data": None, "fn_index": fn_index, "trigger_id": None,
        "session_hash": session})
    joined.raise_for_status()
    event_id = joined.json()["event_id"]
    updates: list[str] = []
    async with http.stream("GET", "/gradio_api/queue/data",
                           params={"session_hash": session}) as events:
        async for line in events.aiter_lines():
            if not line.startswith("data: "):
                continue
            message: dict[str, Any] = json.loads(line[6:])
            if message.get("event_id") != event_id:
                continue
            if message.get("msg") in ("process_generating", "process_completed"):
                updates.append(message["msg"])
                if len(updates) == 1:
                    drawn.append(n)
                    if len(drawn) == PAGES:
                        first_drawn.set()
            if message.get("msg") == "process_completed":
                return updates
    return updates


def test_more_pages_than_gradios_default_all_see_their_reply_start(held: HeldStreams) -> None:
    async def burst() -> tuple[list[int], list[list[str]]]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{held.port}", timeout=60,
                                     limits=httpx.Limits(max_connections=None)) as http:
            config = (await http.get("/config")).json()
            fn_index = next(d["id"] for d in config["dependencies"]
                            if d.get("api_name") == "stream")
            drawn: list[int] = []
            first_drawn = asyncio.Event()
            pages = [asyncio.create_task(page(http, fn_index, n, drawn, first_drawn))
                     for n in range(PAGES)]
            try:
                # Without the sizing, the pages past Gradio's 40 would wait here for a whole
                # reply of someone else's: they never draw while every reply is held.
                await asyncio.wait_for(first_drawn.wait(), timeout=20)
            except asyncio.TimeoutError:
                pass
            seen_before_any_ended = sorted(drawn)
            held.release()
            return seen_before_any_ended, await asyncio.gather(*pages)

    seen, updates = asyncio.run(burst())
    assert len(seen) == PAGES, (
        f"only {len(seen)} of {PAGES} pages saw their reply start while the replies streamed: "
        "the rest waited for a free worker of Gradio's queue (mount_ui sizes them)")
    assert all(u[-1] == "process_completed" and len(u) >= 2 for u in updates)


def test_an_idle_app_does_not_wake_every_millisecond(held: HeldStreams) -> None:
    """Gradio's queue looked for work every millisecond while it had none: 53 ms of CPU a
    second with nobody there (docs/performance.md). The sleeps the idle served app asks its
    event loop for are all QUEUE_POLL_SEC or longer."""
    loop = held.loop
    assert loop is not None
    delays: list[float] = []
    enough = threading.Event()

    def spy() -> None:
        call_later = loop.call_later

        def recording(delay, callback, *args, **kwargs):  # type: ignore[no-untyped-def]
            if getattr(callback, "__name__", "") == "_set_result_unless_cancelled":
                delays.append(delay)  # an asyncio.sleep
                if len(delays) >= 30:
                    enough.set()
            return call_later(delay, callback, *args, **kwargs)

        loop.call_later = recording  # type: ignore[method-assign]

    loop.call_soon_threadsafe(spy)
    assert enough.wait(30), "the idle app's loop slept fewer than 30 times in 30 s"
    assert min(delays) >= QUEUE_POLL_SEC * 0.99, sorted(delays)[:10]
