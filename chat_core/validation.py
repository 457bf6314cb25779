"""Checks on user input shared by every entry point (REST, Gradio, notebooks), so a message that
one path rejects cannot slip in through another. Each failure says what to change."""

from __future__ import annotations

import uuid
from typing import Any

from .errors import InvalidInput, NotFound


def parse_id(value: Any, what: str = "conversation") -> uuid.UUID:
    """Ids are UUIDs; anything else cannot name an existing row, hence 404 rather than 400."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or len(value) > 64:
        raise NotFound(f"{what} {str(value)[:64]!r} does not exist")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} {value[:64]!r} does not exist") from None


def check_text(value: Any, field: str, max_chars: int, *, allow_empty: bool = False) -> str:
    """A text field is stored verbatim, so it must be a string PostgreSQL can store: no NUL
    characters, no lone surrogates (they cannot be encoded as UTF-8), within the size limit."""
    if not isinstance(value, str):
        raise InvalidInput(f"'{field}' must be a string, got {_json_type(value)}", field=field)
    if not allow_empty and not value.strip():
        raise InvalidInput(f"'{field}' must not be empty or only whitespace", field=field)
    if len(value) > max_chars:
        raise InvalidInput(
            f"'{field}' is {len(value):,} characters; the limit is {max_chars:,} "
            "(MAX_MESSAGE_CHARS)", field=field, limit=max_chars)
    if "\x00" in value:
        raise InvalidInput(
            f"'{field}' contains a NUL character (\\u0000), which cannot be stored; remove it",
            field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"'{field}' contains an unpaired surrogate code point, which is not valid Unicode "
            "text; send UTF-8 text", field=field) from None
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)
