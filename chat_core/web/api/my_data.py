"""Withdrawal: DELETE /api/me/data deletes everything of the caller's and withdraws their
consent to the notice (SHARE_NOTICE). Exports, notebooks and the Workflows list read the tables
it empties, so none of them holds the person's text afterwards. Needs accounts: in local mode
there is no person to withdraw (422, saying so)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chat_core.service import ChatService
from chat_core.web.api.deps import Json, Service
from chat_core.web.api.errors import GuardedRoute

router = APIRouter(prefix="/api/me", tags=["me"], route_class=GuardedRoute)


async def withdraw(service: ChatService) -> dict[str, Any]:
    """Delete the person's data, then withdraw their consent: in this order, so a failure
    half-way leaves them still consenting to what is left, never the reverse. Shared by the
    REST route and the Account tab."""
    counts = await service.delete_my_data()
    directory = getattr(service, "people", None)  # None when accounts are off
    if directory is not None:
        await directory.withdraw_consent(service.person)
    return {**counts, "consent_withdrawn": directory is not None}


@router.delete("/data")
async def delete_my_data(service: Service) -> Json:
    """{"deleted_conversations", "deleted_turns", "consent_withdrawn"}: every conversation of
    the caller's with its messages, ratings and links, and DBOS's records of their turns."""
    return await withdraw(service)
