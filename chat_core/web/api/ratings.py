"""Rating a reply: PUT /api/conversations/{id}/messages/{message_id}/rating with
{"value": 1|-1|0, "tags"?: [...], "comment"?: "..."}. A PUT replaces the whole rating (tags and
comment left out are cleared); value 0 removes it. Someone else's reply answers like a missing
one (404); a user message, or a reply still being written, cannot be rated (422, 409)."""

from __future__ import annotations

from fastapi import APIRouter

from chat_core.errors import InvalidInput
from chat_core.web.api.bodies import json_object
from chat_core.web.api.deps import Json, Service
from chat_core.web.api.errors import GuardedRoute

router = APIRouter(prefix="/api/conversations/{conversation_id}/messages", tags=["ratings"],
                   route_class=GuardedRoute)


@router.put("/{message_id}/rating")
async def rate_reply(service: Service, conversation_id: str, message_id: str,
                     body: Json = json_object("value", "tags", "comment")) -> Json:
    """{"message_id", "conversation_id", "value", "tags", "comment", "created_at",
    "updated_at"}: the rating as stored (value 0 and nulls once removed)."""
    if "value" not in body:
        raise InvalidInput('the body needs a "value": 1 (thumbs up), -1 (thumbs down) or 0 '
                           '(remove the rating)', field="value")
    return await service.rate_reply(conversation_id, message_id, body["value"],
                                    body.get("tags"), body.get("comment"))
