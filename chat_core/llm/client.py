"""One client for every OpenAI-compatible server: vLLM on a GPU, the local llama.cpp model, or
the test and benchmark stand-ins. Streaming only. The official `openai` package lists the
models; the chat completion's event stream comes through aiohttp (llm/stream_http.py: a
fraction of the CPU per token) and is parsed here.

The client makes exactly one attempt per call and classifies what went wrong; retrying is the
workflow's job (a DBOS step with backoff), so each attempt is visible and survives a crash.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
import httpx
import openai
from openai import AsyncOpenAI
from orjson import loads as _loads

from chat_core.errors import LLMRejected, LLMUnavailable
from chat_core.llm.fair_gate import FairGate
from chat_core.llm.stream_http import (EventStreamPoster, ResponseBody, StatusError,
                                       basic_auth_header)
from chat_core.secrets_mask import mask_secrets, mask_url
from chat_core.llm.token_estimate import estimate_message_tokens

log = logging.getLogger(__name__)

# What reading a response stream can raise when the server dies or stalls mid-reply: aiohttp's
# errors (a read timeout is a TimeoutError, an OSError).
_STREAM_ERRORS = (aiohttp.ClientError, OSError)
# What opening the stream's request can raise besides an error status.
_REQUEST_ERRORS = (aiohttp.ClientError, TimeoutError)

# Called with each new piece of text; returns True to stop the generation early.
DeltaCallback = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class ModelInfo:
    id: str
    max_model_len: int | None


@dataclass
class Completion:
    text: str
    finish_reason: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    tokens_estimated: bool
    ttft_ms: float | None
    latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finish_of(chunk: dict[str, Any]) -> str | None:
    choices = chunk.get("choices")
    return choices[0].get("finish_reason") if choices else None


async def _take_lines(shown_url: str, lines: list[bytes], reply: _StreamedReply,
                      on_delta: DeltaCallback) -> bool:
    """Feed the event stream's `lines` (one network read's) to `reply`, their new text to
    `on_delta` as one piece; True when the stream is over ([DONE]) or `on_delta` stopped it.
    The piece is cut before an event that ends the reply, so that a stop asked at the text
    before it is a stop ("stopped"), and one asked at the end keeps the server's ending."""
    pending: list[str] = []

    async def flush() -> bool:
        text = pending[0] if len(pending) == 1 else "".join(pending)
        pending.clear()
        if await on_delta(text):
            reply.finish_reason = "stopped"
            return True
        return False

    for line in lines:
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            if pending:
                await flush()
            return True
        chunk = _loads(payload)
        if "error" in chunk and not chunk.get("choices"):
            raise _unavailable(f"{shown_url} reported an error mid-stream: "
                               f"{str(chunk['error'])[:300]}")
        if pending and _finish_of(chunk) and await flush():
            return True
        delta, finish_reason = reply.take(chunk)
        if delta:
            pending.append(delta)
        if finish_reason:
            if pending and await flush():
                # The chunk that ends the reply ends it, whoever asked to stop at it.
                reply.finish_reason = finish_reason
                return True
            reply.finish_reason = finish_reason
    return bool(pending) and await flush()


def _unavailable(message: str) -> LLMUnavailable:
    """An LLMUnavailable whose text is safe to show: server replies and exception texts can
    carry the URL's password or the API key (servers echo it in errors), so mask them all."""
    return LLMUnavailable(mask_secrets(message))


def _rejected(message: str) -> LLMRejected:
    """An LLMRejected whose text is safe to show (see _unavailable)."""
    return LLMRejected(mask_secrets(message))


