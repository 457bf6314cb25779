"""Share mode in the browser: three people in three browser contexts log in on the login page,
each chats, and each sees only their own conversations in the sidebar, after a reload too.
And the same through Gradio's queue, skipping the page: someone's session cookie with another
person's conversation id gets nothing of it and changes nothing. The app is conftest's `room`,
shared with tests/test_isolation_api.py: other conversations may be there."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.browser_support import (browser, screenshot, send, wait_idle,  # noqa: F401
                                   wait_loaded, watch_reply)
from tests.helpers import ROOM, AppProcess, query
from tests.test_gradio_events_hostile import body_for, join_queue

pytestmark = pytest.mark.slow  # the real app and Chromium

PEOPLE = ROOM


def log_in(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.wait_for_selector("input[name=username]")  # the app sends a stranger to log in
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PEOPLE[name])
    page.click("button[type=submit]")
    wait_loaded(page)  # where the login sends them: the app (no second load of it)


def sidebar_titles(page: Page) -> list[str]:
    page.wait_for_selector("#sidebar label")  # the page's load event fills the list
    return page.locator("#sidebar label").all_inner_texts()


def test_three_people_each_see_only_their_own(browser: Browser,  # noqa: F811
                                              room: AppProcess) -> None:
    pages: dict[str, Page] = {}
    try:
        for name in PEOPLE:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            pages[name] = context.new_page()
            pages[name].set_default_timeout(20_000)
            log_in(pages[name], room.url, name)
        for name, page in pages.items():
            send(page, f"{name}s private question")
            watch_reply(page, f"Reply to [{name}s private question]")
            wait_idle(page)
        for name, page in pages.items():
            page.reload()
            wait_loaded(page)
            titles = sidebar_titles(page)
            assert any(f"{name}s private question" in t for t in titles), (name, titles)
            others = [o for o in PEOPLE if o != name]
            assert not any(f"{o}s private" in t for t in titles for o in others), (name, titles)
            assert not any(f"{o}s private" in page.content() for o in others)
    finally:
        for name, page in pages.items():
            screenshot(page, f"isolation-{name}.png")
            page.context.close()


def session_client(room: AppProcess, name: str) -> httpx.Client:
    """A client holding `name`'s session cookie, as the browser holds it."""
    http = httpx.Client(base_url=room.url, timeout=30)
    answer = http.post("/auth/login", data={"username": name, "password": PEOPLE[name],
                                            "next": "/"},
                       headers={"Origin": room.url})
    assert answer.status_code in (200, 303), answer.text[:300]
    assert http.cookies, "the login set no session cookie"
    return http


def test_gradio_events_with_someone_elses_ids_get_nothing(room: AppProcess) -> None:
    with httpx.Client(base_url=room.url, auth=("bob", PEOPLE["bob"]), timeout=30) as bob:
        cid = bob.post("/api/conversations", json={"title": "bob only"}).json()["id"]
        sent = bob.post(f"/api/conversations/{cid}/messages",
                        json={"content": "quetzalcoatlish secret"})
        assert sent.status_code == 200
    before = query(room.env["DATABASE_URL"],
                   "SELECT count(*) FROM messages WHERE conversation_id = %s", (cid,))
    carol = session_client(room, "carol")
    try:
        config = carol.get("/config").json()
        deps = {d.get("api_name"): d for d in config["dependencies"]}
        for api_name, data in (("select", [cid]),
                               ("send", ["carol writes here", cid, None]),
                               ("retry", [cid, None]),
                               ("export", None)):
            dep = deps[api_name]
            if data is None:  # every input: the conversation's id where a string goes
                data = [cid] * len(dep["inputs"])
            joined = join_queue(carol, body_for(dep, data))
            assert joined.status == 200 and joined.completed is not None, (api_name, joined)
            text = joined.text + json.dumps(joined.answer)
            assert "quetzalcoatlish" not in text and "bob only" not in text, api_name
    finally:
        carol.close()
    after = query(room.env["DATABASE_URL"],
                  "SELECT count(*) FROM messages WHERE conversation_id = %s", (cid,))
    assert after == before
    # Without a session, Gradio's queue does not even take the call.
    with httpx.Client(base_url=room.url, timeout=30) as stranger:
        refused = stranger.post("/gradio_api/queue/join", json={
            "data": [cid], "fn_index": deps["select"]["id"], "session_hash": uuid.uuid4().hex})
        assert refused.status_code in (401, 403)
