"""Conversations as training and evaluation data: one JSON object a line (JSON Lines).

Pure functions over the rows chat_core/store/dataset_rows.py reads (a conversation, and its
messages with their ratings); ChatService.dataset streams what they make, a page of
conversations at a time. Three formats:

- `openai`: one conversation a line, `{"messages": [{"role", "content"}, ...], ...}`, with the
  replies that were shown (the selected alternative of each branch point), the system prompt
  first when there was one, and the conversation's ids, model, parameters, timestamps and
  ratings beside them.
- `sharegpt`: the same conversation as `{"conversations": [{"from": "system"|"human"|"gpt",
  "value"}], ...}`.
- `preference`: one pair a line in TRL's conversational preference format, and only its
  columns: `{"prompt": [messages up to and including the user's], "chosen": [{"role":
  "assistant", "content"}], "rejected": [...]}` (TRL's DPOTrainer reads these three).

A turn whose reply never finished with text (failed, cancelled, still being written) is left
out of every format: what the person never saw as an answer is no example of one.

**Where preference pairs come from.** Each source turns a judgement into `Pair`s; `merge_pairs`
keeps one pair per two replies, the one of the strongest source (`SOURCES`, strongest first):

1. `vote` (comparisons, not built yet): a comparison's two sides answer one prompt and the
   person voted A or B better. It plugs in as a third source: a function yielding
   `Pair(source="vote", ...)` per decided vote (a tie or "both bad" yields none), chained
   before the others in ChatService.dataset; `merge_pairs` already ranks it first.
2. `rating` (`pairs_from_ratings`): a liked and a disliked reply to the same user message
   (regenerate, retry and forks give one message several replies): every liked one is chosen
   over every disliked one.
3. `alternative` (`pairs_from_alternatives`): the reply shown (selected among alternatives,
   or the newest finished one when none was selected) is chosen over its other finished
   alternatives, unless a rating says otherwise (a disliked shown reply is no choice; a liked
   alternative is not rejected), and never over a reply it merely continued (its own prefix).

**Filters** (`DatasetQuery`): `model`, exact: every shown reply of a conversation, or both
replies of a pair, by that model; `since`/`until`: when the conversation started (openai,
sharegpt) or the user message was sent (preference), `until` excluded; `min_rating`: a reply
unrated counts 0, a conversation is as good as its worst shown reply, a pair as its chosen one.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from typing import Any, Iterable, Iterator

from chat_core.errors import InvalidInput, MalformedRequest
from chat_core.states import ANSWERED, MAX_MODEL_NAME_CHARS, RATING_DOWN, RATING_UP
from chat_core.validation import check_text

Row = dict[str, Any]
FORMATS = ("openai", "sharegpt", "preference")
# Preference sources, strongest first (see the module docstring).
SOURCES = ("vote", "rating", "alternative")
# TRL's columns for a conversational preference dataset, and nothing else.
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
# What a line says of the parameters a reply was produced with.
PARAMETERS = ("temperature", "top_p", "max_tokens")
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}
# How many pairs one user message can give at most (its replies' judgements, all pairs of
# them): a bound on one line's work, far above what a person rates by hand.
MAX_PAIRS_PER_MESSAGE = 400


# -- the query --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetQuery:
    """What to export, checked (parse_query)."""
    format: str
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_rating: int | None = None
    pseudonyms: bool = True


def parse_query(fmt: Any, model: Any = None, since: Any = None, until: Any = None,
                min_rating: Any = None, pseudonyms: Any = True) -> DatasetQuery:
    """The export's options, or the error that says which one to fix: an unknown format or
    a rating out of range is a 422, a bound that is not a date a 400."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}, got "
                           f"{str(fmt)[:40]!r}", field="format")
    if model is not None:
        model = check_text(model, "model", MAX_MODEL_NAME_CHARS)
    low, high = parse_bound(since, "since"), parse_bound(until, "until")
    if low is not None and high is not None and low >= high:
        raise InvalidInput(f"since ({low.isoformat()}) must be before until "
                           f"({high.isoformat()})", field="since")
    return DatasetQuery(fmt, model, low, high, parse_rating_filter(min_rating),
                        bool(pseudonyms))


def parse_bound(value: Any, name: str) -> datetime | None:
    """A date (2026-11-30, from its midnight UTC) or an ISO 8601 date and time (UTC when it
    names no offset)."""
    if value is None or isinstance(value, datetime):
        return _utc(value) if value is not None else None
    if isinstance(value, date):
        return datetime.combine(value, time(), timezone.utc)
    text = value.strip() if isinstance(value, str) else None
    parsed: datetime | None = None
    if text and len(text) <= 40:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
    if parsed is None:
        shown = str(value)[:40].encode("utf-8", "replace").decode()
        raise MalformedRequest(f"{name} must be an ISO 8601 date or date and time, such as "
                               f"2026-11-30 or 2026-11-30T14:00:00Z; got {shown!r}",
                               field=name)
    try:
        return _utc(parsed)
    except OverflowError:
        raise MalformedRequest(f"{name} is outside the years 1 to 9999 once converted to UTC",
                               field=name) from None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None \
        else value.astimezone(timezone.utc)


