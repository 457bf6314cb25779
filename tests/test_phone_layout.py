"""The Chat tab on a phone (390 x 844, touch, as an iPhone 12 to 15 shows it): the page never
scrolls sideways, the message box, Send and Stop are on screen without scrolling, everything
tappable is at least 44 px, the conversation list stays out of the way until its toggle opens
it and closes again once a conversation is chosen, and long words and code stay in their
bubble. The desktop layout keeps the list beside the chat.

The phone screenshot goes to test-artifacts/phone.png; with DOCS_SCREENSHOT=1 it also replaces
docs/img/phone.png, the one docs/usage.md shows."""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest
from playwright.sync_api import Browser, Page

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.browser_support import (browser, open_app, page, screenshot, send, user_texts,
                                   wait_idle, watch_reply)
from tests.helpers import ROOT, InProcessApp, wait_until

pytestmark = pytest.mark.slow  # the real app in a headless browser

__all__ = ["browser", "page"]  # fixtures

WIDTH, HEIGHT = 390, 844
LONG_WORD = "x" * 300
CODE = "code:\n```\nresult = " + " + ".join(f"value_{n}" for n in range(40)) + "\n```\n"


@pytest.fixture()
def phone(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, is_mobile=True,
                                  has_touch=True, device_scale_factor=1)
    p = context.new_page()
    p.set_default_timeout(20_000)
    yield p
    screenshot(p, "phone.png")
    context.close()


def _on_screen(page: Page, selector: str) -> bool:
    """The element is visible and wholly inside the screen as it is now (no scrolling)."""
    box = page.locator(selector).bounding_box()
    screen = page.viewport_size or {"width": WIDTH, "height": HEIGHT}
    return (page.locator(selector).is_visible() and box is not None and box["x"] >= 0
            and box["y"] >= 0 and box["x"] + box["width"] <= screen["width"]
            and box["y"] + box["height"] <= screen["height"])


# Elements that reach past the screen's edges with no box of their own, on screen, to clip or
# scroll them: the page would scroll sideways, or cut them off.
OFF_SCREEN_JS = """() => {
  const width = window.innerWidth;
  const keptInside = (el) => {
    for (let a = el.parentElement; a && !a.classList.contains('gradio-container');
         a = a.parentElement) {
      const r = a.getBoundingClientRect();
      if (getComputedStyle(a).overflowX !== 'visible' && r.left >= -1 && r.right <= width + 1)
        return true;
    }
    return false;
  };
  return [...document.querySelectorAll('.gradio-container *')].filter((el) => {
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height || getComputedStyle(el).visibility === 'hidden') return false;
    return (r.left < -1 || r.right > width + 1) && !keptInside(el);
  }).map((el) => `${el.tagName}#${el.id}.${el.className}`).slice(0, 5);
}"""

# Buttons and list entries a finger cannot hit reliably (under 44 x 44 px), among those shown.
SMALL_TARGETS_JS = """() => [...document.querySelectorAll('#chat-layout button, #sidebar label')]
  .filter((el) => {
    const r = el.getBoundingClientRect();
    return r.width && r.height && getComputedStyle(el).visibility !== 'hidden'
      && el.checkVisibility() && (r.width < 44 || r.height < 44);
  }).map((el) => `${el.id || el.textContent.trim().slice(0, 30)}: ${el.getBoundingClientRect().width}x${el.getBoundingClientRect().height}`)"""


