"""What only an admin sees: the LLM's load by person, and the owner filter of the lists.

    GET /api/admin/load     per person: turns running on the LLM, turns waiting for it

Everyone else gets the 404 of a route that does not exist: the API does not tell them there is
something they may not see. The owner filter (GET /api/conversations?owner=<name>,
GET /api/workflows?owner=<name>) resolves a name here, and answers a non-admin's filter with
the same 404 as a name nobody has (no lookup is made for them: the time does not tell either).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chat_core.accounts.person import Person
from chat_core.errors import NotFound
from chat_core.service import ChatService
from chat_core.web.api.deps import Json, Service
from chat_core.web.api.errors import GuardedRoute

# Out of the published schema: to anyone but an admin these routes do not exist.
router = APIRouter(prefix="/api/admin", tags=["admin"], route_class=GuardedRoute,
                   include_in_schema=False)

LOCAL_OWNER = "(no account)"  # turns of local mode, or recovered from before accounts
MAX_NAME_SHOWN = 80


def _not_a_route(service: ChatService, path: str) -> None:
    """The 404 of an unknown endpoint (errors.unknown) for anyone who does not see all."""
    if not service.person.sees_all:
        raise NotFound(f"no endpoint GET {path}; see /api/docs")


async def person_named(service: ChatService, name: Any) -> Person:
    """The person an admin names; anyone else, and a name nobody has, get the same 404."""
    missing = NotFound(f"no person named {str(name)[:MAX_NAME_SHOWN]!r}")
    people = service.people
    if not service.person.sees_all or people is None or not isinstance(name, str):
        raise missing
    person: Person | None = await people.person_by_name(name)
    if person is None:
        raise missing
    return person


def owner_view(service: ChatService, person: Person) -> ChatService:
    """An admin's service narrowed to `person`'s data: what that person sees (read-only use:
    the lists and search)."""
    return service.for_person(Person(person.id, person.name, is_admin=False))


async def named_load(service: ChatService) -> dict[str, Any]:
    """The LLM gate's load (llm/fair_gate.py) of this process, each owner by name."""
    load = service.llm_load()
    people = service.people
    for row in load["owners"]:
        person = await people.person_by_id(row["owner"]) if people and row["owner"] else None
        row["owner"] = person.name if person is not None else LOCAL_OWNER
    return load


@router.get("/load")
async def llm_load(service: Service) -> Json:
    """{"capacity", "fair", "running", "waiting", "owners": [{"owner", "running",
    "waiting"}]}: this process's turns on the LLM and waiting for it, by person."""
    _not_a_route(service, "/api/admin/load")
    return await named_load(service)
