"""The Compare tab in a real browser, on an app with two emulated LLM servers (one model each):
a blind comparison streams both replies at once without naming either model anywhere in the
tab, the vote shows the names and makes the leaderboard; a reload during a round re-attaches
to both replies; a refused comparison says why; on a phone the panes stack."""

from __future__ import annotations

import time
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page

from chat_core.testing.emulated_llm import EmulatedLLM, EmulatorSettings
from tests.browser_support import browser, open_app, page, screenshot, wait_shown
from tests.helpers import InProcessApp, app_on, emulated_servers, wait_until

pytestmark = pytest.mark.slow  # the real app in a headless browser

__all__ = ["browser", "page"]  # fixtures

# Names that occur nowhere else in the page (not in an element id, a label or a heading), so
# finding one in the tab can only mean a model was named.
MODEL_A, MODEL_B = "owl-7b-chat", "lark-13b-chat"
SIDES = {"a": MODEL_A, "b": MODEL_B}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, EmulatedLLM]]:
    with emulated_servers(*(EmulatorSettings(model=m) for m in SIDES.values())) as started:
        yield dict(zip(SIDES, started))


@pytest.fixture(scope="module")
def two_model_app(database_url: str, servers: dict[str, EmulatedLLM],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    with app_on(database_url, [servers[side].base_url for side in SIDES],
                tmp_path_factory.mktemp("compare")) as app:
        yield app


@pytest.fixture(autouse=True)
def _replies_that_stream(servers: dict[str, EmulatedLLM]) -> None:
    """60 tokens at 40 ms each (2.4 s): long enough to be seen growing."""
    for server in servers.values():
        server.settings = EmulatorSettings(model=server.settings.model, reply_tokens=60,
                                           tpot_ms=40)
        server.requests.clear()


# -- the page ------------------------------------------------------------------------------------

def open_compare(page: Page, app: InProcessApp, setup: bool = True) -> None:
    """The Compare tab, ready to type in; `setup`: with the new comparison's fields shown
    (False: a comparison is open, e.g. after a reload)."""
    open_app(page, app.url)
    page.get_by_role("tab", name="Compare").click()
    fields = [f"#compare-{part}-{side} {field}" for side in SIDES
              for part, field in (("model", "input"), ("label", "textarea"),
                                  ("temperature", "input"), ("system", "textarea"))]
    # The slowest to load too (the panes, the leaderboard's table and plot, the list): the
    # values Gradio sets once every one has loaded would land on a round already streaming.
    wait_shown(page, "#compare-box textarea", "#compare-list input", "#compare-pane-a",
               "#compare-pane-b", "#leaderboard", "#leaderboard-plot",
               *(["#compare-blind input", *fields] if setup else []))


def pick_models(page: Page) -> None:
    """Model 1 for side A, model 2 for side B, from the pickers the tab filled."""
    for side, model in SIDES.items():
        picker = page.locator(f"#compare-model-{side}")
        field = picker.locator("input")
        field.click()
        picker.get_by_role("option", name=model, exact=True).click()
        wait_until(lambda: field.input_value() == model, timeout=5)
        field.blur()
        picker.get_by_role("option").first.wait_for(state="detached")
    assert [page.locator(f"#compare-model-{s} input").input_value() for s in SIDES] == \
        list(SIDES.values())


def prompt(page: Page, text: str) -> None:
    box = page.locator("#compare-box textarea")
    box.click()
    box.fill(text)
    box.press("Enter")


def reply(page: Page, side: str) -> str:
    bots = page.locator(f'#compare-pane-{side} [data-testid="bot"]')
    return bots.last.inner_text() if bots.count() else ""


# Records, in the page, each distinct text the newest reply of each pane shows, at every change
# of the page: what a person would have seen, however busy the test process is meanwhile.
_RECORD = """() => {
  window.__seen = {a: [], b: []};
  const record = () => {
    for (const side of ['a', 'b']) {
      const bots = document.querySelectorAll(`#compare-pane-${side} [data-testid="bot"]`);
      const text = bots.length ? bots[bots.length - 1].innerText : '';
      const seen = window.__seen[side];
      if (text && seen[seen.length - 1] !== text) seen.push(text);
    }
  };
  new MutationObserver(record).observe(document.body,
    {subtree: true, childList: true, characterData: true});
}"""


def record_replies(page: Page) -> None:
    page.evaluate(_RECORD)


def watch_both(page: Page, marker: str, timeout: float = 30) -> dict[str, list[str]]:
    """Each side's distinct reply texts as the page showed them since record_replies, until
    both show `marker`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen: dict[str, list[str]] = page.evaluate("window.__seen")
        if all(texts and marker in texts[-1] for texts in seen.values()):
            return seen
        page.wait_for_timeout(50)
    raise AssertionError(f"the replies did not finish; saw {seen['a'][-2:]} {seen['b'][-2:]}")


def heading(page: Page, side: str) -> str:
    return page.locator(f"#compare-heading-{side}").inner_text()


def leaderboard_rows(page: Page) -> list[list[str]]:
    rows = page.locator('#leaderboard [role="row"][data-index]')
    return [[cell.strip() for cell in rows.nth(i).locator('[role="gridcell"]').all_inner_texts()]
            for i in range(rows.count())]


def listed(page: Page) -> list[str]:
    """The labels of the past comparisons (the list opened, then closed again)."""
    page.locator("#compare-list input").click()
    options = page.get_by_role("option")
    options.first.wait_for()
    labels = options.all_inner_texts()
    page.keyboard.press("Escape")
    return labels


def assert_no_model_named(page: Page) -> None:
    """Neither model anywhere in the tab (its HTML, every form field's value) or in the list
    of past comparisons not judged yet. Outside what is checked: the page's top line, which
    lists the servers' models, and the leaderboard, which ranks the models of earlier votes
    (neither says which side is which)."""
    html, values = page.locator("#compare-tab").evaluate("""(tab) => {
        const copy = tab.cloneNode(true);
        copy.querySelector('#compare-leaderboard').remove();
        const fields = [...tab.querySelectorAll('input, textarea')]
            .filter((e) => !e.closest('#compare-leaderboard')).map((e) => e.value);
        return [copy.innerHTML, fields.join(' ')]; }""")
    for model in SIDES.values():
        assert model not in html and model not in values, f"{model} shown before the vote"
    not_voted = [label for label in listed(page) if not label.endswith("· voted")]
    assert not_voted and all("Model A vs Model B" in label for label in not_voted), not_voted
    assert all(MODEL_A not in label and MODEL_B not in label for label in not_voted)


# -- the tests -----------------------------------------------------------------------------------

def test_a_blind_comparison_streams_both_names_nobody_until_the_vote_then_ranks(
        page: Page, two_model_app: InProcessApp, servers: dict[str, EmulatedLLM]) -> None:
    open_compare(page, two_model_app)
    pick_models(page)
    assert page.locator("#compare-blind input").is_checked()
    record_replies(page)
    prompt(page, "Which bird sings best?")
    seen = watch_both(page, " w58")
    for side, texts in seen.items():  # each reply seen growing, not only finished
        growing = [t for t in texts if t.startswith("Reply to [Which bird sings best?]")]
        assert len(growing) >= 3, (side, texts)
    assert servers["a"].user_messages_seen() == ["Which bird sings best?"]
    assert servers["b"].user_messages_seen() == ["Which bird sings best?"]
    vote_a = page.locator("#vote-a")
    wait_until(vote_a.is_enabled, timeout=10)
    assert [heading(page, s) for s in SIDES] == ["Model A", "Model B"]
    assert "Model A" in reply(page, "a")  # the reply's facts line names its side only
    assert_no_model_named(page)

    vote_a.click()
    # A blind comparison shows its sides in a random order: A is either model.
    wait_until(lambda: any(m in heading(page, "a") for m in SIDES.values()), timeout=10)
    a_was = MODEL_A if MODEL_A in heading(page, "a") else MODEL_B
    b_was = MODEL_B if a_was == MODEL_A else MODEL_A
    wait_until(lambda: b_was in heading(page, "b"), timeout=5)
    assert "🏆" in heading(page, "a") and "🏆" not in heading(page, "b")
    assert a_was in reply(page, "a") and b_was in reply(page, "b")  # the facts lines
    assert not any(page.locator(f"#vote-{w}").is_enabled() for w in ("a", "b", "tie",
                                                                      "both-bad"))
    wait_until(lambda: len(leaderboard_rows(page)) == 2, timeout=15)
    (first, second) = leaderboard_rows(page)
    # rank, contender, rating, interval, battles, wins, losses, ties, win rate
    assert (first[1], first[4], first[5]) == (a_was, "1", "1")
    assert (second[1], second[4], second[6]) == (b_was, "1", "1")
    assert float(first[2]) > float(second[2])
    assert any(MODEL_A in label and MODEL_B in label for label in listed(page))


def test_a_reload_during_a_round_follows_both_replies_to_their_end(
        page: Page, two_model_app: InProcessApp, servers: dict[str, EmulatedLLM]) -> None:
    for server in servers.values():  # 16 s: the reload is back before the end, even when
        server.settings.reply_tokens = 400  # the machine is busy (8 s was not always enough)
    open_compare(page, two_model_app)
    page.click("#compare-new")
    pick_models(page)
    prompt(page, "a long answer from both, please")
    wait_until(lambda: " w10" in reply(page, "a") and " w10" in reply(page, "b"), timeout=20)
    page.reload()
    open_compare(page, two_model_app, setup=False)
    record_replies(page)
    seen = watch_both(page, " w398", timeout=40)
    for side, texts in seen.items():
        assert any(" w398" not in t and " w20" in t for t in texts), (side, texts[:3])
        assert len(servers[side].requests) == 1  # the same generation, followed again
    wait_until(page.locator("#vote-b").is_enabled, timeout=10)
    assert_no_model_named(page)


def test_a_refused_comparison_says_why_and_keeps_the_prompt(
        page: Page, two_model_app: InProcessApp, servers: dict[str, EmulatedLLM]) -> None:
    open_compare(page, two_model_app)  # both pickers on "Default": the same side twice
    prompt(page, "the same model twice")
    page.get_by_text("the two sides are the same").wait_for()  # the service's words
    assert page.locator("#compare-box textarea").input_value() == "the same model twice"
    assert page.locator("#compare-setup").is_visible()
    assert all(server.requests == [] for server in servers.values())


def test_on_a_phone_the_panes_stack(browser: Browser, two_model_app: InProcessApp) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True)
    phone = context.new_page()
    try:
        open_compare(phone, two_model_app)
        a = phone.locator("#compare-pane-a").bounding_box()
        b = phone.locator("#compare-pane-b").bounding_box()
        assert a is not None and b is not None
        assert b["y"] >= a["y"] + a["height"] - 1  # B under A, not beside it
        assert a["width"] > 340 and b["width"] > 340  # the screen's width, less margins
        page_width = phone.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 390, "the page scrolls sideways"
    finally:
        screenshot(phone, "compare_phone.png", full_page=True)
        context.close()


def test_a_round_still_streaming_never_draws_over_the_next_comparison(
        page: Page, two_model_app: InProcessApp, servers: dict[str, EmulatedLLM]) -> None:
    """Open a comparison whose replies are being written, then start a new one: the old
    round's stream must stop drawing, or the vote would judge one comparison while the panes
    show another's replies."""
    for server in servers.values():  # 12 s: still streaming long after the switch
        server.settings.reply_tokens = 300
    service = two_model_app.service
    assert service is not None
    old = two_model_app.call(service.comparisons().create(
        "the old round", {"model": MODEL_A}, {"model": MODEL_B}))
    # Both sides' turns have saved their messages: a comparison opened before that shows no
    # reply being written, so nothing to follow (CI opened it that early once, under load).
    wait_until(lambda: len(two_model_app.call(
        service.comparisons().get(old.comparison_id))["in_flight"]) == 2, timeout=20)
    open_compare(page, two_model_app)
    page.locator("#compare-list input").click()
    page.get_by_role("option").filter(has_text="the old round").first.click()
    wait_until(lambda: " w5" in reply(page, "a"), timeout=20)
    for server in servers.values():
        server.settings.reply_tokens = 4
    page.click("#compare-new")
    pick_models(page)
    prompt(page, "the new round")
    wait_until(page.locator("#vote-a").is_enabled, timeout=20)
    record_replies(page)
    view = two_model_app.call(service.comparisons().wait_round(old))  # the old one ends
    assert view["sides"]["a"]["messages"][-1]["status"] == "complete"
    seen: dict[str, list[str]] = page.evaluate("window.__seen")
    drawn = [text for texts in seen.values() for text in texts]
    assert not any("the old round" in text for text in drawn), drawn[-1][:200]
    for side in ("a", "b"):
        assert reply(page, side).startswith("Reply to [the new round]")
