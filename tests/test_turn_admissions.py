"""Per-person turn limits (share mode) against a real PostgreSQL: a burst arriving together is
held to the limit exactly, a repeated request is the turn already admitted, and the answer says
when to try again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

from chat_core.accounts.person import Person
from chat_core.states import COMPLETE
from chat_core.store.chat_store import ChatStore
from chat_core.store.database import Database
from chat_core.store.turn_admissions import Refusal, TurnAdmissions

T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]


@pytest.fixture(scope="module")
def env(migrated_database_url: str) -> Iterator[tuple[Database, Run]]:
    with asyncio.Runner() as runner:
        db = Database(migrated_database_url, max_size=12, retry_for_sec=2)
        runner.run(db.open())
        try:
            yield db, runner.run
        finally:
            runner.run(db.close())


def _person(db: Database, run: Run, admin: bool = False) -> Person:
    pid = uuid.uuid4()

    async def insert() -> None:
        async with db.connection() as conn:
            await conn.execute(
                "INSERT INTO accounts (id, name, name_key, source, is_admin)"
                " VALUES (%s, %s, %s, 'signup', %s)", (pid, f"p{pid}", f"p{pid}", admin))
    run(insert())
    return Person(pid, f"p{pid}", admin)


def _admit(admissions: TurnAdmissions, person: Person, cid: uuid.UUID, *, in_flight: int = 4,
           per_minute: int = 20, workflow_id: str | None = None) -> Awaitable[Refusal | None]:
    assert person.id is not None
    return admissions.admit(person.id, workflow_id or f"turn-{uuid.uuid4()}", cid, uuid.uuid4(),
                            max_in_flight=in_flight, per_minute=per_minute)


def test_a_burst_is_held_to_the_in_flight_limit_exactly(env: tuple[Database, Run]) -> None:
    db, run = env
    person = _person(db, run)
    cid = run(ChatStore(db).scoped(person).create_conversation())["id"]
    admissions = TurnAdmissions(db)

    async def burst() -> list[Any]:
        return await asyncio.gather(*[_admit(admissions, person, cid) for _ in range(12)])
    results = run(burst())
    assert sum(r is None for r in results) == 4
    refused = [r for r in results if r is not None]
    assert {r.reason for r in refused} == {"in_flight"} and all(r.retry_after_sec >= 1
                                                                for r in refused)
    # Another person is not affected by the first one's burst.
    other = _person(db, run)
    other_cid = run(ChatStore(db).scoped(other).create_conversation())["id"]
    assert run(_admit(admissions, other, other_cid)) is None


def test_a_finished_reply_frees_its_place_and_a_repeat_is_not_counted(
        env: tuple[Database, Run]) -> None:
    db, run = env
    person = _person(db, run)
    store = ChatStore(db).scoped(person)
    cid = run(store.create_conversation())["id"]
    admissions = TurnAdmissions(db)
    wid = f"turn-{uuid.uuid4()}"
    user_id, reply_id = uuid.uuid4(), uuid.uuid4()
    assert run(admissions.admit(person.id, wid, cid, reply_id, max_in_flight=1,  # type: ignore
                                per_minute=20)) is None
    # The same turn again (a retried request with its Idempotency-Key): admitted, not counted.
    assert run(admissions.admit(person.id, wid, cid, reply_id, max_in_flight=1,  # type: ignore
                                per_minute=20)) is None
    refusal = run(_admit(admissions, person, cid, in_flight=1))
    assert refusal is not None and refusal.reason == "in_flight"
    # The turn's rows appear and its reply is finished: the place is free again.
    system = ChatStore(db)
    run(system.save_user_turn(cid, wid, user_id, reply_id, "hello"))
    refusal = run(_admit(admissions, person, cid, in_flight=1))
    assert refusal is not None and refusal.reason == "in_flight"
    run(system.finish_reply(reply_id, content="hi", status=COMPLETE))
    assert run(_admit(admissions, person, cid, in_flight=1)) is None


def test_turns_per_minute_answer_when_to_try_again(env: tuple[Database, Run]) -> None:
    db, run = env
    person = _person(db, run)
    cid = run(ChatStore(db).scoped(person).create_conversation())["id"]
    admissions = TurnAdmissions(db)
    for _ in range(3):
        assert run(_admit(admissions, person, cid, in_flight=100, per_minute=3)) is None
    refusal = run(_admit(admissions, person, cid, in_flight=100, per_minute=3))
    assert refusal is not None and refusal.reason == "per_minute" and refusal.limit == 3
    assert 55 <= refusal.retry_after_sec <= 60


def test_deleting_a_conversation_does_not_reset_the_count(env: tuple[Database, Run]) -> None:
    db, run = env
    person = _person(db, run)
    store = ChatStore(db).scoped(person)
    cid = run(store.create_conversation())["id"]
    admissions = TurnAdmissions(db)
    for _ in range(3):
        assert run(_admit(admissions, person, cid, in_flight=100, per_minute=3)) is None
    assert run(store.delete_conversation(cid))
    fresh = run(store.create_conversation())["id"]
    refusal = run(_admit(admissions, person, fresh, in_flight=100, per_minute=3))
    assert refusal is not None and refusal.reason == "per_minute"
    # The deleted conversation's turns no longer count as in flight (they were cancelled).
    assert run(_admit(admissions, person, fresh, in_flight=1, per_minute=100)) is None
    assert len(run(admissions.turns_of(person.id))) == 4  # type: ignore[arg-type]


def test_a_rerun_counts_against_turns_in_flight_only(env: tuple[Database, Run]) -> None:
    db, run = env
    person = _person(db, run)
    cid = run(ChatStore(db).scoped(person).create_conversation())["id"]
    admissions = TurnAdmissions(db)
    first = f"turn-{uuid.uuid4()}"
    assert run(_admit(admissions, person, cid, in_flight=1, per_minute=1,
                      workflow_id=first)) is None
    # Resuming a turn already admitted: its own row is not counted against it, but another
    # turn in flight is, whatever the per-minute count says.
    assert run(admissions.admit(person.id, first, cid, uuid.uuid4(),  # type: ignore[arg-type]
                                max_in_flight=1, per_minute=1, rerun=True)) is None
    second = f"turn-{uuid.uuid4()}"
    refusal = run(admissions.admit(person.id, second, cid, uuid.uuid4(),  # type: ignore
                                   max_in_flight=1, per_minute=1, rerun=True))
    assert refusal is not None and refusal.reason == "in_flight"
