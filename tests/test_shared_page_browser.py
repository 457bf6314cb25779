"""A read-only link's page in headless Chromium, at a phone's width (390 px), on the real app
locally and in share mode (opened without a login): the hostile corpus of tests/test_render.py
as its replies, and the page makes no request but its own, tries none (no CSP refusal in the
console), runs no script, holds nothing that loads or links anywhere, and fits the screen."""

from __future__ import annotations

from typing import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.browser_support import browser, screenshot
from tests.helpers import InProcessApp, base_env
from tests.test_render import HOSTILE, NORMAL

__all__ = ["browser"]  # fixture

pytestmark = pytest.mark.slow

USER, PASSWORD = "sharer", "shared page test password"
CORPUS = {name: text for name, text in HOSTILE.items() if "\x00" not in text}
PHONE = {"width": 390, "height": 844}
FORBIDDEN = ("img, picture, source, iframe, frame, video, audio, object, embed, svg, math, "
             "form, input, button, a, link, base, script, [src], [srcset], [poster], [style], "
             "[background], [action], [formaction], [data], [ping], [href]")
_INSPECT = """forbidden => ({
  forbidden: [...document.querySelectorAll(forbidden)].map(e => e.outerHTML.slice(0, 160)),
  scripts: document.scripts.length,
  messages: document.querySelectorAll('main section.msg').length,
  strong: !!document.querySelector('main strong'),
  pre: !!document.querySelector('main pre code'),
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  text: document.body.innerText,
})"""


@pytest.fixture(scope="module", params=[False, True], ids=["local", "share"])
def served(request: pytest.FixtureRequest, database_url: str, llm: EmulatedLLM,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    share: bool = request.param
    extra = {"SHARE_AUTH": f"{USER}:{PASSWORD}"} if share else {}
    env = base_env(database_url, llm.base_url, tmp_path_factory.mktemp("shared"), **extra)
    app = InProcessApp(env, share=share).start()
    yield app
    app.stop()


def _published(app: InProcessApp) -> tuple[str, str]:
    """The corpus as a conversation, published: its id and the link's path."""
    messages = []
    for name, text in [*CORPUS.items(), ("normal", NORMAL)]:
        messages += [{"role": "user", "content": f"case {name} <img src=//evil.example/u>"},
                     {"role": "assistant", "content": text}]
    auth = (USER, PASSWORD) if app.share else None
    with httpx.Client(base_url=app.url, auth=auth, timeout=60) as http:
        imported = http.post("/api/conversations/import", json={
            "format": "durable-chat/conversation", "version": 1,
            "conversation": {"title": "<script>alert('title')</script> corpus"},
            "messages": messages})
        assert imported.status_code == 201, imported.text
        link = http.post(f"/api/conversations/{imported.json()['id']}/links",
                         json={"expires_in_days": 7})
    assert link.status_code == 201, link.text
    return imported.json()["id"], str(link.json()["url_path"])


def test_the_shared_page_is_inert_and_fits_a_phone(browser: Browser, served: InProcessApp
                                                   ) -> None:
    mode = "share" if served.share else "local"
    _, path = _published(served)
    own = urlsplit(served.url).netloc
    context = browser.new_context(viewport=PHONE, is_mobile=True)  # no login, no cookies
    requests: list[str] = []
    refusals: list[str] = []
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: refusals.append(m.text) if m.type == "error" else None)
    try:
        response = page.goto(served.url + path)
        assert response is not None and response.status == 200
        shown = page.evaluate(_INSPECT, FORBIDDEN)
    finally:
        screenshot(page, f"shared-page-{mode}.png", full_page=True)
        context.close()
    assert [u for u in requests if urlsplit(u).netloc != own] == []
    assert requests == [served.url + path]  # the page itself, and nothing it pulls in
    assert refusals == []  # nothing tried to load and was stopped by the CSP either
    assert shown["forbidden"] == [] and shown["scripts"] == 0
    assert shown["messages"] == 2 * (len(CORPUS) + 1)
    assert shown["strong"] and shown["pre"]  # a normal reply still reads as one
    assert shown["overflow"] <= 0, "the page is wider than a phone's screen"
    assert "<script>alert('title')</script> corpus" in shown["text"]  # the title, as text
    assert "Durable chat" not in shown["text"]  # none of the app around it


def test_a_revoked_link_is_gone_in_the_browser_too(browser: Browser, served: InProcessApp
                                                   ) -> None:
    cid, path = _published(served)
    auth = (USER, PASSWORD) if served.share else None
    token = path.removeprefix("/s/")
    with httpx.Client(base_url=served.url, auth=auth) as http:
        assert http.get(path).status_code == 200
        links = http.get(f"/api/conversations/{cid}/links").json()
        assert token not in str(links)
        http.delete(f"/api/conversations/{cid}/links/{links[0]['id']}")
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        response = page.goto(served.url + path)
        assert response is not None and response.status == 404
        assert "does not exist" in page.inner_text("body")
    finally:
        context.close()
