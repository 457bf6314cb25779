"""An emulated vLLM: an OpenAI-compatible streaming server that answers without a model.

It stands in for the GPU in tests, benchmarks and demos on machines without one, never in the
product's default path. Its reply depends on the request ("Reply to [<last user message>]"
then filler tokens), so a test can tell which message a reply answers. Time to first token and
time per token are configurable, one asyncio task per stream holds a thousand streams at once,
and a script of faults can be queued: HTTP errors, hangs, streams cut mid-way.

    python -m chat_core.testing.emulated_llm --port 5056 --ttft-ms 50 --tpot-ms 10 --tokens 64

Control over HTTP (for a server in another process):
    POST /_control  {"ttft_ms": .., "tpot_ms": .., "reply_tokens": .., "max_model_len": ..,
                     "model": .., "natural": .., "markdown": .., "vary": .., "tokenizer": ..,
                     "script": [{"action": "error", "status": 500}, ...]}
    GET  /_requests  the chat requests received so far (messages, params)
    POST /_release   let requests held by a "hang" action finish
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

BYTES_PER_SERVER_TOKEN = 4  # how this server counts prompt tokens (our estimate uses 3)


@dataclass
class EmulatorSettings:
    model: str = "emulated-llama-3.1-8b"
    max_model_len: int | None = 8192
    ttft_ms: float = 0.0
    tpot_ms: float = 0.0
    reply_tokens: int = 8
    # Offer vLLM's /tokenize endpoint (off: like a server without one).
    tokenizer: bool = True
    # For demo data (scripts/seed_demo_data.py): prose-like words instead of "w0 w1", a reply
    # length that grows with temperature (and varies), and times that vary by this fraction.
    natural: bool = False
    vary: float = 0.0
    # Replies shaped like a chat model's: paragraphs, a heading, lists, code and a table, where
    # the default is one paragraph of "w0 w1 ...". The chat page renders a reply by its blocks
    # (ui/streamed_render.py), which only such a reply exercises (scripts/bench_burst.py).
    markdown: bool = False
    # Actions applied to the next chat requests, one each, in order:
    #   {"action": "ok"}                             answer normally
    #   {"action": "error", "status": 500}            answer with that HTTP status
    #   {"action": "hang"}                            hold until /_release (at most 600 s)
    #   {"action": "drop", "after_tokens": 3}        stream some tokens, then cut the connection
    #   {"action": "slow", "tpot_ms": 200}           answer with another time per token
    script: deque[dict[str, Any]] = field(default_factory=deque)


def server_token_count(messages: list[dict[str, Any]]) -> int:
    return sum(4 + len(str(m.get("content") or "").encode()) // BYTES_PER_SERVER_TOKEN
               for m in messages)


def reply_for(messages: list[dict[str, Any]], extra_tokens: int) -> list[str]:
    """The reply's tokens: first names the message answered, then filler words."""
    last_user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"),
                     "")
    return [f"Reply to [{last_user}]"] + [f" w{i}" for i in range(max(0, extra_tokens))]


def markdown_reply(messages: list[dict[str, Any]], extra_tokens: int) -> list[str]:
    """reply_for's tokens laid out as a model writes Markdown: as many, the same first one,
    each later word led by what starts its block or line, the blocks in turn: a paragraph, a
    heading and a numbered list, a code block, a table."""
    words = reply_for(messages, extra_tokens)
    out = words[:1]
    for i, word in enumerate(words[1:]):
        block, at = divmod(i, 24)
        kind = block % 4
        lead = "\n\n" if at == 0 and kind != 1 else ""
        if kind == 1 and at % 6 == 0:
            lead = (f"\n\n## Part {block}\n\n" if at == 0 else "\n") + f"{at // 6 + 1}."
        elif kind == 2:
            lead += "```python\n" if at == 0 else "\n" if at % 4 == 0 else ""
            word = word.replace(" w", " x_") + ("\n```" if at == 23 else "")
        elif kind == 3 and at % 2 == 0:
            lead += "| n | word |\n|---|---|\n" if at == 0 else " |\n"
            lead += f"| {at} |"
        out.append(lead + word)
    return out


_WORDS = ("the", "a", "durable", "workflow", "keeps", "each", "turn", "safe", "when", "server",
          "restarts", "and", "every", "reply", "is", "saved", "once", "so", "you", "can",
          "trust", "history", "model", "answers", "with", "care", "about", "data", "time",
          "first", "token", "streams", "quickly", "while", "database", "records", "steps")


def natural_reply(messages: list[dict[str, Any]], tokens: int, rng: random.Random) -> list[str]:
    last_user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"),
                     "")
    words = [f"On “{str(last_user)[:40]}”:"] + [f" {rng.choice(_WORDS)}" for _ in range(
        max(0, tokens - 1))]
    if len(words) > 3:
        words[-1] += "."
    return words


