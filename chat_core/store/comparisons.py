"""Comparisons in PostgreSQL (migrations/009_comparisons.sql): a comparison row and its two
sides' conversations, made together; the vote, which unseals the sides; the battles the
leaderboard counts.

Scoped like every person-facing store: a comparison is read and changed only through the
ownership clause (OWNED_COMPARISON, for the Person the store was made for), so someone else's
comparison answers exactly like a missing one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from chat_core.store.chat_store import Row
from chat_core.store.database import retry_transient
from chat_core.store.scoped import PersonScoped

OWNED_COMPARISON = "(%(sees_all)s OR k.owner_id = %(owner)s)"
COMPARISON_COLUMNS = """
    k.id, k.owner_id, k.title, k.blind, k.model_a, k.model_b, k.label_a, k.label_b, k.winner,
    k.voted_seq, k.voted_at, k.created_at,
    (SELECT a.name FROM accounts a WHERE a.id = k.owner_id) AS owner_name,
    (SELECT c.id FROM conversations c WHERE c.comparison_id = k.id
     AND c.comparison_side = 'a') AS conversation_a,
    (SELECT c.id FROM conversations c WHERE c.comparison_id = k.id
     AND c.comparison_side = 'b') AS conversation_b
"""


@dataclass(frozen=True)
class SideRow:
    """What one side's conversation is made with."""

    conversation_id: uuid.UUID
    model: str
    label: str | None
    settings: dict[str, Any]


class ComparisonStore(PersonScoped):
    """The comparisons `person` can see (an admin's: everyone's)."""

    @retry_transient
    async def create(self, comparison_id: uuid.UUID, title: str, blind: bool,
                     a: SideRow, b: SideRow) -> Row | None:
        """The comparison and both sides' conversations in one transaction, owned by the
        person; a second call with the same id makes nothing (the id comes from the request's
        idempotency key). None when that id is someone else's."""
        params = self._p(id=comparison_id, title=title, blind=blind, model_a=a.model,
                         model_b=b.model, label_a=a.label, label_b=b.label)
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO comparisons (id, owner_id, title, blind, model_a, model_b, label_a,"
                " label_b) VALUES (%(id)s, %(owner)s, %(title)s, %(blind)s, %(model_a)s,"
                " %(model_b)s, %(label_a)s, %(label_b)s) ON CONFLICT (id) DO NOTHING"
                " RETURNING id", params)
            if await cur.fetchone() is not None:
                for side, row in (("a", a), ("b", b)):
                    await conn.execute(
                        "INSERT INTO conversations (id, title, owner_id, settings, comparison_id,"
                        " comparison_side, sealed) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        (row.conversation_id, title, self.person.id, Jsonb(row.settings),
                         comparison_id, side, True))
        return await self.get(comparison_id)

    @retry_transient
    async def get(self, comparison_id: uuid.UUID) -> Row | None:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {COMPARISON_COLUMNS} FROM comparisons k"
                f" WHERE k.id = %(id)s AND {OWNED_COMPARISON}", self._p(id=comparison_id))
            return await cur.fetchone()

    @retry_transient
    async def list(self, limit: int) -> list[Row]:
        """Newest first."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {COMPARISON_COLUMNS} FROM comparisons k WHERE {OWNED_COMPARISON}"
                " ORDER BY k.created_at DESC, k.id LIMIT %(limit)s", self._p(limit=limit))
            return await cur.fetchall()

    @retry_transient
    async def vote(self, comparison_id: uuid.UUID, winner: str, seq: int) -> bool:
        """Record the vote and unseal both sides, together; False when the comparison already
        has a vote (or is not the person's: the caller has read it first)."""
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE comparisons k SET winner = %(winner)s, voted_seq = %(seq)s,"
                " voted_at = clock_timestamp() WHERE k.id = %(id)s AND k.winner IS NULL"
                f" AND {OWNED_COMPARISON} RETURNING k.id",
                self._p(id=comparison_id, winner=winner, seq=seq))
            if await cur.fetchone() is None:
                return False
            await conn.execute("UPDATE conversations SET sealed = false"
                               " WHERE comparison_id = %s", (comparison_id,))
            return True

    @retry_transient
    async def battles(self) -> list[Row]:
        """Every voted comparison in view: the leaderboard's battles."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT coalesce(k.label_a, k.model_a) AS a, coalesce(k.label_b, k.model_b) AS b,"
                f" k.winner FROM comparisons k WHERE k.winner IS NOT NULL AND {OWNED_COMPARISON}"
                " ORDER BY k.voted_at", self._p())
            return await cur.fetchall()

    @retry_transient
    async def delete(self, comparison_id: uuid.UUID) -> bool:
        """Delete it (its sides' conversations go with it, ON DELETE CASCADE)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"DELETE FROM comparisons k WHERE k.id = %(id)s AND {OWNED_COMPARISON}"
                " RETURNING k.id", self._p(id=comparison_id))
            return await cur.fetchone() is not None

    @retry_transient
    async def delete_own(self) -> int:
        """Withdrawal: every comparison the person owns (an admin's own only); how many."""
        async with self.db.connection() as conn:
            cur = await conn.execute("DELETE FROM comparisons k WHERE k.owner_id = %(owner)s"
                                     " RETURNING k.id", self._p())
            return len(await cur.fetchall())

    @retry_transient
    async def own_side_conversations(self) -> list[uuid.UUID]:
        """The sides' conversations of the comparisons the person owns (sealed or not)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT c.id FROM conversations c JOIN comparisons k ON k.id = c.comparison_id"
                " WHERE k.owner_id = %(owner)s", self._p())
            return [r["id"] for r in await cur.fetchall()]
