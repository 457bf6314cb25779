"""Withdrawal: DELETE /api/me/data takes a person's text out of everything that reads it (the
export, the notebooks' frames, DBOS's workflow records, the Workflows list, a shared page) and
withdraws their consent, while another person's data stays. On the real app (DBOS, PostgreSQL,
the emulated LLM); the person comes in through the API's service dependency, as the login
would hand it over."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from types import SimpleNamespace
from typing import Any

import gradio as gr
import httpx
import pytest
from dbos import DBOS
from fastapi import FastAPI

from chat_core.accounts.directory import AccountDirectory
from chat_core.accounts.person import Person
from chat_core.data.analytics import Analytics
from chat_core.service import ChatService
from chat_core.ui.account_tab import build_account_tab
from chat_core.web.api import install_rest_api
from chat_core.web.api.deps import get_service
from tests.helpers import InProcessApp, query

pytestmark = pytest.mark.slow  # the real app


def _account(app: InProcessApp, name: str) -> Person:
    person = Person(uuid.uuid4(), name)
    query(app.settings.database_url,
          "INSERT INTO accounts (id, name, name_key, source, consent_at)"
          " VALUES (%s, %s, %s, 'config', now()) RETURNING id",
          (person.id, name, f"{name}-{person.id}"))
    return person


def _directory(app: InProcessApp) -> AccountDirectory:
    """The account directory on the app's database (the app itself runs without accounts)."""
    assert app.service is not None
    return AccountDirectory(app.service.store.db, app.settings)


def _consent(url: str, person: Person) -> tuple[bool, bool]:
    """Whether the person's consent stands, and whether they withdrew it."""
    [row] = query(url, "SELECT consent_at IS NOT NULL, withdrawn_at IS NOT NULL FROM accounts"
                       " WHERE id = %s", (person.id,))
    return row[0], row[1]


def _as(app: InProcessApp, service: ChatService, method: str, path: str) -> httpx.Response:
    """A REST call answered by the app's routes for `service`'s person, on the app's loop."""
    api = FastAPI()
    assert app.service is not None
    install_rest_api(api, app.service)
    api.dependency_overrides[get_service] = lambda: service

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                     base_url="http://t") as http:
            return await http.request(method, path)
    return app.call(go())


def _chat(app: InProcessApp, service: ChatService, text: str, turns: int) -> tuple[str, list[str]]:
    """A conversation of `service`'s person with `turns` turns about `text`, and their ids."""
    cid = app.call(service.create_conversation(f"about {text}"))["id"]
    workflows = []
    for i in range(turns):
        done = app.call(service.send_message(cid, f"{text} #{i}"))
        workflows.append(done["assistant_message"]["workflow_id"])
    again = app.call(service.retry_turn(cid, done["user_message"]["id"]))  # an alternative
    app.call(service.wait_turn(again))
    return cid, [*workflows, again.turn_id]


def _dbos_text(app: InProcessApp) -> str:
    """Everything DBOS keeps of every turn: inputs, outputs, and each step's output."""
    async def dump() -> str:
        parts = []
        for w in await DBOS.list_workflows_async(load_input=True, load_output=True):
            parts.append(repr((w.workflow_id, w.input, w.output, w.error)))
            for step in await DBOS.list_workflow_steps_async(w.workflow_id):
                parts.append(repr(step))
        return "\n".join(parts)
    return app.call(dump())


def _frames_text(url: str) -> tuple[str, set[str]]:
    """The notebooks' frames as text, and the turns they show."""
    with Analytics.connect(url) as data:
        turns = data.turns()
        text = "\n".join(frame.to_csv() for frame in (data.conversations(), data.messages(),
                                                      turns))
        return text, set(turns.workflow_id)