@dataclass
class _StreamedReply:
    """What a chat completion stream has said so far: one streamed chunk with text is one
    token on vLLM and llama.cpp, which is what the count falls back on without usage."""

    served_model: str
    pieces: list[str] = field(default_factory=list)
    first_token_at: float | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    def take(self, chunk: dict[str, Any]) -> tuple[str | None, str | None]:
        """Record one event; return its new text and its finish reason, if any."""
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        self.served_model = chunk.get("model") or self.served_model
        choices = chunk.get("choices")
        if not choices:
            return None, None
        choice = choices[0]
        delta = (choice.get("delta") or {}).get("content")
        if delta:
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self.pieces.append(delta)
        return delta, choice.get("finish_reason")

    def completion(self, finish_reason: str, messages: list[dict[str, str]],
                   started: float) -> Completion:
        ended = time.perf_counter()
        if self.usage is not None and finish_reason != "stopped":
            prompt_tokens = int(self.usage.get("prompt_tokens") or 0)
            completion_tokens = int(self.usage.get("completion_tokens") or 0)
            estimated = False
        else:
            # No usage from the server (llama.cpp streams none) or cut short: count the chunks;
            # the prompt is estimated (token_estimate.py).
            prompt_tokens = estimate_message_tokens(messages)
            completion_tokens, estimated = len(self.pieces), True
        return Completion(
            text="".join(self.pieces),
            finish_reason=finish_reason,
            model=self.served_model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            tokens_estimated=estimated,
            ttft_ms=None if self.first_token_at is None
            else (self.first_token_at - started) * 1000.0,
            latency_ms=(ended - started) * 1000.0,
        )


class _NoTokenizer(Exception):
    pass


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without its user:password part, and that part as Basic auth (or None)."""
    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return url, None
    bare = str(parsed.copy_with(username=None, password=None)).rstrip("/")
    return bare, (parsed.username, parsed.password)


def v1_url(base_url: str) -> str:
    """The seed's VLLM_BASE_URL has no /v1 (http://localhost:5000); the client needs it."""
    base = base_url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


class LLMClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "EMPTY",
        model: str | None = None,
        connect_timeout_sec: float = 5.0,
        read_timeout_sec: float = 120.0,
        max_concurrency: int = 64,
        fix_hint: str = "",
        backend: str = "openai-compatible",
        fair_share: bool = True,
        preempt: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # What messages and logs name: the URL with its password masked. Errors reach the chat
        # tab, REST error bodies and /healthz, which every visitor can read.
        self.shown_url = mask_url(self.base_url)
        self.configured_model = model
        self.backend = backend
        self.fix_hint = fix_hint
        # The URL's user:password (a proxy's Basic auth) as the clients' auth, never in the URL
        # that httpx logs at INFO for each request.
        bare_url, url_auth = _split_credentials(self.base_url)
        self._client = AsyncOpenAI(
            base_url=v1_url(bare_url),
            api_key=api_key,
            max_retries=0,
            timeout=openai.Timeout(read_timeout_sec, connect=connect_timeout_sec),
            http_client=openai.DefaultAsyncHttpxClient(auth=url_auth) if url_auth else None,
        )
        self._slots = asyncio.Semaphore(max_concurrency)
        # Where the turns wait for the LLM, by person (fair_gate.py): as many places as the
        # semaphore, so that turns coming through the gate never queue on the semaphore, which
        # caps every other caller (the benchmark's direct mode, scripts).
        self.gate = FairGate(max_concurrency, fair=fair_share, preempt=preempt)
        self._model: ModelInfo | None = None
        self._model_lock = asyncio.Lock()
        # None: not probed yet; "": the server has none; else the path that works.
        self._tokenizer_path: str | None = None
        self._token_cache: dict[bytes, int] = {}
        self._tokenizer_url = bare_url
        # Called when a request says the models listed may have changed: the server says a
        # model is gone, or cannot be reached (llm/servers.py looks again at every server).
        self.on_model_gone: Callable[[], None] | None = None
        self._http = httpx.AsyncClient(auth=url_auth, timeout=httpx.Timeout(read_timeout_sec,
                                                             connect=connect_timeout_sec))
        # The chat completions' streams: the same URL, credentials and timeouts as the openai
        # client (the URL's user:password as Basic auth in place of the key, as httpx does).
        auth = basic_auth_header(url_auth) if url_auth else \
            f"Bearer {api_key}" if api_key else None
        self._poster = EventStreamPoster(
            v1_url(bare_url) + "/chat/completions",
            {"Authorization": auth} if auth else {}, connect_timeout_sec, read_timeout_sec)

    async def close(self) -> None:
        await self._client.close()
        await self._http.aclose()
        await self._poster.close()

    # -- models --------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        try:
            page = await self._client.models.list()
        except openai.APIError as exc:
            raise self._classify(exc) from exc
        models = []
        for m in page.data:
            extra = getattr(m, "model_extra", None) or {}
            length = extra.get("max_model_len")
            models.append(ModelInfo(m.id, int(length) if isinstance(length, int) else None))
        return models

    async def model_info(self, refresh: bool = False) -> ModelInfo:
        """The model to use: LLM_MODEL if set, else the first the server lists. Cached until
        a request says the model is gone (the server restarted with another one)."""
        if self._model is not None and not refresh:
            return self._model
        async with self._model_lock:
            if self._model is not None and not refresh:
                return self._model
            models = await self.list_models()
            if not models:
                raise _unavailable(
                    f"{self.shown_url} lists no models at /v1/models yet; wait for it to finish "
                    f"loading. {self.fix_hint}".strip()
                )
            if self.configured_model:
                chosen = next((m for m in models if m.id == self.configured_model), None)
                if chosen is None:
                    raise _rejected(
                        f"model {self.configured_model!r} (LLM_MODEL) is not served by "
                        f"{self.shown_url}; it serves {', '.join(m.id for m in models)}. Set "
                        "LLM_MODEL to one of those, or unset it to use the first"
                    )
            else:
                chosen = models[0]
            if self._model is not None and chosen.id != self._model.id:
                self._tokenizer_path = None
            if self._model is None or chosen != self._model:
                log.info("LLM model: %s at %s (max_model_len=%s)", chosen.id, self.shown_url,
                         chosen.max_model_len)
            self._model = chosen
            return chosen

    # -- tokens --------------------------------------------------------------------------------

    async def count_tokens(self, texts: list[str], model: str | None = None
                           ) -> list[int] | None:
        """Exact token counts from the server's own tokenizer (vLLM's /tokenize, llama.cpp's
        /extras/tokenize/count), or None if it offers none. Counts are cached per model and
        text: a conversation's messages are counted once, not on every turn. `model`: one
        this server lists (llm/servers.py), else its default."""
        if self._tokenizer_path == "":
            return None
        model = ModelInfo(model, None) if model else await self.model_info()
        results: list[int | None] = [None] * len(texts)
        missing: dict[bytes, list[int]] = {}
        for i, text in enumerate(texts):
            key = hashlib.blake2b(f"{model.id}\0{text}".encode("utf-8", "surrogatepass"),
                                  digest_size=16).digest()
            cached = self._token_cache.get(key)
            if cached is None:
                missing.setdefault(key, []).append(i)
            else:
                results[i] = cached
        if missing:
            limit = asyncio.Semaphore(16)

            async def one(key: bytes, text: str) -> None:
                async with limit:
                    count = await self._tokenize(model.id, text)
                self._remember(key, count)
                for i in missing[key]:
                    results[i] = count

            try:
                await asyncio.gather(*(one(k, texts[idx[0]]) for k, idx in missing.items()))
            except _NoTokenizer:
                return None
        return [r for r in results if r is not None]

    def _remember(self, key: bytes, count: int) -> None:
        if len(self._token_cache) >= 200_000:
            self._token_cache.clear()
        self._token_cache[key] = count

    async def _tokenize(self, model_id: str, text: str) -> int:
        paths = [self._tokenizer_path] if self._tokenizer_path else [
            "/tokenize", "/extras/tokenize/count"]
        for path in paths:
            body = ({"model": model_id, "prompt": text, "add_special_tokens": False}
                    if path == "/tokenize" else {"input": text})
            try:
                response = await self._http.post(self._tokenizer_url + path, json=body)
            except httpx.HTTPError as exc:
                raise _unavailable(f"{self.shown_url}{path} failed: {exc}") from exc
            if response.status_code in (404, 405):
                continue
            if response.status_code != 200:
                raise _unavailable(
                    f"{self.shown_url}{path} answered {response.status_code}: "
                    f"{response.text[:200]}")
            data = response.json()
            self._tokenizer_path = path
            if "count" in data:
                return int(data["count"])
            return len(data["tokens"])
        self._tokenizer_path = ""
        log.info("%s offers no tokenizer endpoint; fitting history with 1 token per byte",
                 self.shown_url)
        raise _NoTokenizer()

    def current_model_id(self) -> str | None:
        return self._model.id if self._model else self.configured_model

    # -- chat ----------------------------------------------------------------------------------

    async def stream_chat(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        max_tokens: int,
        top_p: float,
        on_delta: DeltaCallback,
        continue_final: bool = False,
        model: str | None = None,
    ) -> Completion:
        """Stream one completion of `model` (one this server lists, llm/servers.py; None: its
        default, LLM_MODEL or the first it lists); `on_delta` sees each piece and may stop the generation, in
        which case the text so far is returned with finish_reason "stopped". With
        `continue_final`, the last message is the assistant's unfinished text and the reply
        goes on from it (vLLM's continue_final_message; servers without it start a new reply)."""
        info = ModelInfo(model, None) if model else await self.model_info()
        async with self._slots:
            started = time.perf_counter()
            try:
                return await self._stream(info, messages, temperature, max_tokens, top_p,
                                          on_delta, started, continue_final)
            except (openai.APIError, StatusError, *_REQUEST_ERRORS) as exc:
                raise self._request_failed(exc, info, model) from exc

    def _request_failed(self, exc: Exception, info: ModelInfo, model: str | None
                        ) -> LLMUnavailable | LLMRejected:
        """What a chat request that got no stream means: a model gone from the server (look
        again on the next attempt), a server that cannot be reached, or _classify's."""
        gone = isinstance(exc, openai.NotFoundError) or \
            isinstance(exc, StatusError) and exc.status_code == 404
        unreachable = isinstance(exc, (openai.APIConnectionError, *_REQUEST_ERRORS))
        if (gone or unreachable) and self.on_model_gone is not None:
            self.on_model_gone()
        if gone and model:
            # Asked for by name: the next attempt looks for it on every server again.
            return _unavailable(
                f"{self.shown_url} no longer serves {model} ({_error_detail(exc)}); "
                "the next attempt looks for it on the configured servers again")
        if gone and not self.configured_model:
            # The server restarted with another model: look again on the next attempt.
            self._model = None
            return _unavailable(
                f"{self.shown_url} no longer serves {info.id} ({_error_detail(exc)}); "
                "the next attempt uses the model it lists now")
        return self._classify(exc)

    async def _stream(
        self,
        model: ModelInfo,
        messages: list[dict[str, str]],
        temperature: float,
        max_tokens: int,
        top_p: float,
        on_delta: DeltaCallback,
        started: float,
        continue_final: bool = False,
    ) -> Completion:
        body: dict[str, Any] = {
            "model": model.id, "messages": messages, "temperature": temperature,
            "max_tokens": max_tokens, "top_p": top_p, "stream": True,
            "stream_options": {"include_usage": True},
        }
        if continue_final:
            body.update(continue_final_message=True, add_generation_prompt=False)
        reply = _StreamedReply(served_model=model.id)
        response = await self._poster.open(body)
        try:
            await self._read_events(ResponseBody(response), reply, on_delta)
        finally:
            # Whole: back to the pool; cut short (stopped, cancelled, failed): the connection
            # is closed, which tells the server to stop generating.
            if response.content.at_eof():
                response.release()
            else:
                response.close()
        if reply.finish_reason is None:
            raise _unavailable(
                f"{self.shown_url} closed the stream before the reply finished "
                f"(after {len(reply.pieces)} chunks); the turn will retry"
            )
        return reply.completion(reply.finish_reason, messages, started)

    async def _read_events(self, response: Any, reply: _StreamedReply,
                           on_delta: DeltaCallback) -> None:
        """Feed the stream's events to `reply` until the server says [DONE] or `on_delta`
        stops it; a broken or malformed stream is an LLMUnavailable (worth retrying).
        `response.aiter_bytes()` gives the bytes as they arrived: the events of one read go
        to `on_delta` as one piece (under load a read holds several tokens, and every call
        wakes the turn's watchers)."""
        try:
            rest = b""
            async for block in response.aiter_bytes():
                *lines, rest = (rest + block).split(b"\n")
                if lines and await _take_lines(self.shown_url, lines, reply, on_delta):
                    return
            if rest:
                await _take_lines(self.shown_url, [rest], reply, on_delta)
        except (ValueError, TypeError, AttributeError) as exc:
            raise _unavailable(f"{self.shown_url} sent a malformed stream ({exc}); the "
                               "turn will retry") from exc
        except _STREAM_ERRORS as exc:
            raise _unavailable(f"{self.backend} server at {self.shown_url} "
                               f"{_stream_failure(exc)}.") from exc

    # -- errors --------------------------------------------------------------------------------

    def _classify(self, exc: Exception) -> LLMUnavailable | LLMRejected:
        """Transient (retry): no connection, timeout, 5xx, 429. Permanent: other 4xx. `exc`:
        the openai package's error, or the stream's request's (llm/stream_http.py)."""
        where = f"{self.backend} server at {self.shown_url}"
        hint = f" {self.fix_hint}" if self.fix_hint else ""
        if isinstance(exc, (openai.APITimeoutError, TimeoutError)):
            return _unavailable(f"{where} did not answer in time (timeout).{hint}")
        if isinstance(exc, (openai.APIConnectionError, aiohttp.ClientError)):
            return _unavailable(f"{where} {_connection_failure(exc)}.{hint}")
        if isinstance(exc, (openai.APIStatusError, StatusError)):
            status = exc.status_code
            detail = _error_detail(exc)
            if status >= 500 or status == 429:
                return _unavailable(f"{where} answered {status}: {detail}")
            if status == 404:
                return _rejected(
                    f"{where} answered 404: {detail}. The model may have changed; check "
                    "/v1/models and LLM_MODEL"
                )
            return _rejected(f"{where} rejected the request ({status}): {detail}")
        return _unavailable(f"{where} failed: {exc}.{hint}")


