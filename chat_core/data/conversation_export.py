"""Export a conversation as JSON or Markdown, and read a JSON export back.

The JSON keeps everything a reply records (alternatives too), so an import is a faithful copy.
An import is checked completely before anything is written: a malformed, oversized or hostile
file gets an error that names the problem, and the database is left as it was.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from chat_core.errors import InvalidInput
from chat_core.store.chat_store import title_from
from chat_core.store.ratings import check_rating
from chat_core.validation import check_settings, check_text
from chat_core.states import (ANSWERED, COMPLETE, FINAL, IN_FLIGHT, MAX_MODEL_NAME_CHARS,
                              MAX_TITLE_CHARS)

FORMAT = "durable-chat/conversation"
VERSION = 1
MAX_IMPORT_MESSAGES = 20_000
MAX_IMPORT_BYTES = 10_000_000
_REPLY_FIELDS = ("parent_id", "status", "error", "model", "prompt_tokens", "completion_tokens",
                 "tokens_estimated", "ttft_ms", "latency_ms", "finish_reason", "params",
                 "active", "completed_at", "rating")
_MAX_INT4 = 2**31 - 1  # prompt_tokens and completion_tokens are PostgreSQL integers


def to_json(conversation: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "conversation": {k: conversation.get(k) for k in (
            "id", "title", "created_at", "settings", "origin_conversation_id")},
        "messages": [
            {k: m.get(k) for k in ("id", "role", "content", "created_at", "seq",
                                   *(_REPLY_FIELDS if m["role"] == "assistant" else ()))}
            for m in messages if m["status"] not in IN_FLIGHT
        ],
    }


def to_markdown(conversation: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    """Readable transcript: each message and the reply shown for it (alternatives left out)."""
    lines = [f"# {conversation['title'] or 'Conversation'}", "",
             f"_Exported from Durable chat; conversation {conversation['id']}, started "
             f"{conversation['created_at']}._", ""]
    shown: dict[str, dict[str, Any]] = {}
    for m in messages:
        if m["role"] == "assistant" and (m.get("active") or m["parent_id"] not in shown):
            shown[m["parent_id"]] = m
    for m in messages:
        if m["role"] != "user":
            continue
        lines += [f"**You** · {m['created_at']}", "", m["content"], ""]
        reply = shown.get(m["id"])
        if reply is None:
            continue
        label = f"**Assistant** · {reply.get('model') or 'unknown model'}"
        if reply["status"] != COMPLETE:
            label += f" · {reply['status']}"
        lines += [label, "", reply["content"] or f"_{reply.get('error') or 'no text'}_", ""]
    return "\n".join(lines)


def _timestamp(value: Any, where: str, name: str = "created_at") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidInput(f"{where}: {name} must be an ISO 8601 timestamp string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{where}: {name} {value!r} is not an ISO 8601 timestamp") \
            from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    # Stored in UTC: ISO 8601 allows offsets up to +-23:59, PostgreSQL parses only +-15:59,
    # and an instant near the calendar's ends can fall outside it once the offset is applied.
    try:
        return parsed.astimezone(timezone.utc).isoformat()
    except OverflowError:
        raise InvalidInput(f"{where}: {name} {value!r} is outside the years 1 to 9999 once "
                           "converted to UTC") from None


def _params(params: Any, where: str) -> dict[str, Any] | None:
    """A reply's recorded parameters, stored as JSONB: PostgreSQL refuses NaN, infinities, NUL
    characters and unpaired surrogates there, so they are refused here with a clear message."""
    if params is None:
        return None
    if not isinstance(params, dict):
        raise InvalidInput(f"{where}: params must be a small object")
    try:
        text = json.dumps(params, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError):
        raise InvalidInput(f"{where}: params must be plain JSON (no NaN, infinity or unpaired "
                           "surrogates)") from None
    if len(text) > 5000:
        raise InvalidInput(f"{where}: params must be a small object")
    if _holds_nul(params):
        raise InvalidInput(f"{where}: params must not contain NUL characters")
    return params


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def _number(value: Any, where: str, name: str, *, whole: bool = False,
            high: float = 1e12) -> float | None:
    """A measurement of a reply (token counts, milliseconds): absent, or a finite number in
    0..high (a whole one for counts)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or not 0 <= value <= high:
        raise InvalidInput(f"{where}: {name} must be a number from 0 to {high:,.0f}")
    if whole:
        if not float(value).is_integer():
            raise InvalidInput(f"{where}: {name} must be a whole number")
        return int(value)
    return float(value)


