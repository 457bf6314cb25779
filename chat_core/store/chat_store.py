"""Data access for conversations and messages. All SQL of the app's own tables lives here.

Writes that a workflow step may repeat after a crash are idempotent: rows are keyed by ids that
are derived from the workflow id, inserted with ON CONFLICT DO NOTHING, and read back.

Every query that reads or changes a person's data carries the ownership clause (OWNED) of the
Person the store was made for (ChatStore.scoped): a conversation of someone else's, and every
message in it, looks exactly like a missing one, whatever the caller forgot to check. The store
the turn workflows use is made for person.SYSTEM, which sees every row.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Iterable

from psycopg.types.json import Jsonb

from chat_core.accounts.person import SYSTEM, Person
from chat_core.store.database import Database, retry_transient
from chat_core.errors import NotFound
from chat_core.states import (ANSWERED, CANCELLED, COMPLETE, IN_FLIGHT, PENDING, STREAMING,
                              sql_list)
from chat_core.store.scoped import PersonScoped

Row = dict[str, Any]

# Reply states as SQL literals (states.sql_list): the partial indexes use the same text.
_IN_FLIGHT = sql_list(IN_FLIGHT)
# Where request_stop tells the process generating a reply to stop (turns/relay.py hears it).
STOP_CHANNEL = "chat_turn_stop"
_ANSWERED = sql_list(ANSWERED)

_MESSAGE_COLUMNS = """
    id, conversation_id, seq, role, content, created_at, parent_id, status, error, workflow_id,
    model, prompt_tokens, completion_tokens, tokens_estimated, ttft_ms, latency_ms,
    finish_reason, params, completed_at, stop_requested, active
"""
_CONVERSATION_COLUMNS = """
    id, title, created_at, updated_at, settings, origin_conversation_id, origin_message_id,
    owner_id
"""
# The same, qualified by c and with the owner's name (for an admin's view of everyone's).
_OWNER_NAME = "(SELECT a.name FROM accounts a WHERE a.id = c.owner_id)"
_CONVERSATION_VIEW = f"""
    c.id, c.title, c.created_at, c.updated_at, c.settings, c.origin_conversation_id,
    c.origin_message_id, c.owner_id, {_OWNER_NAME} AS owner_name
"""
_TITLE_VIEW = f"c.id, c.title, CASE WHEN %(sees_all)s THEN {_OWNER_NAME} END AS owner_name"
# The ownership clause: the conversation `c` is the person's, or the person sees all; and it
# is not a blind comparison's side before the vote (sealed, migrations/009), unless the person
# is the system or the comparison service, which masks the names.
OWNER_ONLY = "(%(sees_all)s OR c.owner_id = %(owner)s)"
OWNED = f"({OWNER_ONLY} AND (%(sees_sealed)s OR NOT c.sealed))"
# The same for a message `m`, through its conversation (no join for the system).
OWNED_MESSAGE = ("((%(sees_all)s AND %(sees_sealed)s) OR EXISTS (SELECT 1 FROM conversations c"
                 f" WHERE c.id = m.conversation_id AND {OWNED}))")

TITLE_CHARS = 60


def derive_id(workflow_id: str, part: str) -> uuid.UUID:
    """Stable id of a row written by a workflow, so a re-run step writes the same row."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"chat-turn:{workflow_id}:{part}")