def _connection_failure(exc: BaseException) -> str:
    """Name the root cause: refused (nothing listens), reset/closed mid-stream, or other."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    for e in seen:
        # aiohttp words a refusal of every address (IPv6 and IPv4 of localhost) by errno.
        text = str(e).lower()
        if isinstance(e, ConnectionRefusedError) or "refused" in text or \
                f"[errno {errno.ECONNREFUSED}]" in text:
            return "refused the connection"
    for e in seen:
        text = str(e).lower()
        if isinstance(e, (ConnectionResetError, ConnectionAbortedError)) or \
                "incomplete" in text or "closed" in text or "reset" in text:
            return "closed the connection in the middle of the reply"
    root = seen[-1]
    return f"could not be reached ({type(root).__name__}: {str(root)[:200]})"


def _stream_failure(exc: BaseException) -> str:
    """What broke a stream mid-reply, in _connection_failure's words: aiohttp says a cut
    reply is "not completed" (its payload) or "disconnected", a stalled one a timeout."""
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
        return "closed the connection in the middle of the reply"
    if isinstance(exc, TimeoutError):
        return "stopped sending in the middle of the reply (timeout)"
    return _connection_failure(exc)


def _error_detail(exc: openai.APIStatusError | StatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:500].rstrip(".")
        return str(err)[:500].rstrip(".")
    return (exc.message or "")[:500].rstrip(".")
