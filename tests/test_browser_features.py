"""Every conversation feature, used in a real browser the way a person would: keyboard, rename,
delete with confirmation, search, settings, regenerate and alternatives, edit as a branch, stop
and continue, fork with other parameters, export and import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page

from chat_core.data.conversation_export import FORMAT, VERSION
from chat_core.testing.emulated_llm import EmulatedLLM
from chat_core.ui.chat.view import SHOWN_TURNS
from tests.browser_support import (bot_text, browser, open_app, page, reply_text, send,
                                   user_texts, wait_idle, wait_loaded, wait_shown,
                                   watch_reply)
from tests.helpers import InProcessApp, query, wait_until

pytestmark = pytest.mark.slow  # the real app in a headless browser

__all__ = ["browser", "page"]  # fixtures


def _chat(page: Page, app: InProcessApp, *texts: str) -> None:
    open_app(page, app.url)
    page.click("#new-chat")
    for text in texts:
        send(page, text)
        watch_reply(page, f"Reply to [{text}]")
        wait_idle(page)


def _upload(page: Page, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.click("#import")
    chooser.value.set_files(str(path))


def _open_settings(page: Page) -> None:
    page.locator("#settings").get_by_text("Settings for this conversation").click()
    wait_shown(page, "#system-prompt textarea", "#temperature input[type=number]",
               "#top-p input[type=number]", "#max-tokens input", "#save-settings",
               "#model input")


def _sidebar(page: Page) -> list[str]:
    return page.locator("#sidebar label").all_inner_texts()


def test_enter_sends_shift_enter_adds_a_line_and_the_newest_stays_in_view(
        page: Page, app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 60
    open_app(page, app.url)
    page.click("#new-chat")
    box = page.locator("#message-box textarea")
    box.click()
    box.type("first line")
    box.press("Shift+Enter")
    box.type("second line")
    assert box.input_value() == "first line\nsecond line"
    assert llm.requests == []
    box.press("Enter")
    watch_reply(page, " w58")
    assert user_texts(page) == ["first line\nsecond line"]
    for n in range(4):
        send(page, f"message {n} " + "with more words " * 20)
        watch_reply(page, f"Reply to [message {n}")
        wait_idle(page)
    watch_reply(page, " w58")
    newest = page.locator('#chatbot [data-testid="bot"]').last
    log = page.locator('#chatbot [role="log"]')
    wait_until(lambda: newest.bounding_box()["y"] + newest.bounding_box()["height"]
               <= log.bounding_box()["y"] + log.bounding_box()["height"] + 2, timeout=5)


def test_rename_and_delete_with_confirmation(page: Page, app: InProcessApp) -> None:
    _chat(page, app, "to be renamed")
    title = page.locator("#title textarea, #title input").first
    title.fill("My renamed chat")
    title.press("Enter")
    page.locator("#sidebar").get_by_text("My renamed chat").wait_for()
    page.click("#delete")
    page.locator("#confirm-delete-no").click()
    page.wait_for_timeout(300)
    assert "My renamed chat" in _sidebar(page)
    page.click("#delete")
    page.locator("#confirm-delete-yes").click()
    page.locator("#notice").get_by_text("Conversation deleted.").wait_for()
    assert "My renamed chat" not in _sidebar(page)
    assert query(app.settings.database_url or "", "SELECT count(*) FROM conversations WHERE"
                 " title = 'My renamed chat'")[0][0] == 0


def test_search_finds_by_message_text(page: Page, app: InProcessApp) -> None:
    _chat(page, app, "we discussed flamingo migration patterns")
    _chat(page, app, "unrelated topic about bread")
    search = page.locator("#search textarea, #search input").first
    search.fill("flamingos")
    search.press("Enter")
    page.locator("#notice").get_by_text("match").wait_for()
    labels = _sidebar(page)
    assert len(labels) == 1 and "flamingo" in labels[0].lower()
    page.locator("#sidebar label").first.click()
    wait_until(lambda: user_texts(page) == ["we discussed flamingo migration patterns"])
    search.fill("")
    search.press("Enter")
    wait_until(lambda: len(_sidebar(page)) >= 2)


def test_settings_change_the_next_reply(page: Page, app: InProcessApp,
                                        llm: EmulatedLLM) -> None:
    _chat(page, app, "before settings")
    _open_settings(page)
    page.locator("#system-prompt textarea").fill("You are a terse assistant.")
    page.locator("#temperature input[type=number]").fill("0.3")
    page.locator("#temperature input[type=number]").press("Enter")
    page.click("#save-settings")
    page.locator("#notice").get_by_text("Settings saved").wait_for()
    send(page, "after settings")
    watch_reply(page, "Reply to [after settings]")
    # The request that answered it, whatever else the LLM got since (the last one was once
    # without the system prompt, and the run kept nothing to tell which request it was).
    seen = [(r["messages"][0], r["messages"][-1]["content"]) for r in llm.requests]
    sent = next(r for r in reversed(llm.requests)
                if r["messages"][-1] == {"role": "user", "content": "after settings"})
    assert sent["messages"][0] == {"role": "system", "content": "You are a terse assistant."}, \
        (seen[-4:], query(app.settings.database_url or "", "SELECT settings FROM conversations"
                          " WHERE title = 'before settings'"))
    assert sent["temperature"] == 0.3


def test_settings_follow_the_open_conversation(page: Page, app: InProcessApp,
                                              llm: EmulatedLLM) -> None:
    _chat(page, app, "the pirate conversation")
    _open_settings(page)
    prompt = page.locator("#system-prompt textarea")
    prompt.fill("Talk like a pirate.")
    page.click("#save-settings")
    page.locator("#notice").get_by_text("Settings saved").wait_for()
    # With the panel still open, another conversation shows its own settings, not these...
    page.click("#new-chat")
    wait_until(lambda: prompt.input_value() == "")
    send(page, "the plain conversation")
    watch_reply(page, "Reply to [the plain conversation]")
    wait_idle(page)
    assert prompt.input_value() == ""
    page.click("#save-settings")  # ...so saving there does not copy the pirate's prompt
    page.locator("#notice").get_by_text("Settings saved").wait_for()
    assert llm.requests[-1]["messages"][0]["role"] == "user"
    rows = dict(query(app.settings.database_url or "", "SELECT title, settings->>'system_prompt'"
                      " FROM conversations WHERE title LIKE 'the p%% conversation'"))
    assert rows == {"the pirate conversation": "Talk like a pirate.",
                    "the plain conversation": ""}, rows
    # And back: the first conversation's prompt is shown again.
    page.locator("#sidebar label").filter(has_text="the pirate conversation").click()
    wait_until(lambda: prompt.input_value() == "Talk like a pirate.")


def test_regenerate_and_page_through_alternatives(page: Page, app: InProcessApp,
                                                  llm: EmulatedLLM) -> None:
    _chat(page, app, "give me a name")
    first = bot_text(page)
    llm.settings.reply_tokens = 3  # the regenerated reply differs: it is shorter
    page.click("#regenerate")
    wait_until(lambda: bot_text(page) != first and "…" not in bot_text(page))
    wait_idle(page)
    second = bot_text(page)
    assert second.startswith("Reply to [give me a name]") and second != first
    position = page.locator("#alt-position")
    position.get_by_text("2 / 2").wait_for()
    page.click("#alt-prev")
    wait_until(lambda: bot_text(page) == first)
    position.get_by_text("1 / 2").wait_for()
    page.click("#alt-next")
    wait_until(lambda: bot_text(page) == second)


def test_regenerate_stopped_at_once_shows_the_good_reply_again(page: Page, app: InProcessApp,
                                                              llm: EmulatedLLM) -> None:
    _chat(page, app, "give me a color")
    first = bot_text(page)
    llm.script({"action": "hang"})
    page.click("#regenerate")
    wait_until(lambda: len(llm.requests) == 2)
    page.click("#stop")
    wait_idle(page)
    llm.release()
    # The empty alternative is kept, but the pane shows the reply with text, and Continue
    # and the arrows act on what is shown.
    wait_until(lambda: bot_text(page) == first)
    page.locator("#alt-position").get_by_text("1 / 2").wait_for()


def test_edit_a_message_branches_the_conversation(page: Page, app: InProcessApp,
                                                  llm: EmulatedLLM) -> None:
    _chat(page, app, "original question", "follow-up")
    page.locator('#chatbot button[aria-label="Edit"]').first.click()
    editor = page.locator("#chatbot textarea")
    editor.fill("edited question")
    page.locator('#chatbot button[aria-label="Submit"]').click()
    watch_reply(page, "Reply to [edited question]")
    wait_idle(page)
    assert user_texts(page) == ["edited question"]
    page.locator("#notice").get_by_text("new branch").wait_for()
    assert any("(branch)" in label for label in _sidebar(page))
    # The original conversation is as it was.
    original = page.locator("#sidebar label").filter(has_text="original question").filter(
        has_not_text="(branch)")
    original.first.click()
    wait_until(lambda: user_texts(page) == ["original question", "follow-up"])


def test_edit_in_a_conversation_longer_than_the_pane(page: Page, app: InProcessApp,
                                                     llm: EmulatedLLM) -> None:
    """Past the 100 turns the pane shows, a new turn pushes the oldest one out: Edit must still
    pick the message the user edited, and the branch must show it once."""
    turns = 100
    with app.client() as http:
        messages = []
        for n in range(turns):
            messages += [{"role": "user", "content": f"question {n}"},
                         {"role": "assistant", "content": f"answer {n}"}]
        imported = http.post("/api/conversations/import", json={
            "format": "durable-chat/conversation", "version": 1,
            "conversation": {"title": "Long talk"}, "messages": messages})
        assert imported.status_code == 201, imported.text
    open_app(page, app.url)
    page.locator("#sidebar label").filter(has_text="Long talk").click()
    wait_until(lambda: len(user_texts(page)) == turns)
    send(page, "newest question")
    watch_reply(page, "Reply to [newest question]")
    wait_idle(page)
    wait_until(lambda: user_texts(page)[0] == "question 1")  # the oldest turn left the pane
    assert user_texts(page)[-2:] == ["question 99", "newest question"]
    page.locator('#chatbot button[aria-label="Edit"]').nth(turns - 2).click()  # question 99
    page.locator("#chatbot textarea").fill("question 99, rephrased")
    page.locator('#chatbot button[aria-label="Submit"]').click()
    watch_reply(page, "Reply to [question 99, rephrased]")
    wait_idle(page)
    page.locator("#notice").get_by_text("new branch").wait_for()
    shown = user_texts(page)
    assert shown[-2:] == ["question 98", "question 99, rephrased"]
    assert shown.count("question 99, rephrased") == 1
    branch = query(app.settings.database_url or "",
                   "SELECT c.id FROM conversations c WHERE c.title = 'Long talk (branch)'")
    assert len(branch) == 1
    saved = [r[0] for r in query(app.settings.database_url or "",
                                 "SELECT content FROM messages WHERE conversation_id = %s"
                                 " AND role = 'user' ORDER BY seq", (branch[0][0],))]
    assert saved == [f"question {n}" for n in range(99)] + ["question 99, rephrased"]


def test_stop_then_continue(page: Page, app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 400
    llm.settings.tpot_ms = 25
    open_app(page, app.url)
    page.click("#new-chat")
    send(page, "a very long answer")
    wait_until(lambda: " w5" in bot_text(page))
    page.click("#stop")
    wait_until(lambda: "(stopped)" in bot_text(page))
    wait_idle(page)
    partial = reply_text(page).replace("(stopped)", "").strip()
    llm.settings.reply_tokens = 5
    page.click("#continue")
    watch_reply(page, "(continued)")
    wait_idle(page)
    final = reply_text(page)
    assert final.startswith(partial) and final.endswith("(continued) c0 c1 c2 c3")
    # Under it, what the reply was made by and how fast.
    assert "emulated-llama-3.1-8b · " in bot_text(page) and "tokens/s" in bot_text(page)


def test_fork_from_the_workflows_tab_with_other_parameters(page: Page, app: InProcessApp,
                                                           llm: EmulatedLLM) -> None:
    _chat(page, app, "fork this turn")
    workflow_id = query(app.settings.database_url or "", "SELECT workflow_id FROM messages"
                        " WHERE role = 'assistant' AND parent_id = (SELECT id FROM messages"
                        " WHERE content = 'fork this turn')")[0][0]
    page.get_by_role("tab", name="Workflows").click()
    cell = page.locator("#wf-table").get_by_text(workflow_id).filter(visible=True).first
    cell.wait_for()
    cell.click()
    page.locator("#wf-steps").get_by_text("call_llm").wait_for()
    page.get_by_text("Fork with other parameters").click()
    temperature = "#wf-temperature textarea, #wf-temperature input"
    wait_shown(page, temperature, "#wf-top-p input, #wf-top-p textarea",
               "#wf-max-tokens input, #wf-max-tokens textarea", "#wf-system-prompt textarea")
    page.locator(temperature).first.fill("1.7")
    page.click("#wf-fork")
    page.locator("#wf-result").get_by_text("Forked").wait_for()
    wait_until(lambda: llm.requests and llm.requests[-1]["temperature"] == 1.7)
    page.get_by_role("tab", name="Chat").click()  # shows the conversation as it is now
    page.locator("#alt-position").get_by_text("2 / 2").wait_for()


def test_export_and_import(page: Page, app: InProcessApp, tmp_path: Path) -> None:
    _chat(page, app, "export me please", "and this too")
    page.click("#export")
    link = page.locator("#exported a").first
    link.wait_for()
    with page.expect_download() as download:
        link.click()
    data = json.loads(Path(download.value.path()).read_text())
    assert [m["content"] for m in data["messages"] if m["role"] == "user"] == \
        ["export me please", "and this too"]
    page.locator("#export-format input").click()
    page.get_by_role("option", name="markdown").click()
    page.click("#export")
    wait_until(lambda: ".md" in page.locator("#exported").inner_text())

    data["conversation"]["title"] = "Imported copy"
    good = tmp_path / "copy.json"
    good.write_text(json.dumps(data))
    _upload(page, good)
    page.locator("#notice").get_by_text("Imported as").wait_for()
    assert "Imported copy" in _sidebar(page)
    wait_until(lambda: user_texts(page) == ["export me please", "and this too"])

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    before = query(app.settings.database_url or "", "SELECT count(*) FROM conversations")
    _upload(page, bad)
    page.locator("#notice").get_by_text("not valid JSON").wait_for()
    assert query(app.settings.database_url or "", "SELECT count(*) FROM conversations") == before


def _thumbs(page: Page) -> list[str]:
    """Each reply's thumbs as the page shows them: "Liked", "Disliked" or "" (none lit). The
    Chatbot draws a Dislike and a Like button under each reply."""
    labels = page.locator("#chatbot button").evaluate_all(
        "(buttons) => buttons.map((b) => b.getAttribute('aria-label') || '')")
    pairs = [label for label in labels if label.rstrip("d") in ("Like", "Dislike")]
    return ["".join(label for label in pairs[i:i + 2] if label.endswith("d"))
            for i in range(0, len(pairs), 2)]


def test_a_pressed_thumb_stays_with_its_reply_and_no_other_conversation(
        page: Page, app: InProcessApp) -> None:
    """A thumb pressed (the page lights it itself) stays on its reply through later turns and
    when the conversation is opened again, and lights nothing in another conversation, whose
    replies take the same positions in the pane."""
    _chat(page, app, "a reply to like")
    page.locator('#chatbot button[aria-label="Like"]').last.click()
    page.locator('#chatbot button[aria-label="Liked"]').wait_for()
    page.click("#new-chat")
    send(page, "another")
    watch_reply(page, "Reply to [another]")
    wait_idle(page)
    wait_until(lambda: _thumbs(page) == [""], timeout=10)  # not the last conversation's
    page.locator("#sidebar label").filter(has_text="a reply to like").click()
    wait_until(lambda: _thumbs(page) == ["Liked"], timeout=10)
    for n, text in enumerate(("second", "third"), start=2):
        send(page, text)
        watch_reply(page, f"Reply to [{text}]")
        wait_idle(page)
        wait_until(lambda: _thumbs(page) == ["Liked"] + [""] * (n - 1), timeout=10)


def test_past_the_panes_turns_each_thumb_stays_with_its_reply(page: Page,
                                                                app: InProcessApp) -> None:
    """The pane shows the newest SHOWN_TURNS turns: a new one pushes the oldest out and every
    reply moves up one place, while the page keeps its thumbs by place. The rated reply's
    thumb must move with it, not stay lit on the place the new reply takes."""
    messages: list[dict[str, object]] = []
    for n in range(SHOWN_TURNS):
        messages += [{"role": "user", "content": f"question {n}"},
                     {"role": "assistant", "content": f"answer {n}",
                      "rating": {"value": 1} if n == SHOWN_TURNS - 1 else None}]
    assert app.service is not None
    app.call(app.service.import_conversation({
        "format": FORMAT, "version": VERSION, "messages": messages,
        "conversation": {"title": "a full pane"}}))
    open_app(page, app.url)
    page.locator("#sidebar label").filter(has_text="a full pane").click()
    wait_until(lambda: _thumbs(page)[-1:] == ["Liked"], timeout=20)
    send(page, "one more")
    watch_reply(page, "Reply to [one more]")
    wait_idle(page)
    wait_until(lambda: _thumbs(page)[-2:] == ["Liked", ""], timeout=10)
    assert _thumbs(page).count("Liked") == 1



def _reply_ids(app: InProcessApp, conversation_title: str) -> tuple[str, list[str]]:
    rows = query(app.settings.database_url or "",
                 "SELECT c.id::text, m.id::text FROM messages m JOIN conversations c"
                 " ON c.id = m.conversation_id WHERE c.title = %s AND m.role = 'assistant'"
                 " ORDER BY m.seq", (conversation_title,))
    return rows[0][0], [reply for _, reply in rows]


def test_after_a_send_the_thumbs_are_as_stored(page: Page, app: InProcessApp) -> None:
    """The Chatbot takes each reply's thumb from the server again when the pane changes: a
    thumb pressed on the page, taken back, or given in another tab must show as stored once
    the next reply is written; and an earlier rating's tags box is put away."""
    _chat(page, app, "press then send")
    page.locator('#chatbot button[aria-label="Like"]').last.click()
    page.locator('#chatbot button[aria-label="Liked"]').wait_for()
    page.locator("#rating-details").wait_for(state="visible")
    send(page, "the next message")
    watch_reply(page, "Reply to [the next message]")
    wait_idle(page)
    assert _thumbs(page) == ["Liked", ""]
    assert not page.locator("#rating-details").is_visible()
    page.locator('#chatbot button[aria-label="Liked"]').click()  # taken back
    page.locator("#notice").get_by_text("Rating removed").wait_for()
    conversation, replies = _reply_ids(app, "press then send")
    assert app.service is not None
    app.call(app.service.rate_reply(conversation, replies[1], -1))  # another tab's thumb
    send(page, "a third")
    watch_reply(page, "Reply to [a third]")
    wait_idle(page)
    assert _thumbs(page) == ["", "Disliked", ""]


