"""Data access for ratings of replies (the ratings table of migrations/007_ratings.sql).

A rating belongs to whoever owns the reply's conversation, and is their judgement. Reading goes
through the store's ownership clause (OWNED_MESSAGE, for the Person the store was made for: an
admin sees everyone's); writing and deleting through OWN_MESSAGE, the owner's own replies only
(an admin rates their own, not in someone else's name). Every query names the conversation the
caller gave: a reply of someone else's, or one in another conversation, is written, read and
deleted exactly as a missing one is (not at all).
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import errors as pg_errors

from chat_core.errors import InvalidInput
from chat_core.states import (IN_FLIGHT, MAX_RATING_COMMENT_CHARS, MAX_RATING_TAG_CHARS,
                              MAX_RATING_TAGS, RATING_VALUES, sql_list)
from chat_core.store.chat_store import OWNED_MESSAGE, Row, iso
from chat_core.store.database import retry_transient
from chat_core.validation import check_text, visible
from chat_core.store.scoped import PersonScoped

RATING_COLUMNS = "r.message_id, r.value, r.tags, r.comment, r.created_at, r.updated_at"
# The message `m` is in a conversation of the person's own (whoever sees all, admins too, is
# held to their own); the local person and the system, who have no account, own everything.
OWN_MESSAGE = ("((%(owner)s::uuid IS NULL AND %(sees_all)s) OR EXISTS (SELECT 1 FROM"
               " conversations c WHERE c.id = m.conversation_id AND c.owner_id = %(owner)s))")


def check_rating(value: Any, tags: Any = None, comment: Any = None
                 ) -> tuple[int, list[str], str]:
    """A rating as every entry point takes it (REST, the chat's thumbs, an import): `value`
    1 (up), -1 (down) or 0 (remove it); up to MAX_RATING_TAGS tags of 1 to
    MAX_RATING_TAG_CHARS characters, each showing something (trimmed, repeats dropped;
    validation.visible); a comment up to
    MAX_RATING_COMMENT_CHARS. Each failure says what to send instead."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in (0, *RATING_VALUES):
        raise InvalidInput('"value" must be 1 (thumbs up), -1 (thumbs down) or 0 (remove the '
                           f"rating), got {str(value)[:20]!r}", field="value")
    if tags is None:
        tags = []
    if not isinstance(tags, list):
        raise InvalidInput('"tags" must be a list of short texts, such as ["accurate", '
                           '"too long"]', field="tags")
    if len(tags) > MAX_RATING_TAGS:
        raise InvalidInput(f'"tags" holds {len(tags)} tags; the limit is {MAX_RATING_TAGS}',
                           field="tags", limit=MAX_RATING_TAGS)
    kept: list[str] = []
    for i, tag in enumerate(tags):
        text = check_text(tag, f"tags[{i}]", MAX_RATING_TAG_CHARS).strip()
        if not visible(text):
            raise InvalidInput(f"'tags[{i}]' has no visible character (only spaces or "
                               "invisible ones, such as a zero-width space); write a word, "
                               'such as "accurate", or leave the tag out', field="tags")
        if text not in kept:
            kept.append(text)
    if comment is None:
        comment = ""
    comment = check_text(comment, "comment", MAX_RATING_COMMENT_CHARS, allow_empty=True)
    return value, kept, comment


def public_rating(row: Row | None) -> dict[str, Any] | None:
    """The JSON shape of a rating (None: not rated)."""
    if row is None:
        return None
    return {"value": row["value"], "tags": list(row["tags"] or []), "comment": row["comment"],
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}


class RatingStore(PersonScoped):
    """The ratings of the replies `person` can see (an admin's: everyone's); those of the
    person's own replies to write."""

    @retry_transient
    async def rate(self, conversation_id: uuid.UUID, message_id: uuid.UUID, value: int,
                   tags: list[str], comment: str) -> Row | None:
        """Write (or replace) the rating of a finished reply in this conversation; None when
        there is no such reply of the person's own. The caller has checked the values (the
        table's CHECKs are the backstop)."""
        try:
            async with self.db.connection() as conn:
                cur = await conn.execute(
                    "INSERT INTO ratings AS r (message_id, value, tags, comment)"
                    " SELECT m.id, %(value)s, %(tags)s, %(comment)s FROM messages m"
                    " WHERE m.id = %(mid)s AND m.conversation_id = %(cid)s"
                    f" AND m.role = 'assistant' AND m.status NOT IN {sql_list(IN_FLIGHT)}"
                    f" AND {OWN_MESSAGE}"
                    " ON CONFLICT (message_id) DO UPDATE SET value = EXCLUDED.value,"
                    " tags = EXCLUDED.tags, comment = EXCLUDED.comment,"
                    f" updated_at = clock_timestamp() RETURNING {RATING_COLUMNS}",
                    self._p(mid=message_id, cid=conversation_id, value=value, tags=tags,
                            comment=comment))
                return await cur.fetchone()
        except pg_errors.ForeignKeyViolation:
            return None  # the reply was deleted (with its conversation) meanwhile

    @retry_transient
    async def unrate(self, conversation_id: uuid.UUID, message_id: uuid.UUID) -> bool:
        """Delete the rating of this reply; False when it had none, or is not the person's."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM ratings r USING messages m WHERE r.message_id = m.id"
                " AND m.id = %(mid)s AND m.conversation_id = %(cid)s"
                f" AND {OWN_MESSAGE} RETURNING r.message_id",
                self._p(mid=message_id, cid=conversation_id))
            return await cur.fetchone() is not None

    @retry_transient
    async def of_reply(self, conversation_id: uuid.UUID, message_id: uuid.UUID) -> Row | None:
        """The rating of one reply in this conversation (None: unrated, or not one the
        person can see)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {RATING_COLUMNS} FROM ratings r JOIN messages m ON m.id = r.message_id"
                f" WHERE m.id = %(mid)s AND m.conversation_id = %(cid)s AND {OWNED_MESSAGE}",
                self._p(mid=message_id, cid=conversation_id))
            return await cur.fetchone()

    @retry_transient
    async def of_conversation(self, conversation_id: uuid.UUID) -> dict[uuid.UUID, Row]:
        """The ratings of a conversation's replies, by reply id (empty for a conversation the
        person cannot see)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {RATING_COLUMNS} FROM ratings r JOIN messages m ON m.id = r.message_id"
                f" WHERE m.conversation_id = %(cid)s AND {OWNED_MESSAGE}",
                self._p(cid=conversation_id))
            return {row["message_id"]: row for row in await cur.fetchall()}
