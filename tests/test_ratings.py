"""Ratings of replies, fast: the real ChatService and store on a PostgreSQL database of this
module's own, accounts on, DBOS stood in for (tests/ui_fakes.room); the REST routes on an ASGI
transport (no server), each request made as the person the login would hand the routes; the
chat's thumbs through their handler with the gr.Request and like payload a client sends.

What a person notices: a thumb up or down sticks to the reply (and shows again when the
conversation is opened), a rating is replaced or taken back, bad input is refused with what to
fix and changes nothing, someone else's reply answers exactly like a missing one, ratings
travel in exports and imports, and withdrawal takes them away."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr
import httpx
import pytest
from fastapi import FastAPI, Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_core.accounts.person import Person
from chat_core.service import ChatService
from chat_core.states import (COMPLETE, MAX_RATING_COMMENT_CHARS, MAX_RATING_TAG_CHARS,
                              MAX_RATING_TAGS, RATING_VALUES)
from chat_core.store.migrations import MIGRATIONS_DIR, apply_migrations
from chat_core.ui.chat import ChatHandlers, ChatTab
from chat_core.ui.chat.view import (BEING_WRITTEN_NOTICE, GONE_NOTICE, NOT_RATED,
                                    RATED_NOTICE, following)
from chat_core.web.api import install_rest_api
from chat_core.web.api.deps import get_service
from tests.helpers import create_database, drop_database, query
from tests.ui_fakes import FakePeople, Room, caller, room

PARAMS = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 512, "system_prompt": ""}


class People(FakePeople):
    """The account directory, with withdrawal (DELETE /api/me/data withdraws consent)."""

    def __init__(self, url: str, *people: Person) -> None:
        super().__init__(*people)
        self.url = url

    async def withdraw_consent(self, person: Person) -> None:
        query(self.url, "UPDATE accounts SET consent_at = NULL, withdrawn_at = now()"
                        " WHERE id = %s RETURNING id", (person.id,))


@dataclass
class World:
    """Three people (alice, bob, and the admin) on one database, and the REST API."""
    room: Room
    url: str
    app: FastAPI = field(default_factory=FastAPI)

    def __post_init__(self) -> None:
        install_rest_api(self.app, self.room.service)
        self.app.dependency_overrides[get_service] = self._service
        self.room.service.people = People(self.url, self.alice, self.bob, self.admin)

    @property
    def alice(self) -> Person:
        return self.room.alice

    @property
    def bob(self) -> Person:
        return self.room.bob

    @property
    def admin(self) -> Person:
        return self.room.admin

    def _service(self, request: Request) -> ChatService:
        known = self.room.service.people.people  # type: ignore[union-attr]
        person = {str(p.id): p for p in known}[request.headers["x-test-person"]]
        return self.room.service.for_person(person)

    def service(self, person: Person) -> ChatService:
        return self.room.service.for_person(person)

    def run(self, coro: Any) -> Any:
        return self.room.run(coro)

    def call(self, person: Person, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                         base_url="http://t") as http:
                headers = {**kwargs.pop("headers", {}), "x-test-person": str(person.id)}
                return await http.request(method, path, headers=headers, **kwargs)
        return self.run(go())

    def person(self, name: str, consent: bool = True) -> Person:
        """Another account, who accepted the notice or not."""
        someone = Person(uuid.uuid4(), f"{name}-{uuid.uuid4().hex[:6]}")
        query(self.url, "INSERT INTO accounts (id, name, name_key, source, consent_at)"
                        " VALUES (%s, %s, %s, 'config', CASE WHEN %s THEN now() END)"
                        " RETURNING id", (someone.id, someone.name, someone.name, consent))
        self.room.service.people.people.append(someone)  # type: ignore[union-attr]
        return someone

    def conversation(self, owner: Person, title: str = "rated") -> str:
        return str(self.run(self.service(owner).create_conversation(title))["id"])

    def turn(self, conversation_id: str, question: str, answer: str | None,
             model: str = "model-a", system_prompt: str = "") -> tuple[str, str]:
        """A turn as its workflow records it: (user message id, reply id); the reply
        finished with `answer` by `model`, or still being written (None)."""
        turn_id = f"turn-{uuid.uuid4()}"
        user, reply = self.run(self.room.system.save_user_turn(
            uuid.UUID(conversation_id), turn_id, uuid.uuid4(), uuid.uuid4(), question))
        if answer is not None:
            self.finish(reply["id"], answer, model, system_prompt)
        return str(user["id"]), str(reply["id"])

    def alternative(self, user_id: str, answer: str, model: str = "model-a",
                    system_prompt: str = "") -> str:
        """Another reply to a user message (regenerate); it becomes the one shown."""
        system = self.room.system
        user = self.run(system.get_message(uuid.UUID(user_id)))
        reply_id = uuid.uuid4()
        self.run(system.ensure_reply(user, reply_id, f"turn-{uuid.uuid4()}"))
        self.finish(reply_id, answer, model, system_prompt)
        return str(reply_id)

    def finish(self, reply_id: Any, answer: str, model: str, system_prompt: str) -> None:
        self.run(self.room.system.finish_reply(
            reply_id if isinstance(reply_id, uuid.UUID) else uuid.UUID(str(reply_id)),
            content=answer, status=COMPLETE, model=model,
            params={**PARAMS, "system_prompt": system_prompt}))

    def ratings(self) -> dict[str, tuple[Any, ...]]:
        return {str(r[0]): tuple(r[1:]) for r in query(
            self.url, "SELECT message_id, value, tags, comment FROM ratings")}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    url = create_database("ratings")
    try:
        asyncio.run(apply_migrations(url))
        with pytest.MonkeyPatch.context() as patch, room(url, patch) as r:
            yield World(r, url)
    finally:
        drop_database(url)


def rating_path(cid: str, mid: str) -> str:
    return f"/api/conversations/{cid}/messages/{mid}/rating"


def messages(world: World, person: Person, cid: str) -> dict[str, dict[str, Any]]:
    answer = world.call(person, "GET", f"/api/conversations/{cid}/messages")
    assert answer.status_code == 200, answer.text
    return {m["id"]: m for m in answer.json()}


# -- the limits are the migration's -----------------------------------------------------------

def test_the_limits_are_the_ones_the_database_checks() -> None:
    sql = (MIGRATIONS_DIR / "007_ratings.sql").read_text(encoding="utf-8")
    assert f"value IN ({', '.join(map(str, RATING_VALUES))})" in sql
    assert f"cardinality(tags) <= {MAX_RATING_TAGS}" in sql
    assert f"length(t) BETWEEN 1 AND {MAX_RATING_TAG_CHARS}" in sql
    assert f"length(comment) <= {MAX_RATING_COMMENT_CHARS}" in sql


# -- the REST API -----------------------------------------------------------------------------

def test_a_reply_is_rated_replaced_and_taken_back(world: World) -> None:
    cid = world.conversation(world.alice)
    _, reply = world.turn(cid, "What is a heron?", "A long-legged bird.")
    rated = world.call(world.alice, "PUT", rating_path(cid, reply), json={
        "value": 1, "tags": [" accurate ", "concise", "accurate"], "comment": "just right"})
    assert rated.status_code == 200, rated.text
    body = rated.json()
    assert (body["message_id"], body["conversation_id"], body["value"]) == (reply, cid, 1)
    assert body["tags"] == ["accurate", "concise"] and body["comment"] == "just right"
    shown = messages(world, world.alice, cid)[reply]["rating"]
    assert shown["value"] == 1 and shown["tags"] == ["accurate", "concise"]

    replaced = world.call(world.alice, "PUT", rating_path(cid, reply), json={"value": -1})
    assert replaced.status_code == 200 and replaced.json()["tags"] == []  # a PUT replaces all
    assert world.ratings()[reply] == (-1, [], "")

    removed = world.call(world.alice, "PUT", rating_path(cid, reply), json={"value": 0})
    assert removed.status_code == 200 and removed.json()["value"] == 0
    assert reply not in world.ratings()
    assert messages(world, world.alice, cid)[reply]["rating"] is None
    again = world.call(world.alice, "PUT", rating_path(cid, reply), json={"value": 0})
    assert again.status_code == 200  # taking back what is not there is no error


BAD_BODIES: list[tuple[Any, int, str]] = [
    ({"value": 2}, 422, "1 (thumbs up), -1"),
    ({"value": "1"}, 422, "thumbs"),
    ({"value": True}, 422, "thumbs"),
    ({"value": 1.0}, 422, "thumbs"),
    ({"value": None}, 422, "thumbs"),
    ({"tags": ["fine"]}, 422, '"value"'),
    ({"value": 1, "tags": "accurate"}, 422, "list"),
    ({"value": 1, "tags": [f"t{i}" for i in range(MAX_RATING_TAGS + 1)]}, 422, "limit"),
    ({"value": 1, "tags": ["x" * (MAX_RATING_TAG_CHARS + 1)]}, 422, "limit"),
    ({"value": 1, "tags": ["  "]}, 422, "empty"),
    ({"value": 1, "tags": ["\u200b"]}, 422, "visible"),              # a zero-width space
    ({"value": 1, "tags": ["\u3164\ufe0f\u2060"]}, 422, "visible"),  # a Hangul filler...
    ({"value": 1, "tags": [3]}, 422, "string"),
    ({"value": 1, "tags": ["a\u0000b"]}, 422, "NUL"),
    ({"value": 1, "comment": "x" * (MAX_RATING_COMMENT_CHARS + 1)}, 422, "limit"),
    ({"value": 1, "comment": 5}, 422, "string"),
    ({"value": 1, "comment": "\ud800"}, 422, "surrogate"),
    ({"value": 1, "stars": 5}, 422, "unknown field"),
    ([1], 422, "JSON object"),
    (b"{", 400, "not valid JSON"),
    (b"", 400, "empty"),
]


@pytest.mark.parametrize("body,status,words", BAD_BODIES,
                         ids=[f"bad{i}" for i in range(len(BAD_BODIES))])
def test_bad_ratings_are_refused_with_the_fix_and_change_nothing(
        world: World, body: Any, status: int, words: str) -> None:
    cid = world.conversation(world.alice)
    _, reply = world.turn(cid, "Rate me", "An answer.")
    assert world.call(world.alice, "PUT", rating_path(cid, reply),
                      json={"value": 1, "tags": ["kept"]}).status_code == 200
    before = world.ratings()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = world.call(world.alice, "PUT", rating_path(cid, reply), content=raw,
                        headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"] and answer.json()["code"]
    assert world.ratings() == before


def test_only_a_finished_reply_is_rated(world: World) -> None:
    cid = world.conversation(world.alice)
    user, _ = world.turn(cid, "Answered", "Yes.")
    _, pending = world.turn(cid, "Still being written", None)
    own = world.call(world.alice, "PUT", rating_path(cid, user), json={"value": 1})
    assert own.status_code == 422 and "only a reply" in own.json()["error"]
    busy = world.call(world.alice, "PUT", rating_path(cid, pending), json={"value": -1})
    assert busy.status_code == 409 and "still being written" in busy.json()["error"]
    assert not {user, pending} & set(world.ratings())


def _masked(answer: httpx.Response, *ids: str) -> tuple[int, str]:
    text = answer.text
    for i in ids:
        text = text.replace(i, "<id>")
    return answer.status_code, text


def test_someone_elses_reply_answers_like_a_missing_one(world: World) -> None:
    hers = world.conversation(world.alice, "Alice's")
    _, reply = world.turn(hers, "private question", "private answer")
    other = world.conversation(world.alice, "Alice's other")
    random_cid, random_mid = str(uuid.uuid4()), str(uuid.uuid4())
    theirs = world.call(world.bob, "PUT", rating_path(hers, reply), json={"value": -1})
    missing = world.call(world.bob, "PUT", rating_path(random_cid, random_mid),
                         json={"value": -1})
    assert theirs.status_code == 404
    assert _masked(theirs, hers, reply) == _masked(missing, random_cid, random_mid)
    # Her own reply named under another conversation of hers is not found either.
    elsewhere = world.call(world.alice, "PUT", rating_path(other, reply), json={"value": 1})
    assert elsewhere.status_code == 404
    assert reply not in world.ratings()
    # A malformed id is a 404 too, as for every other endpoint.
    assert world.call(world.bob, "PUT", rating_path(hers, "not-an-id"),
                      json={"value": 1}).status_code == 404
    # A rating is the owner's own judgement: the admin, who sees Alice's reply, cannot rate
    # it in her name (nor take her rating back); it answers as a missing one does.
    assert world.run(world.service(world.alice).rate_reply(hers, reply, -1))["value"] == -1
    for value in (1, 0):
        admins = world.call(world.admin, "PUT", rating_path(hers, reply), json={"value": value})
        assert _masked(admins, hers, reply) == _masked(missing, random_cid, random_mid)
    assert world.ratings()[reply][0] == -1
    assert messages(world, world.admin, hers)[reply]["rating"]["value"] == -1  # seen, though
    assert world.run(world.service(world.alice).rate_reply(hers, reply, 0))["value"] == 0


def test_ratings_travel_in_an_export_and_the_import_is_the_importers(world: World) -> None:
    cid = world.conversation(world.alice, "Export me")
    user, first = world.turn(cid, "Tell me a joke", "Why did the heron...")
    second = world.alternative(user, "A heron walks into a bar.")
    world.call(world.alice, "PUT", rating_path(cid, first), json={"value": -1,
                                                                   "comment": "flat"})
    world.call(world.alice, "PUT", rating_path(cid, second),
               json={"value": 1, "tags": ["funny"]})
    export = world.call(world.alice, "GET", f"/api/conversations/{cid}/export")
    assert export.status_code == 200
    exported = {m["content"]: m.get("rating") for m in export.json()["messages"]}
    assert exported["Why did the heron..."]["comment"] == "flat"
    assert exported["A heron walks into a bar."]["tags"] == ["funny"]

    imported = world.call(world.bob, "POST", "/api/conversations/import", json=export.json())
    assert imported.status_code == 201, imported.text
    new = imported.json()["id"]
    got = {m["content"]: m.get("rating") for m in messages(world, world.bob, new).values()}
    assert got["Why did the heron..."]["value"] == -1
    liked = got["A heron walks into a bar."]
    assert (liked["value"], liked["tags"], liked["comment"]) == (1, ["funny"], "")
    assert got["Tell me a joke"] is None
    # The copy and its ratings are Bob's: Alice's scope does not reach them.
    assert world.call(world.alice, "GET", f"/api/conversations/{new}/messages").status_code \
        == 404


@pytest.mark.parametrize("rating,words", [
    ({"value": 3}, "messages[1].rating"), ("up", "rating must be an object"),
    ({"value": 1, "tags": ["x" * 41]}, "limit"), ({"value": 1, "created_at": "soon"}, "ISO")])
def test_an_import_with_a_bad_rating_is_refused_whole(world: World, rating: Any,
                                                      words: str) -> None:
    before = query(world.url, "SELECT count(*) FROM conversations")[0][0]
    export = {"format": "durable-chat/conversation", "version": 1,
              "conversation": {"title": "bad"},
              "messages": [{"id": "u", "role": "user", "content": "hi"},
                           {"id": "r", "role": "assistant", "content": "hello", "parent_id": "u",
                            "rating": rating}]}
    answer = world.call(world.bob, "POST", "/api/conversations/import", json=export)
    assert answer.status_code == 422 and words in answer.json()["error"], answer.text
    assert query(world.url, "SELECT count(*) FROM conversations")[0][0] == before


def test_withdrawal_takes_the_ratings_with_it(world: World) -> None:
    carol = world.person("carol")
    cid = str(world.run(world.service(carol).create_conversation("mine"))["id"])
    _, reply = world.turn(cid, "a question", "an answer")
    theirs = world.conversation(world.bob)
    _, kept = world.turn(theirs, "Bob's", "stays")
    assert world.run(world.service(carol).rate_reply(cid, reply, 1))["value"] == 1
    assert world.run(world.service(world.bob).rate_reply(theirs, kept, -1))["value"] == -1

    withdrawn = world.call(carol, "DELETE", "/api/me/data")
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["deleted_conversations"] == 1
    assert reply not in world.ratings() and kept in world.ratings()
    assert query(world.url, "SELECT consent_at FROM accounts WHERE id = %s",
                 (carol.id,)) == [(None,)]


# -- the chat's thumbs ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tab() -> Iterator[ChatTab]:
    with gr.Blocks():
        yield ChatTab(SimpleNamespace(settings=SimpleNamespace(  # type: ignore[arg-type]
            max_message_chars=100, accounts_enabled=True)))


@pytest.fixture()
def chat(tab: ChatTab, world: World) -> ChatHandlers:
    return ChatHandlers(world.room.service, tab.ui, True)


def like(index: Any, liked: Any) -> Any:
    """The gr.LikeData a click sends, as Gradio builds it from the client's payload."""
    return gr.LikeData(None, {"index": index, "value": ["whatever the client says"],
                              "liked": liked})


