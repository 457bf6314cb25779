"""The REST API's admin views, fast (no app process: the API's routes on the real service and
PostgreSQL, DBOS stood in for, the person given per request): GET /api/conversations?owner= and
GET /api/workflows?owner= narrow an admin's lists to one person; anyone else's owner= is the
404 of a name nobody has; GET /api/admin/load is the admin's, a 404 for anyone else."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import httpx
import pytest
from fastapi import FastAPI, Request

from chat_core.accounts.person import Person
from chat_core.web.api import install_rest_api
from chat_core.web.api.deps import get_person
from tests.ui_fakes import Room, room


@pytest.fixture()
def people(migrated_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Room]:
    with room(migrated_database_url, monkeypatch) as r:
        yield r


class Api:
    """GET a path as a person, answered by the API's routes on the room's event loop."""

    def __init__(self, r: Room) -> None:
        self.room = r
        self.app = FastAPI()
        install_rest_api(self.app, r.service)
        self.app.state.accounts = r.service.people  # type: ignore[attr-defined]
        by_name = {p.name: p for p in (r.alice, r.bob, r.admin)}

        def person(request: Request) -> Person:
            return by_name[request.headers["x-person"]]

        self.app.dependency_overrides[get_person] = person

    async def aget(self, person: Person, path: str, **params: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            return await http.get(path, params=params, headers={"x-person": person.name})

    def __call__(self, person: Person, path: str, **params: str) -> httpx.Response:
        return self.room.run(self.aget(person, path, **params))  # type: ignore[no-any-return]


def api(r: Room) -> Api:
    return Api(r)


def test_an_admin_lists_one_persons_conversations_and_turns(people: Room) -> None:
    r, get = people, api(people)
    hers = r.conversation(r.alice, "Alice's")
    her_turn = r.turn(r.alice, hers, "a word: avocet", "ok")[0]
    his = r.conversation(r.bob, "Bob's")
    r.turn(r.bob, his, "another: avocet", "ok")
    everyone = get(r.admin, "/api/conversations").json()
    assert {hers, his} <= {c["id"] for c in everyone}
    only = get(r.admin, "/api/conversations", owner=r.alice.name.upper())  # any case
    assert only.status_code == 200
    assert [(c["id"], c["owner"]) for c in only.json()] == [(hers, r.alice.name)]
    found = get(r.admin, "/api/conversations", q="avocet", owner=r.alice.name).json()
    assert [c["id"] for c in found] == [hers]
    turns = get(r.admin, "/api/workflows", owner=r.alice.name).json()
    assert [(t["workflow_id"], t["owner"]) for t in turns] == [(her_turn, r.alice.name)]


@pytest.mark.parametrize("path", ["/api/conversations", "/api/workflows"])
def test_an_owner_filter_of_anyone_else_reads_as_a_name_nobody_has(people: Room,
                                                                   path: str) -> None:
    r, get = people, api(people)
    r.conversation(r.alice, "Alice's")
    unknown = get(r.admin, path, owner="nobody-by-this-name")
    assert unknown.status_code == 404
    for name in (r.alice.name, r.bob.name, "nobody-by-this-name"):
        answer = get(r.bob, path, owner=name)
        assert answer.status_code == 404
        assert answer.json() == {"error": f"no person named {name!r}", "code": "not_found"}
        assert answer.json()["error"].replace(name, "?") == \
            unknown.json()["error"].replace("nobody-by-this-name", "?")
    long = get(r.admin, path, owner="x" * 10_000)
    assert long.status_code == 404 and len(long.json()["error"]) < 120


def test_the_load_is_the_admins(people: Room) -> None:
    r, get = people, api(people)
    gate = r.service.llm.gate

    async def hold(owner: str) -> None:
        async with gate.turn(owner):
            await asyncio.sleep(60)

    async def during() -> httpx.Response:
        held = [asyncio.ensure_future(hold(r.alice.key)) for _ in range(3)]
        await asyncio.sleep(0)
        try:
            return await get.aget(r.admin, "/api/admin/load")
        finally:
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)

    load = r.run(during()).json()
    assert (load["capacity"], load["running"], load["waiting"]) == (2, 2, 1)
    assert load["owners"] == [{"owner": r.alice.name, "running": 2, "waiting": 1}]
    assert get(r.admin, "/api/admin/load").json()["owners"] == []
    missing = get(r.bob, "/api/no-such-route")
    refused = get(r.bob, "/api/admin/load")
    assert refused.status_code == missing.status_code == 404
    assert refused.json()["code"] == missing.json()["code"] == "not_found"
    assert refused.json()["error"].replace("admin/load", "?") == \
        missing.json()["error"].replace("no-such-route", "?")
