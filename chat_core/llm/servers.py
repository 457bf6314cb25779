"""Several LLM servers at once (VLLM_BASE_URL="http://a:5000,http://b:5000"): one LLMClient per
server, each with its own LLM_MAX_CONCURRENCY cap and fair gate, and which server serves which
model, from each server's /v1/models.

The first server is the default: a turn whose conversation names no model goes there, as with
one server. A conversation that names a model (settings {"model": ...}) goes to the first server
that lists it. The listing is looked at again when it is older than REFRESH_SEC and someone
asks, when a model is asked for that no server listed, and when a server says a model it was
sent is gone (it restarted with another). A server that does not answer keeps the models it
listed last, marked down: turns for them go on trying it (and fail with its error once their
attempts are spent) while the other servers serve their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from chat_core.errors import ChatError, LLMRejected, LLMUnavailable
from chat_core.llm.client import LLMClient, ModelInfo
from chat_core.secrets_mask import mask_secrets

log = logging.getLogger(__name__)

# A listing older than this is looked at again when someone asks for it.
REFRESH_SEC = 30.0
# A model nobody listed makes the registry look again at most this often (a stream of
# requests naming made-up models must not become a stream of requests to every server).
FORCED_REFRESH_SEC = 1.0
# How long one server's /v1/models may take before it counts as down.
LIST_TIMEOUT_SEC = 5.0
# How long /healthz and /api/models wait for a listing under way before answering with the
# states as last seen (a hung server must not hang them).
ANSWER_WAIT_SEC = 1.0


@dataclass
class ServerState:
    """One server as last seen: its models, or why it did not answer."""

    client: LLMClient
    models: list[ModelInfo] = field(default_factory=list)
    error: str | None = None
    checked_at: float | None = None

    @property
    def up(self) -> bool:
        return self.checked_at is not None and self.error is None

    def to_json(self) -> dict[str, Any]:
        # (getattr: stand-ins for the client in tests have neither.)
        return {"server": getattr(self.client, "shown_url", ""),
                "backend": getattr(self.client, "backend", ""),
                "state": "unknown" if self.checked_at is None else "up" if self.up else "down",
                "models": [m.id for m in self.models], "error": self.error}


@dataclass(frozen=True)
class ModelRoute:
    """Where a turn's model is served: the client, the model to ask it for (None: the server's
    default, LLM_MODEL or the first it lists) and its context window if the server says."""

    client: LLMClient
    model: str | None = None
    max_model_len: int | None = None


class LLMServers:
    def __init__(self, clients: list[LLMClient], refresh_sec: float = REFRESH_SEC,
                 forced_refresh_sec: float = FORCED_REFRESH_SEC) -> None:
        if not clients:
            raise ValueError("at least one LLM server")
        self.states = [ServerState(c) for c in clients]
        self.refresh_sec = refresh_sec
        self.forced_refresh_sec = forced_refresh_sec
        self._refreshed_at: float | None = None
        # The listing under way: everyone who needs one waits for this one (one at a time).
        self._listing: asyncio.Future[None] | None = None
        self._stale = False
        self._background: asyncio.Future[None] | None = None
        for client in clients:
            client.on_model_gone = self._mark_stale

    @property
    def default(self) -> LLMClient:
        return self.states[0].client

    @property
    def clients(self) -> list[LLMClient]:
        return [s.client for s in self.states]

    def _mark_stale(self) -> None:
        self._stale = True

    def _fresh(self) -> bool:
        checked = [s.checked_at for s in self.states]
        return not self._stale and all(c is not None and time.monotonic() - c < self.refresh_sec
                                       for c in checked)

    async def refresh(self, force: bool = False, wait: float | None = None) -> None:
        """Ask every server for its models at once; one that does not answer in
        LIST_TIMEOUT_SEC is down and keeps the models it listed last. One listing at a time:
        a caller arriving while one is under way waits for that one (at most `wait` s); a
        forced one comes at most every forced_refresh_sec after the last ended."""
        if self._listing is None or self._listing.done():
            recent = self._refreshed_at is not None and \
                time.monotonic() - self._refreshed_at < self.forced_refresh_sec
            if self._fresh() and (not force or recent):
                return
            self._stale = False
            self._listing = asyncio.ensure_future(self._list_all())
        listing = asyncio.shield(self._listing)
        if wait is None:
            await listing
        else:
            try:
                await asyncio.wait_for(listing, wait)
            except asyncio.TimeoutError:
                pass  # answered with the states as last seen; the listing goes on

    async def _list_all(self) -> None:
        try:
            await asyncio.gather(*(self._list(state) for state in self.states))
        finally:
            self._refreshed_at = time.monotonic()

    async def _list(self, state: ServerState) -> None:
        try:
            models = await asyncio.wait_for(state.client.list_models(), LIST_TIMEOUT_SEC)
        except Exception as exc:  # down, hung, or answering nonsense: the others go on
            error = exc.message if isinstance(exc, ChatError) else (
                f"{state.client.shown_url} did not list its models in {LIST_TIMEOUT_SEC:.0f} s"
                if isinstance(exc, asyncio.TimeoutError) else
                f"{state.client.shown_url} failed to list its models: {type(exc).__name__}: "
                f"{mask_secrets(str(exc))[:200]}")
            error = mask_secrets(error)
            if error != state.error:
                log.warning("LLM server %s is down: %s", state.client.shown_url, error)
            state.error = error
        else:
            if state.error is not None or [m.id for m in models] != [m.id for m in state.models]:
                log.info("LLM server %s serves %s", state.client.shown_url,
                         ", ".join(m.id for m in models) or "no models yet")
            state.models, state.error = models, None
        state.checked_at = time.monotonic()

    def _refresh_soon(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.ensure_future(self.refresh())

    def _find(self, model: str) -> tuple[ServerState, ModelInfo] | None:
        for state in self.states:
            for info in state.models:
                if info.id == model:
                    return state, info
        return None

    def known_route(self, model: str | None) -> ModelRoute | None:
        """The route as last seen, asking nobody (for fitting a prompt, where a turn must not
        wait for a listing); None when no server listed the model."""
        if not model or model == self.default.configured_model:
            return ModelRoute(self.default)
        found = self._find(model)
        return None if found is None else ModelRoute(found[0].client, model, found[1].max_model_len)

    async def route(self, model: str | None) -> ModelRoute:
        """The client for `model` (None or "": the default server's default model). A model
        no server lists is an LLMRejected naming the models there are, once every server has
        answered; while one is down or not asked yet it is an LLMUnavailable (the turn tries
        again: the model may be that server's)."""
        if not model or model == self.default.configured_model:
            # LLM_MODEL (the local model's alias) is the default server's, listed or not.
            return ModelRoute(self.default)
        found = self._find(model)
        if found is not None and not self._fresh():
            # Known: the turn goes on at once, while the lists are looked at again (a server
            # that hangs must not hold up the turns of the others).
            self._refresh_soon()
        if found is None:
            await self.refresh(force=True)
            found = self._find(model)
        if found is None:
            if any(not s.up for s in self.states):
                raise LLMUnavailable(self.unknown_model_message(model))
            raise LLMRejected(self.unknown_model_message(model))
        state, info = found
        return ModelRoute(state.client, model, info.max_model_len)

    def unknown_model_message(self, model: str) -> str:
        available = [m.id for s in self.states for m in s.models]
        text = (f"model {model[:200]!r} is not served by any configured LLM server; "
                f"available: {', '.join(available) if available else 'none'}")
        down = [f"{s.client.shown_url} ({s.error})" for s in self.states if s.error]
        if down:
            text += f"; not answering: {'; '.join(down)}"
        return mask_secrets(text)

    async def models(self) -> list[dict[str, Any]]:
        """Every model of every server: id, server (masked URL), max_context, available."""
        await self.refresh(wait=ANSWER_WAIT_SEC)
        return [{"id": m.id, "server": s.client.shown_url, "max_context": m.max_model_len,
                 "available": s.error is None}
                for s in self.states for m in s.models]

    async def servers(self) -> list[dict[str, Any]]:
        """Every server's state (masked URL, up/down, models, error)."""
        await self.refresh(wait=ANSWER_WAIT_SEC)
        return [s.to_json() for s in self.states]

    def known_servers(self) -> list[dict[str, Any]]:
        """The states as last seen, without asking anyone (for the page's top line)."""
        return [s.to_json() for s in self.states]

    async def close(self) -> None:
        if self._background is not None and not self._background.done():
            self._background.cancel()
        for client in self.clients:
            await client.close()
