"""Withdrawal: DELETE /api/me/data deletes everything of the caller's and withdraws their
consent to the notice (SHARE_NOTICE). Exports, notebooks and the Workflows list read the tables
it empties, so none of them holds the person's text afterwards. Needs accounts: in local mode
there is no person to withdraw (422, saying so)."""

from __future__ import annotations

from fastapi import APIRouter

from chat_core.web.api.deps import Json, Service
from chat_core.web.api.errors import GuardedRoute

router = APIRouter(prefix="/api/me", tags=["me"], route_class=GuardedRoute)


@router.delete("/data")
async def delete_my_data(service: Service) -> Json:
    """{"deleted_conversations", "deleted_comparisons", "deleted_turns", "consent_withdrawn"}:
    every conversation of
    the caller's with its messages, ratings and links, and DBOS's records of their turns."""
    return await service.withdraw()