def parse_import(data: Any, *, max_chars: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validate an export and turn it into rows with new ids (the imported conversation is a
    new one: importing the same file twice gives two)."""
    conv, raw_messages = _envelope(data)
    title = conv.get("title") or ""
    title = check_text(title, "conversation.title", MAX_TITLE_CHARS, allow_empty=True).strip()
    settings = check_settings(conv.get("settings") or {})
    settings = {k: v for k, v in settings.items() if v is not None}
    conversation_id = uuid.uuid4()
    rows, last_seq = _message_rows(raw_messages, conversation_id, max_chars)
    _one_active_reply_per_message(rows)
    # No title in the file: titled from the first message, as a new conversation is.
    return ({"id": conversation_id, "title": title or title_from(rows[0]["content"]),
             "settings": settings, "last_seq": last_seq,
             "created_at": _timestamp(conv.get("created_at"), "conversation")}, rows)


def _envelope(data: Any) -> tuple[dict[str, Any], list[Any]]:
    """The export's conversation object and its message list, once its format is checked."""
    if not isinstance(data, dict):
        raise InvalidInput("the import must be a JSON object as written by export")
    if data.get("format") != FORMAT:
        raise InvalidInput(f"not a conversation export: \"format\" must be {FORMAT!r}")
    if data.get("version") != VERSION:
        raise InvalidInput(f"unsupported export version {str(data.get('version'))[:20]!r}; "
                           f"this app reads version {VERSION}")
    conv = data.get("conversation")
    if not isinstance(conv, dict):
        raise InvalidInput('"conversation" must be an object')
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list):
        raise InvalidInput('"messages" must be a list')
    if len(raw_messages) > MAX_IMPORT_MESSAGES:
        raise InvalidInput(f"the export has {len(raw_messages):,} messages; the limit is "
                           f"{MAX_IMPORT_MESSAGES:,}")
    return conv, raw_messages


def _message_rows(raw_messages: list[Any], conversation_id: uuid.UUID,
                  max_chars: int) -> tuple[list[dict[str, Any]], int]:
    """One row per message with new ids, replies linked to the user message they answer
    (by the export's ids, else the user message before them); and the last user seq."""
    new_ids: dict[str, uuid.UUID] = {}
    user_seq: dict[uuid.UUID, int] = {}
    last_user: uuid.UUID | None = None
    rows: list[dict[str, Any]] = []
    for i, m in enumerate(raw_messages):
        where = f"messages[{i}]"
        row = _message_row(m, where, conversation_id, max_chars)
        old_id = m.get("id")
        if isinstance(old_id, str) and len(old_id) <= 64:
            new_ids[old_id] = row["id"]
        if row["role"] == "user":
            row["seq"] = user_seq[row["id"]] = len(user_seq) + 1
            last_user = row["id"]
        else:
            parent_ref = m.get("parent_id")
            parent = new_ids.get(parent_ref) if isinstance(parent_ref, str) else last_user
            if parent is None or parent not in user_seq:
                raise InvalidInput(f"{where}: a reply must follow the user message it answers")
            row.update(seq=user_seq[parent], parent_id=parent, **_reply_fields(m, where))
            if row["rating"] is not None:
                row["rating"]["message_id"] = row["id"]
            # As finish_reply does: a reply without text (stopped before its first token)
            # never hides one with text.
            row["active"] = row["active"] and row["content"] != ""
        rows.append(row)
    if not rows:
        raise InvalidInput("the export holds no messages")
    return rows, len(user_seq)


