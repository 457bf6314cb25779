"""What a person is told when input is refused: each too-long field names itself and its own
limit, and only the message content names MAX_MESSAGE_CHARS (the one limit an operator can
change). The checks run before any store or DBOS call, so a ChatService whose store refuses to
be touched exercises them without a database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from chat_core.config import Settings
from chat_core.errors import InvalidInput, NotFound
from chat_core.service import ChatService
from chat_core.states import MAX_SEARCH_CHARS, MAX_SYSTEM_PROMPT_CHARS, MAX_TITLE_CHARS
from chat_core.validation import MAX_OFFSET, check_text, int_param, parse_id

MESSAGE_LIMIT = 500
KEY_LIMIT = 40


class _Untouchable:
    """A store or hub the checks must not reach: input is refused before any query."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"validation should have refused the input before {name}()")


@pytest.fixture(scope="module")
def service() -> ChatService:
    settings = Settings(max_message_chars=MESSAGE_LIMIT, max_idempotency_key_chars=KEY_LIMIT)
    return ChatService(settings, _Untouchable(), _Untouchable(), _Untouchable())  # type: ignore[arg-type]


def _refusal(call: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        result = call()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    return caught.value


CID = str(uuid.uuid4())


def test_a_too_long_message_names_the_setting_that_raises_it(service: ChatService) -> None:
    for call in (lambda: service.start_turn(CID, "m" * (MESSAGE_LIMIT + 1)),
                 lambda: service.edit_message(CID, CID, "m" * (MESSAGE_LIMIT + 1))):
        error = _refusal(call)
        assert error.message == (f"'content' is {MESSAGE_LIMIT + 1:,} characters; the limit is "
                                 f"{MESSAGE_LIMIT:,} (MAX_MESSAGE_CHARS)")
        assert error.details == {"field": "content", "limit": MESSAGE_LIMIT}


@pytest.mark.parametrize("name,call,limit", [
    ("title", lambda s: s.create_conversation("t" * (MAX_TITLE_CHARS + 1)), MAX_TITLE_CHARS),
    ("title", lambda s: s.update_conversation(CID, title="t" * (MAX_TITLE_CHARS + 1)),
     MAX_TITLE_CHARS),
    ("q", lambda s: s.search_conversations("q" * (MAX_SEARCH_CHARS + 1)), MAX_SEARCH_CHARS),
    ("system_prompt", lambda s: s.update_conversation(
        CID, settings={"system_prompt": "p" * (MAX_SYSTEM_PROMPT_CHARS + 1)}),
     MAX_SYSTEM_PROMPT_CHARS),
], ids=["new-title", "rename", "search", "system-prompt"])
def test_other_too_long_fields_name_their_own_limit(service: ChatService, name: str, call: Any,
                                                    limit: int) -> None:
    error = _refusal(lambda: call(service))
    assert "MAX_MESSAGE_CHARS" not in error.message
    assert error.message == f"'{name}' is {limit + 1:,} characters; the limit is {limit:,}"
    assert error.details == {"field": name, "limit": limit}


def test_a_too_long_idempotency_key_names_the_key_and_its_limit(service: ChatService) -> None:
    error = _refusal(lambda: service.start_turn(CID, "hello",
                                                idempotency_key="k" * (KEY_LIMIT + 1)))
    assert "MAX_MESSAGE_CHARS" not in error.message
    assert "idempotency key" in error.message.lower() and str(KEY_LIMIT) in error.message


@pytest.mark.parametrize("key", ["", "   ", 7])
def test_an_empty_or_non_text_idempotency_key_is_refused(service: ChatService, key: Any) -> None:
    error = _refusal(lambda: service.check_idempotency_key(key))
    assert "non-empty string" in error.message


@pytest.mark.parametrize("value,words", [
    (None, "'content' must be a string, got null"),
    (12, "'content' must be a string, got a number"),
    (["a"], "'content' must be a string, got an array"),
    ({"a": 1}, "'content' must be a string, got an object"),
    (True, "'content' must be a string, got a boolean"),
    ("  \n\t", "'content' must not be empty or only whitespace"),
    ("a\x00b", "NUL character"),
    ("a\ud800b", "unpaired surrogate"),
])
def test_text_that_cannot_be_stored_is_refused_with_the_reason(value: Any, words: str) -> None:
    error = _refusal(lambda: check_text(value, "content", 100))
    assert words in error.message
    assert error.details["field"] == "content"


def test_text_within_the_limit_is_kept_verbatim() -> None:
    text = "  spaced  \n émoji 🙂 <b>tags</b>  "
    assert check_text(text, "content", len(text)) == text
    assert check_text("", "title", 10, allow_empty=True) == ""


def test_a_limit_without_a_setting_names_none() -> None:
    error = _refusal(lambda: check_text("x" * 11, "note", 10))
    assert error.message == "'note' is 11 characters; the limit is 10"
    named = _refusal(lambda: check_text("x" * 11, "note", 10, setting="NOTE_LIMIT"))
    assert named.message.endswith("the limit is 10 (NOTE_LIMIT)")


@pytest.mark.parametrize("value", ["nope", "1" * 65, 42, None, "../etc/passwd"])
def test_a_malformed_id_is_not_found_rather_than_invalid(value: Any) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        parse_id(value, "message")


def test_a_well_formed_id_is_parsed() -> None:
    cid = uuid.uuid4()
    assert parse_id(str(cid)) == cid and parse_id(cid) is cid


@pytest.mark.parametrize("raw", ["-1", "abc", "1.5", "100000000000000000000000", "9" * 5000])
def test_numbers_out_of_range_are_refused_before_any_query(raw: str) -> None:
    error = _refusal(lambda: int_param({"offset": raw}, "offset", 0, 0, MAX_OFFSET))
    assert error.message.startswith("offset must be a whole number from 0 to")
    assert len(error.message) < 120  # a 5000-digit value is not echoed back whole


def test_a_number_in_range_or_absent_is_accepted() -> None:
    assert int_param({"limit": "25"}, "limit", 50, 1, 100) == 25
    assert int_param({}, "limit", 50, 1, 100) == 50
