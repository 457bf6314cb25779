"""A turn by its id: re-attach to its reply as it is generated, or stop it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from chat_core.web.api.deps import Service
from chat_core.web.api.errors import GuardedRoute
from chat_core.web.api.streaming import sse_response

router = APIRouter(prefix="/api/turns/{turn_id}", tags=["turns"], route_class=GuardedRoute)


@router.get("/events")
async def events(service: Service, turn_id: str) -> Response:
    """Server-sent events of the reply from where it is now; 404 for a turn that does not exist
    (or whose conversation was deleted), before the stream starts."""
    await service.check_turn_exists(turn_id)
    return sse_response(service, None, turn_id)


@router.post("/stop")
async def stop(service: Service, turn_id: str) -> dict[str, Any]:
    """Stop generating, keeping the text so far; "stopping": false if it had already finished."""
    await service.check_turn_exists(turn_id)
    return {"turn_id": turn_id, "stopping": await service.stop_turn(turn_id)}
