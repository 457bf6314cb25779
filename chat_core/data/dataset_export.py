"""Conversations as training and evaluation data: one JSON object a line (JSON Lines).

Pure functions over the rows chat_core/store/dataset_rows.py reads (a conversation, and its
messages with their ratings); ChatService.dataset streams what they make, a batch of
conversations at a time, turning rows into lines in a worker thread (`dataset_lines`, taken a
chunk at a time with `take`). Three formats:

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
out of every format: what the person never saw as an answer is no example of one. A line ends
at "\n" and nowhere else: U+2028, U+2029 and U+0085, which many readers take for line ends,
are written escaped (`json_line`).

**Where preference pairs come from.** Each source turns a judgement into `Pair`s, lazily;
`merge_pairs` keeps one pair per two replies, the first, so the sources are chained strongest
first (`SOURCES`), and at most MAX_PAIRS_PER_MESSAGE pairs are ever built for one message:

1. `vote` (`vote_pairs`, comparisons, migrations/009): a comparison's two sides answered one
   prompt and the person voted A or B better: the winner's reply, as shown when the vote was
   cast, over the other's, after the system prompt (when both sides had the same one) and
   the user message. Only a vote cast on the first round counts: from the second round on,
   each side answers its own earlier replies, so the two histories differ and no one prompt
   fits both. A tie or "both bad" gives no pair, nor does a side whose judged reply did not
   finish with text. A sealed (blind, unvoted) comparison has no vote, so never appears.
   The two replies are in two conversations, so no other source can pair them: the vote
   pairs come first in the file (ChatService.dataset), before every conversation's pairs.
2. `rating` (`pairs_from_ratings`): a liked and a disliked reply to the same user message
   (regenerate, retry and forks give one message several replies): each liked text over each
   disliked text (replies with the same text count once).
3. `alternative` (`pairs_from_alternatives`): the reply shown, when the person chose it among
   the alternatives (◀ ▶; `selected_at`, migrations/008: a reply shown only because it is the
   newest is no choice), is preferred to its other finished alternatives, unless a rating says
   otherwise (a disliked shown reply is no choice; a liked alternative is not rejected), and
   never to a reply it merely continued (its own prefix).

**Filters** (`DatasetQuery`): `model`, exact: every shown reply of a conversation, or both
replies of a pair (a vote's too: two settings of one model), by that model; `since`/`until`:
when the conversation started (openai, sharegpt) or the user message was sent (preference,
votes too), `until` excluded; `min_rating`: a reply
unrated counts 0, a conversation is as good as its worst shown reply, a pair as its chosen one.
A pair's filters are applied to the replies before pairing, so the cap counts pairs kept.

**Owners** (accounts on): a pseudonym, HMAC-SHA256 of the account id under the deployment's
secret (`pseudonym`; the secret is made once and kept in the database, migrations/008), so an
account id, which people are shown, does not tell which lines are whose; or, asked for, names.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from itertools import chain, islice
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
# How many pairs one user message gives at most (its replies' judgements, all pairs of them):
# a bound on the work and the lines one message makes (an import may hold a message with
# 20,000 rated replies), far above what a person rates by hand. No more are ever built.
MAX_PAIRS_PER_MESSAGE = 400
# Characters JSON leaves as they are but many line readers split at (Python's splitlines,
# JavaScript before ES2019, some editors): written escaped, so a line ends only at "\n".
_LINE_BREAKERS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"}


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


def pseudonym(owner_id: Any, secret: bytes) -> str:
    """A stable name for a person that does not say who they are: the same in every export
    of a deployment, and not computable from their account id (which people are shown)
    without the deployment's secret (chat_core/store/dataset_rows.DatasetSecret)."""
    digest = hmac.new(secret, b"durable-chat/dataset-owner:" + uuid.UUID(str(owner_id)).bytes,
                      hashlib.sha256)
    return f"person-{digest.hexdigest()[:12]}"


def owner_of(conversation: Row, query: DatasetQuery, accounts: bool,
             secret: bytes | None = None) -> dict[str, str]:
    """The owner field of a line: only with accounts on; a pseudonym (under `secret`, which
    it then needs) unless asked otherwise."""
    if not accounts or conversation.get("owner_id") is None:
        return {}
    if query.pseudonyms:
        if not secret:
            raise ValueError("pseudonyms need the deployment's secret (DatasetSecret)")
        return {"owner": pseudonym(conversation["owner_id"], secret)}
    return {"owner": str(conversation.get("owner_name") or "")}


def json_line(value: Any) -> str:
    """One line of JSON Lines: UTF-8 text as it is, but for the characters some readers take
    for line ends, escaped; "\n" at the end and nowhere else."""
    text = json.dumps(value, ensure_ascii=False)
    for raw, escaped in _LINE_BREAKERS.items():
        if raw in text:
            text = text.replace(raw, escaped)
    return text + "\n"


