"""The rows a dataset export is made of (chat_core/data/dataset_export.py): conversations a page
at a time, each with its size, then the messages (with their ratings) of a few of them at a
time (`batches`): a page of imported conversations may hold 20,000 messages each, and a read
holds at most BATCH_MESSAGES messages and about BATCH_BYTES of text, unless one conversation
alone holds more (then it is read alone: one openai line is the whole conversation anyway).

Scoped like every person-facing query (the OWNED clause of the Person the store was made for):
a person reads their own conversations, an admin everyone's. With `consented_only` (accounts
on), other people's conversations are read only when their owner accepted the notice and has
not withdrawn (accounts.consent_at, which withdrawal clears); the person's own are always
theirs to export, and rows without an owner exist only in local mode, where they are the
host's (as chat_core/data/analytics.py counts them).

Votes (`votes`, `vote_pages`): a page of decided comparisons at a time, each with its two
sides' messages at the voted round, read through the same clauses as the sides'
conversations.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import AsyncIterator, Iterator

from chat_core.store.chat_store import OWNED, Row
from chat_core.store.database import Database, retry_transient
from chat_core.store.scoped import PersonScoped

# What one read of messages holds at most (but for one conversation bigger alone).
BATCH_MESSAGES = 5000
BATCH_BYTES = 32 * 1024 * 1024
# Another person's conversation `c` leaves only with their consent (when it is asked for).
CONSENTED = ("(NOT %(consented_only)s OR c.owner_id IS NULL OR c.owner_id = %(owner)s"
             " OR EXISTS (SELECT 1 FROM accounts a WHERE a.id = c.owner_id"
             " AND a.consent_at IS NOT NULL))")


class DatasetRows(PersonScoped):
    """What `person` may export (an admin: everyone's, less who did not consent)."""

    @retry_transient
    async def conversations(self, *, after: tuple[datetime, uuid.UUID] | None, limit: int,
                            created_since: datetime | None = None,
                            created_until: datetime | None = None,
                            active_since: datetime | None = None,
                            model: str | None = None, consented_only: bool = False
                            ) -> list[Row]:
        """The next page of conversations, oldest first, after the `after` (created_at, id)
        key: those created in [created_since, created_until), with activity since
        `active_since`, holding a reply by `model` (a coarse filter: the exact one is the
        export's), each with its owner's id and name, and its size: `n_messages`, and
        `n_bytes`, the text as stored (compressed; what `batches` weighs)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                # The page first, then the size of its conversations only.
                "SELECT page.*, size.n_messages, size.n_bytes FROM ("
                " SELECT c.id, c.title, c.created_at, c.updated_at, c.settings, c.owner_id,"
                " (SELECT a.name FROM accounts a WHERE a.id = c.owner_id) AS owner_name"
                f" FROM conversations c WHERE {OWNED} AND {CONSENTED}"
                " AND (%(after_at)s::timestamptz IS NULL OR (c.created_at, c.id) >"
                "  (%(after_at)s, %(after_id)s::uuid))"
                " AND (%(since)s::timestamptz IS NULL OR c.created_at >= %(since)s)"
                " AND (%(until)s::timestamptz IS NULL OR c.created_at < %(until)s)"
                " AND (%(active)s::timestamptz IS NULL OR c.updated_at >= %(active)s)"
                " AND (%(model)s::text IS NULL OR EXISTS (SELECT 1 FROM messages m"
                "  WHERE m.conversation_id = c.id AND m.role = 'assistant'"
                "  AND m.model = %(model)s))"
                " ORDER BY c.created_at, c.id LIMIT %(limit)s) page"
                " CROSS JOIN LATERAL (SELECT count(*) AS n_messages,"
                "  coalesce(sum(pg_column_size(m.content)), 0) AS n_bytes FROM messages m"
                "  WHERE m.conversation_id = page.id) size"
                " ORDER BY page.created_at, page.id",
                self._p(after_at=after[0] if after else None,
                        after_id=after[1] if after else None, since=created_since,
                        until=created_until, active=active_since, model=model, limit=limit,
                        consented_only=consented_only))
            return await cur.fetchall()

    @retry_transient
    async def messages(self, conversation_ids: list[uuid.UUID], consented_only: bool = False
                       ) -> list[Row]:
        """The messages of these conversations (those the person may export), each reply
        with its rating (`rating`, `rating_tags`, `rating_comment`; NULL when unrated), by
        conversation in reading order: the user message, then its replies oldest first."""
        if not conversation_ids:
            return []
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT m.id, m.conversation_id, m.seq, m.role, m.content, m.created_at,"
                " m.parent_id, m.status, m.active, m.selected_at, m.model, m.params,"
                " m.completed_at,"
                " r.value AS rating, r.tags AS rating_tags, r.comment AS rating_comment"
                " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                " LEFT JOIN ratings r ON r.message_id = m.id"
                f" WHERE m.conversation_id = ANY(%(ids)s) AND {OWNED} AND {CONSENTED}"
                " ORDER BY m.conversation_id, m.seq, (m.role = 'assistant'), m.created_at, m.id",
                self._p(ids=list(conversation_ids), consented_only=consented_only))
            return await cur.fetchall()


    @retry_transient
    async def votes(self, *, after: tuple[datetime, uuid.UUID] | None, limit: int,
                    voted_since: datetime | None = None, created_until: datetime | None = None,
                    consented_only: bool = False) -> list[Row]:
        """The next page of first-round votes for a side (winner "a" or "b", voted_seq 1:
        the pairs dataset_export.vote_pairs makes), oldest vote first after the `after`
        (voted_at, comparison id) key: for each comparison, its sides' messages at the voted
        round made before the vote (the user message, then the replies oldest first), each
        row with the comparison's `comparison_id`, `winner`, `voted_at`, `voted_seq` and the
        row's `side`.

        A comparison in the page has at least one row (message columns NULL when its side
        holds none), so the last row is the next page's key. Its sides are read through OWNED
        and CONSENTED like any conversation: a sealed side never (it has no vote anyway), and
        another person's only with their consent when it is asked for. `voted_since` and
        `created_until` are coarse bounds (a message is sent after its comparison is made and
        before its vote): the exact filter on the message's time is the export's."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT k.id AS comparison_id, k.winner, k.voted_at, k.voted_seq,"
                " c.comparison_side AS side,"
                " m.id, m.conversation_id, m.seq, m.role, m.content, m.created_at, m.parent_id,"
                " m.status, m.active, m.selected_at, m.model, m.params, m.completed_at,"
                " r.value AS rating FROM ("
                " SELECT k.id, k.winner, k.voted_at, k.voted_seq FROM comparisons k"
                " WHERE k.winner IN ('a', 'b') AND k.voted_seq = 1"
                " AND (%(after_at)s::timestamptz IS NULL OR (k.voted_at, k.id) >"
                "  (%(after_at)s, %(after_id)s::uuid))"
                " AND (%(since)s::timestamptz IS NULL OR k.voted_at >= %(since)s)"
                " AND (%(until)s::timestamptz IS NULL OR k.created_at < %(until)s)"
                " AND EXISTS (SELECT 1 FROM conversations c WHERE c.comparison_id = k.id"
                f"  AND {OWNED} AND {CONSENTED})"
                " ORDER BY k.voted_at, k.id LIMIT %(limit)s) k"
                " JOIN conversations c ON c.comparison_id = k.id"
                " LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = k.voted_seq"
                "  AND (m.role = 'user' OR m.created_at <= k.voted_at)"
                " LEFT JOIN ratings r ON r.message_id = m.id"
                f" WHERE {OWNED} AND {CONSENTED}"
                " ORDER BY k.voted_at, k.id, c.comparison_side, (m.role = 'assistant'),"
                " m.created_at, m.id",
                self._p(after_at=after[0] if after else None,
                        after_id=after[1] if after else None, since=voted_since,
                        until=created_until, limit=limit, consented_only=consented_only))
            return await cur.fetchall()

    async def vote_pages(self, *, since: datetime | None = None,
                         until: datetime | None = None, consented_only: bool = False,
                         page: int = 200) -> AsyncIterator[list[Row]]:
        """Every page of `votes`, in order (a page: `page` comparisons' rows)."""
        after = None
        while rows := await self.votes(after=after, limit=page, voted_since=since,
                                       created_until=until, consented_only=consented_only):
            yield rows
            after = (rows[-1]["voted_at"], rows[-1]["comparison_id"])


