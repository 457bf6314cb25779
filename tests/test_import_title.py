"""An imported conversation without a title is titled from its first message, the way a new
conversation is (one line, trimmed, an ellipsis where it was cut). Pure logic: no database."""

from __future__ import annotations

from typing import Any

from chat_core.data.conversation_export import parse_import
from chat_core.store.chat_store import TITLE_CHARS, title_from


def _export(first_message: str, title: str | None = None) -> dict[str, Any]:
    return {"format": "durable-chat/conversation", "version": 1,
            "conversation": {"title": title},
            "messages": [{"role": "user", "content": first_message},
                         {"role": "assistant", "content": "hello"}]}


def _title(first_message: str, title: str | None = None) -> str:
    conversation, _ = parse_import(_export(first_message, title), max_chars=32_000)
    return conversation["title"]


def test_untitled_import_takes_one_line_of_the_first_message() -> None:
    assert _title("  Plan a trip\n\nto Lisbon\tand Porto  \n") == "Plan a trip to Lisbon and Porto"


def test_untitled_import_of_a_long_message_ends_with_an_ellipsis() -> None:
    message = "word " * 40 + "\n" + "more " * 40
    title = _title(message)
    assert "\n" not in title and title.endswith("…") and len(title) <= TITLE_CHARS
    assert title == title_from(message)  # exactly what a new conversation would be called


def test_a_title_in_the_file_is_kept() -> None:
    assert _title("hi there", title="  Trips  ") == "Trips"