def shown(world: World, chat: ChatHandlers, tab: ChatTab, cid: str, person: Person
          ) -> dict[str, Any]:
    """The pane's view (a State, the server's own) once `person` opened the conversation."""
    return world.run(chat.open(cid, caller(person)))[tab.ui.view]


def test_the_thumbs_rate_the_reply_shown_at_that_place(world: World, chat: ChatHandlers,
                                                       tab: ChatTab) -> None:
    cid = world.conversation(world.alice)
    world.turn(cid, "first", "one")
    _, second = world.turn(cid, "second", "two")
    me = caller(world.alice)
    view = shown(world, chat, tab, cid, world.alice)
    out = world.run(chat.rate(cid, view, None, like(3, True), me))  # user, reply, user, reply
    assert out[tab.ui.notice] == RATED_NOTICE[1]
    assert out[tab.ui.rating_row] == gr.update(visible=True)  # tags and a comment, if wished
    assert world.ratings()[second][0] == 1
    world.run(chat.rate(cid, view, None, like(3, False), me))
    assert world.ratings()[second][0] == -1
    out = world.run(chat.rate(cid, view, None, like(3, ""), me))  # the lit thumb pressed again
    assert second not in world.ratings() and out[tab.ui.rating_row] == gr.update(visible=False)


def test_the_thumb_rates_the_reply_the_person_sees_not_a_newer_one(
        world: World, chat: ChatHandlers, tab: ChatTab) -> None:
    """The pane is what the person judged: a reply made in another tab meanwhile (or a turn
    that pushed the oldest out of the pane) does not move the thumb to another reply."""
    cid = world.conversation(world.alice)
    user_id, seen = world.turn(cid, "first", "the reply she read")
    view = shown(world, chat, tab, cid, world.alice)
    newer = world.alternative(user_id, "a reply made in another tab")  # shown from now on
    out = world.run(chat.rate(cid, view, None, like(1, False), caller(world.alice)))
    assert out[tab.ui.notice] == RATED_NOTICE[-1]
    assert world.ratings()[seen][0] == -1 and newer not in world.ratings()
    # While Regenerate writes a new reply at that place, the thumb there is the new one's.
    regenerating = following("turn-x", cid, [{"role": "user", "content": "first"}])
    out = world.run(chat.rate(cid, view, regenerating, like(1, True), caller(world.alice)))
    assert out[tab.ui.notice] == BEING_WRITTEN_NOTICE and world.ratings()[seen][0] == -1
    # A pane with nothing at that place (no conversation shown yet) rates nothing.
    for empty in ({}, None, {"ids": "not a list"}):
        out = world.run(chat.rate(cid, empty, None, like(1, True), caller(world.alice)))
        assert out[tab.ui.notice] == GONE_NOTICE
    assert world.ratings()[seen][0] == -1


