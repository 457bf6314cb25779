"""Export and import as pure logic: what an export holds, what its Markdown transcript shows,
and how an import file becomes rows (new ids, replies linked to their question, one shown reply
per question) or is refused with a message that names the part to fix. The HTTP round trip and
"a refused file changes nothing" are in tests/test_features_api.py (slow: it runs the app)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from chat_core.data.conversation_export import (FORMAT, MAX_IMPORT_MESSAGES, VERSION,
                                                parse_import, to_json, to_markdown)
from chat_core.errors import InvalidInput
from chat_core.states import MAX_TITLE_CHARS

CONVERSATION = {"id": "c1", "title": "Trips", "created_at": "2024-05-01T10:00:00Z",
                "updated_at": "2024-05-01T10:05:00Z", "settings": {"temperature": 0.4},
                "origin_conversation_id": None}


def _reply(rid: str, parent: str, content: str, status: str = "complete",
           active: bool = False, **extra: Any) -> dict[str, Any]:
    return {"id": rid, "role": "assistant", "content": content, "parent_id": parent,
            "status": status, "active": active, "created_at": "2024-05-01T10:01:00Z",
            "seq": 1, "model": "m", "error": None, **extra}


MESSAGES = [
    {"id": "u1", "role": "user", "content": "Plan a trip to <b>Lisbon</b>", "seq": 1,
     "status": "complete", "created_at": "2024-05-01T10:00:30Z"},
    _reply("a1", "u1", "Take the train.", prompt_tokens=12, completion_tokens=4,
           params={"temperature": 0.4}),
    _reply("a2", "u1", "Fly.", active=True),
    {"id": "u2", "role": "user", "content": "And Porto?", "seq": 2, "status": "complete",
     "created_at": "2024-05-01T10:02:00Z"},
    _reply("a3", "u2", "", status="error", error="the LLM server is unreachable", seq=2),
    {"id": "u3", "role": "user", "content": "Still there?", "seq": 3, "status": "complete",
     "created_at": "2024-05-01T10:03:00Z"},
    _reply("a4", "u3", "Half a", status="streaming", seq=3),
]


def _minimal() -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "conversation": {"title": "t"},
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "hello"}]}


def _refusal(data: Any, max_chars: int = 1000) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse_import(data, max_chars=max_chars)
    return caught.value.message


def test_an_export_holds_everything_but_replies_still_being_written() -> None:
    data = to_json(CONVERSATION, MESSAGES)
    assert (data["format"], data["version"]) == (FORMAT, VERSION)
    assert data["conversation"]["settings"] == {"temperature": 0.4}
    assert [m["id"] for m in data["messages"]] == ["u1", "a1", "a2", "u2", "a3", "u3"]
    assert data["messages"][1]["prompt_tokens"] == 12
    assert "parent_id" not in data["messages"][0]  # a user message has no reply fields
    json.dumps(data)  # plain JSON, as written to the file


def test_the_markdown_transcript_shows_each_question_with_its_shown_reply() -> None:
    text = to_markdown(CONVERSATION, MESSAGES)
    assert text.startswith("# Trips\n")
    assert "Plan a trip to <b>Lisbon</b>" in text  # as written, not rendered
    assert "Fly." in text and "Take the train." not in text  # the active alternative only
    assert "**Assistant** · m · error" in text and "_the LLM server is unreachable_" in text
    assert "Half a" in text and "· streaming" in text
    untitled = to_markdown({**CONVERSATION, "title": ""}, MESSAGES[:1])
    assert untitled.startswith("# Conversation\n")


def test_an_import_gets_new_ids_and_keeps_what_each_reply_recorded() -> None:
    header, rows = parse_import(to_json(CONVERSATION, MESSAGES), max_chars=1000)
    assert header["title"] == "Trips" and header["settings"] == {"temperature": 0.4}
    assert header["last_seq"] == 3
    ids = {r["id"] for r in rows}
    assert len(ids) == len(rows) == 6 and not {str(i) for i in ids} & {"u1", "a1", "c1"}
    assert {r["conversation_id"] for r in rows} == {header["id"]}
    u1, a1, a2, u2, a3, u3 = rows
    assert a1["parent_id"] == a2["parent_id"] == u1["id"] and a3["parent_id"] == u2["id"]
    assert [r["seq"] for r in rows] == [1, 1, 1, 2, 2, 3]
    assert (a1["active"], a2["active"], a3["active"]) == (False, True, False)
    assert (a1["prompt_tokens"], a1["params"]) == (12, {"temperature": 0.4})
    assert (a3["status"], a3["error"]) == ("error", "the LLM server is unreachable")
    assert u1["created_at"] == "2024-05-01T10:00:30+00:00"


def test_importing_twice_gives_two_conversations() -> None:
    data = to_json(CONVERSATION, MESSAGES)
    first, _ = parse_import(data, max_chars=1000)
    second, _ = parse_import(data, max_chars=1000)
    assert first["id"] != second["id"]


def test_replies_without_ids_answer_the_question_before_them() -> None:
    data = _minimal()
    data["messages"] += [{"role": "user", "content": "again"},
                         {"role": "assistant", "content": "one", "active": True},
                         {"role": "assistant", "content": "two", "active": True}]
    _, rows = parse_import(data, max_chars=1000)
    assert rows[1]["parent_id"] == rows[0]["id"] and rows[3]["parent_id"] == rows[2]["id"]
    # Two replies marked shown for one question: the last one wins.
    assert [r["active"] for r in rows if r["role"] == "assistant"] == [True, False, True]


def test_an_empty_stopped_reply_does_not_hide_the_good_one() -> None:
    """Stopped before its first token, a later reply exports as active with no text; imported,
    the earlier reply with text stays the one shown (and sent as history)."""
    data = _minimal()
    data["messages"] += [{"role": "user", "content": "again"},
                         {"role": "assistant", "content": "the answer", "active": True},
                         {"role": "assistant", "content": "", "status": "stopped",
                          "active": True}]
    _, rows = parse_import(data, max_chars=1000)
    shown = [r["content"] for r in rows[2:] if r["role"] == "assistant" and r["active"]]
    assert shown == ["the answer"]


def test_timestamps_are_stored_as_utc_instants() -> None:
    data = _minimal()
    data["messages"][0]["created_at"] = "2024-05-01T10:00:00-23:59"
    data["messages"][1]["completed_at"] = "2024-05-01T10:00:00"  # no offset: UTC
    _, rows = parse_import(data, max_chars=1000)
    assert rows[0]["created_at"] == "2024-05-02T09:59:00+00:00"
    assert rows[1]["completed_at"] == "2024-05-01T10:00:00+00:00"


def test_a_too_long_message_names_the_setting_but_a_too_long_title_does_not() -> None:
    data = _minimal()
    data["messages"][0]["content"] = "x" * 11
    assert _refusal(data, max_chars=10) == (
        "'messages[0].content' is 11 characters; the limit is 10 (MAX_MESSAGE_CHARS)")
    data = _minimal()
    data["conversation"]["title"] = "t" * (MAX_TITLE_CHARS + 1)
    assert _refusal(data) == (f"'conversation.title' is {MAX_TITLE_CHARS + 1} characters; "
                              f"the limit is {MAX_TITLE_CHARS}")


@pytest.mark.parametrize("mutate,words", [
    (lambda d: d.update(format="other"), "not a conversation export"),
    (lambda d: d.update(version=2), "unsupported export version"),
    (lambda d: d.update(conversation=[]), '"conversation" must be an object'),
    (lambda d: d.update(messages={}), '"messages" must be a list'),
    (lambda d: d.update(messages=[]), "the export holds no messages"),
    (lambda d: d.update(messages=[{}] * (MAX_IMPORT_MESSAGES + 1)), "the limit is 20,000"),
    (lambda d: d["messages"].insert(0, {"role": "assistant", "content": "x"}),
     "messages[0]: a reply must follow the user message it answers"),
    (lambda d: d["messages"][1].update(parent_id="unknown"), "messages[1]: a reply must follow"),
    (lambda d: d["messages"].append("text"), "messages[2] must be an object"),
    (lambda d: d["messages"][0].update(role="system"), 'role must be "user" or "assistant"'),
    (lambda d: d["messages"][0].update(content=" "), "must not be empty"),
    (lambda d: d["messages"][1].update(status="pending"), "messages[1]: status must be one of"),
    (lambda d: d["messages"][1].update(params={"t": float("nan")}), "params must be plain JSON"),
    (lambda d: d["messages"][1].update(params={"t": "a\x00"}), "params must not contain NUL"),
    (lambda d: d["messages"][1].update(params={"t": "x" * 6000}), "params must be a small"),
    (lambda d: d["messages"][1].update(completion_tokens=2**31), "completion_tokens must be"),
    (lambda d: d["messages"][1].update(latency_ms=True), "latency_ms must be a number"),
    (lambda d: d["messages"][1].update(tokens_estimated=1), "tokens_estimated must be true"),
    (lambda d: d["messages"][1].update(completed_at="9999-12-31T23:59:59-23:59"),
     "outside the years 1 to 9999"),
    (lambda d: d["conversation"].update(settings={"top_p": 0}), "0 < top_p <= 1"),
])
def test_a_bad_file_is_refused_naming_the_part_to_fix(mutate: Any, words: str) -> None:
    data = _minimal()
    mutate(data)
    assert words in _refusal(data)


def test_parsing_leaves_the_file_as_it_was() -> None:
    data = to_json(CONVERSATION, MESSAGES)
    before = copy.deepcopy(data)
    parse_import(data, max_chars=1000)
    assert data == before


def test_a_reply_stopped_before_the_model_was_known_imports_without_one() -> None:
    data = _minimal()
    data["messages"][1].update(status="stopped", content="", model="", finish_reason="")
    _, rows = parse_import(data, max_chars=1000)
    assert (rows[1]["status"], rows[1]["model"], rows[1]["finish_reason"]) == \
        ("stopped", None, None)
