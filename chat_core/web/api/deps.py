"""What the routes take besides their path: the person asking, the service as they see it, the
account directory, the Idempotency-Key header, whether the client wants server-sent events.

Each is `async def` although none waits for anything: FastAPI runs a plain `def` dependency on
its thread pool, a hop through anyio per dependency per request (12 % of the samples in a
profile of a REST burst, docs/performance.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request

from chat_core.accounts.directory import AccountDirectory
from chat_core.accounts.person import LOCAL, Person
from chat_core.errors import ChatError
from chat_core.service import ChatService


class NotLoggedIn(ChatError):
    status = 401
    code = "unauthorized"


async def get_person(request: Request) -> Person:
    """Who is asking: the person web/auth.AccountAuth found for this request (LOCAL with
    accounts off). A request that reached a route without one is refused, never served as
    anybody: that would be a bug in front of the routes, and it fails closed."""
    person = request.scope.get("state", {}).get("person")
    if isinstance(person, Person):
        return person
    if getattr(request.app.state, "accounts", None) is None:
        return LOCAL
    raise NotLoggedIn("log in: HTTP Basic with your name and password, or Authorization: "
                      "Bearer <API token>")


CurrentPerson = Annotated[Person, Depends(get_person)]


async def get_service(request: Request, person: CurrentPerson) -> ChatService:
    """The service `install_rest_api` put on the app, as the person asking sees it: every
    query answers only their data (an admin's, everyone's)."""
    service: ChatService = request.app.state.chat_service
    # The app's own service already serves the local person (the only one with accounts off).
    return service if person == getattr(service, "person", LOCAL) else \
        service.for_person(person)


Service = Annotated[ChatService, Depends(get_service)]


async def get_accounts(request: Request) -> AccountDirectory | None:
    """The account directory; None with accounts off."""
    return getattr(request.app.state, "accounts", None)


Accounts = Annotated[AccountDirectory | None, Depends(get_accounts)]

# What the routes return: the service's JSON-ready values.
Json = dict[str, Any]

IdempotencyKey = Annotated[str | None, Header(
    description="Any text; the same key in the same conversation names the same turn, so a "
                "retried request does not send the message twice")]


async def wants_stream(
        stream: Annotated[str, Query(description="true: answer with server-sent events")] = "",
        accept: Annotated[str, Header()] = "") -> bool:
    """?stream=true (or 1, yes), or an Accept header asking for text/event-stream."""
    return stream.lower() in ("1", "true", "yes") or "text/event-stream" in accept


WantsStream = Annotated[bool, Depends(wants_stream)]