def test_tags_and_a_comment_go_with_the_thumb(world: World, chat: ChatHandlers,
                                               tab: ChatTab) -> None:
    ui, me = tab.ui, caller(world.alice)
    cid = world.conversation(world.alice)
    _, reply = world.turn(cid, "question", "answer")
    assert "first" in world.run(chat.save_rating(None, "x", "y", me))[ui.notice]
    view = shown(world, chat, tab, cid, world.alice)
    rated = world.run(chat.rate(cid, view, None, like(1, True), me))[ui.rated]
    saved = world.run(chat.save_rating(rated, " accurate, too long ,, ", "fine", me))
    assert saved[ui.rating_row] == gr.update(visible=False)
    assert world.ratings()[reply] == (1, ["accurate", "too long"], "fine")
    # Changing the thumb keeps the words, and offers them again.
    out = world.run(chat.rate(cid, view, None, like(1, False), me))
    assert (out[ui.rating_tags], out[ui.rating_comment]) == ("accurate, too long", "fine")
    assert world.ratings()[reply] == (-1, ["accurate", "too long"], "fine")
    before = world.ratings()
    for tags, comment in ((",".join(f"t{i}" for i in range(50)), ""), ("ok", "x" * 5000),
                          (["a", 5], ""), ("ok", 7)):
        refused = world.run(chat.save_rating(out[ui.rated], tags, comment, me))
        assert "⚠️" in refused[ui.notice] and ui.rating_row not in refused
    assert world.ratings() == before
    # A rated reply of someone else's (a State the page cannot write, but still checked).
    theirs = {**out[ui.rated]}
    assert "does not exist" in world.run(chat.save_rating(theirs, "x", "", caller(world.bob))
                                         )[ui.notice]
    assert world.ratings() == before