def parse_rating_filter(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text in ("-1", "0", "1", "+1") else value
    if isinstance(value, bool) or value not in (-1, 0, 1):
        raise InvalidInput(f"min_rating must be -1, 0 or 1 (a reply unrated counts 0), got "
                           f"{str(value)[:20]!r}", field="min_rating")
    return int(value)


# -- a conversation's turns ---------------------------------------------------------------------

@dataclass
class Turn:
    """A user message and its replies (oldest first), and the reply shown for it."""
    user: Row
    replies: list[Row] = field(default_factory=list)

    @property
    def shown(self) -> Row | None:
        """The reply the person saw as the answer: the active one, finished with text."""
        return next((r for r in reversed(self.replies) if r.get("active") and answered(r)),
                    None)


def answered(reply: Row) -> bool:
    return reply.get("status") in ANSWERED and bool(reply.get("content"))


def turns_of(messages: Iterable[Row]) -> list[Turn]:
    """The messages of one conversation (reading order) as turns, in order."""
    turns: list[Turn] = []
    by_id: dict[Any, Turn] = {}
    for m in messages:
        if m["role"] == "user":
            turn = Turn(m)
            turns.append(turn)
            by_id[m["id"]] = turn
        elif m.get("parent_id") in by_id:
            by_id[m["parent_id"]].replies.append(m)
    return turns


def rating_of(reply: Row | None) -> int:
    return int((reply or {}).get("rating") or 0)


def system_prompt_of(reply: Row | None) -> str:
    return str(((reply or {}).get("params") or {}).get("system_prompt") or "")


def dialogue(turns: list[Turn], system_prompt: str) -> list[dict[str, str]]:
    """The system prompt (if any), then each turn's user message and shown reply."""
    out = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for turn in turns:
        shown = turn.shown
        if shown is not None:
            out += [{"role": "user", "content": turn.user["content"]},
                    {"role": "assistant", "content": shown["content"]}]
    return out


def iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _utc(value).isoformat().replace("+00:00", "Z")
    return str(value)


def pseudonym(owner_id: Any) -> str:
    """A stable name for a person that does not say who they are: the same in every export,
    and not reversible without their account id (a random UUID only the database holds)."""
    digest = hashlib.sha256(b"durable-chat/dataset-owner:" + uuid.UUID(str(owner_id)).bytes)
    return f"person-{digest.hexdigest()[:12]}"


def owner_of(conversation: Row, query: DatasetQuery, accounts: bool) -> dict[str, str]:
    """The owner field of a line: only with accounts on; a pseudonym unless asked otherwise."""
    if not accounts or conversation.get("owner_id") is None:
        return {}
    if query.pseudonyms:
        return {"owner": pseudonym(conversation["owner_id"])}
    return {"owner": str(conversation.get("owner_name") or "")}


# -- openai and sharegpt: one conversation a line ----------------------------------------------

def conversation_line(conversation: Row, messages: list[Row], query: DatasetQuery,
                      accounts: bool = False) -> dict[str, Any] | None:
    """The conversation as one line of `query.format` (openai or sharegpt), or None when it
    holds no finished reply or the filters leave it out."""
    created = conversation.get("created_at")
    if isinstance(created, datetime) and not _in_range(created, query):
        return None
    turns = [t for t in turns_of(messages) if t.shown is not None]
    if not turns:
        return None
    shown = [t.shown for t in turns if t.shown is not None]
    if query.model is not None and any(r.get("model") != query.model for r in shown):
        return None
    if query.min_rating is not None and min(rating_of(r) for r in shown) < query.min_rating:
        return None
    last = shown[-1]
    messages_out = dialogue(turns, system_prompt_of(shown[0]))
    ids: list[str | None] = [None] * (len(messages_out) - 2 * len(turns))
    for turn in turns:
        ids += [str(turn.user["id"]), str(turn.shown["id"])]  # type: ignore[index]
    params = last.get("params") or {}
    meta: dict[str, Any] = {
        "conversation_id": str(conversation["id"]),
        "title": conversation.get("title") or "",
        "created_at": iso(created),
        "model": last.get("model"),
        "models": sorted({str(r["model"]) for r in shown if r.get("model")}),
        "parameters": {k: params.get(k) for k in PARAMETERS},
        "message_ids": ids,
        "ratings": [{"message_id": str(r["id"]), "value": r["rating"],
                     "tags": list(r.get("rating_tags") or []),
                     "comment": r.get("rating_comment") or ""}
                    for r in shown if r.get("rating")],
        **owner_of(conversation, query, accounts),
    }
    if query.format == "sharegpt":
        return {"conversations": [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]}
                                  for m in messages_out], "id": str(conversation["id"]), **meta}
    return {"messages": messages_out, **meta}


