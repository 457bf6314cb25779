"""Server-sent events of a turn, for send/retry/continue/edit with ?stream=true and for
re-attaching (GET /api/turns/{id}/events): `turn` (ids), `waiting` (the LLM is busy: `ahead`
turns will start before this one; sent again when that number changes), `delta` (new text),
`reset` (an attempt failed and the text starts over), then `done` (both messages) or `error`.

Once the stream has started its status is 200, so an error ends it with an `error` event
carrying the body and status the plain request would have answered."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from fastapi import Response
from fastapi.responses import StreamingResponse

from chat_core.service import ChatService, Turn
from chat_core.web.api.errors import as_chat_error


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def turn_events(service: ChatService, turn: Turn | None,
                      turn_id: str) -> AsyncIterator[bytes]:
    """The events of one turn; `turn` when this request started it (then `done` carries both
    messages), None when re-attaching (then `done` carries the final status)."""
    if turn is not None:
        yield _sse("turn", turn.to_json())
    sent = 0
    attempt = -1
    ahead: int | None = None
    try:
        async for snap in service.watch_turn(turn_id):
            if snap.ahead is not None and snap.ahead != ahead:
                yield _sse("waiting", {"ahead": snap.ahead})
            ahead = snap.ahead
            if snap.attempt != attempt or len(snap.text) < sent:
                if attempt != -1:
                    yield _sse("reset", {"attempt": snap.attempt})
                attempt, sent = snap.attempt, 0
            if len(snap.text) > sent:
                yield _sse("delta", {"text": snap.text[sent:]})
                sent = len(snap.text)
            if snap.finished:
                break
        if turn is not None:
            yield _sse("done", await service.wait_turn(turn))
        else:
            yield _sse("done", {"status": snap.status, "error": snap.error})
    except Exception as exc:  # the status line is sent: the error goes in the stream
        error = as_chat_error(exc, "turn_events")
        yield _sse("error", {**error.to_json(), "status": error.status})


def sse_response(service: ChatService, turn: Turn | None, turn_id: str) -> Response:
    return StreamingResponse(turn_events(service, turn, turn_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def turn_answer(service: ChatService, turn: Turn, stream: bool,
                      extra: dict[str, Any] | None = None) -> Any:
    """The answer to a request that started a turn: its events, or once it has finished, its
    messages (with `extra`, e.g. the new branch of an edit)."""
    if stream:
        return sse_response(service, turn, turn.turn_id)
    return {**(extra or {}), **await service.wait_turn(turn)}