def test_a_regenerated_reply_does_not_take_the_thumb_of_the_one_it_replaces(
        page: Page, app: InProcessApp, llm: EmulatedLLM) -> None:
    """A new alternative takes the rated reply's place in the pane: the page must not light
    the old one's thumb on it, while it is written or after; the old one keeps its thumb.
    (The thumb is lit by the server here, the conversation opened again after the rating: one
    the page lit itself goes when the reply's text changes.)"""
    _chat(page, app, "an answer to regenerate")
    page.locator('#chatbot button[aria-label="Like"]').last.click()
    page.locator('#chatbot button[aria-label="Liked"]').wait_for()
    page.click("#new-chat")
    wait_until(lambda: _thumbs(page) == [], timeout=10)
    page.locator("#sidebar label").filter(has_text="an answer to regenerate").click()
    wait_until(lambda: _thumbs(page) == ["Liked"], timeout=10)
    page.locator('#chatbot button[aria-label="Dislike"]').click()  # changed: its tags open
    page.locator("#rating-details").wait_for(state="visible")
    llm.script({"action": "hang"})
    page.click("#regenerate")
    wait_until(lambda: len(llm.requests) == 2)
    wait_until(lambda: _thumbs(page) == [""], timeout=10)  # while it is being written
    # The tags box named the reply replaced: it goes, or its Save would rate a hidden reply.
    assert not page.locator("#rating-details").is_visible()
    llm.release()
    wait_idle(page)
    page.locator("#alt-position").get_by_text("2 / 2").wait_for()
    assert _thumbs(page) == [""]
    page.click("#alt-prev")
    wait_until(lambda: _thumbs(page) == ["Disliked"], timeout=10)