def test_an_opened_conversation_lights_its_rated_thumbs(world: World, chat: ChatHandlers,
                                                        tab: ChatTab) -> None:
    cid = world.conversation(world.alice)
    _, first = world.turn(cid, "first", "one")
    world.turn(cid, "second", "two")
    world.run(world.service(world.alice).rate_reply(cid, first, -1))
    shown = world.run(chat.open(cid, caller(world.alice)))
    view = shown[tab.ui.view]
    assert view["feedback"] == ["Dislike", None]
    hidden = gr.update(visible=False)  # and an earlier rating's tags box put away
    assert world.run(chat.feedback_shown(view)) == [
        gr.update(feedback_value=["Dislike", None]), hidden]
    assert world.run(chat.feedback_shown({})) == [gr.update(feedback_value=[]), hidden]


HOSTILE_LIKES: list[tuple[Any, Any, str]] = [
    (99, True, GONE_NOTICE),                 # past the pane
    (-1, True, NOT_RATED),
    (True, True, NOT_RATED),                 # a bool is no position
    ("1", True, NOT_RATED),
    ([1, 0], True, NOT_RATED),
    (None, True, NOT_RATED),
    (1.0, True, NOT_RATED),
    (2**70, True, GONE_NOTICE),
    (1, "Like", NOT_RATED),                  # Gradio sends True, False or ""
    (1, 1, NOT_RATED),
    (1, None, NOT_RATED),
    (1, {"value": 1}, NOT_RATED),
    (1, "\ud800", NOT_RATED),
    (0, True, "only a reply"),               # the user's own message
]


