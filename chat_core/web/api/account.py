"""The person's own account, and the admins' list of people.

    GET    /api/me                              {"name", "admin", "consent", "accounts"}
    POST   /api/me/tokens                       {"name"?} -> a new API token, shown this once
    GET    /api/me/tokens                       the person's live tokens (never their text)
    DELETE /api/me/tokens/{id}                  revoke one; someone else's id is a 404 too
    GET    /api/admin/people                    admins: every account
    POST   /api/admin/people/{name}/disable     admins: no more logins; sessions end at once,
    POST   /api/admin/people/{name}/enable      tokens and Basic stop working

Anyone who is not an admin gets the 404 of a route that does not exist for the admin routes,
so the API does not tell them there is something they may not see.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from chat_core.accounts.directory import AccountDirectory
from chat_core.accounts.person import Person
from chat_core.errors import InvalidInput, NotFound
from chat_core.store.chat_store import iso
from chat_core.web.api.bodies import json_object
from chat_core.web.api.deps import Accounts, CurrentPerson, Json
from chat_core.web.api.errors import GuardedRoute

router = APIRouter(tags=["account"], route_class=GuardedRoute)

NEEDS_ACCOUNTS = "accounts are off (no SHARE_AUTH): there are no people, tokens or logins"


def _directory(accounts: AccountDirectory | None) -> AccountDirectory:
    if accounts is None:
        raise InvalidInput(NEEDS_ACCOUNTS)
    return accounts


def _admin_only(person: Person, accounts: AccountDirectory | None,
                request: Request) -> AccountDirectory:
    """The directory for an admin; for anyone else the 404 of an unknown endpoint."""
    if accounts is None or not person.is_admin or person.id is None:
        path = request.url.path
        raise NotFound(f"no endpoint {request.method} /api/{path[5:][:100]}; see /api/docs")
    return accounts


@router.get("/api/me")
async def me(person: CurrentPerson, accounts: Accounts) -> Json:
    """Who the API sees: the name, whether an admin, when the notice was accepted (null: not,
    or withdrawn), and whether the app has accounts at all."""
    consent = await accounts.consent_of(person) if accounts is not None else None
    return {"name": person.name, "admin": person.is_admin, "consent": iso(consent),
            "accounts": accounts is not None}


@router.post("/api/me/tokens", status_code=201)
async def create_token(person: CurrentPerson, accounts: Accounts,
                       body: dict[str, Any] = json_object("name", required=False)) -> Json:
    """{"id", "name", "created_at", "last_used_at", "token"}: `token` is shown this once; use
    it as `Authorization: Bearer <token>`. Only its hash is kept."""
    return await _directory(accounts).create_token(person, body.get("name"))


@router.get("/api/me/tokens")
async def list_tokens(person: CurrentPerson, accounts: Accounts) -> list[Json]:
    return await _directory(accounts).list_tokens(person)


@router.delete("/api/me/tokens/{token_id}")
async def revoke_token(token_id: str, person: CurrentPerson, accounts: Accounts) -> Json:
    if not await _directory(accounts).revoke_token(person, token_id):
        raise NotFound(f"no API token {token_id[:60]!r}")
    return {"revoked": True}


@router.get("/api/admin/people", include_in_schema=False)
async def list_people(request: Request, person: CurrentPerson, accounts: Accounts) -> list[Json]:
    """Every account: name, admin, created, disabled, consent_at, source (config: SHARE_AUTH;
    signup: the invite code)."""
    return await _admin_only(person, accounts, request).list_people()


@router.post("/api/admin/people/{name}/disable", include_in_schema=False)
async def disable(name: str, request: Request, person: CurrentPerson,
                  accounts: Accounts) -> Json:
    return await _admin_only(person, accounts, request).set_disabled(person, name, True)


@router.post("/api/admin/people/{name}/enable", include_in_schema=False)
async def enable(name: str, request: Request, person: CurrentPerson,
                 accounts: Accounts) -> Json:
    return await _admin_only(person, accounts, request).set_disabled(person, name, False)
