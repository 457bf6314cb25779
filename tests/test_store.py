"""The store against a real PostgreSQL (no app, no DBOS): what each query leaves in the tables a
person reads from. One migrated database serves the module; each test makes its own
conversations, and a search looks for a word only its own test wrote."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

from chat_core.data.conversation_export import parse_import, to_json
from chat_core.errors import NotFound
from chat_core.states import (CANCELLED, COMPLETE, ERROR, PENDING, STOPPED, STREAMING)
from chat_core.store.chat_store import ChatStore, public_conversation, public_message
from chat_core.store.database import Database

T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]


@pytest.fixture(scope="module")
def store_and_run(migrated_database_url: str) -> Iterator[tuple[ChatStore, Run]]:
    """A store on one event loop for the module (its pool is bound to that loop)."""
    with asyncio.Runner() as runner:
        db = Database(migrated_database_url, max_size=4, retry_for_sec=2)
        runner.run(db.open())
        try:
            yield ChatStore(db), runner.run
        finally:
            runner.run(db.close())


@pytest.fixture()
def store(store_and_run: tuple[ChatStore, Run]) -> ChatStore:
    return store_and_run[0]


@pytest.fixture()
def run(store_and_run: tuple[ChatStore, Run]) -> Run:
    return store_and_run[1]


def _turn(store: ChatStore, run: Run, cid: uuid.UUID, content: str,
          workflow_id: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    wid = workflow_id or f"turn-{uuid.uuid4()}"
    return run(store.save_user_turn(cid, wid, uuid.uuid4(), uuid.uuid4(), content))


def _answered(store: ChatStore, run: Run, cid: uuid.UUID, question: str, answer: str,
              status: str = COMPLETE) -> tuple[dict[str, Any], dict[str, Any]]:
    user, reply = _turn(store, run, cid, question)
    reply = run(store.finish_reply(reply["id"], content=answer, status=status))
    return user, reply


def _texts(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["role"], r["content"]) for r in rows]


# -- conversations ---------------------------------------------------------------------------

def test_create_get_list_rename_delete(store: ChatStore, run: Run) -> None:
    first = run(store.create_conversation("first"))
    second = run(store.create_conversation())
    assert run(store.get_conversation(first["id"]))["title"] == "first"
    assert second["title"] == "" and second["settings"] == {}

    ours = {first["id"], second["id"]}
    listed = [r["id"] for r in run(store.list_conversations(1000)) if r["id"] in ours]
    assert listed == [second["id"], first["id"]]  # newest activity first

    renamed = run(store.update_conversation(first["id"], title="renamed"))
    assert renamed["title"] == "renamed" and renamed["updated_at"] > first["updated_at"]
    listed = [r["id"] for r in run(store.list_conversations(1000)) if r["id"] in ours]
    assert listed == [first["id"], second["id"]]  # the rename is activity

    assert run(store.delete_conversation(first["id"])) is True
    assert run(store.delete_conversation(first["id"])) is False
    with pytest.raises(NotFound, match="does not exist"):
        run(store.get_conversation(first["id"]))
    with pytest.raises(NotFound):
        run(store.update_conversation(first["id"], title="gone"))


def test_a_new_conversation_says_where_its_first_message_goes(store: ChatStore,
                                                              run: Run) -> None:
    """What conversation_for_turn would read, without reading it back; an insert retried after
    a commit whose answer was lost finds the conversation made, not a second one."""
    made = run(store.create_conversation("t"))
    assert made == {**run(store.conversation_for_turn(made["id"])), "next_seq": 1}
    again = run(store._insert_conversation(made["id"], "other"))
    assert (again["id"], again["title"], again["next_seq"]) == (made["id"], "t", 1)
    _turn(store, run, made["id"], "q")  # its first message, a turn in flight: no head start
    assert run(store.conversation_for_turn(made["id"]))["next_seq"] is None
    assert run(store._insert_conversation(made["id"], "t"))["next_seq"] is None


def test_settings_merge_and_a_null_removes_one(store: ChatStore, run: Run) -> None:
    cid = run(store.create_conversation("s"))["id"]
    run(store.update_conversation(cid, settings={"temperature": 0.2, "top_p": 0.5}))
    row = run(store.update_conversation(cid, settings={"top_p": None, "max_tokens": 10}))
    assert row["settings"] == {"temperature": 0.2, "max_tokens": 10}
    assert row["title"] == "s"  # not touched by a settings change
    assert public_conversation(row)["settings"] == {"temperature": 0.2, "max_tokens": 10}


def test_deleting_a_conversation_deletes_its_messages(store: ChatStore, run: Run) -> None:
    cid = run(store.create_conversation())["id"]
    user, reply = _answered(store, run, cid, "q", "a")
    run(store.delete_conversation(cid))
    assert run(store.get_message(user["id"])) is None
    assert run(store.get_message(reply["id"])) is None


# -- turns -----------------------------------------------------------------------------------

def test_a_user_turn_saved_twice_is_one_row_each(store: ChatStore, run: Run) -> None:
    cid = run(store.create_conversation())["id"]
    args = (cid, f"turn-{uuid.uuid4()}", uuid.uuid4(), uuid.uuid4(), "What is   durable\nexecution?")
    user, reply = run(store.save_user_turn(*args))
    again_user, again_reply = run(store.save_user_turn(*args))  # a re-run workflow step
    assert (again_user["id"], again_reply["id"]) == (user["id"], reply["id"])
    assert again_user["seq"] == user["seq"] == 1
    messages = run(store.list_messages(cid))
    assert [(m["role"], m["status"]) for m in messages] == [("user", COMPLETE),
                                                            ("assistant", PENDING)]
    assert reply["parent_id"] == user["id"] and reply["seq"] == 1
    # The first message titles the conversation, on one line.
    assert run(store.get_conversation(cid))["title"] == "What is durable execution?"


def test_a_turn_in_a_missing_conversation_is_not_found(store: ChatStore, run: Run) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        _turn(store, run, uuid.uuid4(), "hello?")


def test_turns_are_numbered_in_order_and_read_back_in_order(store: ChatStore, run: Run) -> None:
    cid = run(store.create_conversation("kept"))["id"]
    for n in range(1, 4):
        _answered(store, run, cid, f"q{n}", f"a{n}")
    messages = run(store.list_messages(cid))
    assert _texts(messages) == [("user", "q1"), ("assistant", "a1"), ("user", "q2"),
                                ("assistant", "a2"), ("user", "q3"), ("assistant", "a3")]
    assert [m["seq"] for m in messages] == [1, 1, 2, 2, 3, 3]
    assert _texts(run(store.list_messages(cid, last_turns=1))) == [("user", "q3"),
                                                                  ("assistant", "a3")]
    assert run(store.get_conversation(cid))["title"] == "kept"  # a given title stays


def test_history_holds_answered_replies_in_reading_order(store: ChatStore, run: Run) -> None:
    cid = run(store.create_conversation())["id"]
    _answered(store, run, cid, "q1", "a1")
    _answered(store, run, cid, "q2", "half an answer", status=ERROR)
    _answered(store, run, cid, "q3", "stopped here", status=STOPPED)
    _answered(store, run, cid, "q4", "", status=STOPPED)  # stopped before its first token
    _answered(store, run, cid, "q5", "never sent", status=CANCELLED)
    current, _ = _turn(store, run, cid, "q6")
    rows = run(store.history(cid, current["seq"], max_chars=10_000))
    assert _texts(rows) == [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("user", "q3"),
                            ("assistant", "stopped here"), ("user", "q4"), ("user", "q5"),
                            ("user", "q6")]
    # A budget keeps the newest turns; pages smaller than the conversation change nothing.
    short = run(store.history(cid, current["seq"], max_chars=6, page_turns=2))
    assert _texts(short) == [("user", "q4"), ("user", "q5"), ("user", "q6")]
    paged = run(store.history(cid, current["seq"], max_chars=10_000, page_turns=2))
    assert paged == rows


def test_history_sends_the_active_alternative(store: ChatStore, run: Run) -> None:
    cid = run(store.create_conversation())["id"]
    user, first = _answered(store, run, cid, "q", "first answer")
    second = run(store.ensure_reply(user, uuid.uuid4(), f"turn-{uuid.uuid4()}"))
    run(store.finish_reply(second["id"], content="second answer", status=COMPLETE))
    current, _ = _turn(store, run, cid, "next")
    assert _texts(run(store.history(cid, current["seq"], 10_000)))[1] == \
        ("assistant", "second answer")
    run(store.select_reply(first["id"]))
    assert _texts(run(store.history(cid, current["seq"], 10_000)))[1] == \
        ("assistant", "first answer")


def test_in_flight_replies_until_they_finish(store: ChatStore, run: Run) -> None:
    cid = run(store.create_conversation())["id"]
    u1, r1 = _turn(store, run, cid, "one")
    u2, r2 = _turn(store, run, cid, "two")
    assert [r["id"] for r in run(store.in_flight_replies(cid))] == [r1["id"], r2["id"]]
    earlier = run(store.earlier_in_flight(cid, u2["seq"], r2["workflow_id"]))
    assert [r["id"] for r in earlier] == [r1["id"]]
    assert run(store.earlier_in_flight(cid, u1["seq"], r1["workflow_id"])) == []

    run(store.finish_reply(r1["id"], content="done", status=COMPLETE))
    assert [r["id"] for r in run(store.in_flight_replies(cid))] == [r2["id"]]
    assert run(store.earlier_in_flight(cid, u2["seq"], r2["workflow_id"])) == []
    run(store.mark_interrupted([r2["id"]], CANCELLED, "cancelled by the user", "par"))
    assert run(store.in_flight_replies(cid)) == []
    cancelled = run(store.get_message(r2["id"]))
    assert (cancelled["status"], cancelled["content"]) == (CANCELLED, "par")
    run(store.reopen_reply(r2["id"]))  # resumed from the Workflows tab
    assert [r["status"] for r in run(store.in_flight_replies(cid))] == [PENDING]


def test_checkpoint_partial_keeps_the_text_and_reports_a_stop(store: ChatStore,
                                                              run: Run) -> None:
    cid = run(store.create_conversation())["id"]
    _, reply = _turn(store, run, cid, "tell me")
    assert run(store.checkpoint_partial(reply["id"], "Once")) is False
    state = run(store.reply_state(reply["id"]))
    assert (state["status"], state["content"]) == (STREAMING, "Once")

    assert run(store.request_stop(reply["id"])) is True
    assert run(store.checkpoint_partial(reply["id"], "Once upon")) is True
    run(store.finish_reply(reply["id"], content="Once upon", status=STOPPED))
    # A late checkpoint (a retried step) cannot reopen or rewrite a finished reply.
    assert run(store.checkpoint_partial(reply["id"], "Once upon a time")) is False
    assert run(store.request_stop(reply["id"])) is False
    final = run(store.get_message(reply["id"]))
    assert (final["status"], final["content"], final["active"]) == (STOPPED, "Once upon", True)


def test_finish_reply_activates_the_newest_answer_with_text(store: ChatStore,
                                                            run: Run) -> None:
    cid = run(store.create_conversation())["id"]
    user, first = _turn(store, run, cid, "q")

    def alternative() -> dict[str, Any]:
        return run(store.ensure_reply(user, uuid.uuid4(), f"turn-{uuid.uuid4()}"))

    def active() -> list[str]:
        return [m["content"] for m in run(store.list_messages(cid))
                if m["role"] == "assistant" and m["active"]]

    done = run(store.finish_reply(first["id"], content="one", status=COMPLETE, model="m",
                                  prompt_tokens=3, completion_tokens=1, params={"top_p": 1}))
    assert done["active"] and done["completed_at"] is not None and done["params"] == {"top_p": 1}
    again = run(store.finish_reply(first["id"], content="one", status=COMPLETE))
    assert again["completed_at"] == done["completed_at"]  # idempotent: the first time stays
    run(store.finish_reply(alternative()["id"], content="two", status=COMPLETE))
    assert active() == ["two"]
    run(store.finish_reply(alternative()["id"], content="", status=STOPPED))
    run(store.finish_reply(alternative()["id"], content="partial", status=ERROR))
    assert active() == ["two"]  # neither an empty stop nor an error hides a good answer
    assert public_message(run(store.select_reply(first["id"])))["active"] is True
    assert active() == ["one"]


def test_finish_reply_refuses_unknown_columns_and_replies(store: ChatStore, run: Run) -> None:
    with pytest.raises(ValueError, match="unknown reply columns"):
        run(store.finish_reply(uuid.uuid4(), content="x", active=True))
    with pytest.raises(NotFound, match="was its conversation deleted"):
        run(store.finish_reply(uuid.uuid4(), content="x", status=COMPLETE))


# -- search, branch, import ------------------------------------------------------------------

def test_search_finds_finished_text_best_first(store: ChatStore, run: Run) -> None:
    word = f"zq{uuid.uuid4().hex[:10]}"
    once = run(store.create_conversation("once"))["id"]
    twice = run(store.create_conversation("twice"))["id"]
    streaming = run(store.create_conversation("streaming"))["id"]
    _answered(store, run, once, f"planning the {word}", "sure")
    _answered(store, run, twice, f"{word} {word} plans rockets", f"more {word} rockets")
    _, reply = _turn(store, run, streaming, "unrelated")
    run(store.checkpoint_partial(reply["id"], f"half written {word}"))

    hits = run(store.search(word))
    assert [h["id"] for h in hits] == [twice, once]  # a half-written reply is not found
    assert all(f"«{word}»" in h["snippet"] for h in hits)
    assert [h["id"] for h in run(store.search(f"{word} plan"))] == [twice, once]  # stemmed
    assert [h["id"] for h in run(store.search(f"{word} -rocket"))] == [once]
    assert [h["id"] for h in run(store.search(f'"{word} plans"'))] == [twice]
    assert run(store.search(f"{word}x")) == []


def test_a_branch_copies_the_turns_before_it_once(store: ChatStore, run: Run) -> None:
    cid = run(store.create_conversation("source"))["id"]
    _answered(store, run, cid, "q1", "a1")
    u2, _ = _answered(store, run, cid, "q2", "a2")
    new_id = uuid.uuid4()
    branch = run(store.branch(cid, 1, new_id, "source (branch)", u2["id"]))
    again = run(store.branch(cid, 1, new_id, "source (branch)", u2["id"]))  # a retried request
    assert branch["id"] == again["id"] == new_id
    assert branch["origin_conversation_id"] == cid and branch["origin_message_id"] == u2["id"]
    copied = run(store.list_messages(new_id))
    assert _texts(copied) == [("user", "q1"), ("assistant", "a1")]
    assert all(m["workflow_id"] is None for m in copied)  # the turn ran in the source only
    assert _texts(run(store.list_messages(cid)))[2:] == [("user", "q2"), ("assistant", "a2")]


def test_an_export_imports_as_a_new_conversation(store: ChatStore, run: Run) -> None:
    cid = run(store.create_conversation("exported"))["id"]
    user, _ = _answered(store, run, cid, "q1", "a1")
    alternative = run(store.ensure_reply(user, uuid.uuid4(), f"turn-{uuid.uuid4()}"))
    run(store.finish_reply(alternative["id"], content="a1 again", status=COMPLETE))
    _answered(store, run, cid, "q2", "", status=ERROR)
    _turn(store, run, cid, "q3 still running")
    run(store.update_conversation(cid, settings={"temperature": 0.1}))

    conversation = public_conversation(run(store.get_conversation(cid)))
    messages = [public_message(m) for m in run(store.list_messages(cid))]
    header, rows = parse_import(to_json(conversation, messages), max_chars=1000)
    imported = run(store.import_conversation(header, rows))

    assert imported["id"] != cid and imported["title"] == "exported"
    assert imported["settings"] == {"temperature": 0.1}
    copied = run(store.list_messages(imported["id"]))
    shown = [(m["role"], m["content"], m["status"], m["active"]) for m in copied]
    assert shown == [("user", "q1", COMPLETE, False), ("assistant", "a1", COMPLETE, False),
                     ("assistant", "a1 again", COMPLETE, True), ("user", "q2", COMPLETE, False),
                     ("assistant", "", ERROR, False),
                     ("user", "q3 still running", COMPLETE, False)]  # its reply is not exported
    # The imported conversation takes turns after its last one.
    next_user, _ = _turn(store, run, imported["id"], "q4")
    assert next_user["seq"] == 4