def dataset_lines(conversations: list[Row], messages: Iterable[Row], query: DatasetQuery,
                  accounts: bool = False, secret: bytes | None = None) -> Iterator[str]:
    """The lines of these conversations (`messages`: theirs, by conversation in reading
    order, as DatasetRows.messages reads them), in the conversations' order. Lazy: a caller
    takes them a chunk at a time (`take`)."""
    by_conversation: dict[Any, list[Row]] = {}
    for m in messages:
        by_conversation.setdefault(m["conversation_id"], []).append(m)
    for c in conversations:
        rows = by_conversation.pop(c["id"], [])
        if query.format == "preference":
            for pair in preference_pairs(rows, query):
                yield json_line(pair.line())
        else:
            line = conversation_line(c, rows, query, accounts, secret)
            if line is not None:
                yield json_line(line)


def take(lines: Iterator[str], max_chars: int) -> str:
    """The next lines, joined, until they hold `max_chars` (at least one line; "" once there
    are none): a chunk of work small enough to hand back to the event loop between."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += len(line)
        if size >= max_chars:
            break
    return "".join(chunk)


# -- openai and sharegpt: one conversation a line ----------------------------------------------

def conversation_line(conversation: Row, messages: list[Row], query: DatasetQuery,
                      accounts: bool = False, secret: bytes | None = None
                      ) -> dict[str, Any] | None:
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
        **owner_of(conversation, query, accounts, secret),
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


Prompt = tuple[tuple[str, str], ...]


class Prompts:
    """The prompts of one user message: the dialogue shown before it (the first `upto`
    entries of `history`), then the message, after the system prompt of the reply judged.
    Made when the first pair needs one (most messages have none), one tuple per system
    prompt, shared by that message's pairs."""

    def __init__(self, history: list[tuple[str, str]], turn: Turn) -> None:
        self.history, self.upto = history, len(history)
        self.user = (("user", str(turn.user["content"])),)
        self.made: dict[str, Prompt] = {}

    def of(self, reply: Row) -> Prompt:
        system = system_prompt_of(reply)
        prompt = self.made.get(system)
        if prompt is None:
            head: Prompt = (("system", system),) if system else ()
            prompt = self.made[system] = head + tuple(self.history[:self.upto]) + self.user
        return prompt


def by_model(reply: Row, query: DatasetQuery) -> bool:
    return query.model is None or reply.get("model") == query.model


def distinct_texts(replies: Iterable[Row], limit: int) -> list[Row]:
    """The first reply of each text, up to `limit` texts: two replies with the same text make
    the same line, and a pair of them none."""
    kept: dict[str, Row] = {}
    for reply in replies:
        kept.setdefault(reply["content"], reply)
        if len(kept) >= limit:
            break
    return list(kept.values())


def pairs_from_ratings(prompts: Prompts, turn: Turn, query: DatasetQuery) -> Iterator[Pair]:
    """Each liked text over each disliked one, among a message's finished replies (by the
    query's model). At most MAX_PAIRS_PER_MESSAGE liked and one more disliked texts are
    looked at (a liked text may also be among the disliked ones: that pair is skipped), so
    the work is bounded whatever the message holds; the caller takes what it needs."""
    finished = [r for r in turn.replies if answered(r) and by_model(r, query)]
    liked = distinct_texts((r for r in finished if rating_of(r) == RATING_UP),
                           MAX_PAIRS_PER_MESSAGE)
    if query.min_rating is not None and RATING_UP < query.min_rating:
        return  # (a liked reply is rated as high as a rating goes)
    disliked = distinct_texts((r for r in finished if rating_of(r) == RATING_DOWN),
                              MAX_PAIRS_PER_MESSAGE + 1)
    asked = turn.user.get("created_at")
    for good in liked:
        for bad in disliked:
            if good["content"] != bad["content"]:
                yield Pair(prompts.of(good), good, bad, "rating", asked)


def pairs_from_alternatives(prompts: Prompts, turn: Turn, query: DatasetQuery
                            ) -> Iterator[Pair]:
    """The shown reply, when the person chose it, over each other finished alternative
    (each text once), where no rating contradicts it and it did not merely continue that
    alternative."""
    shown = turn.shown
    if shown is None or not shown.get("selected_at") or rating_of(shown) == RATING_DOWN \
            or not by_model(shown, query) \
            or (query.min_rating is not None and rating_of(shown) < query.min_rating):
        return
    texts: set[str] = set()
    for other in turn.replies:
        if other is shown or not answered(other) or rating_of(other) == RATING_UP \
                or not by_model(other, query) or other["content"] in texts:
            continue
        texts.add(other["content"])
        if shown["content"].startswith(other["content"]):  # a continuation, or the same text
            continue
        yield Pair(prompts.of(shown), shown, other, "alternative", turn.user.get("created_at"))


def merge_pairs(pairs: Iterable[Pair]) -> Iterator[Pair]:
    """One pair per two replies: the first, in the order the pairs come, which must be the
    strongest source's first (SOURCES order): a later pair of the same two replies, either
    way round, is dropped. Lazy: a consumer that stops early builds no more."""
    seen: set[frozenset[str]] = set()
    weakest = 0
    for pair in pairs:
        rank = SOURCES.index(pair.source)
        if rank < weakest:
            raise ValueError(f"pairs must come strongest first ({', '.join(SOURCES)}): a "
                             f"{pair.source!r} pair came after a {SOURCES[weakest]!r} one")
        weakest = rank
        key = pair.replies
        if key not in seen:
            seen.add(key)
            yield pair


