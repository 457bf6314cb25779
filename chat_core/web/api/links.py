"""Read-only links of a conversation: publish one, list the live ones, revoke one. The page a
link opens is chat_core/web/shared_page.py; the rules (token, expiry, limits) chat_core/sharing.py.

    POST   /api/conversations/{id}/links              {"expires_in_days"?} -> {id, url_path, ...}
    GET    /api/conversations/{id}/links              live links, newest first (no tokens)
    DELETE /api/conversations/{id}/links/{link_id}    revoke it
"""

from __future__ import annotations

from fastapi import APIRouter

from chat_core import sharing
from chat_core.web.api.bodies import json_object
from chat_core.web.api.deps import Json, Service
from chat_core.web.api.errors import GuardedRoute

router = APIRouter(prefix="/api/conversations/{conversation_id}/links", tags=["links"],
                   route_class=GuardedRoute)


@router.post("", status_code=201)
async def publish_link(service: Service, conversation_id: str,
                       body: Json = json_object("expires_in_days", required=False)) -> Json:
    """A new public link; `url_path` (with the token) is in this answer only: keep it."""
    return await sharing.publish_link(service, conversation_id, body.get("expires_in_days"))


@router.get("")
async def list_links(service: Service, conversation_id: str) -> list[Json]:
    return await sharing.list_links(service, conversation_id)


@router.delete("/{link_id}")
async def revoke_link(service: Service, conversation_id: str, link_id: str) -> Json:
    """The page answers like an unknown link from now on."""
    return await sharing.revoke_link(service, conversation_id, link_id)
