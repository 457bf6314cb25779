"""Who makes a Gradio call, and the service as that person sees it.

Every Gradio event is a public API, and in share mode each person may see only their own
conversations and turns. So every handler that reads or steers data asks `service_for` first:
the service scoped to the caller (an admin's sees everyone's). With accounts off there is one
person (LOCAL) and the app's own service is theirs. With accounts on, the login in front of
Gradio (chat_core/web) hands each event the account id as `gr.Request.username`; a call
without one, or naming no known account, fails closed with a notice to log in again, never
with the unscoped service.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import gradio as gr

from chat_core.accounts.person import LOCAL, Person
from chat_core.service import ChatService

LOGIN_AGAIN = ("Your login was not recognised (it may have ended, or the account was "
               "disabled): reload the page and log in again.")
EVERYONE = "everyone"  # the owner filters' choice for "no filter"


class People(Protocol):
    """What the UI needs of the account directory (chat_core/accounts/directory.py)."""

    async def person_by_id(self, account_id: str) -> Person | None: ...


def accounts_on(service: ChatService) -> bool:
    """Share mode with accounts: each person sees only their own (settings.accounts_enabled)."""
    return bool(service.settings.accounts_enabled)


def directory_of(service: ChatService) -> Any:
    """The account directory, or None with accounts off (the service carries it as `people`)."""
    return service.people


async def person_for(service: ChatService, request: gr.Request | None) -> Person:
    """The person making this call. Raises gr.Error (shown to them) when accounts are on and
    the call carries no known account: nothing is done for an unknown caller."""
    if not accounts_on(service):
        return LOCAL
    people: People | None = directory_of(service)
    username = getattr(request, "username", None) if request is not None else None
    if people is None or not isinstance(username, str) or not username:
        raise gr.Error(LOGIN_AGAIN, title="Not logged in")
    person = await people.person_by_id(username)
    if person is None:
        raise gr.Error(LOGIN_AGAIN, title="Not logged in")
    return person


async def service_for(service: ChatService, request: gr.Request | None) -> ChatService:
    """The service as the caller sees it: their own data (an admin's: everyone's)."""
    if not accounts_on(service):
        return service
    return service.for_person(await person_for(service, request))


def sees_others(service: ChatService) -> bool:
    """Whether this (scoped) service shows other people's data: an admin with accounts on.
    Only then do the views show an owner and offer to filter by one."""
    return accounts_on(service) and service.person.sees_all


def own_only(service: ChatService) -> ChatService:
    """An admin's service narrowed to their own data (what the sidebar shows by default):
    the same person without the right to see everyone's."""
    if not sees_others(service) or service.person.id is None:
        return service
    return service.for_person(dataclasses.replace(service.person, is_admin=False))


async def owner_names(service: ChatService) -> list[str] | None:
    """The names an admin can filter by: every account (the directory's list_people), or
    None when the directory cannot list them (the views then offer the owners they show)."""
    listing = getattr(directory_of(service), "list_people", None)
    if listing is None:
        return None
    return sorted({p["name"] for p in await listing()}, key=str.casefold)