def _in_range(moment: datetime, query: DatasetQuery) -> bool:
    moment = _utc(moment)
    return (query.since is None or moment >= query.since) and \
        (query.until is None or moment < query.until)


# -- preference: one pair a line ----------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    """One judgement: `chosen` is better than `rejected`, both answering `prompt`'s last
    message. `source` is one of SOURCES."""
    prompt: tuple[tuple[str, str], ...]  # (role, content), the user's message last
    chosen: Row = field(compare=False)
    rejected: Row = field(compare=False)
    source: str = "rating"
    asked_at: datetime | None = None

    @property
    def replies(self) -> frozenset[str]:
        return frozenset((str(self.chosen["id"]), str(self.rejected["id"])))

    def line(self) -> dict[str, Any]:
        """TRL's conversational preference row: its three columns, nothing else."""
        return {"prompt": [{"role": r, "content": c} for r, c in self.prompt],
                "chosen": [{"role": "assistant", "content": self.chosen["content"]}],
                "rejected": [{"role": "assistant", "content": self.rejected["content"]}]}


def prompt_for(earlier: list[Turn], turn: Turn, system_prompt: str
               ) -> tuple[tuple[str, str], ...]:
    history = dialogue(earlier, system_prompt)
    history.append({"role": "user", "content": turn.user["content"]})
    return tuple((m["role"], m["content"]) for m in history)


def pairs_from_ratings(earlier: list[Turn], turn: Turn) -> Iterator[Pair]:
    """Every liked reply over every disliked one, among a message's finished replies."""
    finished = [r for r in turn.replies if answered(r)]
    liked = [r for r in finished if rating_of(r) == RATING_UP]
    disliked = [r for r in finished if rating_of(r) == RATING_DOWN]
    for good in liked:
        prompt = prompt_for(earlier, turn, system_prompt_of(good))
        for bad in disliked:
            if good["content"] != bad["content"]:
                yield Pair(prompt, good, bad, "rating", turn.user.get("created_at"))


def pairs_from_alternatives(earlier: list[Turn], turn: Turn) -> Iterator[Pair]:
    """The shown reply over each other finished alternative, where no rating contradicts it
    and it did not merely continue that alternative."""
    shown = turn.shown
    if shown is None or rating_of(shown) == RATING_DOWN:
        return
    prompt = prompt_for(earlier, turn, system_prompt_of(shown))
    for other in turn.replies:
        if other is shown or not answered(other) or rating_of(other) == RATING_UP:
            continue
        if shown["content"].startswith(other["content"]):  # a continuation, or the same text
            continue
        yield Pair(prompt, shown, other, "alternative", turn.user.get("created_at"))


def merge_pairs(pairs: Iterable[Pair]) -> list[Pair]:
    """One pair per two replies: the strongest source's (SOURCES order), in the order the
    pairs came; a weaker source's pair of the same two replies, either way round, is dropped."""
    best: dict[frozenset[str], Pair] = {}
    order: list[frozenset[str]] = []
    for pair in pairs:
        key = pair.replies
        held = best.get(key)
        if held is None:
            order.append(key)
            best[key] = pair
        elif SOURCES.index(pair.source) < SOURCES.index(held.source):
            best[key] = pair
    return [best[key] for key in order]


def preference_pairs(messages: list[Row], query: DatasetQuery) -> list[Pair]:
    """A conversation's pairs from ratings and chosen alternatives, filtered."""
    turns = turns_of(messages)
    found: list[Pair] = []
    for i, turn in enumerate(turns):
        earlier = turns[:i]
        candidates = merge_pairs([*pairs_from_ratings(earlier, turn),
                                  *pairs_from_alternatives(earlier, turn)])
        found += [p for p in candidates if keep_pair(p, query)][:MAX_PAIRS_PER_MESSAGE]
    return found


def keep_pair(pair: Pair, query: DatasetQuery) -> bool:
    if isinstance(pair.asked_at, datetime) and not _in_range(pair.asked_at, query):
        return False
    if query.model is not None and (pair.chosen.get("model") != query.model
                                    or pair.rejected.get("model") != query.model):
        return False
    return query.min_rating is None or rating_of(pair.chosen) >= query.min_rating


def preference_lines(messages: list[Row], query: DatasetQuery) -> list[dict[str, Any]]:
    return [pair.line() for pair in preference_pairs(messages, query)]
