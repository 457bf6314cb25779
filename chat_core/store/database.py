"""The application's PostgreSQL connection pool.

One async pool per process, created on the event loop that also runs the DBOS workflows (see
runtime.py), so every query of a turn runs on that loop without a thread hop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import engine as sa_engine
from sqlalchemy import event as sa_event

from chat_core.secrets_mask import mask_secrets, mask_url
from chat_core.errors import DatabaseUnavailable

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
    except psycopg.ProgrammingError:
        # The driver's message quotes the malformed part, which may be the password.
        raise DatabaseUnavailable(
            f"DATABASE_URL ({mask_url(url)}) is malformed; percent-encode special characters "
            "in the user name and password (a % is written %25)") from None
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {mask_url(url)}: {_first_line(exc)}; start "
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
    """The error's first line, masked: the rest of a psycopg message (DETAIL, the statement)
    is for the log, not for a message a user sees."""
    text = str(exc).strip()
    return mask_secrets(text.splitlines()[0]) if text else type(exc).__name__


# SQLSTATE classes that mean "the server or the connection went away", not "the query is wrong":
# 08 connection exception, 57P01-57P03 admin shutdown / crash shutdown / cannot connect now,
# 53300 too many connections; and 40P01 deadlock / 40001 serialization failure, where
# PostgreSQL rolled the transaction back and running it again is the documented remedy.
_TRANSIENT_STATES = ("08", "57P01", "57P02", "57P03", "53300", "40P01", "40001")


def is_transient(exc: BaseException) -> bool:
    """True for errors that retrying the same idempotent operation can fix."""
    if isinstance(exc, (DatabaseUnavailable, PoolTimeout)):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = getattr(exc, "sqlstate", None) or ""
        return not state or state.startswith(_TRANSIENT_STATES)
    return False


T = TypeVar("T")


def _gave_up(db: "Database", exc: BaseException) -> str:
    """The message of a DatabaseUnavailable after retrying, which REST bodies, /healthz and
    the chat tab show: it names no URL (that goes to the log, masked)."""
    log.warning("gave up on PostgreSQL at %s after %g s: %s", mask_url(db.url),
                db.retry_for_sec, _first_line(exc))
    state = getattr(exc, "sqlstate", None) or ""
    if state.startswith("40"):  # deadlock or serialization failure, every time until now
        return (f"PostgreSQL kept refusing this change as conflicting with concurrent ones "
                f"for {db.retry_for_sec:g} s; the request can be retried")
    # The driver's reason (host, port, SQL) is in the log line above, not in the body.
    return (f"PostgreSQL has been unreachable for {db.retry_for_sec:g} s; the request can be "
            "retried")


def retry_transient(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Retry an idempotent database operation while PostgreSQL is unreachable (restarting,
    failing over), like DBOS does for its own writes: the turn pauses instead of failing.
    Gives up after Database.retry_for_sec with DatabaseUnavailable."""

    @functools.wraps(fn)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        db: Database = self.db
        deadline = time.monotonic() + db.retry_for_sec
        delay = 0.05
        while True:
            try:
                return await fn(self, *args, **kwargs)
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    if is_transient(exc) and not isinstance(exc, DatabaseUnavailable):
                        raise DatabaseUnavailable(_gave_up(db, exc)) from exc
                    raise
                log.warning("database busy or unavailable (%s); retrying in %.2f s",
                            _first_line(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    return wrapper


def treat_failed_connects_as_disconnects() -> None:
    """Make DBOS wait out a PostgreSQL restart instead of failing the turn.

    DBOS retries its own writes while the database is away, but recognises "away" from the
    error text ("connection failed", SQLSTATE 08...). A connection attempt to a unix socket whose
    server is restarting fails with "connection is bad: ... No such file or directory" and no
    SQLSTATE, which DBOS takes for a real error: the workflow fails and stays PENDING until the
    next start. This SQLAlchemy hook (only DBOS uses SQLAlchemy here) marks any connection-level
    failure without an SQLSTATE as a disconnect, which DBOS retries."""
    if getattr(treat_failed_connects_as_disconnects, "installed", False):
        return

    @sa_event.listens_for(sa_engine.Engine, "handle_error")
    def _disconnect(ctx: Any) -> None:
        error = ctx.original_exception
        if isinstance(error, psycopg.OperationalError) and not getattr(error, "sqlstate", None):
            ctx.is_disconnect = True

    treat_failed_connects_as_disconnects.installed = True  # type: ignore[attr-defined]


class Database:
    """Async connection pool with errors that say what to do when the server is away."""

    def __init__(self, url: str, max_size: int = 20, retry_for_sec: float = 120.0) -> None:
        self.url = psycopg_url(url)
        self.retry_for_sec = retry_for_sec
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"row_factory": dict_row, "autocommit": True},
            # No check on checkout (a round trip per query): a connection that died while
            # PostgreSQL restarted fails once, is discarded, and retry_transient tries again.
            timeout=10,
            reconnect_timeout=300,
            name="chat-app",
        )

    async def open(self, wait_sec: float = 10.0) -> None:
        try:
            await self._pool.open(wait=True, timeout=wait_sec)
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"PostgreSQL at {mask_url(self.url)} did not accept a connection within "
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
            log.warning("no connection from the pool for PostgreSQL at %s within %g s",
                        mask_url(self.url), self._pool.timeout)
            raise DatabaseUnavailable(
                "no PostgreSQL connection available (server down or pool exhausted); the "
                "request can be retried") from exc

    async def ping(self) -> float:
        """Round-trip time of a trivial query, in milliseconds."""
        start = time.perf_counter()  # uvloop's loop.time() counts whole milliseconds
        async with self.connection() as conn:
            await conn.execute("SELECT 1")
        return (time.perf_counter() - start) * 1000.0

    def stats(self) -> dict[str, int]:
        return dict(self._pool.get_stats())