@pytest.mark.parametrize("index,liked,notice", HOSTILE_LIKES,
                         ids=[f"hostile{i}" for i in range(len(HOSTILE_LIKES))])
def test_a_hostile_like_payload_rates_nothing(world: World, chat: ChatHandlers, tab: ChatTab,
                                              index: Any, liked: Any, notice: str) -> None:
    cid = world.conversation(world.alice)
    world.turn(cid, "question", "answer")
    view = shown(world, chat, tab, cid, world.alice)
    before = world.ratings()
    out = world.run(chat.rate(cid, view, None, like(index, liked), caller(world.alice)))
    assert set(out) == {tab.ui.notice} and notice in out[tab.ui.notice]
    assert world.ratings() == before


def test_the_thumbs_reach_only_the_callers_conversations(world: World, chat: ChatHandlers,
                                                         tab: ChatTab) -> None:
    hers = world.conversation(world.alice)
    _, reply = world.turn(hers, "hers", "her answer")
    # Her pane's view, as if the State held it (the page cannot write a State: still checked).
    view = shown(world, chat, tab, hers, world.alice)
    for conversation in (hers, str(uuid.uuid4()), {"id": hers}, None, "x" * 10_000):
        out = world.run(chat.rate(conversation, view, None, like(1, True), caller(world.bob)))
        assert set(out) == {tab.ui.notice}
        assert "does not exist" in out[tab.ui.notice] or out[tab.ui.notice] == NOT_RATED
    assert reply not in world.ratings()
    with pytest.raises(gr.Error):  # no login: fail closed, nothing done for nobody
        world.run(chat.rate(hers, view, None, like(1, True), caller(None)))
    assert reply not in world.ratings()
    # The admin sees her conversation, but a rating is the owner's own.
    admins = shown(world, chat, tab, hers, world.admin)
    out = world.run(chat.rate(hers, admins, None, like(1, True), caller(world.admin)))
    assert "does not exist" in out[tab.ui.notice] and reply not in world.ratings()


# -- any body at all ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(["\x00", "\ud800", "'; DROP TABLE ratings; --"]),
    lambda inner: st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"value": json_values}, optional={"tags": json_values,
                                                           "comment": json_values}),
    st.fixed_dictionaries({"value": st.sampled_from([-1, 0, 1])},
                          optional={"tags": st.lists(st.text(max_size=50), max_size=12),
                                    "comment": st.text(max_size=40)}))


def test_any_rating_body_is_a_rating_or_a_clear_4xx(world: World) -> None:
    cid = world.conversation(world.alice)
    _, reply = world.turn(cid, "q", "a")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies)
    def check(body: Any) -> None:
        raw = json.dumps(body).encode()  # lone surrogates travel escaped, as a browser sends
        answer = world.call(world.alice, "PUT", rating_path(cid, reply), content=raw,
                            headers={"content-type": "application/json"})
        stored = world.ratings().get(reply)
        if answer.status_code == 200:
            value = answer.json()["value"]
            assert (stored[0] if stored else 0) == value
            assert stored is None or stored[1] == answer.json()["tags"]
        else:
            assert 400 <= answer.status_code < 500 and answer.json()["error"], answer.text

    check()

