"""A turn by its id: re-attach to its reply as it is generated, or stop it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from chat_core.errors import InvalidInput
from chat_core.web.api.deps import Service
from chat_core.web.api.errors import GuardedRoute
from chat_core.web.api.streaming import event_stream, rendered_events, sse_response

router = APIRouter(prefix="/api/turns/{turn_id}", tags=["turns"], route_class=GuardedRoute)


Render = Annotated[str | None, Query(
    description="html: the reply as the chat page draws it (sanitized HTML), not its text")]


@router.get("/events")
async def events(service: Service, request: Request, turn_id: str,
                 render: Render = None) -> Response:
    """Server-sent events of the reply from where it is now; 404 for a turn that does not exist
    (or whose conversation was deleted), before the stream starts."""
    if render not in (None, "html"):
        raise InvalidInput("render takes one value, html (the reply as the chat page draws "
                           "it); leave it out for the reply's text")
    await service.check_turn_exists(turn_id)
    if render == "html":
        share_mode = bool(getattr(request.app.state, "share_mode", False))
        return event_stream(rendered_events(service, turn_id, share_mode))
    return sse_response(service, None, turn_id)


@router.post("/stop")
async def stop(service: Service, turn_id: str) -> dict[str, Any]:
    """Stop generating, keeping the text so far; "stopping": false if it had already finished."""
    await service.check_turn_exists(turn_id)
    return {"turn_id": turn_id, "stopping": await service.stop_turn(turn_id)}
