"""What a turn's database writes do when PostgreSQL reports a conflict or goes away: retried
while it may clear, then an error that names the cause and says the request can be retried."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from chat_core.store.database import retry_transient
from chat_core.errors import DatabaseUnavailable


class _Store:
    """The shape retry_transient wraps: an object with `db`, whose methods raise as told."""

    def __init__(self, errors: list[BaseException], retry_for_sec: float = 0.4) -> None:
        self.db = type("Db", (), {"url": "postgresql://chat:secret@db.example:5432/chat",
                                  "retry_for_sec": retry_for_sec})()
        self.errors = errors
        self.calls = 0

    @retry_transient
    async def write(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "written"


def test_a_deadlock_that_clears_is_retried_and_the_write_lands() -> None:
    store = _Store([psycopg.errors.DeadlockDetected("deadlock detected"),
                    psycopg.errors.SerializationFailure("could not serialize access")])
    assert asyncio.run(store.write()) == "written"
    assert store.calls == 3


def test_a_conflict_that_never_clears_says_so_not_unreachable() -> None:
    store = _Store([psycopg.errors.DeadlockDetected("deadlock detected")] * 100)
    with pytest.raises(DatabaseUnavailable) as caught:
        asyncio.run(store.write())
    message = caught.value.message
    assert "conflicting with concurrent" in message and "unreachable" not in message
    assert "deadlock detected" not in message and "can be retried" in message
    assert "secret" not in message  # the URL's password is not shown
    assert store.calls > 2


def test_a_lost_connection_is_reported_as_unreachable() -> None:
    store = _Store([psycopg.OperationalError("connection refused")] * 100)
    with pytest.raises(DatabaseUnavailable) as caught:
        asyncio.run(store.write())
    assert "has been unreachable" in caught.value.message
    assert "secret" not in caught.value.message


def test_a_real_error_is_not_retried() -> None:
    store = _Store([psycopg.errors.UniqueViolation("duplicate key")])
    with pytest.raises(psycopg.errors.UniqueViolation):
        asyncio.run(store.write())
    assert store.calls == 1
