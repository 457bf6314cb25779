"""Comparisons: one prompt, two sides answering side by side (chat_core/comparisons/).

    POST /api/comparisons              {"content", "a": {"model"?, "settings"?, "label"?},
                                       "b": {...}, "blind"?: true} -> the comparison once
                                       both replies have finished; ?stream=true: events of both
    GET  /api/comparisons              the person's comparisons, newest first
    GET  /api/comparisons/{id}         one, with both sides' messages
    POST /api/comparisons/{id}/messages  {"content"}: the next round, in both sides
    POST /api/comparisons/{id}/vote    {"winner": "a"|"b"|"tie"|"both_bad"}, once
    DELETE /api/comparisons/{id}       it and both sides (replies in flight cancelled)
    GET  /api/leaderboard              ratings with 95 % intervals, from the votes

A blind comparison names its sides "Model A" and "Model B" everywhere until its vote.
Streamed events: `round` (the comparison and both turns' ids), then for each side `delta`
{"side", "text"}, `reset` {"side"} (an attempt failed, the text starts over) and `done`
{"side", "status", "error"}, and last `comparison` (the whole comparison), or `error`."""

from __future__ import annotations

from typing import Annotated, Any, AsyncIterator

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse


from chat_core.comparisons.service import ComparisonRound, ComparisonService
from chat_core.errors import InvalidInput
from chat_core.validation import int_param
from chat_core.web.api.bodies import json_object
from chat_core.web.api.deps import IdempotencyKey, Json, Service, WantsStream
from chat_core.web.api.errors import GuardedRoute, as_chat_error
from chat_core.web.api.streaming import sse_event

router = APIRouter(tags=["comparisons"], route_class=GuardedRoute)


async def round_events(comparisons: ComparisonService, rnd: ComparisonRound
                       ) -> AsyncIterator[bytes]:
    """Both sides' events as they come, then the comparison."""
    yield sse_event("round", rnd.to_json())
    sent: dict[str, int] = {}
    attempts: dict[str, int] = {}
    try:
        async for side, snap in comparisons.watch_round(rnd):
            if side in attempts and (snap.attempt != attempts[side]
                                     or len(snap.text) < sent[side]):
                yield sse_event("reset", {"side": side})
                sent[side] = 0
            attempts[side] = snap.attempt
            if len(snap.text) > sent.setdefault(side, 0):
                yield sse_event("delta", {"side": side, "text": snap.text[sent[side]:]})
                sent[side] = len(snap.text)
            if snap.finished:
                yield sse_event("done", {"side": side, "status": snap.status, "error": snap.error})
        yield sse_event("comparison", await comparisons.get(rnd.comparison_id))
    except Exception as exc:  # the status line is sent: the error goes in the stream
        error = as_chat_error(exc, "comparison_events")
        yield sse_event("error", {**error.to_json(), "status": error.status})


async def _answer(comparisons: ComparisonService, rnd: ComparisonRound, stream: bool) -> Any:
    if stream:
        return StreamingResponse(round_events(comparisons, rnd), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    return {"round": rnd.to_json(), "comparison": await comparisons.wait_round(rnd)}


def _required(body: Json, name: str, what: str) -> Any:
    if name not in body:
        raise InvalidInput(f'the body needs a "{name}" field with {what}', field=name)
    return body[name]


@router.post("/api/comparisons")
async def create_comparison(service: Service, stream: WantsStream,
                            idempotency_key: IdempotencyKey = None,
                            body: Json = json_object("content", "a", "b", "blind")) -> Any:
    """{"round": {"comparison_id", "a": turn, "b": turn}, "comparison": ...} once both
    replies have finished, or with ?stream=true their events."""
    comparisons = service.comparisons()
    rnd = await comparisons.create(_required(body, "content", "the prompt"), body.get("a"),
                                   body.get("b"), body.get("blind", True),
                                   idempotency_key=idempotency_key)
    return await _answer(comparisons, rnd, stream)


@router.get("/api/comparisons")
async def list_comparisons(service: Service,
                           limit: Annotated[str | None, Query()] = None) -> list[Json]:
    given = {"limit": limit} if limit is not None else {}
    return await service.comparisons().list(int_param(given, "limit", 50, 1, 500))


@router.get("/api/comparisons/{comparison_id}")
async def get_comparison(service: Service, comparison_id: str) -> Json:
    return await service.comparisons().get(comparison_id)


@router.post("/api/comparisons/{comparison_id}/messages")
async def send_to_comparison(service: Service, comparison_id: str, stream: WantsStream,
                             idempotency_key: IdempotencyKey = None,
                             body: Json = json_object("content")) -> Any:
    """The next round, in both sides: answered like POST /api/comparisons."""
    comparisons = service.comparisons()
    rnd = await comparisons.send(comparison_id, _required(body, "content", "the message text"),
                                 idempotency_key=idempotency_key)
    return await _answer(comparisons, rnd, stream)


@router.post("/api/comparisons/{comparison_id}/vote")
async def vote(service: Service, comparison_id: str,
               body: Json = json_object("winner")) -> Json:
    """The comparison, its names now shown."""
    return await service.comparisons().vote(
        comparison_id, _required(body, "winner", '"a", "b", "tie" or "both_bad"'))


@router.delete("/api/comparisons/{comparison_id}")
async def delete_comparison(service: Service, comparison_id: str) -> Json:
    """{"deleted", "cancelled_turns"}: the comparison and both sides, voted or not."""
    return await service.comparisons().delete(comparison_id)


@router.get("/api/leaderboard")
async def get_leaderboard(service: Service) -> Json:
    return await service.comparisons().leaderboard()
