"""All SQL of accounts, sessions and API tokens (migrations/006_accounts.sql), and the one
statement that hands ownerless conversations to the first admin.

Tokens (session cookies, API tokens) are stored as their SHA-256 only: a copy of the table
cannot be replayed. Every read that admits a person checks, in the same query, that the account
is not disabled and the session has not expired, so a disabled person's cookie is refused even
by a process that has not heard of the change.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg

from chat_core.errors import Conflict
from chat_core.store.database import Database, retry_transient

Row = dict[str, Any]

_COLUMNS = ("id", "name", "is_admin", "source", "disabled_at", "consent_at", "created_at")
_PLAIN = ", ".join(_COLUMNS)
_ACCOUNT = ", ".join(f"a.{c}" for c in _COLUMNS)  # the same, of the account `a`


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- accounts ----------------------------------------------------------------------------

    @retry_transient
    async def sync_config_account(self, name: str, key: str, is_admin: bool) -> Row:
        """The SHARE_AUTH account named `key`, made or updated (admin or not). A person who
        signed up under that name keeps it: Conflict, and the host picks another name."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO accounts (id, name, name_key, is_admin, source)"
                " VALUES (%s, %s, %s, %s, 'config')"
                " ON CONFLICT (name_key) DO UPDATE SET name = EXCLUDED.name,"
                "  is_admin = EXCLUDED.is_admin WHERE accounts.source = 'config'"
                f" RETURNING {_PLAIN}",
                (uuid.uuid4(), name, key, is_admin))
            row = await cur.fetchone()
        if row is None:
            raise Conflict(f"SHARE_AUTH names {name!r}, but a person signed up under that name;"
                           " choose another name for the SHARE_AUTH account")
        return row

    @retry_transient
    async def retire_config_accounts(self, keep: list[uuid.UUID]) -> int:
        """SHARE_AUTH accounts no longer in SHARE_AUTH: no longer admins, their sessions ended
        and tokens revoked (their password was only in the environment, so no login is left)."""
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE accounts SET is_admin = false WHERE source = 'config'"
                " AND NOT (id = ANY(%s)) RETURNING id", (keep,))
            gone = [r["id"] for r in await cur.fetchall()]
            await conn.execute("DELETE FROM sessions WHERE account_id = ANY(%s)", (gone,))
            await conn.execute("UPDATE api_tokens SET revoked_at = clock_timestamp()"
                               " WHERE account_id = ANY(%s) AND revoked_at IS NULL", (gone,))
        return len(gone)

    @retry_transient
    async def insert_signup_account(self, name: str, key: str, password_hash: str) -> Row:
        try:
            async with self.db.connection() as conn:
                cur = await conn.execute(
                    "INSERT INTO accounts (id, name, name_key, password_hash, source)"
                    " VALUES (%s, %s, %s, %s, 'signup')"
                    f" RETURNING {_PLAIN}",
                    (uuid.uuid4(), name, key, password_hash))
                row = await cur.fetchone()
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"the name {name!r} is taken (names are the same whatever their "
                           "case); choose another") from None
        assert row is not None
        return row

    @retry_transient
    async def account_by_key(self, key: str) -> Row | None:
        """The account with this name key, password hash included (for a login)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_ACCOUNT}, a.password_hash FROM accounts a WHERE a.name_key = %s",
                (key,))
            return await cur.fetchone()

    @retry_transient
    async def account_by_id(self, account_id: uuid.UUID) -> Row | None:
        async with self.db.connection() as conn:
            cur = await conn.execute(f"SELECT {_ACCOUNT} FROM accounts a WHERE a.id = %s",
                                     (account_id,))
            return await cur.fetchone()

    @retry_transient
    async def set_password_hash(self, account_id: uuid.UUID, password_hash: str) -> None:
        async with self.db.connection() as conn:
            await conn.execute("UPDATE accounts SET password_hash = %s WHERE id = %s",
                               (password_hash, account_id))

    @retry_transient
    async def set_disabled(self, key: str, disabled: bool) -> Row | None:
        """Disable (ending every session) or enable the account; None if there is none."""
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE accounts a SET disabled_at = CASE WHEN %s THEN"
                "  coalesce(a.disabled_at, clock_timestamp()) END"
                f" WHERE a.name_key = %s RETURNING {_ACCOUNT}", (disabled, key))
            row = await cur.fetchone()
            if row is not None and disabled:
                await conn.execute("DELETE FROM sessions WHERE account_id = %s", (row["id"],))
        return row

    @retry_transient
    async def set_consent(self, account_id: uuid.UUID, accepted: bool) -> datetime | None:
        """Record the acceptance of the notice (now), or its withdrawal."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "UPDATE accounts SET"
                " consent_at = CASE WHEN %(yes)s THEN clock_timestamp() END,"
                " withdrawn_at = CASE WHEN %(yes)s THEN withdrawn_at ELSE clock_timestamp() END"
                " WHERE id = %(id)s RETURNING consent_at", {"yes": accepted, "id": account_id})
            row = await cur.fetchone()
        return row["consent_at"] if row else None

    @retry_transient
    async def list_accounts(self) -> list[Row]:
        async with self.db.connection() as conn:
            cur = await conn.execute(f"SELECT {_ACCOUNT} FROM accounts a ORDER BY a.created_at,"
                                     " a.name_key")
            return await cur.fetchall()

    @retry_transient
    async def claim_unowned(self, owner: uuid.UUID) -> int:
        """Conversations from before accounts (or from local mode) become `owner`'s."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "UPDATE conversations SET owner_id = %s WHERE owner_id IS NULL", (owner,))
            return cur.rowcount

    # -- sessions ----------------------------------------------------------------------------

    @retry_transient
    async def insert_session(self, token_hash: bytes, account_id: uuid.UUID,
                             lifetime: timedelta) -> None:
        async with self.db.connection() as conn:
            await conn.execute("DELETE FROM sessions WHERE expires_at < clock_timestamp()")
            await conn.execute(
                "INSERT INTO sessions (token_hash, account_id, expires_at)"
                " VALUES (%s, %s, clock_timestamp() + %s)", (token_hash, account_id, lifetime))

    @retry_transient
    async def session_account(self, token_hash: bytes) -> Row | None:
        """The account of a live session of an enabled account, or None."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_ACCOUNT} FROM sessions s JOIN accounts a ON a.id = s.account_id"
                " WHERE s.token_hash = %s AND s.expires_at > clock_timestamp()"
                " AND a.disabled_at IS NULL", (token_hash,))
            return await cur.fetchone()

    @retry_transient
    async def delete_session(self, token_hash: bytes) -> None:
        async with self.db.connection() as conn:
            await conn.execute("DELETE FROM sessions WHERE token_hash = %s", (token_hash,))

    # -- API tokens --------------------------------------------------------------------------

    @retry_transient
    async def insert_token(self, token_id: uuid.UUID, account_id: uuid.UUID,
                           token_hash: bytes, name: str) -> Row:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO api_tokens (id, account_id, token_hash, name)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING"
                " RETURNING id, name, created_at, last_used_at",
                (token_id, account_id, token_hash, name))
            row = await cur.fetchone()
        assert row is not None
        return row

    @retry_transient
    async def list_tokens(self, account_id: uuid.UUID) -> list[Row]:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT id, name, created_at, last_used_at FROM api_tokens"
                " WHERE account_id = %s AND revoked_at IS NULL ORDER BY created_at, id",
                (account_id,))
            return await cur.fetchall()

    @retry_transient
    async def revoke_token(self, account_id: uuid.UUID, token_id: uuid.UUID) -> bool:
        """Someone else's token id, like a missing or revoked one, changes nothing: False."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "UPDATE api_tokens SET revoked_at = clock_timestamp() WHERE id = %s"
                " AND account_id = %s AND revoked_at IS NULL", (token_id, account_id))
            return cur.rowcount == 1

    @retry_transient
    async def token_account(self, token_hash: bytes) -> Row | None:
        """The enabled account of a live token, noting that the token was used."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "UPDATE api_tokens t SET last_used_at = clock_timestamp() FROM accounts a"
                " WHERE t.token_hash = %s AND t.revoked_at IS NULL AND a.id = t.account_id"
                f" AND a.disabled_at IS NULL RETURNING {_ACCOUNT}", (token_hash,))
            return await cur.fetchone()
