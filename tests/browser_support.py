"""Driving the UI in Debian's headless Chromium with Playwright: fixtures and page helpers
shared by the browser test modules. Screenshots of every test go to test-artifacts/."""

from __future__ import annotations

import shutil
import time
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.helpers import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-quic"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Chromium is missing: apt-get install chromium (scripts/test.sh does it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000},
                                  accept_downloads=True)
    p = context.new_page()
    p.set_default_timeout(20_000)
    yield p
    screenshot(p, f"{request.node.name}.png", full_page=True)
    context.close()


def screenshot(page: Page, name: str, full_page: bool = False) -> None:
    """A picture in test-artifacts/ for the record, never the test's verdict: Chromium
    sometimes cannot take one ("Unable to capture screenshot")."""
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)
    except PlaywrightError as error:
        print(f"no screenshot {name}: {error.message}")


def open_app(page: Page, url: str) -> None:
    page.goto(url)
    wait_loaded(page)


def wait_loaded(page: Page) -> None:
    """The app's page, just opened or reloaded, is there: its message box, and the load event
    has had its moment to restore the conversation."""
    page.wait_for_selector("#message-box textarea")
    page.wait_for_timeout(300)  # let the load event restore the conversation


def wait_shown(page: Page, *selectors: str) -> None:
    """Wait until the components Gradio has just shown for the first time (a closed accordion
    opened, a tab selected) take what is typed. Gradio draws them with the values the page
    started with, and once every one of them has loaded, sets each to its current value a frame
    later (`render_previously_invisible_children` in its frontend): what is typed in between
    is lost (CI lost a system prompt that way). So: every one of `selectors` there, then two
    frames."""
    for selector in selectors:
        page.locator(selector).first.wait_for()
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() =>"
                  " requestAnimationFrame(() => setTimeout(done))))")


def bot_text(page: Page) -> str:
    bots = page.locator('#chatbot [data-testid="bot"]')
    return bots.last.inner_text() if bots.count() else ""


def reply_text(page: Page) -> str:
    """The newest reply's own text: what bot_text shows, less the line of its facts (model,
    speed) under it."""
    bots = page.locator('#chatbot [data-testid="bot"]')
    if not bots.count():
        return ""
    return str(bots.last.evaluate("""(el) => { const copy = el.cloneNode(true);
        copy.querySelectorAll('.reply-facts').forEach((p) => p.remove());
        document.body.appendChild(copy); const text = copy.innerText; copy.remove();
        return text.trim(); }"""))


def user_texts(page: Page) -> list[str]:
    return page.locator('#chatbot [data-testid="user"]').all_inner_texts()


def send(page: Page, text: str) -> None:
    box = page.locator("#message-box textarea")
    box.click()
    box.fill(text)
    box.press("Enter")


def watch_reply(page: Page, done_marker: str, timeout: float = 30) -> list[str]:
    """Distinct texts of the newest reply as the page showed them, until it shows the marker."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = bot_text(page)
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        if done_marker in text:
            return seen
        page.wait_for_timeout(25)
    raise AssertionError(f"reply did not finish; saw {seen[-3:]}")


def wait_idle(page: Page, timeout: float = 20) -> None:
    """The input is usable again: the reply finished."""
    page.locator("#message-box textarea").wait_for(state="visible")
    deadline = time.monotonic() + timeout
    while not page.locator("#message-box textarea").is_enabled():
        if time.monotonic() > deadline:
            raise AssertionError("the input stayed disabled")
        page.wait_for_timeout(50)
    # Gradio renders a chat message asynchronously: the pane can show the last words a moment
    # after the input is enabled again (CI once read the pane in between). Wait until the text
    # holds still; a reply that never shows its end still fails the test that reads it.
    shown, steady_since = bot_text(page), time.monotonic()
    while time.monotonic() - steady_since < 0.3 and time.monotonic() < deadline:
        page.wait_for_timeout(50)
        now = bot_text(page)
        if now != shown:
            shown, steady_since = now, time.monotonic()
