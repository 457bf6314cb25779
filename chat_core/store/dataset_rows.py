"""The rows a dataset export is made of (chat_core/data/dataset_export.py): conversations a page
at a time, then their messages with their ratings.

Scoped like every person-facing query (the OWNED clause of the Person the store was made for):
a person reads their own conversations, an admin everyone's. With `consented_only` (accounts
on), other people's conversations are read only when their owner accepted the notice and has
not withdrawn (accounts.consent_at, which withdrawal clears); the person's own are always
theirs to export, and rows without an owner exist only in local mode, where they are the
host's (as chat_core/data/analytics.py counts them).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from chat_core.accounts.person import SYSTEM, Person
from chat_core.store.chat_store import OWNED, Row
from chat_core.store.database import Database, retry_transient

# Another person's conversation `c` leaves only with their consent (when it is asked for).
CONSENTED = ("(NOT %(consented_only)s OR c.owner_id IS NULL OR c.owner_id = %(owner)s"
             " OR EXISTS (SELECT 1 FROM accounts a WHERE a.id = c.owner_id"
             " AND a.consent_at IS NOT NULL))")


class DatasetRows:
    """What `person` may export (an admin: everyone's, less who did not consent)."""

    def __init__(self, db: Database, person: Person = SYSTEM) -> None:
        self.db = db
        self.person = person

    def _p(self, **params: Any) -> dict[str, Any]:
        return {**params, **self.person.sql()}

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
        export's), each with its owner's id and name."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT c.id, c.title, c.created_at, c.updated_at, c.settings, c.owner_id,"
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
                " ORDER BY c.created_at, c.id LIMIT %(limit)s",
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
                " m.parent_id, m.status, m.active, m.model, m.params, m.completed_at,"
                " r.value AS rating, r.tags AS rating_tags, r.comment AS rating_comment"
                " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                " LEFT JOIN ratings r ON r.message_id = m.id"
                f" WHERE m.conversation_id = ANY(%(ids)s) AND {OWNED} AND {CONSENTED}"
                " ORDER BY m.conversation_id, m.seq, (m.role = 'assistant'), m.created_at, m.id",
                self._p(ids=list(conversation_ids), consented_only=consented_only))
            return await cur.fetchall()