@pytest.mark.parametrize("reload", [False, True], ids=["sent", "followed-after-a-reload"])
def test_a_new_chat_while_a_reply_streams_is_not_drawn_over(
        page: Page, app: InProcessApp, llm: EmulatedLLM, reload: bool) -> None:
    """Leaving a conversation while its reply is written (New chat, then a message there):
    the old reply goes on, but its stream must stop drawing into the pane, or the page
    would show the old conversation while it sends to the new one. Also when the page
    followed the reply again after a reload (another chain of events)."""
    first = f"a first question ({'reloaded' if reload else 'sent'})"
    _chat(page, app, first)
    llm.settings.reply_tokens = 30  # still being written when the new chat's reply is done
    llm.script({"action": "slow", "tpot_ms": 300})
    send(page, "a slow one")
    watch_reply(page, "Reply to")  # its first words
    if reload:
        page.reload()
        wait_loaded(page)
        watch_reply(page, "Reply to")  # followed again
    page.click("#new-chat")
    send(page, "in the new chat")
    watch_reply(page, "Reply to [in the new chat]")
    wait_idle(page)
    conversation, _ = _reply_ids(app, first)
    wait_until(lambda: query(app.settings.database_url or "",
                             "SELECT count(*) FROM messages WHERE conversation_id = %s AND"
                             " role = 'assistant' AND status = 'complete'",
                             (conversation,))[0][0] == 2, timeout=60)
    assert user_texts(page) == ["in the new chat"]


def test_opening_one_reply_in_flight_after_another_follows_the_second(
        page: Page, app: InProcessApp, llm: EmulatedLLM) -> None:
    """Two conversations with replies being written; open one from the list (the page
    follows its reply), then the other while the first still streams: the page must follow
    the second to its end and give the input back (its step used to be skipped while the
    first's same step ran, leaving the box locked)."""
    _chat(page, app, "S one")
    llm.settings.reply_tokens = 30  # both still being written when the second is opened
    for title in ("S two slow", "S three slow"):
        page.click("#new-chat")
        llm.script({"action": "slow", "tpot_ms": 300})
        send(page, title)
        watch_reply(page, "Reply to")
        page.locator("#sidebar label").filter(has_text="S one").click()
        wait_until(lambda: user_texts(page)[:1] == ["S one"], timeout=10)
        wait_idle(page)
    page.locator("#sidebar label").filter(has_text="S two slow").click()
    wait_until(lambda: "Reply to [S two slow]" in bot_text(page), timeout=10)
    page.locator("#sidebar label").filter(has_text="S three slow").click()
    watch_reply(page, "Reply to [S three slow]")
    wait_idle(page)
    assert user_texts(page) == ["S three slow"]
