"""The Chat tab's handlers called alone, with an in-memory service (tests/ui_fakes.py): what each
answers, and that it only names outputs its event lists. No app, no browser: the page built
in a Blocks context is only read for its components and events.

Share mode's isolation at the handlers: the real service and store on PostgreSQL with two
people and an admin (ui_fakes.room), each call made as the person its gr.Request names."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from types import SimpleNamespace
from typing import Any, AsyncIterator, Iterator

import gradio as gr
import pytest

from chat_core.errors import NotFound, ShuttingDown, TooManyTurns
from chat_core.states import (COMPLETE, ERROR, MAX_SEARCH_CHARS, MAX_SYSTEM_PROMPT_CHARS,
                              MAX_TITLE_CHARS, SETTING_LIMITS, SETTING_STEP, STOPPED, STREAMING)
from chat_core.ui.chat import ChatHandlers, ChatTab
from chat_core.ui.chat.api import ApiAnswers
from chat_core.ui.chat.live_reply import LIVE_CLASS, placeholder
from chat_core.ui.chat.view import (FAILED_NOTICE, PENDING_REPLY, RESTARTING_NOTICE, SIDEBAR_LENGTH,
                                    TurnActions)
from chat_core.ui.page import build_ui
from tests.ui_fakes import FakeService, Room, caller, room

PUBLIC_NAMES = {"send", "select", "new_chat", "retry", "regenerate", "continue", "previous",
                "next", "edit", "stop", "rename", "delete", "search", "save_settings",
                "choose_model", "export",
                "import", "load_chat",  # the Chat tab's; then the Workflows tab's
                "workflows", "tick", "steps", "cancel_workflow", "resume_workflow",
                "fork_workflow"}
SKIP = gr.skip()


@pytest.fixture(scope="module")
def tab() -> Iterator[ChatTab]:
    with gr.Blocks():
        yield ChatTab(FakeService())  # type: ignore[arg-type]


@pytest.fixture()
def service() -> FakeService:
    return FakeService()


@pytest.fixture()
def chat(tab: ChatTab, service: FakeService) -> ChatHandlers:
    return ChatHandlers(service, tab.ui)  # type: ignore[arg-type]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def collect(stream: AsyncIterator[Any]) -> list[Any]:
    async def drain() -> list[Any]:
        return [item async for item in stream]
    return run(drain())


def value(change: Any) -> Any:
    return change.get("value") if isinstance(change, dict) and "__type__" in change else change


def within(changes: dict[Any, Any], outputs: list[Any]) -> bool:
    return set(map(id, changes)) <= set(map(id, outputs))


def finish(chat: ChatHandlers, turn: Any, request: Any = None) -> Any:
    """The finish step after the page's script followed `turn` to its end."""
    return run(chat.finish(turn, turn["id"] if turn else "", "", request))


def pane_of(change: Any) -> list[str]:
    return [m["content"] for m in value(change)]


# -- the page's events --------------------------------------------------------------------------