def preference_pairs(messages: list[Row], query: DatasetQuery) -> Iterator[Pair]:
    """A conversation's pairs from ratings and chosen alternatives, filtered: at most
    MAX_PAIRS_PER_MESSAGE per user message, and no more built."""
    history: list[tuple[str, str]] = []  # the dialogue as shown so far
    for turn in turns_of(messages):
        asked = turn.user.get("created_at")
        if not isinstance(asked, datetime) or _in_range(asked, query):
            prompts = Prompts(history, turn)
            yield from islice(merge_pairs(chain(pairs_from_ratings(prompts, turn, query),
                                                pairs_from_alternatives(prompts, turn, query))),
                              MAX_PAIRS_PER_MESSAGE)
        shown = turn.shown
        if shown is not None:
            history += [("user", turn.user["content"]), ("assistant", shown["content"])]


# -- votes: a comparison's two sides, one judged better -------------------------------------------

def judged_reply(replies: list[Row], voted_at: datetime | None) -> Row | None:
    """The reply a side showed when the vote was cast (`replies`: those to the voted round's
    user message, oldest first): the one that became shown last before the vote, by being
    made (a new reply is shown) or chosen among the alternatives (◀ ▶, `selected_at`). None
    when it did not finish with text (a failed reply can be voted on; it is no example)."""
    def shown_since(reply: Row) -> datetime:
        moments = [reply.get("created_at"), reply.get("selected_at")]
        kept = [_utc(t) for t in moments if isinstance(t, datetime)
                and (voted_at is None or _utc(t) <= _utc(voted_at))]
        return max(kept, default=datetime.min.replace(tzinfo=timezone.utc))
    if not replies:
        return None
    latest = max(enumerate(replies), key=lambda ir: (shown_since(ir[1]), ir[0]))[1]
    return latest if answered(latest) else None


def vote_pair(sides: dict[str, list[Row]], winner: str, voted_at: datetime | None,
              query: DatasetQuery) -> Pair | None:
    """The pair of one decided first-round vote (`sides`: each side's rows at that round, as
    DatasetRows.votes reads them), or None when a side has no finished reply or the filters
    leave it out. The prompt is the system prompt, when both sides had the same one, and the
    user message."""
    judged: dict[str, tuple[Row, Row]] = {}
    for side, rows in sides.items():
        users = [r for r in rows if r.get("role") == "user"]
        reply = judged_reply([r for r in rows if r.get("role") == "assistant"], voted_at)
        if not users or reply is None:
            return None
        judged[side] = (users[0], reply)
    loser = "b" if winner == "a" else "a"
    if winner not in judged or loser not in judged:
        return None
    (asked, chosen), (_, rejected) = judged[winner], judged[loser]
    at = asked.get("created_at")
    if isinstance(at, datetime) and not _in_range(at, query):
        return None
    if not (by_model(chosen, query) and by_model(rejected, query)) \
            or (query.min_rating is not None and rating_of(chosen) < query.min_rating) \
            or chosen["content"] == rejected["content"]:
        return None
    system = system_prompt_of(chosen)
    head: Prompt = (("system", system),) if system and system == system_prompt_of(rejected) \
        else ()
    return Pair(head + (("user", str(asked["content"])),), chosen, rejected, "vote", at)


def vote_pairs(rows: Iterable[Row], query: DatasetQuery) -> Iterator[Pair]:
    """The pairs of a page of votes (DatasetRows.votes: a comparison's rows together), in
    its order: one per vote for a side; a tie or "both bad" gives none, and so does a vote
    cast on a later round, whose two sides' histories differ (each answered its own earlier
    replies: no one prompt fits both)."""
    current: Any = None
    sides: dict[str, list[Row]] = {}
    winner, voted_at, first = "", None, False
    for row in chain(rows, [{"comparison_id": object()}]):  # a sentinel ends the last one
        if row["comparison_id"] != current:
            if first and winner in ("a", "b"):
                pair = vote_pair(sides, winner, voted_at, query)
                if pair is not None:
                    yield pair
            current, sides = row["comparison_id"], {}
            winner, voted_at = row.get("winner") or "", row.get("voted_at")
            first = row.get("voted_seq") == 1
        if row.get("id") is not None:
            sides.setdefault(row["side"], []).append(row)


def vote_lines(rows: Iterable[Row], query: DatasetQuery) -> Iterator[str]:
    """The lines of a page of votes (`vote_pairs`), lazily: taken a chunk at a time."""
    return (json_line(pair.line()) for pair in vote_pairs(rows, query))


def preference_lines(messages: list[Row], query: DatasetQuery) -> Iterator[dict[str, Any]]:
    return (pair.line() for pair in preference_pairs(messages, query))