def batches(conversations: list[Row], max_messages: int | None = None,
            max_bytes: int | None = None) -> Iterator[list[Row]]:
    """The page's conversations (as `DatasetRows.conversations` reads them, with their sizes)
    in order, a few at a time: as many as hold at most `max_messages` messages and
    `max_bytes` bytes together (BATCH_MESSAGES, BATCH_BYTES), at least one."""
    most = BATCH_MESSAGES if max_messages is None else max_messages
    biggest = BATCH_BYTES if max_bytes is None else max_bytes
    batch: list[Row] = []
    held = size = 0
    for c in conversations:
        n, b = int(c.get("n_messages") or 0), int(c.get("n_bytes") or 0)
        if batch and (held + n > most or size + b > biggest):
            yield batch
            batch, held, size = [], 0, 0
        batch.append(c)
        held, size = held + n, size + b
    if batch:
        yield batch


class DatasetSecret:
    """The deployment's secret for pseudonyms (the dataset_secret table, migrations/008): made
    at random by the first export that needs it and kept, so a person's pseudonym is the same
    in every export of this database and cannot be computed from their account id alone. It
    belongs to the deployment, not to a person: no scope."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @retry_transient
    async def pseudonyms(self) -> bytes:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT secret FROM dataset_secret WHERE name = 'pseudonym'")
            row = await cur.fetchone()
            if row is None:  # the first export: two at once keep the one written first
                await conn.execute(
                    "INSERT INTO dataset_secret (name, secret) VALUES ('pseudonym', %s)"
                    " ON CONFLICT (name) DO NOTHING", (secrets.token_bytes(32),))
                cur = await conn.execute(
                    "SELECT secret FROM dataset_secret WHERE name = 'pseudonym'")
                row = await cur.fetchone()
            return bytes(row["secret"])