def _message_row(m: Any, where: str, conversation_id: uuid.UUID,
                 max_chars: int) -> dict[str, Any]:
    """A message's row with what every message has; a reply's own fields come after."""
    if not isinstance(m, dict):
        raise InvalidInput(f"{where} must be an object")
    role = m.get("role")
    if role not in ("user", "assistant"):
        raise InvalidInput(f"{where}: role must be \"user\" or \"assistant\"")
    content = check_text(m.get("content", ""), f"{where}.content", max_chars,
                         allow_empty=(role == "assistant"), setting="MAX_MESSAGE_CHARS")
    return {
        "id": uuid.uuid4(), "conversation_id": conversation_id, "role": role,
        "content": content, "created_at": _timestamp(m.get("created_at"), where),
        "parent_id": None, "status": COMPLETE, "error": None, "model": None, "params": None,
        "active": False, "prompt_tokens": None, "completion_tokens": None,
        "tokens_estimated": None, "ttft_ms": None, "latency_ms": None,
        "finish_reason": None, "completed_at": None,
    }


def _reply_fields(m: dict[str, Any], where: str) -> dict[str, Any]:
    """What a reply records (state, error, model, parameters, measurements), checked."""
    status = m.get("status", COMPLETE)
    if status not in FINAL:
        raise InvalidInput(f"{where}: status must be one of {', '.join(FINAL)}")
    error = m.get("error")
    if error is not None:
        error = check_text(error, f"{where}.error", 2000, allow_empty=True)
    model = m.get("model")
    if model is not None:  # "" when a reply was stopped before the model was known
        model = check_text(model, f"{where}.model", MAX_MODEL_NAME_CHARS,
                           allow_empty=True) or None
    fields: dict[str, Any] = {"status": status, "error": error, "model": model,
                              "params": _params(m.get("params"), where)}
    for name in ("prompt_tokens", "completion_tokens"):
        fields[name] = _number(m.get(name), where, name, whole=True, high=_MAX_INT4)
    for name in ("ttft_ms", "latency_ms"):
        fields[name] = _number(m.get(name), where, name)
    estimated = m.get("tokens_estimated")
    if estimated is not None and not isinstance(estimated, bool):
        raise InvalidInput(f"{where}: tokens_estimated must be true, false or null")
    finish_reason = m.get("finish_reason")
    if finish_reason is not None:
        finish_reason = check_text(finish_reason, f"{where}.finish_reason", 40,
                                   allow_empty=True) or None
    fields.update(tokens_estimated=estimated, finish_reason=finish_reason,
                  completed_at=_timestamp(m.get("completed_at"), where, "completed_at"),
                  active=bool(m.get("active", True)) and status in ANSWERED,
                  rating=_rating(m.get("rating"), where))
    return fields


def _rating(rating: Any, where: str) -> dict[str, Any] | None:
    """A reply's rating as exported ({"value", "tags", "comment", "created_at"}), checked as
    a rating sent to the app is; the message id is filled in once the reply has its new one."""
    if rating is None:
        return None
    if not isinstance(rating, dict):
        raise InvalidInput(f"{where}: rating must be an object with a value, or null")
    try:
        value, tags, comment = check_rating(rating.get("value"), rating.get("tags"),
                                            rating.get("comment"))
    except InvalidInput as exc:
        raise InvalidInput(f"{where}.rating: {exc.message}") from None
    if value == 0:
        return None
    return {"value": value, "tags": tags, "comment": comment,
            "created_at": _timestamp(rating.get("created_at"), f"{where}.rating")}


def _one_active_reply_per_message(rows: list[dict[str, Any]]) -> None:
    """At most one reply per message is the one shown: the last one marked active wins."""
    seen: set[uuid.UUID] = set()
    for row in reversed(rows):
        if row["role"] == "assistant" and row["active"]:
            if row["parent_id"] in seen:
                row["active"] = False
            seen.add(row["parent_id"])
