"""Server-sent events of a turn, for send/retry/continue/edit with ?stream=true and for
re-attaching (GET /api/turns/{id}/events): `turn` (ids), `waiting` (the LLM is busy: `ahead`
turns will start before this one; sent again when that number changes), `delta` (new text),
`reset` (an attempt failed and the text starts over), then `done` (both messages) or `error`.

Once the stream has started its status is 200, so an error ends it with an `error` event
carrying the body and status the plain request would have answered.

With ?render=html (re-attaching only) a turn's events are the reply as the chat page draws it:
`html` (the whole reply so far as sanitized HTML, ui/render.py, at the page's pace,
ui/chat/streaming.py) and `done` (`status`, and the page's `notice` when the reply could not be
followed to its end). The chat page draws its replies from these (ui/chat/live_reply.py)."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from fastapi import Response
from fastapi.responses import StreamingResponse
from orjson import dumps as _dumps

from chat_core.service import ChatService, Turn
from chat_core.ui.chat.streaming import follow_reply
from chat_core.ui.chat.view import following
from chat_core.web.api.errors import as_chat_error


def sse_event(event: str, data: Any) -> bytes:
    """One server-sent event. orjson writes UTF-8 bytes at once (json.dumps and the encoding
    after it were 5 % of a streamed token's CPU, docs/performance.md); what orjson refuses (a
    lone surrogate, which UTF-8 cannot carry) goes in JSON's ASCII escapes."""
    try:
        body = _dumps(data)
    except TypeError:
        body = json.dumps(data).encode("ascii")
    return b"event: " + event.encode() + b"\ndata: " + body + b"\n\n"


async def turn_events(service: ChatService, turn: Turn | None,
                      turn_id: str) -> AsyncIterator[bytes]:
    """The events of one turn; `turn` when this request started it (then `done` carries both
    messages), None when re-attaching (then `done` carries the final status)."""
    if turn is not None:
        yield sse_event("turn", turn.to_json())
    sent = 0
    attempt = -1
    ahead: int | None = None
    try:
        async for snap in service.watch_turn(turn_id):
            if snap.ahead is not None and snap.ahead != ahead:
                yield sse_event("waiting", {"ahead": snap.ahead})
            ahead = snap.ahead
            if snap.attempt != attempt or len(snap.text) < sent:
                if attempt != -1:
                    yield sse_event("reset", {"attempt": snap.attempt})
                attempt, sent = snap.attempt, 0
            if len(snap.text) > sent:
                yield sse_event("delta", {"text": snap.text[sent:]})
                sent = len(snap.text)
            if snap.finished:
                break
        if turn is not None:
            yield sse_event("done", await service.wait_turn(turn))
        else:
            yield sse_event("done", {"status": snap.status, "error": snap.error})
    except Exception as exc:  # the status line is sent: the error goes in the stream
        error = as_chat_error(exc, "turn_events")
        yield sse_event("error", {**error.to_json(), "status": error.status})


async def rendered_events(service: ChatService, turn_id: str,
                          share_mode: bool) -> AsyncIterator[bytes]:
    """The reply as the page draws it: whole each time (an update may change what came
    before: a list closed, a table grown), so a client that reconnects loses nothing."""
    state = following(turn_id, "", [])
    try:
        async for entry, state in follow_reply(service, state, share_mode):
            if entry is not None:
                yield sse_event("html", {"html": entry["content"]})
        yield sse_event("done", {"status": state.get("status"), "notice": state.get("notice")})
    except Exception as exc:  # the status line is sent: the error goes in the stream
        error = as_chat_error(exc, "rendered_events")
        yield sse_event("error", {**error.to_json(), "status": error.status})


def event_stream(events: AsyncIterator[bytes]) -> Response:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def sse_response(service: ChatService, turn: Turn | None, turn_id: str) -> Response:
    return event_stream(turn_events(service, turn, turn_id))


async def turn_answer(service: ChatService, turn: Turn, stream: bool,
                      extra: dict[str, Any] | None = None) -> Any:
    """The answer to a request that started a turn: its events, or once it has finished, its
    messages (with `extra`, e.g. the new branch of an edit)."""
    if stream:
        return sse_response(service, turn, turn.turn_id)
    return {**(extra or {}), **await service.wait_turn(turn)}
