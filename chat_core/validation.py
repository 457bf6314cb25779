"""Checks on user input shared by every entry point (REST, Gradio, notebooks), so a message that
one path rejects cannot slip in through another. Each failure says what to change."""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any, Mapping

from chat_core.errors import InvalidInput, NotFound
from chat_core.states import MAX_SYSTEM_PROMPT_CHARS, SETTING_LIMITS


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


# Row offsets are PostgreSQL bigints; past this a query fails instead of returning nothing.
MAX_OFFSET = 2**63 - 1


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within [low, high]. Checked here, before any query:
    a number PostgreSQL cannot hold (offset=100000000000000000000000) would otherwise be a 500."""
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:  # also for numbers of more than 4300 digits
        value = None
    if value is None or not low <= value <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high:,}, got "
                           f"{raw[:30]!r}{'...' if len(raw) > 30 else ''}", field=name)
    return value


def check_text(value: Any, field: str, max_chars: int, *, allow_empty: bool = False,
               setting: str | None = None) -> str:
    """A text field is stored verbatim, so it must be a string PostgreSQL can store: no NUL
    characters, no lone surrogates (they cannot be encoded as UTF-8), within the size limit.
    `setting` names the configuration variable behind a limit an operator can change."""
    if not isinstance(value, str):
        raise InvalidInput(f"'{field}' must be a string, got {_json_type(value)}", field=field)
    if not allow_empty and not value.strip():
        raise InvalidInput(f"'{field}' must not be empty or only whitespace", field=field)
    if len(value) > max_chars:
        raise InvalidInput(
            f"'{field}' is {len(value):,} characters; the limit is {max_chars:,}"
            + (f" ({setting})" if setting else ""), field=field, limit=max_chars)
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


# Letters Unicode draws as nothing (the Hangul fillers): letters by category, yet blank.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


def visible(text: str) -> bool:
    """Whether text shows anything: a letter, digit, punctuation mark or symbol, rather than
    only spaces, combining marks, variation selectors, format characters (zero-width spaces
    and joiners) or blank letters. For short labels shown to people (a rating's tags), as
    account names must show a letter or digit (accounts/passwords.check_name)."""
    return any(unicodedata.category(ch)[0] in "LNPS" and ch not in BLANK_LETTERS
               for ch in text)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


# Longer than any model id a server lists (Hugging Face ids are at most 96 characters).
MAX_MODEL_ID_CHARS = 256


def check_settings(value: Any) -> dict[str, Any]:
    """Generation settings overrides: system_prompt, temperature, max_tokens, top_p, model. A
    null value removes an override (back to the configured default). Whether a model is
    served is the service's check (ChatService.check_model): it asks the servers."""
    if not isinstance(value, dict):
        raise InvalidInput(f"'settings' must be an object, got {_json_type(value)}")
    allowed = {"system_prompt", "model", *SETTING_LIMITS}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidInput(f"unknown setting(s) {', '.join(map(repr, unknown))[:200]}; allowed: "
                           f"{', '.join(sorted(allowed))}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            out[key] = None
        elif key == "model":
            if not isinstance(item, str):
                raise InvalidInput(f"'model' must be a string (a model id from GET /api/models), "
                                   f"got {_json_type(item)}", field=key)
            out[key] = check_text(item, "model", MAX_MODEL_ID_CHARS).strip()
        elif key == "system_prompt":
            out[key] = check_text(item, "system_prompt", MAX_SYSTEM_PROMPT_CHARS,
                                  allow_empty=True)
        else:
            low, high = SETTING_LIMITS[key]
            if isinstance(item, bool) or not isinstance(item, (int, float)) or item != item:
                raise InvalidInput(f"'{key}' must be a number, got {_json_type(item)}",
                                   field=key)
            if key == "max_tokens" and not float(item).is_integer():
                raise InvalidInput("'max_tokens' must be a whole number", field=key)
            if not low <= item <= high or (key == "top_p" and item == 0):
                bound = "0 < top_p <= 1" if key == "top_p" else f"{low} <= {key} <= {high}"
                raise InvalidInput(f"'{key}' must satisfy {bound}, got {item}", field=key)
            out[key] = int(item) if key == "max_tokens" else float(item)
    return out
