"""Data access for read-only links (the shared_links table of migrations/006_accounts.sql).

A link is made, listed and revoked only through a conversation the person can see: every query
joins the conversation and carries the store's ownership clause, so someone else's
conversation (and its links) looks exactly like a missing one. Only the token's SHA-256 is
stored; `resolve` is the one query that needs no person, since holding the token is what
grants the read.
"""

from __future__ import annotations

import uuid

from chat_core.errors import Conflict, NotFound
from chat_core.store.chat_store import OWNED, Row
from chat_core.store.database import retry_transient
from chat_core.store.scoped import PersonScoped

_LINK_COLUMNS = "l.id, l.conversation_id, l.created_at, l.expires_at"
# A link that still opens its page: not revoked and not past its expiry.
_LIVE = "l.revoked_at IS NULL AND (l.expires_at IS NULL OR l.expires_at > clock_timestamp())"


class SharedLinkStore(PersonScoped):
    """The links of the conversations `person` can see (an admin's: everyone's)."""

    @retry_transient
    async def create(self, conversation_id: uuid.UUID, link_id: uuid.UUID, token_hash: bytes,
                     expires_in_days: int | None, max_live: int) -> Row:
        """The new link; NotFound when the conversation is not one the person can see. The
        conversation's row is locked while its live links are counted, so a burst of requests
        cannot slip past `max_live`; its dead links (revoked, expired) are dropped here, which
        keeps the table bounded. The ids are chosen before the first attempt: a retry after a
        lost connection cannot add a second link."""
        async with self.db.connection() as conn:
            async with conn.transaction():
                cur = await conn.execute(
                    f"SELECT c.id FROM conversations c WHERE c.id = %(cid)s AND {OWNED}"
                    " FOR UPDATE", self._p(cid=conversation_id))
                if await cur.fetchone() is None:
                    raise NotFound(f"conversation {conversation_id} does not exist")
                await conn.execute(
                    f"DELETE FROM shared_links l WHERE l.conversation_id = %(cid)s AND NOT"
                    f" ({_LIVE}) AND l.id <> %(lid)s", {"cid": conversation_id, "lid": link_id})
                cur = await conn.execute(
                    f"SELECT count(*) AS n FROM shared_links l WHERE l.conversation_id = %(cid)s"
                    f" AND {_LIVE} AND l.id <> %(lid)s", {"cid": conversation_id, "lid": link_id})
                row = await cur.fetchone()
                if row is not None and row["n"] >= max_live:
                    raise Conflict(f"this conversation has {max_live} live links already; "
                                   "revoke one (or let one expire) to publish another")
                cur = await conn.execute(
                    "INSERT INTO shared_links AS l (id, token_hash, conversation_id, expires_at)"
                    " VALUES (%(lid)s, %(hash)s, %(cid)s,"
                    " clock_timestamp() + make_interval(days => %(days)s::int))"
                    " ON CONFLICT (id) DO UPDATE SET id = l.id"  # a retried insert reads it back
                    f" RETURNING {_LINK_COLUMNS}",
                    {"lid": link_id, "hash": token_hash, "cid": conversation_id,
                     "days": expires_in_days})
                created = await cur.fetchone()
        assert created is not None
        return created

    @retry_transient
    async def list_live(self, conversation_id: uuid.UUID) -> list[Row]:
        """The conversation's links that still open, newest first; NotFound when the
        conversation is not one the person can see."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT c.id FROM conversations c WHERE c.id = %(cid)s AND {OWNED}",
                self._p(cid=conversation_id))
            if await cur.fetchone() is None:
                raise NotFound(f"conversation {conversation_id} does not exist")
            cur = await conn.execute(
                f"SELECT {_LINK_COLUMNS} FROM shared_links l WHERE l.conversation_id = %(cid)s"
                f" AND {_LIVE} ORDER BY l.created_at DESC, l.id", {"cid": conversation_id})
            return await cur.fetchall()

    @retry_transient
    async def revoke(self, conversation_id: uuid.UUID, link_id: uuid.UUID) -> bool:
        """Revoke a live link of this conversation; False when there is no such link the
        person can see (unknown, someone else's, already revoked or expired)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "UPDATE shared_links l SET revoked_at = clock_timestamp() FROM conversations c"
                " WHERE l.id = %(lid)s AND l.conversation_id = %(cid)s AND c.id = l.conversation_id"
                f" AND {_LIVE} AND {OWNED} RETURNING l.id",
                self._p(lid=link_id, cid=conversation_id))
            return await cur.fetchone() is not None

    @retry_transient
    async def resolve(self, token_hash: bytes) -> uuid.UUID | None:
        """The conversation a live link opens, or None (unknown, revoked and expired alike)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT l.conversation_id FROM shared_links l WHERE l.token_hash = %(hash)s"
                f" AND {_LIVE}", {"hash": token_hash})
            row = await cur.fetchone()
        return None if row is None else row["conversation_id"]