def test_withdrawal_removes_the_persons_text_everywhere(app: InProcessApp) -> None:
    assert app.service is not None
    url = app.settings.database_url
    ann, bob = _account(app, "ann"), _account(app, "bob")
    mine, theirs = app.service.for_person(ann), app.service.for_person(bob)
    secret, kept = f"ann-secret-{uuid.uuid4().hex}", f"bob-kept-{uuid.uuid4().hex}"
    cids, ann_turns = zip(*[_chat(app, mine, secret, 2), _chat(app, mine, secret, 1)])
    bob_cid, bob_turns = _chat(app, theirs, kept, 1)
    link = _as(app, mine, "POST", f"/api/conversations/{cids[0]}/links").json()
    ann_turns = [t for turns in ann_turns for t in turns]
    # One she deleted herself earlier: DBOS still held its turns until she withdrew.
    gone_cid, gone_turns = _chat(app, mine, secret, 1)
    app.call(mine.delete_conversation(gone_cid))
    ann_turns += gone_turns
    # And a blind comparison, still sealed: its sides are in no list of hers.
    compared = app.call(mine.comparisons().create(f"{secret} compared",
                                                  {"settings": {"temperature": 0.1}},
                                                  {"settings": {"temperature": 0.9}}))
    app.call(mine.comparisons().wait_round(compared))
    ann_turns += [turn.turn_id for turn in compared.turns.values()]
    # And one she deleted herself: DBOS still holds its round (whose input is her prompt).
    deleted = app.call(mine.comparisons().create(f"{secret} deleted",
                                                 {"settings": {"temperature": 0.2}},
                                                 {"settings": {"temperature": 0.8}}))
    app.call(mine.comparisons().wait_round(deleted))
    app.call(mine.comparisons().delete(deleted.comparison_id))
    ann_turns += [turn.turn_id for turn in deleted.turns.values()]
    frames, shown = _frames_text(url)
    assert secret in frames and set(ann_turns) <= shown  # the checks below can fail
    assert secret in _dbos_text(app)

    mine.people = _directory(app)  # type: ignore[attr-defined]
    answer = _as(app, mine, "DELETE", "/api/me/data")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"deleted_conversations": 2, "deleted_comparisons": 1,
                             "deleted_turns": len(ann_turns), "consent_withdrawn": True}
    assert (_consent(url, ann), _consent(url, bob)) == ((False, True), (True, False))

    for cid in cids:  # the export: gone for her and for an admin alike
        assert _as(app, mine, "GET", f"/api/conversations/{cid}/export").status_code == 404
        with app.client() as http:
            assert http.get(f"/api/conversations/{cid}/export").status_code == 404
    with app.client() as http:
        assert http.get(link["url_path"]).status_code == 404
        listed = http.get("/api/workflows", params={"limit": 500}).json()
    assert not set(ann_turns) & {w["workflow_id"] for w in listed}
    assert _as(app, mine, "GET", "/api/conversations").json() == []

    frames, shown = _frames_text(url)
    assert secret not in frames and not set(ann_turns) & shown
    assert kept in frames and set(bob_turns) <= shown  # Bob's data stays
    with Analytics.connect(url) as data:
        assert data.steps(ann_turns).empty
        with pytest.raises(LookupError):
            data.turn_request(ann_turns[0])
    dbos = _dbos_text(app)
    assert secret not in dbos and kept in dbos
    with app.client() as http:
        assert http.get(f"/api/conversations/{bob_cid}/export").status_code == 200


def test_withdrawal_needs_accounts(app: InProcessApp) -> None:
    """Local mode has one person and no consent to withdraw: the answer says why."""
    with app.client() as http:
        answer = http.delete("/api/me/data")
    assert answer.status_code == 422
    assert "SHARE_AUTH" in answer.json()["error"]


def test_withdrawal_of_a_person_with_nothing(app: InProcessApp) -> None:
    assert app.service is not None
    nobody = app.service.for_person(_account(app, "nobody"))
    answer: Any = _as(app, nobody, "DELETE", "/api/me/data").json()
    assert answer == {"deleted_conversations": 0, "deleted_comparisons": 0,
                      "deleted_turns": 0, "consent_withdrawn": False}


def test_withdrawal_from_the_account_tab(app: InProcessApp) -> None:
    """The tab's confirmed button does what DELETE /api/me/data does, as the caller."""
    assert app.service is not None
    url = app.settings.database_url
    ann, bob = _account(app, "ann"), _account(app, "bob")
    words, kept = f"tab-secret-{uuid.uuid4().hex}", f"tab-kept-{uuid.uuid4().hex}"
    _chat(app, app.service.for_person(ann), words, 1)
    bob_cid, _ = _chat(app, app.service.for_person(bob), kept, 1)
    service = copy.copy(app.service)  # the app's, with accounts on (the login is elsewhere)
    service.settings = dataclasses.replace(app.settings, share_auth="host:long-enough-pw")
    service.people = _directory(app)  # type: ignore[attr-defined]
    with gr.Blocks():
        handlers = build_account_tab(service).handlers
    part = handlers.ui.accounts
    assert part is not None
    done = app.call(handlers.withdraw("delete", SimpleNamespace(username=str(ann.id))))
    assert "Deleted 1 conversation(s)" in done[part.withdraw_notice]
    assert done[handlers.ui.conversation]["choices"] == []
    assert (_consent(url, ann), _consent(url, bob)) == ((False, True), (True, False))
    assert words not in _dbos_text(app) and words not in _frames_text(url)[0]
    with app.client() as http:
        assert http.get(f"/api/conversations/{bob_cid}/export").status_code == 200