class EmulatedLLM:
    """The server, in-process: `start()` runs it on a thread and returns its base URL."""

    def __init__(self, settings: EmulatorSettings | None = None, port: int = 0) -> None:
        self.settings = settings or EmulatorSettings()
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.active_streams = 0
        self.max_active_streams = 0
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[
            Route("/v1/models", self._models),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/tokenize", self._tokenize, methods=["POST"]),
            Route("/_control", self._control, methods=["POST"]),
            Route("/_requests", self._requests),
            Route("/_release", self._release_route, methods=["POST"]),
            Route("/health", lambda r: Response("ok")),
        ])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle (in a thread, for tests) ----------------------------------------------------

    def start(self) -> str:
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error",
                                lifespan="off", backlog=4096, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._release = asyncio.Event()
            assert self._server is not None
            task = loop.create_task(self._server.serve())
            loop.call_soon(started.set)
            loop.run_until_complete(task)
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="emulated-llm")
        self._thread.start()
        started.wait(10)
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"emulated LLM did not start on port {self.port}")
            time.sleep(0.01)
        return self.base_url

    def stop(self) -> None:
        """Die like a killed process: open connections are cut, and the port refuses new ones
        until start() is called again."""
        if self._server is not None:
            server = self._server

            def cut_connections() -> None:
                for connection in list(server.server_state.connections):
                    transport = getattr(connection, "transport", None)
                    if transport is not None:
                        transport.abort()

            if self._loop is not None and self._loop.is_running():
                self._loop.call_soon_threadsafe(cut_connections)
            self.release()
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = None
        self._thread = None

    def release(self) -> None:
        """End the hangs in progress; a later "hang" action hangs again."""
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release_hangs)

    def _release_hangs(self) -> None:
        assert self._release is not None
        self._release.set()
        self._release = asyncio.Event()

    def script(self, *actions: dict[str, Any]) -> None:
        self.settings.script.extend(actions)

    def _jitter(self) -> float:
        vary = self.settings.vary
        return random.uniform(1 - vary, 1 + vary) if vary else 1.0

    def user_messages_seen(self) -> list[str]:
        return [next((m["content"] for m in reversed(r["messages"]) if m["role"] == "user"), "")
                for r in self.requests]

    # -- routes --------------------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        entry: dict[str, Any] = {"id": self.settings.model, "object": "model",
                                 "owned_by": "emulator", "created": 0}
        if self.settings.max_model_len:
            entry["max_model_len"] = self.settings.max_model_len
        return JSONResponse({"object": "list", "data": [entry]})

    async def _tokenize(self, request: Request) -> Response:
        """vLLM's tokenizer endpoint, with this server's way of counting."""
        if not self.settings.tokenizer:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        body = await request.json()
        if "messages" in body:
            count = server_token_count(body["messages"])
        else:
            count = len(str(body.get("prompt", "")).encode()) // BYTES_PER_SERVER_TOKEN
        return JSONResponse({"count": count, "max_model_len": self.settings.max_model_len,
                             "tokens": list(range(count))})

    async def _control(self, request: Request) -> Response:
        body = await request.json()
        for key in ("model", "max_model_len", "ttft_ms", "tpot_ms", "reply_tokens", "natural",
                    "vary", "tokenizer", "markdown"):
            if key in body:
                setattr(self.settings, key, body[key])
        if "script" in body:
            self.settings.script = deque(body["script"])
        if body.get("clear_requests"):
            self.requests.clear()
        return JSONResponse({"ok": True})

    async def _requests(self, request: Request) -> Response:
        return JSONResponse(self.requests)

    async def _release_route(self, request: Request) -> Response:
        self._release_hangs()
        return JSONResponse({"ok": True})

    async def _chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid JSON body")
        messages = body.get("messages") or []
        model = body.get("model")
        self.requests.append({"model": model, "messages": messages,
                              "max_tokens": body.get("max_tokens"),
                              "temperature": body.get("temperature"), "top_p": body.get("top_p"),
                              "stream": bool(body.get("stream")), "received_at": time.time(),
                              "authorization": request.headers.get("authorization")})
        s = self.settings
        action = s.script.popleft() if s.script else {"action": "ok"}
        kind = action.get("action", "ok")
        if model != s.model:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        prompt_tokens = server_token_count(messages)
        max_tokens = int(body.get("max_tokens") or 16)
        if s.max_model_len and prompt_tokens + max_tokens > s.max_model_len:
            return _error(400, f"This model's maximum context length is {s.max_model_len} "
                          f"tokens. However, you requested {prompt_tokens + max_tokens} tokens "
                          f"({prompt_tokens} in the messages, {max_tokens} in the completion).")
        if kind == "error":
            return _error(int(action.get("status", 500)), action.get("message", "emulated failure"))
        if kind == "hang":
            assert self._release is not None
            try:
                await asyncio.wait_for(self._release.wait(), timeout=float(action.get("max_sec", 600)))
            except asyncio.TimeoutError:
                pass
            if action.get("then") == "error":
                return _error(503, "emulated failure after hang")
        if s.natural:
            # Per model too: two models answer one prompt differently (comparisons).
            rng = random.Random(hash(json.dumps(messages, sort_keys=True) + s.model))
            temperature = float(body.get("temperature") or 0.7)
            wanted = s.reply_tokens * (0.4 + 0.6 * temperature) * rng.uniform(0.6, 1.4)
            tokens = natural_reply(messages, max(3, min(int(wanted), max_tokens)), rng)
        elif body.get("continue_final_message") and messages and \
                messages[-1].get("role") == "assistant":
            tokens = [" (continued)"] + [f" c{i}" for i in range(min(s.reply_tokens,
                                                                       max_tokens) - 1)]
        else:
            shape = markdown_reply if s.markdown else reply_for
            tokens = shape(messages, min(s.reply_tokens, max_tokens) - 1)
        tpot = float(action.get("tpot_ms", s.tpot_ms)) / 1000.0 * self._jitter()
        if not body.get("stream"):
            await asyncio.sleep(s.ttft_ms / 1000.0 + tpot * (len(tokens) - 1))
            return JSONResponse({
                "id": "cmpl-emulated", "object": "chat.completion", "created": int(time.time()),
                "model": s.model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "".join(tokens)}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                          "total_tokens": prompt_tokens + len(tokens)},
            })
        drop_after = int(action["after_tokens"]) if kind == "drop" else None
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._stream(tokens, tpot, drop_after, include_usage, prompt_tokens),
            media_type="text/event-stream")

    async def _stream(self, tokens: list[str], tpot: float, drop_after: int | None,
                      include_usage: bool, prompt_tokens: int) -> AsyncIterator[bytes]:
        self.active_streams += 1
        self.max_active_streams = max(self.max_active_streams, self.active_streams)
        counted = True

        def done() -> None:
            # Counted as finished before the last bytes go out: a client that has read them
            # may start its next request before this generator is closed.
            nonlocal counted
            if counted:
                counted = False
                self.active_streams -= 1

        try:
            s = self.settings
            created = int(time.time())

            def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                payload = {"id": "chatcmpl-emulated", "object": "chat.completion.chunk",
                           "created": created, "model": s.model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                return f"data: {json.dumps(payload)}\n\n".encode()

            await asyncio.sleep(s.ttft_ms / 1000.0 * self._jitter())
            yield chunk({"role": "assistant", "content": ""})
            for i, token in enumerate(tokens):
                if drop_after is not None and i >= drop_after:
                    raise ConnectionAbortedError("emulated connection drop")
                if i:
                    await asyncio.sleep(tpot)
                yield chunk({"content": token})
            tail = chunk({}, "stop")
            if include_usage:
                usage = {"id": "chatcmpl-emulated", "object": "chat.completion.chunk",
                         "created": created, "model": s.model, "choices": [],
                         "usage": {"prompt_tokens": prompt_tokens,
                                   "completion_tokens": len(tokens),
                                   "total_tokens": prompt_tokens + len(tokens)}}
                tail += f"data: {json.dumps(usage)}\n\n".encode()
            done()
            yield tail + b"data: [DONE]\n\n"
        finally:
            done()


def _error(status: int, message: str, kind: str = "BadRequestError") -> JSONResponse:
    # vLLM's error shape.
    return JSONResponse({"object": "error", "message": message, "type": kind, "param": None,
                         "code": status}, status_code=status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5056)
    parser.add_argument("--model", default=EmulatorSettings.model)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--tpot-ms", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=8, help="tokens per reply")
    parser.add_argument("--natural", action="store_true",
                        help="prose-like replies whose length grows with temperature")
    parser.add_argument("--vary", type=float, default=0.0,
                        help="times vary by this fraction (0.3: +-30%%)")
    parser.add_argument("--markdown", action="store_true",
                        help="replies laid out as a model writes Markdown (markdown_reply)")
    args = parser.parse_args()
    emulator = EmulatedLLM(EmulatorSettings(model=args.model, max_model_len=args.max_model_len,
                                            ttft_ms=args.ttft_ms, tpot_ms=args.tpot_ms,
                                            reply_tokens=args.tokens, natural=args.natural,
                                            vary=args.vary, markdown=args.markdown),
                           port=args.port)

    async def serve() -> None:
        emulator._loop = asyncio.get_running_loop()
        emulator._release = asyncio.Event()
        config = uvicorn.Config(emulator.app, host=args.host, port=args.port,
                                log_level="warning", lifespan="off", backlog=4096)
        await uvicorn.Server(config).serve()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
