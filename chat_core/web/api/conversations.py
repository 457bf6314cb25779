"""Conversations: list, search, create, read, rename and change settings, delete, export and
import, and their messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from chat_core.data.conversation_export import MAX_IMPORT_BYTES
from chat_core.validation import MAX_OFFSET, int_param
from chat_core.web.api.admin import owner_view, person_named
from chat_core.web.api.bodies import json_object, read_json_body
from chat_core.web.api.deps import Json, Service
from chat_core.web.api.errors import GuardedRoute

router = APIRouter(prefix="/api/conversations", tags=["conversations"], route_class=GuardedRoute)

# Declared as text and checked by int_param, so a bad number is our 422, not FastAPI's.
Number = Annotated[str | None, Query()]


@router.get("")
async def list_conversations(service: Service, q: Annotated[str | None, Query(
        description="words to search for (ranked full-text search)")] = None,
        limit: Number = None, offset: Number = None, owner: Annotated[str | None, Query(
            description="admins: only this person's (their name)")] = None) -> list[Json]:
    """Newest activity first; with `q`, the best matches first, each with a snippet. A person
    gets their own; an admin everyone's (each with its "owner"), or one person's with
    `owner`, which anyone else gets a 404 for, as for a name nobody has."""
    given = {k: v for k, v in (("limit", limit), ("offset", offset)) if v is not None}
    count = int_param(given, "limit", 20 if q is not None else 100, 1, 1000)
    skip = int_param(given, "offset", 0, 0, MAX_OFFSET)
    if owner is not None:
        service = owner_view(service, await person_named(service, owner))
    if q is not None:
        return await service.search_conversations(q, count)
    return await service.list_conversations(count, skip)


@router.post("/import", status_code=201)
async def import_conversation(service: Service, request: Request) -> Json:
    """An export (GET .../export?format=json) as a new conversation; up to MAX_IMPORT_BYTES."""
    return await service.import_conversation(
        await read_json_body(request, MAX_IMPORT_BYTES, required=True))


@router.post("", status_code=201)
async def create_conversation(service: Service,
                              body: Json = json_object("title", required=False)) -> Json:
    return await service.create_conversation(body.get("title"))


@router.get("/{conversation_id}")
async def get_conversation(service: Service, conversation_id: str) -> Json:
    return await service.get_conversation(conversation_id)


@router.patch("/{conversation_id}")
async def update_conversation(service: Service, conversation_id: str,
                              body: Json = json_object("title", "settings")) -> Json:
    """{"title"?, "settings"?}; a setting set to null goes back to the app's default."""
    return await service.update_conversation(conversation_id, title=body.get("title"),
                                             settings=body.get("settings"))


@router.delete("/{conversation_id}")
async def delete_conversation(service: Service, conversation_id: str) -> Json:
    """Cancels a turn in flight first."""
    return await service.delete_conversation(conversation_id)


@router.get("/{conversation_id}/export")
async def export_conversation(service: Service, conversation_id: str, fmt: Annotated[
        str, Query(alias="format", description="json or markdown")] = "json") -> Response:
    """As JSON (which POST /api/conversations/import takes back) or Markdown, as a download."""
    exported = await service.export_conversation(conversation_id, fmt)
    name = f"conversation-{conversation_id}"
    if isinstance(exported, str):
        return Response(exported, media_type="text/markdown; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{name}.md"'})
    return JSONResponse(exported, headers={
        "Content-Disposition": f'attachment; filename="{name}.json"'})


@router.get("/{conversation_id}/messages")
async def list_messages(service: Service, conversation_id: str) -> list[Json]:
    """In reading order."""
    return await service.list_messages(conversation_id)