def title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def public_conversation(row: Row) -> dict[str, Any]:
    out = {
        "id": str(row["id"]),
        "title": row["title"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
    if row.get("owner_name") is not None:
        out["owner"] = row["owner_name"]
    if "settings" in row:
        out["settings"] = row["settings"] or {}
        out["origin_conversation_id"] = _str_or_none(row["origin_conversation_id"])
        out["origin_message_id"] = _str_or_none(row["origin_message_id"])
    return out


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def public_message(row: Row) -> dict[str, Any]:
    """The JSON shape of a message: the seed's id, role, content, created_at, then our extras."""
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "role": row["role"],
        "content": row["content"],
        "created_at": iso(row["created_at"]),
        "conversation_id": str(row["conversation_id"]),
        "seq": row["seq"],
        "status": row["status"],
    }
    if row["role"] == "assistant":
        out.update(
            parent_id=str(row["parent_id"]),
            active=row["active"],
            error=row["error"],
            workflow_id=row["workflow_id"],
            model=row["model"],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            tokens_estimated=row["tokens_estimated"],
            ttft_ms=row["ttft_ms"],
            latency_ms=row["latency_ms"],
            finish_reason=row["finish_reason"],
            params=row["params"],
            completed_at=iso(row["completed_at"]),
        )
    else:
        out["workflow_id"] = row["workflow_id"]
    return out


class ChatStore(PersonScoped):
    def __init__(self, db: Database, person: Person = SYSTEM) -> None:
        super().__init__(db, person)
        # Queries made by turns waiting for earlier turns (earlier_in_flight), counted so that
        # tests can hold waiting to its cost: about two per waiting turn, however long it waits.
        self.order_checks = 0

    def scoped(self, person: Person) -> "ChatStore":
        """The same store, answering only what `person` may see, and giving them what they
        create."""
        store = ChatStore(self.db, person)
        return store

    # -- conversations -----------------------------------------------------------------------

    async def create_conversation(self, title: str = "") -> Row:
        """The new conversation, with its `next_seq` (conversation_for_turn's): its first
        message can start from it without reading it back."""
        return await self._insert_conversation(uuid.uuid4(), title)

    @retry_transient
    async def _insert_conversation(self, conversation_id: uuid.UUID, title: str) -> Row:
        # The id is chosen before the first attempt, so a retry cannot create a second row;
        # a retry after a commit whose answer was lost finds it made and reads it.
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "WITH c AS (INSERT INTO conversations (id, title, owner_id) VALUES (%s, %s, %s)"
                f" ON CONFLICT DO NOTHING RETURNING *) SELECT {_CONVERSATION_VIEW},"
                " c.last_seq + 1 AS next_seq FROM c", (conversation_id, title, self.person.id))
            row = await cur.fetchone()
        return row if row is not None else await self.conversation_for_turn(conversation_id)

    @retry_transient
    async def get_conversation(self, conversation_id: uuid.UUID) -> Row:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_CONVERSATION_VIEW} FROM conversations c"
                f" WHERE c.id = %(cid)s AND {OWNED}", self._p(cid=conversation_id))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return row

    @retry_transient
    async def conversation_for_turn(self, conversation_id: uuid.UUID) -> Row:
        """The conversation a message is sent to, with where the message would go: `next_seq`
        if no turn of it is in flight, else None (what a head start reads its history up to,
        turns/head_start.py)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_CONVERSATION_VIEW}, CASE WHEN NOT EXISTS (SELECT 1 FROM messages m"
                f" WHERE m.conversation_id = c.id AND m.status IN {_IN_FLIGHT})"
                " THEN c.last_seq + 1 END AS next_seq"
                f" FROM conversations c WHERE c.id = %(cid)s AND {OWNED}",
                self._p(cid=conversation_id))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return row

    @retry_transient
    async def list_conversations(self, limit: int = 100, offset: int = 0,
                                 owner: uuid.UUID | None = None) -> list[Row]:
        """Newest first; `owner` narrows an admin's view of everyone's to one person's."""
        return await self._listed(_CONVERSATION_VIEW, limit, offset, owner)

    @retry_transient
    async def list_conversation_titles(self, limit: int = 100) -> list[Row]:
        """The same list with only what a sidebar shows (id, title, owner_name): it is drawn on
        every new conversation's first message, where the whole rows cost 1.5 ms of CPU for 100
        conversations and these 0.5 ms (docs/performance.md)."""
        return await self._listed(_TITLE_VIEW, limit, 0, None)

    async def _listed(self, columns: str, limit: int, offset: int, owner: uuid.UUID | None
                      ) -> list[Row]:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {columns} FROM conversations c WHERE {OWNED}"
                " AND (%(only)s::uuid IS NULL OR c.owner_id = %(only)s)"
                # A comparison's sides are listed by the Compare tab, not among the chats.
                " AND c.comparison_id IS NULL"
                " ORDER BY c.updated_at DESC, c.id LIMIT %(limit)s OFFSET %(offset)s",
                self._p(limit=limit, offset=offset, only=owner),
            )
            return await cur.fetchall()

    @retry_transient
    async def update_conversation(self, conversation_id: uuid.UUID, *, title: str | None = None,
                                  settings: dict[str, Any] | None = None) -> Row:
        """Rename, and/or change settings overrides (already validated; a null value removes
        that override). Merged in one statement, so two changes at once both land."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "UPDATE conversations c SET title = coalesce(%(title)s, title),"
                " settings = coalesce(jsonb_strip_nulls(settings || %(settings)s), settings),"
                " updated_at = clock_timestamp()"
                f" WHERE c.id = %(cid)s AND {OWNED} RETURNING {_CONVERSATION_VIEW}",
                self._p(cid=conversation_id, title=title,
                        settings=Jsonb(settings) if settings is not None else None))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return row

    @retry_transient
    async def delete_conversation(self, conversation_id: uuid.UUID) -> bool:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"DELETE FROM conversations c WHERE c.id = %(cid)s AND {OWNED} RETURNING c.id",
                self._p(cid=conversation_id))
            return await cur.fetchone() is not None

    @retry_transient
    async def search(self, query: str, limit: int = 20) -> list[Row]:
        """Conversations whose messages match `query` (web-search syntax: words, "phrases",
        -excluded, or), best match first, each with its best message and a snippet."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"""
                WITH q AS (SELECT websearch_to_tsquery('english', %(q)s) AS q),
                hits AS (
                    SELECT DISTINCT ON (m.conversation_id) m.conversation_id, m.id, m.content,
                           ts_rank(m.search, q.q) AS rank
                    FROM messages m JOIN conversations c ON c.id = m.conversation_id, q
                    WHERE m.search @@ q.q AND {OWNED}
                    ORDER BY m.conversation_id, rank DESC
                ), top AS (SELECT * FROM hits ORDER BY rank DESC LIMIT %(limit)s)
                SELECT c.id, c.title, c.created_at, c.updated_at, top.id AS message_id,
                       top.rank, ts_headline('english', left(top.content, 20000), q.q,
                       'MaxFragments=1, MaxWords=24, MinWords=8, StartSel=«, StopSel=»')
                       AS snippet
                FROM top JOIN conversations c ON c.id = top.conversation_id, q
                ORDER BY top.rank DESC, c.updated_at DESC
                """,
                self._p(q=query, limit=limit))
            return await cur.fetchall()

    @retry_transient
    async def select_reply(self, reply_id: uuid.UUID) -> Row | None:
        """Make this reply the active one among the replies to its message."""
        async with self.db.connection() as conn:
            async with conn.transaction():
                await self._lock_parent_of(conn, reply_id)
                cur = await conn.execute(
                    f"WITH r AS (SELECT id, parent_id FROM messages m WHERE id = %(rid)s AND"
                    f" role = 'assistant' AND status IN {_ANSWERED} AND {OWNED_MESSAGE}),"
                    # selected_at: the person's own choice (what `active` cannot tell,
                    # migrations/008), which the preference export reads.
                    " u AS (UPDATE messages m SET active = (m.id = %(rid)s), selected_at ="
                    "  CASE WHEN m.id = %(rid)s THEN clock_timestamp() END FROM r"
                    "  WHERE m.parent_id = r.parent_id RETURNING m.*)"
                    f" SELECT {_MESSAGE_COLUMNS} FROM u WHERE id = %(rid)s",
                    self._p(rid=reply_id))
                return await cur.fetchone()

    @staticmethod
    async def _lock_parent_of(conn: Any, reply_id: uuid.UUID) -> None:
        """Serialise changes to which reply of a message is active: two alternatives finishing
        (or being selected) at the same moment would otherwise each deactivate the other's
        committed-before state and both stay active."""
        await conn.execute(
            "SELECT 1 FROM messages WHERE id = (SELECT parent_id FROM messages WHERE id = %s)"
            " FOR NO KEY UPDATE", (reply_id,))

    @retry_transient
    async def branch(self, source_id: uuid.UUID, upto_seq: int, new_id: uuid.UUID,
                     title: str, origin_message_id: uuid.UUID) -> Row:
        """A new conversation holding the source's turns up to `upto_seq`, each user message
        with its active reply, linked to where it came from. Ids derive from the new
        conversation's, so doing it again (a retried request) creates nothing twice. The copy
        is the source's owner's (an admin's branch of someone's conversation stays theirs: it
        leaves with their consent only and goes with their withdrawal); only a conversation
        without an owner (local mode) becomes the caller's."""
        async with self.db.connection() as conn:
            async with conn.transaction():
                cur = await conn.execute(
                    "INSERT INTO conversations (id, title, settings, origin_conversation_id,"
                    " origin_message_id, last_seq, owner_id) SELECT %(new)s, %(title)s,"
                    " settings, id, %(origin)s, %(upto)s, coalesce(c.owner_id, %(owner)s)"
                    f" FROM conversations c WHERE c.id = %(src)s AND {OWNED}"
                    " ON CONFLICT (id) DO NOTHING RETURNING id",
                    self._p(new=new_id, title=title, origin=origin_message_id,
                            upto=upto_seq, src=source_id))
                if await cur.fetchone() is not None:
                    await conn.execute(
                        """
                        INSERT INTO messages (id, conversation_id, seq, role, content,
                            created_at, parent_id, status, error, workflow_id, model,
                            prompt_tokens, completion_tokens, tokens_estimated, ttft_ms,
                            latency_ms, finish_reason, params, completed_at, active)
                        SELECT uuid_from(%(new)s, m.id), %(new)s, m.seq, m.role, m.content,
                            m.created_at,
                            CASE WHEN m.parent_id IS NULL THEN NULL
                                 ELSE uuid_from(%(new)s, m.parent_id) END,
                            m.status, m.error, NULL, m.model, m.prompt_tokens,
                            m.completion_tokens, m.tokens_estimated, m.ttft_ms, m.latency_ms,
                            m.finish_reason, m.params, m.completed_at, m.active
                        FROM messages m WHERE m.conversation_id = %(src)s
                          AND m.seq <= %(upto)s AND (m.role = 'user' OR m.active)
                        ORDER BY m.seq, m.role DESC
                        """,
                        {"new": new_id, "src": source_id, "upto": upto_seq})
                cur = await conn.execute(
                    f"SELECT {_CONVERSATION_VIEW} FROM conversations c"
                    f" WHERE c.id = %(cid)s AND {OWNED}", self._p(cid=new_id))
                row = await cur.fetchone()
        if row is None:
            raise NotFound(f"conversation {source_id} does not exist")
        return row

    @retry_transient
    async def import_conversation(self, conversation: dict[str, Any],
                                  messages: list[dict[str, Any]],
                                  ratings: list[dict[str, Any]] | None = None) -> Row:
        """Write a validated import in one transaction: all of it, or nothing. `ratings`
        (message_id, value, tags, comment, created_at) rate the import's own replies."""
        async with self.db.connection() as conn:
            async with conn.transaction():
                cur = await conn.execute(
                    "INSERT INTO conversations (id, title, settings, last_seq, created_at,"
                    " owner_id) VALUES (%(id)s, %(title)s, %(settings)s, %(last_seq)s,"
                    " coalesce(%(created_at)s, clock_timestamp()), %(owner_id)s)"
                    f" RETURNING {_CONVERSATION_COLUMNS}",
                    {**conversation, "settings": Jsonb(conversation["settings"]),
                     "owner_id": self.person.id})
                row = await cur.fetchone()
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO messages (id, conversation_id, seq, role, content,"
                        " created_at, parent_id, status, error, model, params, active,"
                        " prompt_tokens, completion_tokens, tokens_estimated, ttft_ms,"
                        " latency_ms, finish_reason, completed_at)"
                        " VALUES (%(id)s, %(conversation_id)s, %(seq)s, %(role)s, %(content)s,"
                        " coalesce(%(created_at)s, clock_timestamp()), %(parent_id)s,"
                        " %(status)s, %(error)s, %(model)s, %(params)s, %(active)s,"
                        " %(prompt_tokens)s, %(completion_tokens)s, %(tokens_estimated)s,"
                        " %(ttft_ms)s, %(latency_ms)s, %(finish_reason)s, %(completed_at)s)",
                        [{**m, "params": Jsonb(m["params"]) if m.get("params") else None}
                         for m in messages])
                    if ratings:
                        await cur.executemany(
                            "INSERT INTO ratings (message_id, value, tags, comment, created_at,"
                            " updated_at) VALUES (%(message_id)s, %(value)s, %(tags)s,"
                            " %(comment)s, coalesce(%(created_at)s, clock_timestamp()),"
                            " coalesce(%(created_at)s, clock_timestamp()))", ratings)
        assert row is not None
        return row

    # -- messages ----------------------------------------------------------------------------

    @retry_transient
    async def list_messages(self, conversation_id: uuid.UUID,
                            last_turns: int | None = None) -> list[Row]:
        """Messages of a conversation in reading order: by turn, the user message first, then
        its replies oldest first; only the newest `last_turns` turns if given."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = %(cid)s"
                " AND seq > coalesce((SELECT last_seq FROM conversations c WHERE c.id = %(cid)s"
                f" AND {OWNED}) - %(turns)s, 9223372036854775807)"
                " ORDER BY seq, (role = 'assistant'), created_at, id",
                self._p(cid=conversation_id, turns=last_turns if last_turns else 2**62),
            )
            return await cur.fetchall()

    @retry_transient
    async def get_message(self, message_id: uuid.UUID) -> Row | None:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE id = %(mid)s AND {OWNED_MESSAGE}",
                self._p(mid=message_id))
            return await cur.fetchone()

    @retry_transient
    async def save_user_turn(
        self,
        conversation_id: uuid.UUID,
        workflow_id: str,
        user_id: uuid.UUID,
        reply_id: uuid.UUID,
        content: str,
    ) -> tuple[Row, Row]:
        """Insert the user message at the conversation's next position, and its reply
        placeholder, in one statement (one round trip: this is on every turn's path). Called
        again with the same ids, it returns the rows written the first time."""
        params = {"cid": conversation_id, "uid": user_id, "rid": reply_id, "wid": workflow_id,
                  "content": content, "title": title_from(content)}
        async with self.db.connection() as conn:
            # The UPDATE takes the conversation's row lock: concurrent turns get consecutive
            # seq values in the order they commit.
            cur = await conn.execute(
                f"""
                WITH conv AS (
                    UPDATE conversations SET last_seq = last_seq + 1,
                           updated_at = clock_timestamp(),
                           title = CASE WHEN title = '' THEN %(title)s ELSE title END
                    WHERE id = %(cid)s AND NOT EXISTS (SELECT 1 FROM messages WHERE id = %(uid)s)
                    RETURNING last_seq
                ), u AS (
                    INSERT INTO messages (id, conversation_id, seq, role, content, status,
                                          workflow_id)
                    SELECT %(uid)s, %(cid)s, last_seq, 'user', %(content)s, '{COMPLETE}', %(wid)s
                    FROM conv RETURNING {_MESSAGE_COLUMNS}
                ), r AS (
                    INSERT INTO messages (id, conversation_id, seq, role, parent_id, status,
                                          workflow_id)
                    SELECT %(rid)s, %(cid)s, last_seq, 'assistant', %(uid)s, '{PENDING}', %(wid)s
                    FROM conv ON CONFLICT (id) DO NOTHING RETURNING {_MESSAGE_COLUMNS}
                )
                SELECT * FROM u UNION ALL SELECT * FROM r
                """,
                params,
            )
            rows = {r["id"]: r for r in await cur.fetchall()}
            if user_id in rows and reply_id in rows:
                return rows[user_id], rows[reply_id]
            # Done before (a re-run step, or a fork from step 1), or no such conversation.
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = %s", (user_id,))
            user = await cur.fetchone()
            if user is None:
                raise NotFound(f"conversation {conversation_id} does not exist")
        return user, await self.ensure_reply(user, reply_id, workflow_id)

    @retry_transient
    async def ensure_reply(
        self, user_message: Row, reply_id: uuid.UUID, workflow_id: str
    ) -> Row:
        """The reply placeholder of a turn that answers an existing user message (retry,
        regenerate, fork)."""
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO messages (id, conversation_id, seq, role, parent_id, status,"
                f" workflow_id) VALUES (%s, %s, %s, 'assistant', %s, '{PENDING}', %s)"
                " ON CONFLICT (id) DO NOTHING",
                (
                    reply_id,
                    user_message["conversation_id"],
                    user_message["seq"],
                    user_message["id"],
                    workflow_id,
                ),
            )
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = %s", (reply_id,)
            )
            row = await cur.fetchone()
        assert row is not None
        return row

    @retry_transient
    async def earlier_in_flight(
        self, conversation_id: uuid.UUID, seq: int, workflow_id: str
    ) -> list[Row]:
        """Replies of earlier turns (lower seq) of this conversation that are not finished."""
        self.order_checks += 1
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT id, seq, workflow_id, status FROM messages"
                f" WHERE conversation_id = %s AND seq < %s AND status IN {_IN_FLIGHT}"
                " AND workflow_id <> %s ORDER BY seq",
                (conversation_id, seq, workflow_id),
            )
            return await cur.fetchall()

    @retry_transient
    async def in_flight_replies(self, conversation_id: uuid.UUID) -> list[Row]:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE conversation_id = %(cid)s"
                f" AND status IN {_IN_FLIGHT} AND {OWNED_MESSAGE} ORDER BY seq, created_at",
                self._p(cid=conversation_id),
            )
            return await cur.fetchall()

    @retry_transient
    async def history(
        self, conversation_id: uuid.UUID, upto_seq: int, max_chars: int, page_turns: int = 64
    ) -> list[Row]:
        """The newest turns up to and including `upto_seq`, as (role, content) rows in reading
        order, stopping once `max_chars` of content is collected. Each earlier user message
        contributes its newest complete (or stopped) reply; replies that failed are left out.
        Walks the (conversation_id, seq) index backwards a page at a time, so a 10,000-message
        conversation costs what its newest page costs."""
        collected: list[Row] = []
        total = 0
        high = upto_seq
        async with self.db.connection() as conn:
            while high > 0 and total < max_chars:
                low = max(0, high - page_turns)
                cur = await conn.execute(
                    "SELECT DISTINCT ON (seq, role) seq, role, content FROM messages"
                    " WHERE conversation_id = %s AND seq > %s AND seq <= %s"
                    " AND (role = 'user' OR (seq < %s AND active AND status IN"
                    f"      {_ANSWERED} AND content <> ''))"
                    " ORDER BY seq DESC, role ASC, created_at DESC",
                    (conversation_id, low, high, upto_seq),
                )
                # Newest first, the reply before its question; reversed into reading order below.
                page = await cur.fetchall()
                for row in page:
                    collected.append(row)
                    total += len(row["content"])
                    if total >= max_chars:
                        break
                high = low
        collected.reverse()
        return collected

    @retry_transient
    async def checkpoint_partial(self, reply_id: uuid.UUID, content: str) -> bool:
        """Store the text generated so far; returns True if a stop was requested meanwhile."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"UPDATE messages SET content = %s, status = '{STREAMING}'"
                f" WHERE id = %s AND status IN {_IN_FLIGHT} RETURNING stop_requested",
                (content, reply_id),
            )
            row = await cur.fetchone()
        return bool(row and row["stop_requested"])

    @retry_transient
    async def turn_overrides(self, workflow_id: str) -> dict[str, Any]:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT params FROM turn_overrides WHERE workflow_id = %s", (workflow_id,))
            row = await cur.fetchone()
        return dict(row["params"]) if row else {}

    @retry_transient
    async def save_turn_overrides(self, workflow_id: str, params: dict[str, Any]) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO turn_overrides (workflow_id, params) VALUES (%s, %s)"
                " ON CONFLICT (workflow_id) DO NOTHING", (workflow_id, Jsonb(params)))

    @retry_transient
    async def reply_state(self, reply_id: uuid.UUID) -> Row | None:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT status, content, stop_requested FROM messages WHERE id = %s",
                (reply_id,),
            )
            return await cur.fetchone()

    @retry_transient
    async def notify_stop(self, turn_id: str) -> None:
        """Tell the process running a turn to stop it (its reply row may not exist yet)."""
        async with self.db.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (STOP_CHANNEL, turn_id))

    @retry_transient
    async def request_stop(self, reply_id: uuid.UUID) -> bool:
        """Flag the reply stopped; the process generating it hears so on STOP_CHANNEL and
        stops at once (otherwise at its next checkpoint, which reads the flag)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "UPDATE messages m SET stop_requested = true WHERE id = %(rid)s"
                f" AND status IN {_IN_FLIGHT} AND {OWNED_MESSAGE}"
                " RETURNING id, pg_notify(%(channel)s, coalesce(m.workflow_id, ''))",
                self._p(rid=reply_id, channel=STOP_CHANNEL),
            )
            return await cur.fetchone() is not None

    @retry_transient
    async def finish_reply(self, reply_id: uuid.UUID, **values: Any) -> Row:
        """Write a reply's final state. Idempotent: a repeated call writes the same values."""
        allowed = {
            "content", "status", "error", "model", "prompt_tokens", "completion_tokens",
            "tokens_estimated", "ttft_ms", "latency_ms", "finish_reason", "params",
        }  # fmt: skip
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown reply columns {sorted(unknown)}")
        if "params" in values and values["params"] is not None:
            values["params"] = Jsonb(values["params"])
        assignments = ", ".join(f"{name} = %({name})s" for name in values)
        # A reply that completes (or is stopped) with text becomes the one shown and sent as
        # history; the alternatives it joins are kept. One without text (stopped before its
        # first token) is kept too, but must not hide a good alternative.
        activate = values.get("status") in ANSWERED and bool(values.get("content"))
        async with self.db.connection() as conn, conn.transaction():
            if activate:
                await self._lock_parent_of(conn, reply_id)
            cur = await conn.execute(
                f"WITH r AS (UPDATE messages SET {assignments}, completed_at ="
                f" coalesce(completed_at, clock_timestamp()), active = active OR %(activate)s"
                f" WHERE id = %(reply_id)s RETURNING {_MESSAGE_COLUMNS}),"
                " s AS (UPDATE messages SET active = false WHERE %(activate)s AND parent_id ="
                "  (SELECT parent_id FROM r) AND id <> %(reply_id)s AND active),"
                " c AS (UPDATE conversations SET updated_at = clock_timestamp()"
                "  WHERE id = (SELECT conversation_id FROM r))"
                " SELECT * FROM r",
                {**values, "reply_id": reply_id, "activate": activate},
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"reply {reply_id} does not exist (was its conversation deleted?)")
        return row

    @retry_transient
    async def mark_interrupted(self, reply_ids: Iterable[uuid.UUID], status: str, error: str,
                               content: str | None = None) -> None:
        """Close replies whose workflow ended without finishing them (cancelled), keeping the
        text generated so far when it is known."""
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE messages SET status = %s, error = %s, completed_at = clock_timestamp(),"
                " content = coalesce(%s, content)"
                f" WHERE id = ANY(%s) AND status IN {_IN_FLIGHT}",
                (status, error, content, list(reply_ids)),
            )

    @retry_transient
    async def reopen_reply(self, reply_id: uuid.UUID) -> None:
        """A resumed turn's reply is in flight again."""
        async with self.db.connection() as conn:
            await conn.execute(
                f"UPDATE messages SET status = '{PENDING}', error = NULL, completed_at = NULL,"
                f" stop_requested = false WHERE id = %s AND status = '{CANCELLED}'", (reply_id,))

    @retry_transient
    async def workflow_ids_of_conversation(self, conversation_id: uuid.UUID) -> list[str]:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT workflow_id FROM messages m WHERE conversation_id = %(cid)s"
                f" AND role = 'assistant' AND workflow_id IS NOT NULL AND {OWNED_MESSAGE}"
                " ORDER BY created_at DESC", self._p(cid=conversation_id))
            return [r["workflow_id"] for r in await cur.fetchall()]

    @retry_transient
    async def recent_workflow_ids(self, limit: int, owner: uuid.UUID | None = None
                                  ) -> list[str]:
        """The person's newest turns (an admin's: everyone's, or `owner`'s), by their replies:
        the Workflows tab of someone who must not see the others' turns."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT m.workflow_id FROM messages m JOIN conversations c"
                " ON c.id = m.conversation_id WHERE m.role = 'assistant'"
                # A blind comparison's turns too: the Workflows tab shows no model names.
                f" AND m.workflow_id IS NOT NULL AND {OWNER_ONLY}"
                " AND (%(only)s::uuid IS NULL OR c.owner_id = %(only)s)"
                " ORDER BY m.created_at DESC LIMIT %(limit)s",
                self._p(limit=limit, only=owner))
            return [r["workflow_id"] for r in await cur.fetchall()]

    @retry_transient
    async def replies_of_workflows(self, workflow_ids: list[str]) -> dict[str, Row]:
        """Reply state and conversation of each turn workflow, in one query."""
        if not workflow_ids:
            return {}
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT m.workflow_id, m.conversation_id, m.status, m.error, c.title,"
                " c.owner_id, (SELECT a.name FROM accounts a WHERE a.id = c.owner_id)"
                " AS owner_name, EXISTS (SELECT 1 FROM comparisons k WHERE"
                " k.id = c.comparison_id AND k.winner IS NULL) AS unjudged"
                " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                f" WHERE m.workflow_id = ANY(%(ids)s) AND m.role = 'assistant'"
                f" AND {OWNER_ONLY}",
                self._p(ids=workflow_ids))
            return {r["workflow_id"]: r for r in await cur.fetchall()}
