"""The application's PostgreSQL connection pool.

One async pool per process, created on the event loop that also runs the DBOS workflows (see
runtime.py), so every query of a turn runs on that loop without a thread hop.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .config import redact_url
from .errors import DatabaseUnavailable

log = logging.getLogger(__name__)


def psycopg_url(url: str) -> str:
    """psycopg wants postgresql://; SQLAlchemy-style driver suffixes are dropped."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_url(url: str) -> str:
    """DBOS builds its engine with SQLAlchemy; name the psycopg 3 driver explicitly."""
    return "postgresql+psycopg://" + psycopg_url(url)[len("postgresql://") :]


async def ensure_database_exists(url: str) -> bool:
    """Create the database named in `url` if it is missing (as DBOS does for its own); returns
    True if it was created. Two processes racing here is fine: the loser sees it exists."""
    url = psycopg_url(url)
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=10)
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {_first_line(exc)}; start "
                "the server or fix DATABASE_URL (unset it to use the embedded database)"
            ) from exc
    else:
        await conn.close()
        return False
    params = conninfo_to_dict(url)
    dbname = str(params.get("dbname"))
    params["dbname"] = "postgres"
    async with await psycopg.AsyncConnection.connect(
        make_conninfo(**params), autocommit=True  # type: ignore[arg-type]
    ) as admin:
        try:
            await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        except psycopg.errors.DuplicateDatabase:
            return False
    log.info("created database %s", dbname)
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Database:
    """Async connection pool with errors that say what to do when the server is away."""

    def __init__(self, url: str, max_size: int = 20) -> None:
        self.url = psycopg_url(url)
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"row_factory": dict_row, "autocommit": True},
            # A connection that died while PostgreSQL restarted is replaced, not handed out.
            check=AsyncConnectionPool.check_connection,
            timeout=30,
            reconnect_timeout=300,
            name="chat-app",
        )

    async def open(self, wait_sec: float = 10.0) -> None:
        try:
            await self._pool.open(wait=True, timeout=wait_sec)
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"PostgreSQL at {redact_url(self.url)} did not accept a connection within "
                f"{wait_sec:.0f} s; start it (pg_ctlcluster <version> main start) or fix "
                "DATABASE_URL, or unset DATABASE_URL to use the embedded database"
            ) from exc

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        """A pooled autocommit connection; use `async with conn.transaction()` for atomic work."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"no PostgreSQL connection available from {redact_url(self.url)} "
                "(server down or pool exhausted); the request can be retried"
            ) from exc

    async def ping(self) -> float:
        """Round-trip time of a trivial query, in milliseconds."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with self.connection() as conn:
            await conn.execute("SELECT 1")
        return (loop.time() - start) * 1000.0

    def stats(self) -> dict[str, int]:
        return dict(self._pool.get_stats())
