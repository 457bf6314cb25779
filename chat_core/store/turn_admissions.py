"""Per-person turn limits in share mode: every turn a person starts is recorded here when it is
accepted, under a lock on that person, so that 50 requests arriving together cannot all pass
the check before the first is recorded (each process, and each request, sees the others').

Counted per person: turns in flight (accepted and not yet final: a reply pending or streaming,
or no reply row yet because the workflow's first step has not run) and turns accepted in the
last minute. A repeated request (same turn id: the same Idempotency-Key) is the turn already
admitted, never refused and never counted twice.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

from chat_core.states import IN_FLIGHT, sql_list
from chat_core.store.database import Database, retry_transient

RATE_WINDOW_SEC = 60.0
# A turn whose reply row never appeared (its workflow failed before its first step) stops
# counting as in flight after this long.
NO_ROW_GRACE_SEC = 300.0
# Told to a person at their in-flight limit: roughly when one of their replies may be done.
IN_FLIGHT_RETRY_SEC = 5


@dataclass(frozen=True)
class Refusal:
    """Why a turn was not admitted, and when to try again."""

    reason: str          # "in_flight" or "per_minute"
    limit: int
    retry_after_sec: int


class TurnAdmissions:
    def __init__(self, db: Database) -> None:
        self.db = db

    @retry_transient
    async def admit(self, owner: uuid.UUID, workflow_id: str, conversation_id: uuid.UUID,
                    reply_id: uuid.UUID, *, max_in_flight: int, per_minute: int,
                    rerun: bool = False) -> Refusal | None:
        """Record the turn for `owner` if it is within their limits (None), else say why.
        `rerun`: a turn run again (resumed): counted against turns in flight only."""
        async with self.db.connection() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))",
                                   (f"turn-admissions:{owner}",))
                cur = await conn.execute(
                    "SELECT 1 FROM turn_admissions WHERE workflow_id = %s", (workflow_id,))
                known = await cur.fetchone() is not None
                if known and not rerun:
                    return None
                cur = await conn.execute(
                    f"""
                    SELECT count(*) FILTER (WHERE t.created_at > clock_timestamp()
                               - make_interval(secs => %(window)s)) AS last_minute,
                           min(t.created_at) FILTER (WHERE t.created_at > clock_timestamp()
                               - make_interval(secs => %(window)s)) AS oldest,
                           count(*) FILTER (WHERE m.status IN {sql_list(IN_FLIGHT)}
                               OR (m.id IS NULL AND t.conversation_id IS NOT NULL
                                   AND t.created_at > clock_timestamp()
                                   - make_interval(secs => %(grace)s))) AS in_flight,
                           clock_timestamp() AS now
                    FROM turn_admissions t LEFT JOIN messages m ON m.id = t.reply_id
                    WHERE t.owner_id = %(owner)s AND t.workflow_id <> %(wid)s
                      AND (t.created_at > clock_timestamp() - make_interval(secs => %(window)s)
                           OR m.id IS NULL OR m.status IN {sql_list(IN_FLIGHT)})
                    """,
                    {"owner": owner, "window": RATE_WINDOW_SEC, "grace": NO_ROW_GRACE_SEC,
                     "wid": workflow_id})
                row = await cur.fetchone()
                assert row is not None
                if row["in_flight"] >= max_in_flight:
                    return Refusal("in_flight", max_in_flight, IN_FLIGHT_RETRY_SEC)
                if row["last_minute"] >= per_minute and not rerun:
                    age = (row["now"] - row["oldest"]).total_seconds()
                    return Refusal("per_minute", per_minute,
                                   max(1, math.ceil(RATE_WINDOW_SEC - age)))
                await conn.execute(
                    "INSERT INTO turn_admissions (workflow_id, owner_id, conversation_id,"
                    " reply_id) VALUES (%s, %s, %s, %s) ON CONFLICT (workflow_id) DO NOTHING",
                    (workflow_id, owner, conversation_id, reply_id))
        return None

    @retry_transient
    async def release(self, owner: uuid.UUID, workflow_ids: list[str]) -> None:
        """Take back admissions of turns that will not start (the other half of a refused
        pair, in a comparison), so they do not count as in flight."""
        async with self.db.connection() as conn:
            await conn.execute("DELETE FROM turn_admissions WHERE owner_id = %s"
                               " AND workflow_id = ANY(%s)", (owner, workflow_ids))

    @retry_transient
    async def turns_of(self, owner: uuid.UUID) -> list[str]:
        """Every turn the person ran, their conversations deleted or not (withdrawal)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT workflow_id FROM turn_admissions WHERE owner_id = %s", (owner,))
            return [r["workflow_id"] for r in await cur.fetchall()]

    @retry_transient
    async def forget(self, owner: uuid.UUID) -> None:
        """Withdrawal: the person's turn records go with the rest of their data, and the
        parameters of their forks (a system prompt is their text too)."""
        async with self.db.connection() as conn:
            async with conn.transaction():
                await conn.execute(
                    "DELETE FROM turn_overrides WHERE workflow_id IN (SELECT workflow_id FROM"
                    " turn_admissions WHERE owner_id = %s)", (owner,))
                await conn.execute("DELETE FROM turn_admissions WHERE owner_id = %s", (owner,))
