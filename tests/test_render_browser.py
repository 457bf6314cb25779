"""The hostile corpus of tests/test_render.py, shown as replies in the real app's chat pane in
headless Chromium, locally and in share mode: the page makes no request to any host but the
app's, and the pane holds no element that loads or submits anything, nor a link that is not
http(s) (none at all in share mode). A normal reply still shows bold text and a code block.

One browser, one app per mode, one page load per mode: the corpus is imported as one
conversation through the REST API, and one more reply, echoing hostile text, streams in live
from the emulated LLM: the page draws it from the app's event stream (ui/chat/live_reply.py),
inspected while it is written as well as once stored; editing that message saves it as typed,
not as the escaped text the pane shows."""

from __future__ import annotations

from typing import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, Route

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.browser_support import browser, screenshot, send, user_texts, wait_idle
from tests.helpers import InProcessApp, base_env
from tests.test_render import HOSTILE, NORMAL

__all__ = ["browser"]  # fixture

pytestmark = pytest.mark.slow

USER, PASSWORD = "reader", "render test password"
# NUL cannot be stored (PostgreSQL text refuses it); test_render.py covers that one.
CORPUS = {name: text for name, text in HOSTILE.items() if "\x00" not in text}
ECHOED = "echo " + " ".join(HOSTILE[name] for name in (
    "fence-then-img", "nested-brackets", "reference-image", "srcset-poster", "bare-www"))
FORBIDDEN = ("img, picture, source, iframe, frame, video, audio, object, embed, svg, math, "
             "form, input, button, link, style, meta, base, script, [src], [srcset], [poster], "
             "[style], [background], [action], [formaction], [data], [ping]")
# Everything in the messages that loads, submits or navigates; the pane's own buttons and
# icons are outside the messages' rendered text (.md).
_INSPECT = """forbidden => {
  const texts = [...document.querySelectorAll('#chatbot [data-testid] .md')];
  return {
    messages: texts.length,
    forbidden: texts.flatMap(t => [...t.querySelectorAll(forbidden)])
                    .map(e => e.outerHTML.slice(0, 160)),
    hrefs: texts.flatMap(t => [...t.querySelectorAll('a')]).map(a => a.getAttribute('href')),
    strong: texts.some(t => t.querySelector('strong')),
    pre: texts.some(t => t.querySelector('pre code')),
  };
}"""


@pytest.fixture(scope="module", params=[False, True], ids=["local", "share"])
def served(request: pytest.FixtureRequest, database_url: str, llm: EmulatedLLM,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    share: bool = request.param
    extra = {"SHARE_AUTH": f"{USER}:{PASSWORD}"} if share else {}
    env = base_env(database_url, llm.base_url, tmp_path_factory.mktemp("render"), **extra)
    app = InProcessApp(env, share=share).start()
    yield app
    app.stop()


def _import_corpus(app: InProcessApp, title: str) -> None:
    messages = []
    for name, text in [*CORPUS.items(), ("normal", NORMAL)]:
        messages += [{"role": "user", "content": f"case {name}"},
                     {"role": "assistant", "content": text}]
    auth = (USER, PASSWORD) if app.share else None
    with httpx.Client(base_url=app.url, auth=auth, timeout=60) as http:
        imported = http.post("/api/conversations/import", json={
            "format": "durable-chat/conversation", "version": 1,
            "conversation": {"title": title}, "messages": messages})
    assert imported.status_code == 201, imported.text


def _watch_outside(context: BrowserContext, app_url: str) -> list[str]:
    """Every request for another host than the app's: recorded, and refused."""
    own = urlsplit(app_url).netloc
    outside: list[str] = []

    def foreign(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme not in ("data", "blob", "about") and parts.netloc != own

    def route(r: Route) -> None:
        if foreign(r.request.url):
            outside.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    def seen(r: Request) -> None:  # also what routing does not see (e.g. a service worker's)
        if foreign(r.url) and r.url not in outside:
            outside.append(r.url)

    context.route("**/*", route)
    context.on("request", seen)
    return outside


def _open(page: Page, app: InProcessApp) -> None:
    if app.share:  # the login form of the share link, as a visitor fills it in
        page.goto(app.url)
        page.locator("input[type=text]").first.fill(USER)
        page.locator("input[type=password]").fill(PASSWORD)
        page.locator("button", has_text="Login").click()
    else:
        page.goto(app.url)
    page.wait_for_selector("#message-box textarea")


def _edit_last_message(page: Page, suffix: str) -> None:
    """The edit box holds the message as shown (HTML-escaped): what is saved, and answered,
    is the text as typed."""
    page.locator('#chatbot button[aria-label="Edit"]').last.click()
    editor = page.locator("#chatbot textarea")
    editor.fill(editor.input_value() + suffix)
    page.locator('#chatbot button[aria-label="Submit"]').click()
    page.locator("#notice").get_by_text("new branch").wait_for()
    wait_idle(page)
    assert user_texts(page)[-1] == ECHOED + suffix


def test_hostile_replies_render_inert_in_the_browser(browser: Browser, served: InProcessApp,
                                                     llm: EmulatedLLM) -> None:
    mode = "share" if served.share else "local"
    title = f"Hostile corpus {mode}"
    _import_corpus(served, title)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    outside = _watch_outside(context, served.url)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        _open(page, served)
        page.locator("#sidebar label").filter(has_text=title).click()
        replies = len(CORPUS) + 1
        page.wait_for_function(
            "n => document.querySelectorAll('#chatbot [data-testid=bot] .md').length >= n"
            " && document.querySelector('#chatbot [data-testid=bot] .md pre code')", arg=replies)
        llm.settings.reply_tokens, llm.settings.tpot_ms = 60, 50  # 3 s: seen while written
        send(page, ECHOED)  # the streamed reply echoes it
        page.locator("#chatbot .live-reply").filter(has_text="Reply to [echo").wait_for()
        live = page.evaluate(_INSPECT, FORBIDDEN)
        wait_idle(page)
        _edit_last_message(page, " (edited)")
        shown = page.evaluate(_INSPECT, FORBIDDEN)
    finally:
        screenshot(page, f"render-browser-{mode}.png", full_page=True)
        context.close()
    assert outside == []
    assert shown["messages"] >= 2 * (replies + 1)  # every user message and reply was inspected
    assert shown["forbidden"] == [] and live["forbidden"] == []
    if served.share:
        assert shown["hrefs"] == [] and live["hrefs"] == []
    else:
        assert shown["hrefs"], "the normal reply's link is a link locally"
        assert all(urlsplit(h).scheme in ("http", "https") and urlsplit(h).hostname
                   for h in shown["hrefs"]), shown["hrefs"]
    assert shown["strong"] and shown["pre"]
