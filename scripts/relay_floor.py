"""The relay's floor (issue 16): the CPU a streamed token costs a bare Python relay.

What any server that streams an LLM's reply to a client must do, and nothing more: a pure ASGI
app served by uvicorn on uvloop and httptools (as the app serves), which for each request opens
one streamed chat completion at the LLM server through aiohttp (the app's client), parses each
event with orjson and writes the text to its client as server-sent events, at most one every
WAKE_EVERY_SEC as the app wakes a reply's watchers (text that comes sooner waits for the next
read, or the end). No database, no middleware, no watchers. It runs --turns requests (at least
MIN_TURNS), --concurrency at once, with 2-token and then 402-token replies (the emulator's pacing
set through its /_control, as scripts/bench_burst.py's cost runs set it), and prints one JSON
line: the relay process's CPU per streamed token (the difference of the two runs over 400
tokens) and per request. scripts/bench_burst.py runs it after the app's cost runs, in the same
run, as the bar beside the app's per-token target. --read-only writes nothing but the end: what
reading the LLM's stream costs alone.

    python scripts/relay_floor.py http://127.0.0.1:PORT   # an emulated LLM server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat_core.testing.app_process import free_port  # noqa: E402
from chat_core.turns.progress import WAKE_EVERY_SEC  # noqa: E402

SHORT, LONG = 2, 402
START_TIMEOUT_SEC = 30.0
# The CPU clock read here ticks every 10 ms: the relay costs so little that a run of a few
# turns reads 0 or less per token, so it runs at least this many whatever --turns says.
MIN_TURNS = 64


class Relay:
    """The ASGI app: every HTTP request relays one completion of `model` at `llm_url`."""

    def __init__(self, llm_url: str, model: str, read_only: bool = False) -> None:
        self.url = f"{llm_url}/v1/chat/completions"
        self.write_every = float("inf") if read_only else WAKE_EVERY_SEC
        self.body = orjson.dumps({"model": model, "stream": True, "max_tokens": LONG + 8,
                                  "messages": [{"role": "user", "content": "hello"}]})
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._relay(send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _relay(self, send: Any) -> None:
        assert self.session is not None
        async with self.session.post(self.url, data=self.body,
                                     headers={"content-type": "application/json"}) as response:
            response.raise_for_status()  # a failed upstream fails the run, not a cheap floor
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            rest, pending, written_at = b"", "", 0.0
            async for block in response.content.iter_any():
                *lines, rest = (rest + block).split(b"\n")
                pending += "".join(_texts(lines))
                if pending and time.monotonic() - written_at >= self.write_every:
                    await send(_event(pending))
                    pending, written_at = "", time.monotonic()
        await send({**_event(pending), "more_body": False})


def _event(text: str) -> dict[str, Any]:
    return {"type": "http.response.body", "more_body": True,
            "body": b"data: " + orjson.dumps({"text": text}) + b"\n\n"}


def _texts(lines: list[bytes]) -> list[str]:
    out = []
    for line in lines:
        if line.startswith(b"data: {"):
            choices = orjson.loads(line[6:]).get("choices") or [{}]
            out.append((choices[0].get("delta") or {}).get("content") or "")
    return out


def serve(port: int, llm_url: str, model: str, read_only: bool) -> None:
    import uvicorn
    uvicorn.run(Relay(llm_url, model, read_only), host="127.0.0.1", port=port, loop="uvloop",
                http="httptools", log_level="warning", lifespan="on")


def _started(port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SEC
    while time.monotonic() < deadline and child.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    if child.poll() is not None:
        raise SystemExit(f"the relay exited with code {child.returncode} before it served")
    raise SystemExit(f"the relay on port {port} did not start within {START_TIMEOUT_SEC:.0f} s")


async def _requests(url: str, turns: int, concurrency: int) -> None:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=None)) as c:
        async def one() -> None:
            async with limit, c.stream("POST", url) as response:
                response.raise_for_status()
                async for _ in response.aiter_bytes():
                    pass
        await asyncio.gather(*(one() for _ in range(turns)))


def measure(llm_url: str, turns: int, concurrency: int, tpot_ms: float,
            read_only: bool = False) -> dict[str, float]:
    model = httpx.get(f"{llm_url}/v1/models").raise_for_status().json()["data"][0]["id"]
    turns = max(turns, MIN_TURNS)
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, llm_url, "--serve", str(port),
                              "--model", model] + (["--read-only"] if read_only else []))
    try:
        _started(port, child)
        relay, url = psutil.Process(child.pid), f"http://127.0.0.1:{port}/"
        cpu: dict[int, float] = {}
        for tokens in (SHORT, LONG):
            httpx.post(f"{llm_url}/_control", json={"reply_tokens": tokens, "tpot_ms": tpot_ms}
                       ).raise_for_status()
            if tokens == SHORT:  # warm-up: imports, and the upstream connections both runs use
                asyncio.run(_requests(url, concurrency, concurrency))
            before = sum(relay.cpu_times()[:2])
            asyncio.run(_requests(url, turns, concurrency))
            cpu[tokens] = sum(relay.cpu_times()[:2]) - before
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return {"cpu_ms_per_token": (cpu[LONG] - cpu[SHORT]) / turns / (LONG - SHORT) * 1000,
            "cpu_ms_per_turn": cpu[SHORT] / turns * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("llm_url", help="an OpenAI-compatible server with the emulator's /_control")
    parser.add_argument("--turns", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tpot-ms", type=float, default=10.0)
    parser.add_argument("--read-only", action="store_true",
                        help="write nothing but the end: the cost of reading the stream alone")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.llm_url, args.model, args.read_only)
        return
    print(json.dumps(measure(args.llm_url, args.turns, args.concurrency, args.tpot_ms,
                             args.read_only)))


if __name__ == "__main__":
    main()
