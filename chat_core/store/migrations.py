"""Applies migrations/NNN_name.sql in order, once each, recording them in `schema_migrations`.

Safe when several app processes start at once: the whole run holds a transaction-level advisory
lock, so a second process waits, then finds the migrations applied. Each file runs in the same
transaction as its record, so a failed migration leaves no trace and is retried on next start.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from chat_core.config import PROJECT_ROOT

log = logging.getLogger(__name__)

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# Any constant works; it only has to be the same in every process of this app.
_LOCK_KEY = 0x43484154  # "CHAT"


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migration files sorted by number; a misnamed .sql file is an error, not silently skipped."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        if not _NAME.match(path.name):
            raise ValueError(
                f"migration file {path.name} must be named NNN_lower_snake.sql (e.g. 002_titles.sql)"
            )
        found.append(Migration(path.stem, path.read_text(encoding="utf-8")))
    numbers = [m.name[:3] for m in found]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"two migrations share a number in {directory}: {numbers}")
    return found


async def apply_migrations(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is missing; return the names applied by this call."""
    migrations = discover(directory)
    applied_now: list[str] = []
    async with await psycopg.AsyncConnection.connect(url) as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            await conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    name       text PRIMARY KEY,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            cur = await conn.execute("SELECT name, checksum FROM schema_migrations")
            done = {name: checksum for name, checksum in await cur.fetchall()}
            for migration in migrations:
                if migration.name in done:
                    if done[migration.name] != migration.checksum:
                        log.warning(
                            "migration %s changed after it was applied; the database keeps the "
                            "old version. Put schema changes in a new numbered file.",
                            migration.name,
                        )
                    continue
                log.info("applying migration %s", migration.name)
                await conn.execute(migration.sql)  # type: ignore[arg-type]
                await conn.execute(
                    "INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                    (migration.name, migration.checksum),
                )
                applied_now.append(migration.name)
    return applied_now