def _assert_fits_the_screen(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    assert page.evaluate(OFF_SCREEN_JS) == []
    assert page.evaluate(SMALL_TARGETS_JS) == []
    assert _on_screen(page, "#message-box textarea")
    assert _on_screen(page, "#message-box button")  # Send


def _bubble(page: Page, role: str, text: str) -> dict[str, Any]:
    """Where a message's bubble is, and whether its text overflows it."""
    bubble = page.locator(f'#chatbot [data-testid="{role}"]').filter(has_text=text).last
    return bubble.evaluate("""(el) => { const r = el.getBoundingClientRect();
        return {left: r.left, right: r.right, bottom: r.bottom,
                overflows: el.scrollWidth > el.clientWidth + 1}; }""")


def _open_list(page: Page) -> None:
    page.locator("#list-toggle button").tap()
    page.locator("#sidebar").wait_for(state="visible")
    # Slid in: the drawer itself at the screen's edge (its buttons reach the screen a little
    # before the 0.2 s slide ends).
    wait_until(lambda: page.locator("#conversation-list").evaluate(
        "(el) => el.getBoundingClientRect().left") >= -1, timeout=5)
    assert _on_screen(page, "#new-chat")
    # Long titles wrap: the list never scrolls sideways either.
    assert page.locator("#conversation-list").evaluate(
        "(el) => el.scrollWidth <= el.clientWidth")
    _assert_fits_the_screen(page)


def _list_closed(page: Page) -> bool:
    return not page.locator("#sidebar").is_visible()


def _new_chat(page: Page) -> None:
    """+ New chat from the list, which then gets out of the way."""
    _open_list(page)
    page.locator("#new-chat").tap()
    wait_until(lambda: _list_closed(page), timeout=5)


def test_phone_layout(phone: Page, app: InProcessApp, llm: EmulatedLLM) -> None:
    open_app(phone, app.url)
    # The list is out of the way, and the chat fits: box and Send on screen, nothing sideways.
    assert _list_closed(phone) and _on_screen(phone, "#list-toggle button")
    _assert_fits_the_screen(phone)
    _new_chat(phone)
    send(phone, f"first on a phone {LONG_WORD}")
    watch_reply(phone, "Reply to [first on a phone")
    wait_idle(phone)
    # A long word wraps inside its bubble, which stays on screen.
    for role in ("user", "bot"):
        bubble = _bubble(phone, role, "first on a phone")
        assert not bubble["overflows"] and bubble["left"] >= 0 and bubble["right"] <= WIDTH
    _assert_fits_the_screen(phone)
    # A second chat, with a code line longer than the screen; Stop is in reach while it streams.
    llm.settings.reply_tokens = 100
    llm.script({"action": "hang"})  # the reply waits until released: Stop shows meanwhile
    _new_chat(phone)
    send(phone, "second on a phone " + CODE)
    wait_until(lambda: _on_screen(phone, "#stop"), timeout=20)
    llm.release()
    watch_reply(phone, " w98")
    wait_idle(phone)
    code = phone.locator("#chatbot pre").last.evaluate(
        """(el) => { const r = el.getBoundingClientRect(); return {left: r.left, right: r.right,
           scrolls: el.scrollWidth > el.clientWidth
                    && ['auto', 'scroll'].includes(getComputedStyle(el).overflowX)}; }""")
    assert code["scrolls"] and code["left"] >= 0 and code["right"] <= WIDTH
    _assert_fits_the_screen(phone)
    # The reply's end is on screen, above the message box rather than under it (once the pane
    # has scrolled to it).
    wait_until(lambda: _bubble(phone, "bot", "second on a phone")["bottom"]
               <= phone.locator("#composer").bounding_box()["y"] + 1, timeout=5)
    _docs_screenshot(phone)
    # Back to the first chat through the list, which closes once it is chosen.
    _open_list(phone)
    phone.locator("#sidebar label").filter(has_text="first on a phone").tap()
    wait_until(lambda: _list_closed(phone), timeout=5)
    wait_until(lambda: user_texts(phone) == [f"first on a phone {LONG_WORD}"], timeout=10)
    # A tap beside the open list closes it too, choosing nothing.
    _open_list(phone)
    phone.touchscreen.tap(WIDTH - 10, HEIGHT // 2)  # outside the drawer (85 % of the width)
    wait_until(lambda: _list_closed(phone), timeout=5)
    _open_list(phone)
    phone.keyboard.press("Escape")  # and so does Escape (a phone with a keyboard)
    wait_until(lambda: _list_closed(phone), timeout=5)
    assert user_texts(phone) == [f"first on a phone {LONG_WORD}"]
    _assert_fits_the_screen(phone)
    # A smaller phone (iPhone SE): the page is longer than the screen, and the box stays at the
    # bottom of the screen from the top of the page on.
    phone.set_viewport_size({"width": 375, "height": 667})
    phone.evaluate("window.scrollTo(0, 0)")
    assert phone.evaluate("document.documentElement.scrollHeight") > 667
    assert _on_screen(phone, "#message-box textarea") and _on_screen(phone, "#message-box button")


def _docs_screenshot(phone: Page) -> None:
    """docs/img/phone.png, retaken on request only: a committed image that changed on every run
    would leave every checkout modified."""
    if os.environ.get("DOCS_SCREENSHOT") != "1":
        return
    from PIL import Image

    target = ROOT / "docs" / "img" / "phone.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    phone.screenshot(path=str(target))
    # A 64-colour palette keeps the image small; the page is flat colours and text.
    Image.open(target).convert("RGB").quantize(64).save(target, optimize=True)


def test_desktop_keeps_the_list_beside_the_chat(page: Page, app: InProcessApp) -> None:
    open_app(page, app.url)
    assert page.locator("#sidebar").is_visible() and page.locator("#new-chat").is_visible()
    assert not page.locator("#list-toggle button").is_visible()
    listing = page.locator("#conversation-list").bounding_box()
    chat = page.locator("#chat-column").bounding_box()
    assert listing and chat and listing["x"] + listing["width"] <= chat["x"]
    assert listing["y"] == pytest.approx(chat["y"], abs=2)
    assert page.locator("#chatbot").bounding_box()["height"] == pytest.approx(520, abs=2)