def test_the_public_api_keeps_its_names_and_the_chain_steps_are_private() -> None:
    demo = build_ui(FakeService(), share_mode=False)  # type: ignore[arg-type]
    public = [fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"]
    assert sorted(public) == sorted(PUBLIC_NAMES)  # each once: no name taken by another event
    chained = [fn for fn in demo.fns.values() if fn.trigger_after is not None
               and (fn.fn is None or fn.name in ("finish", "feedback_shown"))]
    assert chained and all(fn.api_visibility == "private" for fn in chained)
    # The page draws a reply being written with its own script: a step with no server side
    # and no input but the turn's id (the page's `live` Textbox); `finish` then ends it.
    scripts = [fn for fn in chained if fn.js and fn.fn is None]
    follows = [fn for fn in scripts if fn.inputs]
    assert follows and all([type(b).__name__ for b in fn.inputs] == ["Textbox"]
                           for fn in follows)
    # The others only end the page's stream: nothing in, nothing out.
    stops = [fn for fn in scripts if fn not in follows]
    assert len(stops) == 3 and not any(fn.outputs for fn in stops)  # new chat, import, delete
    ends = [fn for fn in chained if fn.name == "finish"]
    assert ends and all(fn.trigger_after in {s._id for s in follows} for fn in ends)


def test_limits_come_from_the_shared_states(tab: ChatTab) -> None:
    ui = tab.ui
    assert ui.system_prompt.max_length == MAX_SYSTEM_PROMPT_CHARS
    assert ui.title.max_length == MAX_TITLE_CHARS and ui.search.max_length == MAX_SEARCH_CHARS
    assert (ui.temperature.minimum, ui.temperature.maximum) == SETTING_LIMITS["temperature"]
    assert ui.temperature.step == ui.top_p.step == SETTING_STEP
    assert (ui.max_tokens.minimum, ui.max_tokens.maximum) == SETTING_LIMITS["max_tokens"]


# -- starting a turn ----------------------------------------------------------------------------

def test_send_in_a_new_conversation_shows_it_pending_and_lists_it(
        tab: ChatTab, chat: ChatHandlers, service: FakeService) -> None:
    ui = tab.ui
    out = run(chat.send("Hello there", None, {}))
    assert within(out, tab.events.started)
    conversation = out[ui.conversation]
    assert conversation in service.conversations
    assert value(out[ui.conversations]) == conversation
    assert out[ui.conversations]["choices"] == [("Hello there", conversation)]
    assert out[ui.chatbot] == [{"role": "user", "content": "Hello there"},
                               placeholder(out[ui.turn]["id"])]
    assert out[ui.live] == out[ui.turn]["id"]  # what the page's script follows
    assert out[ui.box] == gr.update(value="", interactive=False)
    assert out[ui.actions] == gr.update(elem_classes=["busy"])  # Stop, and nothing else
    assert out[ui.turn]["conversation"] == conversation
    assert out[ui.turn]["shown"] == [{"role": "user", "content": "Hello there"}]


def updated(changes: dict[Any, Any]) -> set[Any]:
    """The outputs a step's answer gives as property updates, which Gradio rebuilds anew."""
    return {c for c, v in changes.items() if isinstance(v, dict) and v.get("__type__")}


def test_a_new_chats_list_puts_it_first_among_the_newest(
        tab: ChatTab, chat: ChatHandlers, service: FakeService) -> None:
    """A new chat's list is read while its first message starts (one wait less in a burst),
    before its conversation exists: it shows the new conversation first, under the title it
    will get, then the newest others, each once, as many as the list holds."""
    earlier = [run(service.create_conversation(f"Earlier {i}"))["id"]
               for i in range(SIDEBAR_LENGTH)]
    out = run(chat.send("Hello there", None, {}))
    choices = out[tab.ui.conversations]["choices"]
    assert choices[0] == ("Hello there", out[tab.ui.conversation])
    assert [c for _, c in choices[1:]] == earlier[::-1][:SIDEBAR_LENGTH - 1]
    assert value(out[tab.ui.conversations]) == out[tab.ui.conversation]


def test_a_new_chats_refused_message_reads_nothing(
        tab: ChatTab, chat: ChatHandlers, service: FakeService,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone can send anything: a message refused for its text costs no read of the list."""
    reads: list[int] = []

    async def titles(limit: int = SIDEBAR_LENGTH) -> list[dict[str, Any]]:
        reads.append(limit)
        return []

    monkeypatch.setattr(service, "conversation_titles", titles)
    out = run(chat.send("   ", None, {}))
    assert out[tab.ui.notice].startswith("⚠️ the message is empty") and reads == []
    assert service.conversations == {}


def test_a_new_chat_whose_list_cannot_be_read_still_follows_its_reply(
        tab: ChatTab, chat: ChatHandlers, service: FakeService,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The list is read beside the first message; if that read fails once the turn has
    started, the reply is still followed (an error here would leave it running unseen) and
    the list shows the new chat alone until the next load. The failure is logged."""
    run(service.create_conversation("Earlier"))

    async def titles(limit: int = SIDEBAR_LENGTH) -> list[dict[str, Any]]:
        raise OSError("the database went away")

    monkeypatch.setattr(service, "conversation_titles", titles)
    out = run(chat.send("Hello there", None, {}))
    ui = tab.ui
    assert out[ui.live] == out[ui.turn]["id"]
    assert out[ui.conversations]["choices"] == [("Hello there", out[ui.conversation])]
    assert value(out[ui.conversations]) == out[ui.conversation]
    assert "could not be read" in caplog.text


def test_a_message_rebuilds_only_what_it_changes(tab: ChatTab, chat: ChatHandlers,
                                                 service: FakeService) -> None:
    """Gradio rebuilds each output an answer gives as a property update, and each one it
    leaves out (a skip is an update too): for the sidebar, a component with its 100 choices.
    A message to an open conversation and its finish answer every output they name, and
    change the properties of the input, the actions and the rating's row only."""
    ui = tab.ui
    conversation = run(service.create_conversation("Birds"))["id"]
    run(service.create_conversation("Other"))
    opened = run(chat.open(conversation))
    started = run(chat.send("Hi", conversation, opened[ui.view], "Birds, renamed"))
    assert set(started) == set(tab.events.started)
    assert updated(started) == {ui.box, ui.actions, ui.rating_row}
    # The page's own: the open conversation, selected in the list, and its title field.
    assert started[ui.conversation] == started[ui.conversations] == conversation
    assert started[ui.title] == "Birds, renamed"
    service.snapshots = [(COMPLETE, "Hello")]  # the page's script followed it to its end
    out = run(chat.finish(started[ui.turn], started[ui.turn]["id"], "🔁 a notice shown"))
    assert set(out) == {ui.chatbot, *tab.events.settled}
    assert updated(out) == {ui.box, ui.actions}
    assert out[ui.notice] == "🔁 a notice shown"  # left as the page showed it
    # A title that is not text is not given back (Gradio's own skip then keeps the page's).
    assert ui.title not in run(chat.send("Again", conversation, out[ui.view], 42))


def test_a_refused_message_stays_in_the_box(tab: ChatTab, chat: ChatHandlers,
                                            service: FakeService) -> None:
    conversation = run(service.create_conversation())["id"]
    out = run(chat.send("   ", conversation, {}))
    assert out == {tab.ui.notice: "⚠️ the message is empty\\: type something to send",
                   tab.ui.box: "   "}
    # Text that cannot go back out on the event stream (a lone surrogate) is left alone.
    assert tab.ui.box not in run(chat.send("\ud800", "no-such-conversation", {}))


def test_nothing_to_retry_changes_nothing(chat: ChatHandlers) -> None:
    """An answer with no value at all would blank every output on the page."""
    assert run(chat.retry(None, {})) == SKIP
    assert run(chat.continue_reply("c", {"alternatives": []})) == SKIP
    assert run(chat.next("c", {"alternatives": ["a"], "alt_index": 0})) == SKIP


# -- following it -------------------------------------------------------------------------------

def test_the_pending_reply_is_a_block_named_for_its_turn() -> None:
    """The page's script draws into the element of this id (live_reply.FOLLOW_JS); an id is
    written as text, whatever it holds."""
    entry = placeholder('turn-1"><script>')
    assert entry["content"] == (f'<div class="{LIVE_CLASS}" id="live-turn-1&quot;&gt;'
                                '&lt;script&gt;">…</div>')


def test_finish_draws_the_reply_as_stored_and_gives_the_input_back(
        tab: ChatTab, chat: ChatHandlers, service: FakeService) -> None:
    ui = tab.ui
    started = run(chat.send("Hi", None, {}))
    service.snapshots = [(COMPLETE, "Hello")]  # the page's script followed it to its end
    out = finish(chat, started[ui.turn])
    assert within(out, [ui.chatbot, *tab.events.settled])
    # A value alone: the page's thumbs (none) are those stored, so the Chatbot is not rebuilt
    # (test_finish_sends_the_thumbs_as_stored).
    assert out[ui.chatbot] == [{"role": "user", "content": "Hi"},
                               {"role": "assistant", "content": "<p>Hello</p>"}]
    assert out[ui.box] == gr.update(interactive=True) and out[ui.turn] is None
    assert out[ui.live] == ""  # nothing left for the page's script to follow
    assert out[ui.actions] == gr.update(elem_classes=["regenerate"])
    assert out[ui.view]["ids"][-1] == started[ui.turn]["reply_id"]  # as stored
    assert out[ui.notice] == ""  # the page's, as it was (a skip would rebuild it)


def test_finish_draws_the_stored_pane_when_they_differ(
        tab: ChatTab, chat: ChatHandlers, service: FakeService) -> None:
    started = run(chat.send("Hi", None, {}))
    turn = started[tab.ui.turn]
    service.add_turn(turn["conversation"], "from another tab", "answered there")
    last = finish(chat, turn)[tab.ui.chatbot]
    assert pane_of(last) == ["Hi", "<p>Hello</p>", "from another tab", "<p>answered there</p>"]
    # The page keeps its thumbs by place: redrawn, the pane takes them anew, one per reply.
    assert last["feedback_value"] == [None, None]


def test_finish_sends_the_thumbs_as_stored(tab: ChatTab, chat: ChatHandlers,
                                           service: FakeService) -> None:
    """The Chatbot takes each reply's thumb from its feedback_value again when the pane
    changes: a rating made while the reply was written (pressed on the page, or in another
    tab) must be in finish's pane, or the page would drop it."""
    conversation = run(service.create_conversation())["id"]
    earlier = service.add_turn(conversation, "earlier", "an answer")
    opened = run(chat.open(conversation))
    started = run(chat.send("Hi", conversation, opened[tab.ui.view]))
    assert started[tab.ui.rating_row] == gr.update(visible=False)  # an earlier rating's tags
    next(m for m in service.messages[conversation]
         if m["id"] == earlier.reply_id)["rating"] = {"value": 1}
    last = finish(chat, started[tab.ui.turn])[tab.ui.chatbot]
    assert pane_of(last) == ["earlier", "<p>an answer</p>", "Hi", "<p>Hello</p>"]
    assert last["feedback_value"] == ["Like", None]


def test_a_failed_reply_offers_retry(tab: ChatTab, chat: ChatHandlers,
                                     service: FakeService) -> None:
    service.snapshots = [(ERROR, "")]
    started = run(chat.send("Hi", None, {}))
    out = finish(chat, started[tab.ui.turn])
    assert out[tab.ui.notice] == FAILED_NOTICE
    assert out[tab.ui.actions] == gr.update(elem_classes=["retry"])


def test_when_the_app_stops_finish_says_so(tab: ChatTab, chat: ChatHandlers,
                                           service: FakeService) -> None:
    service.snapshots = [(STREAMING, "partial")]
    service.watch_error = ShuttingDown("shutting down")
    started = run(chat.send("Hi", None, {}))
    out = finish(chat, started[tab.ui.turn])
    assert out[tab.ui.notice] == RESTARTING_NOTICE
    assert out[tab.ui.box] == gr.update(interactive=True)


def test_a_conversation_gone_meanwhile_gives_the_input_back(
        tab: ChatTab, chat: ChatHandlers, service: FakeService) -> None:
    """Deleted from another tab while the reply streamed: a notice, not a stuck input (the
    handler used to raise, leaving the page as it was)."""
    started = run(chat.send("Hi", None, {}))
    turn = started[tab.ui.turn]
    run(service.delete_conversation(turn["conversation"]))
    out = finish(chat, turn)
    assert tab.ui.chatbot not in out  # the deleted conversation's text is not drawn again
    assert out[tab.ui.notice].startswith("⚠️ conversation")
    assert out[tab.ui.box] == gr.update(interactive=True)


def test_no_turn_to_follow_changes_nothing(chat: ChatHandlers) -> None:
    assert finish(chat, None) == SKIP
    assert run(chat.finish({"id": "turn-1"}, "", "")) == SKIP  # the script followed none
    assert chat.settle(None, None) == SKIP


def test_a_chain_that_ended_after_another_began_leaves_the_page_to_it(
        tab: ChatTab, chat: ChatHandlers) -> None:
    """A reply streaming in one chat, a new chat sent meanwhile: the first chain's end must not
    settle the page (unlock the box, hide Stop, show the old view) while the second streams,
    and Stop must keep naming the second."""
    first = run(chat.send("one", None, {}))[tab.ui.turn]
    second = run(chat.send("two", None, {}))[tab.ui.turn]  # the page's `turn` is now this one
    # The first chain's script resolves with the turn it followed; the page's turn is another.
    assert run(chat.finish(second, first["id"])) == SKIP
    assert finish(chat, second)[tab.ui.box] == gr.update(interactive=True)


def test_stop_stops_the_turn_being_followed(chat: ChatHandlers, service: FakeService) -> None:
    run(chat.stop({"id": "turn-1"}))
    run(chat.stop(None))
    assert service.stopped == ["turn-1"]


# -- showing a conversation ---------------------------------------------------------------------

def test_opening_a_conversation_with_a_reply_in_flight_follows_it(
        tab: ChatTab, chat: ChatHandlers, service: FakeService) -> None:
    ui = tab.ui
    conversation = run(service.create_conversation("Busy"))["id"]
    turn = service.add_turn(conversation, "question", "half an ans", status=STREAMING)
    service.in_flight_turns[conversation] = [{"workflow_id": turn.turn_id}]
    out = run(chat.open(conversation))
    assert within(out, tab.events.shown)
    assert out[ui.chatbot] == [{"role": "user", "content": "question"},
                               placeholder(turn.turn_id)]
    assert out[ui.turn]["id"] == turn.turn_id and out[ui.actions]["elem_classes"] == ["busy"]
    assert out[ui.live] == turn.turn_id
    assert run(chat.open(None))[ui.live] == ""  # nothing for the page's script to follow
    assert out[ui.title] == "Busy" and out[ui.temperature] == 0.7


def test_opening_an_unknown_conversation_shows_a_new_chat(tab: ChatTab,
                                                          chat: ChatHandlers) -> None:
    out = run(chat.open("no-such-conversation"))
    assert out[tab.ui.conversation] is None and out[tab.ui.chatbot] == []
    assert out[tab.ui.turn] is None


def test_the_actions_follow_the_newest_reply() -> None:
    assert TurnActions.of({"last_reply": {"status": ERROR}}).retry
    assert TurnActions.of({"last_reply": {"status": STOPPED}}).proceed
    assert TurnActions.of({"last_reply": {"status": COMPLETE, "finish_reason": "length"}}
                          ).proceed
    done = TurnActions.of({"last_reply": {"status": COMPLETE, "finish_reason": "stop"},
                           "alternatives": ["a", "b"], "alt_index": 1})
    assert done.regenerate and not done.proceed and done.browsable and done.position == "2 / 2"
    assert done.classes == ["regenerate", "alternatives", "last"]
    assert TurnActions.of({}).classes == [] and TurnActions.of({}).position == ""


# -- one-step actions ---------------------------------------------------------------------------

def test_rename_search_and_save_settings(tab: ChatTab, chat: ChatHandlers,
                                         service: FakeService) -> None:
    ui = tab.ui
    conversation = run(service.create_conversation("Old"))["id"]
    service.add_turn(conversation, "talk of flamingos", "pink")
    renamed = run(chat.rename(conversation, "  New  "))
    assert renamed[ui.title] == "New" and renamed[ui.notice] == "Renamed."
    found = run(chat.search("flamingo"))
    assert found[ui.conversations]["choices"] == [("New — flamingo", conversation)]
    assert found[ui.notice].startswith("1 conversation(s) match")
    assert run(chat.search(None))[ui.notice] == ""
    assert run(chat.save_settings(conversation, "Be brief.", 0.3, 0.9, 64)).startswith(
        "Settings saved")
    assert service.conversations[conversation]["settings"]["system_prompt"] == "Be brief."
    assert run(chat.rename(None, "x"))[ui.notice].startswith("Send a first message")


def test_delete_hides_the_confirmation_and_shows_a_new_chat(
        tab: ChatTab, chat: ChatHandlers, service: FakeService) -> None:
    conversation = run(service.create_conversation("Gone"))["id"]
    out = run(chat.delete(conversation))
    assert within(out, [*tab.events.shown, tab.ui.confirm_row])
    assert out[tab.ui.confirm_row]["visible"] is False
    assert out[tab.ui.notice] == "Conversation deleted." and out[tab.ui.conversation] is None


def test_import_refuses_a_path_outside_the_upload_folder(tab: ChatTab,
                                                         chat: ChatHandlers) -> None:
    out = run(chat.import_file("/etc/hostname"))
    assert "choose a \\.json file" in out[tab.ui.notice]


# -- the API's one-call answers -----------------------------------------------------------------

def test_the_api_send_answers_with_the_whole_turn_in_plain_values(
        tab: ChatTab, chat: ChatHandlers) -> None:
    api = ApiAnswers(chat)
    rows = collect(api.send("Hi", None, {}))
    conversation, selected, pane, notice, box, turn, view = rows[-1]
    assert conversation == selected and isinstance(conversation, str)
    assert [m["content"] for m in pane] == ["Hi", "<p>Hello</p>"] and notice == ""
    assert box == gr.update(interactive=True) and turn is None and view["ids"]
    assert [r[2][-1]["content"] for r in rows[1:-1]] == ["<p>Hel</p>", "<p>Hello</p>"]
    assert rows[0][2][-1] == PENDING_REPLY  # the page's markup for its script is the page's
    # A refused message: one row, the text still in the box.
    refused = collect(api.send("   ", conversation, view))
    assert len(refused) == 1 and refused[0][3].startswith("⚠️") and refused[0][4] == "   "
    # Text that cannot go back out (a lone surrogate) is left in the box: no value for it.
    assert collect(api.send("\ud800", "no-such-conversation", view))[0][4] == SKIP


def test_the_api_send_says_when_the_app_restarts(tab: ChatTab, chat: ChatHandlers,
                                                 service: FakeService) -> None:
    service.snapshots = [(STREAMING, "partial")]
    service.watch_error = ShuttingDown("shutting down")
    rows = collect(ApiAnswers(chat).send("Hi", None, {}))
    assert RESTARTING_NOTICE in [row[3] for row in rows]


def test_a_watch_error_redraws_the_stored_pane_and_keeps_its_notice(
        tab: ChatTab, chat: ChatHandlers, service: FakeService) -> None:
    service.snapshots = [(STREAMING, "partial")]
    service.watch_error = NotFound("turn turn-x does not exist")
    started = run(chat.send("Hi", None, {}))
    out = finish(chat, started[tab.ui.turn])
    last = out[tab.ui.chatbot]
    assert pane_of(last) == ["Hi", "<p>partial</p>"]  # as stored
    assert last["feedback_value"] == [None]
    assert out[tab.ui.notice] == "⚠️ turn turn\\-x does not exist"


# -- over a person's limits ---------------------------------------------------------------------

@pytest.mark.parametrize("message, when", [
    ("you have sent 20 messages in the last minute; send again in 12 s", "send again in 12 s"),
    ("you have 4 replies being written already; wait for one to finish (or stop one), then "
     "send again", "Try again in about 5 s."),
])
def test_over_the_limits_the_notice_says_when_and_the_text_stays(
        tab: ChatTab, chat: ChatHandlers, service: FakeService, message: str, when: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(conversation_id: str, content: Any) -> Any:
        raise TooManyTurns(message, retry_after_sec=12 if "12" in message else 5, limit=4)
    monkeypatch.setattr(service, "start_turn", refuse)
    conversation = run(service.create_conversation())["id"]
    out = run(chat.send("my long message", conversation, {}))
    assert out[tab.ui.box] == "my long message" and tab.ui.turn not in out
    notice = out[tab.ui.notice]
    assert notice.startswith("⏳ Not sent") and when in notice.replace("\\", "")
    assert "still in the box" in notice


# -- share mode: each person's own --------------------------------------------------------------

@pytest.fixture()
def people(migrated_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Room]:
    with room(migrated_database_url, monkeypatch) as r:
        yield r


@pytest.fixture()
def shared(tab: ChatTab, people: Room) -> ChatHandlers:
    return ChatHandlers(people.service, tab.ui, True, tab.everyone)


def masked(answer: Any, *ids: str) -> str:
    """An answer as the page would get it, with the ids it names blanked: someone else's id
    and a random one must then read the same."""
    text = repr(sorted(((getattr(k, "elem_id", None) or type(k).__name__, repr(v))
                        for k, v in answer.items()), key=repr)) \
        if isinstance(answer, dict) else repr(answer)
    text = text.replace("\\", "")  # notices escape Markdown: "a\\-b" for "a-b"
    for value in ids:
        text = text.replace(value, "<id>")
    return text


def test_someone_elses_conversation_answers_like_a_missing_one(
        shared: ChatHandlers, people: Room) -> None:
    r, bob = people, caller(people.bob)
    cid = r.conversation(r.alice, "Alice's plans")
    _, user_id, reply_id = r.turn(r.alice, cid, "the word is flamingo", "noted")
    mine = [cid, user_id, reply_id]
    unknown = [str(uuid.uuid4()) for _ in mine]
    before = r.run(r.service.for_person(r.alice).list_messages(cid))

    def view(ids: list[str]) -> dict[str, Any]:
        return {"last_user": ids[1], "last_reply": {"id": ids[2]}, "ids": ids[1:],
                "alternatives": [ids[2], ids[2]], "alt_index": 0, "shown": []}

    edit = gr.EditData(None, {"index": 0, "value": "changed", "previous_value": "x"})
    calls = {
        "open": lambda ids: shared.open(ids[0], bob),
        "rename": lambda ids: shared.rename(ids[0], "mine now", bob),
        "save_settings": lambda ids: shared.save_settings(ids[0], "Be rude.", 1, 1, 9, bob),
        "export": lambda ids: shared.export(ids[0], "json", bob),
        "retry": lambda ids: shared.retry(ids[0], view(ids), bob),
        "continue": lambda ids: shared.continue_reply(ids[0], view(ids), bob),
        "next": lambda ids: shared.next(ids[0], view(ids), bob),
        "edit": lambda ids: shared.edit(ids[0], view(ids), edit, bob),
        "delete": lambda ids: shared.delete(ids[0], bob),
    }
    for name, call in calls.items():
        theirs, missing = r.run(call(mine)), r.run(call(unknown))
        assert masked(theirs, *mine) == masked(missing, *unknown), name
        assert "flamingo" not in repr(theirs) and "Alice" not in repr(theirs), name
    # Nothing of Alice's changed, and it is hers as it was.
    alice = r.service.for_person(r.alice)
    assert r.run(alice.get_conversation(cid))["title"] == "Alice's plans"
    assert r.run(alice.list_messages(cid)) == before


def test_someone_elses_turn_answers_like_a_missing_one(shared: ChatHandlers,
                                                       people: Room) -> None:
    r, bob = people, caller(people.bob)
    cid = r.conversation(r.alice, "Busy")
    turn_id, _, reply_id = r.turn(r.alice, cid, "still thinking about flamingos")
    unknown = f"turn-{uuid.uuid4()}"
    stops = []
    for turn in (turn_id, unknown):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r.run(shared.stop({"id": turn}, bob))
        stops.append([str(w.message).replace(turn, "<id>") for w in caught])
    assert stops[0] == stops[1] and "does not exist" in stops[0][0]
    assert r.run(r.system.reply_state(uuid.UUID(reply_id)))["stop_requested"] is False
    r.run(shared.stop({"id": turn_id}, caller(r.alice)))  # hers to stop
    assert r.run(r.system.reply_state(uuid.UUID(reply_id)))["stop_requested"] is True
    # Finished, so that a stream that reached it would show it rather than wait.
    r.run(r.system.finish_reply(uuid.UUID(reply_id), content="flamingos", status=COMPLETE))
    ends = [masked(r.run(shared.finish({"id": turn, "conversation": cid, "shown": []}, turn,
                                       "", bob)), turn, cid) for turn in (turn_id, unknown)]
    assert ends[0] == ends[1] and "reply failed" in ends[0]
    assert "flamingo" not in ends[0]
    hers = r.run(shared.finish({"id": turn_id, "conversation": cid, "shown": []}, turn_id,
                               "", caller(r.alice)))
    assert "flamingos" in repr(hers)


async def _drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


def test_each_lists_and_searches_their_own(tab: ChatTab, shared: ChatHandlers,
                                           people: Room) -> None:
    r = people
    theirs = {p.name: r.conversation(p, f"{p.name}'s") for p in (r.alice, r.bob)}
    words = {p.name: f"pelican{uuid.uuid4().hex[:8]}" for p in (r.alice, r.bob)}
    for p in (r.alice, r.bob):
        r.turn(p, theirs[p.name], f"a word of {p.name}: {words[p.name]}", "ok")
    for p in (r.alice, r.bob):
        listed = r.run(shared.new_chat(caller(p)))[tab.ui.conversations]["choices"]
        assert [c for _, c in listed] == [theirs[p.name]]
        found = r.run(shared.search(" or ".join(words.values()), caller(p)))
        assert [c for _, c in found[tab.ui.conversations]["choices"]] == [theirs[p.name]]


def test_the_admin_sees_their_own_listed_and_everyones_on_request(
        tab: ChatTab, shared: ChatHandlers, people: Room) -> None:
    r, admin = people, caller(people.admin)
    hers = r.conversation(r.alice, "Alice's")
    r.turn(r.alice, hers, "ibis", "a bird")
    own = r.conversation(r.admin, "The host's")
    shown = r.run(shared.open(hers, admin))  # any conversation opens for the admin
    assert shown[tab.ui.conversation] == hers and "ibis" in repr(shown[tab.ui.chatbot])
    assert [c for _, c in shown[tab.ui.conversations]["choices"]] == [own]  # listed: own
    assert r.run(shared.everyone_shown(admin)) == gr.update(visible=True, value=False)
    listed = r.run(shared.choose_everyone(True, hers, admin))
    assert (f"Alice's · {r.alice.name}", hers) in listed["choices"]
    assert listed["value"] == hers
    assert r.run(shared.everyone_shown(admin))["value"] is True
    found = r.run(shared.search("ibis", admin))[tab.ui.conversations]["choices"]
    assert [c for _, c in found] == [hers]
    r.run(shared.choose_everyone(False, None, admin))
    assert r.run(shared.search("ibis", admin))[tab.ui.conversations]["choices"] == []
    # Not an admin: no choice shown, and asking for it changes nothing.
    assert r.run(shared.everyone_shown(caller(r.bob)))["visible"] is False
    assert hers not in repr(r.run(shared.choose_everyone(True, None, caller(r.bob))))


@pytest.mark.parametrize("who", ["nobody", "unknown account", "no request"])
def test_a_call_without_a_known_login_fails_closed(shared: ChatHandlers, people: Room,
                                                   who: str) -> None:
    request = {"nobody": caller(None), "no request": None,
               "unknown account": caller(type(people.bob)(uuid.uuid4(), "ghost"))}[who]
    with pytest.raises(gr.Error, match="log in again"):
        people.run(shared.new_chat(request))
    with pytest.raises(gr.Error, match="log in again"):
        people.run(_drain(ApiAnswers(shared).send("hi", None, {}, request)))


def test_an_edit_over_the_limits_keeps_its_text(tab: ChatTab, chat: ChatHandlers,
                                                service: FakeService,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    conversation = run(service.create_conversation("Talk"))["id"]
    turn = service.add_turn(conversation, "first", "answer")

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise TooManyTurns("you have sent 20 messages in the last minute; send again in 9 s",
                           retry_after_sec=9, limit=20)
    monkeypatch.setattr(service, "edit_message", refuse, raising=False)
    edit = gr.EditData(None, {"index": 0, "value": "first, edited", "previous_value": "first"})
    out = run(chat.edit(conversation, {"ids": [turn.user_message_id, turn.reply_id]}, edit))
    assert out[tab.ui.conversation] == conversation  # the original, unchanged
    assert out[tab.ui.box] == gr.update(value="first, edited", interactive=True)
    assert out[tab.ui.notice].startswith("⏳ Not sent")


def test_a_refused_edit_lights_what_it_shows_and_puts_the_rating_away(
        tab: ChatTab, chat: ChatHandlers, service: FakeService,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused edit leaves no reply to follow, so its chain ends before the thumbs' step
    (events._follow): the refusal lights the thumbs of what it shows itself (here a new
    chat: the conversation was deleted in another tab, and its thumbs must not stay on the
    places of the next one's replies) and puts an earlier rating's row away."""
    ui = tab.ui
    conversation = run(service.create_conversation("Talk"))["id"]
    turn = service.add_turn(conversation, "first", "answer")
    run(service.delete_conversation(conversation))

    async def gone(*args: Any, **kwargs: Any) -> Any:
        raise NotFound(f"conversation {conversation} does not exist")
    monkeypatch.setattr(service, "edit_message", gone, raising=False)
    edit = gr.EditData(None, {"index": 0, "value": "first, edited", "previous_value": "first"})
    out = run(chat.edit(conversation, {"ids": [turn.user_message_id, turn.reply_id]}, edit))
    assert out[ui.conversation] is None and out[ui.live] == ""  # nothing to follow
    assert out[ui.chatbot] == gr.update(value=[], feedback_value=[])
    assert out[ui.rating_row] == gr.update(visible=False)


def test_a_finish_that_waited_for_the_reply_leaves_the_notice_alone(
        tab: ChatTab, chat: ChatHandlers, service: FakeService) -> None:
    """A finish step whose page could not follow the reply (its stream refused) waits for
    the reply's end; the notice it was given is then an older one than the page may show
    (a rating saved meanwhile), so it is not given back."""
    conversation = run(service.create_conversation("Talk"))["id"]
    started = run(chat.send("Hi", conversation, {}, "Talk"))
    service.snapshots = [(STREAMING, "Hel"), (COMPLETE, "Hello")]
    out = run(chat.finish(started[tab.ui.turn], started[tab.ui.turn]["id"], "an old notice"))
    assert tab.ui.notice not in out and tab.ui.box in out


def test_a_refused_message_leaves_the_reply_shown_followed(
        tab: ChatTab, chat: ChatHandlers, service: FakeService,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's older finish step does nothing once the page follows another turn; a
    refused message starts none, so the reply the page shows goes on being drawn."""
    page = SimpleNamespace(username=None, session_hash="a page")
    conversation = run(service.create_conversation("Busy"))["id"]
    turn = service.add_turn(conversation, "a question", "half", status=STREAMING)
    service.in_flight_turns[conversation] = [{"workflow_id": turn.turn_id}]
    opened = run(chat.open(conversation, page))
    assert opened[tab.ui.turn]["id"] == turn.turn_id

    async def refuse(conversation_id: str, content: Any) -> Any:
        raise TooManyTurns("you have 1 reply being written already", retry_after_sec=5,
                           limit=1)
    monkeypatch.setattr(service, "start_turn", refuse)
    assert tab.ui.turn not in run(chat.send("another", conversation, opened[tab.ui.view],
                                            request=page))
    assert tab.ui.chatbot in run(chat.finish(opened[tab.ui.turn], turn.turn_id, "", page))
    # A page that opened another conversation since no longer gets this one drawn.
    run(chat.new_chat(page))
    assert run(chat.finish(opened[tab.ui.turn], turn.turn_id, "", page)) == SKIP
