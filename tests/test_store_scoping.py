"""The store's ownership clause, method by method, against a real PostgreSQL (no app, no DBOS):
for every public ChatStore method that takes an id, person B asking with person A's id gets what
a random id gets (NotFound, None, False, nothing) and changes nothing, while A and an admin get
the row. The methods are enumerated from the class: a new public method fails here until it is
given a case below, or is named among the turn workflows' own, unscoped methods (and only they
call it)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

from chat_core.accounts.person import Person
from chat_core.errors import ChatError
from chat_core.states import COMPLETE
from chat_core.store.chat_store import ChatStore
from chat_core.store.database import Database
from tests.ui_fakes import add_accounts

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class World:
    """A conversation of one person's: a finished turn and one in flight."""
    owner: uuid.UUID
    conversation: uuid.UUID
    user: uuid.UUID
    reply: uuid.UUID
    pending: uuid.UUID
    turn: str
    word: str


Case = Callable[[ChatStore, World], Awaitable[Any]]
# Every public method that takes an id (or a person's words), and how to call it.
CASES: dict[str, Case] = {
    "get_conversation": lambda s, w: s.get_conversation(w.conversation),
    "conversation_for_turn": lambda s, w: s.conversation_for_turn(w.conversation),
    "update_conversation": lambda s, w: s.update_conversation(w.conversation, title="mine"),
    "delete_conversation": lambda s, w: s.delete_conversation(w.conversation),
    "list_conversations": lambda s, w: s.list_conversations(1000, 0, owner=w.owner),
    "list_conversation_titles": lambda s, w: _only(w, s.list_conversation_titles(1000)),
    "search": lambda s, w: s.search(w.word),
    "branch": lambda s, w: s.branch(w.conversation, 1, uuid.uuid4(), "copy", w.user),
    "list_messages": lambda s, w: s.list_messages(w.conversation),
    "get_message": lambda s, w: s.get_message(w.reply),
    "select_reply": lambda s, w: s.select_reply(w.reply),
    "in_flight_replies": lambda s, w: s.in_flight_replies(w.conversation),
    "request_stop": lambda s, w: s.request_stop(w.pending),
    "workflow_ids_of_conversation": lambda s, w: s.workflow_ids_of_conversation(
        w.conversation),
    "recent_workflow_ids": lambda s, w: s.recent_workflow_ids(100, owner=w.owner),
    "replies_of_workflows": lambda s, w: s.replies_of_workflows([w.turn]),
}
# They make a row, which is the maker's (test_what_a_person_creates_is_theirs).
CREATES = {"create_conversation", "import_conversation", "scoped"}
# The turn workflows' own steps, on the store made for person.SYSTEM, with ids a person's
# scoped request already reached; the Workflows tab's actions call theirs after its scoped
# check (WorkflowAdmin.get). Nothing else may call them.
UNSCOPED = {
    "save_user_turn": {"turns/workflow.py"}, "ensure_reply": {"turns/workflow.py"},
    "earlier_in_flight": {"turns/workflow.py"}, "history": {"turns/workflow.py"},
    "checkpoint_partial": {"turns/workflow.py"}, "reply_state": {"turns/workflow.py", "turns/queued_order.py"},
    "finish_reply": {"turns/workflow.py"}, "turn_overrides": {"turns/workflow.py"},
    "mark_interrupted": {"turns/workflow.py", "turns/admin.py"},
    "reopen_reply": {"turns/admin.py"}, "save_turn_overrides": {"turns/admin.py"},
    # Reads and changes no row: a notification naming a turn, sent by ChatService.stop_turn
    # once check_turn_visible has passed (and by the turn workers' relay, for the same stop).
    "notify_stop": {"service.py"},
}


@pytest.fixture(scope="module")
def setting(migrated_database_url: str) -> Iterator[tuple[Callable[..., Any], dict[str, Any]]]:
    """One event loop and pool for the module, and stores for two people and an admin."""
    with asyncio.Runner() as runner:
        db = Database(migrated_database_url, max_size=4, retry_for_sec=2)
        runner.run(db.open())
        suffix = uuid.uuid4().hex[:8]
        a, b = Person(uuid.uuid4(), f"a-{suffix}"), Person(uuid.uuid4(), f"b-{suffix}")
        admin = Person(uuid.uuid4(), f"admin-{suffix}", is_admin=True)
        runner.run(add_accounts(db, a, b, admin))
        system = ChatStore(db)
        try:
            yield runner.run, {"a": system.scoped(a), "b": system.scoped(b),
                               "admin": system.scoped(admin), "system": system, "db": db}
        finally:
            runner.run(db.close())


def world(run: Callable[..., Any], system: ChatStore, owner: ChatStore) -> World:
    conversation = run(owner.create_conversation("a private talk"))["id"]
    word = f"heron{uuid.uuid4().hex[:10]}"
    turn = f"turn-{uuid.uuid4()}"
    user, reply = run(system.save_user_turn(conversation, turn, uuid.uuid4(), uuid.uuid4(),
                                            f"the word is {word}"))
    run(system.finish_reply(reply["id"], content="noted", status=COMPLETE))
    _, pending = run(system.save_user_turn(conversation, f"turn-{uuid.uuid4()}", uuid.uuid4(),
                                           uuid.uuid4(), "and another"))
    assert owner.person.id is not None
    return World(owner.person.id, conversation, user["id"], reply["id"], pending["id"], turn,
                 word)


def nobodys() -> World:
    """Ids nobody has."""
    return World(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(),
                 f"turn-{uuid.uuid4()}", f"heron{uuid.uuid4().hex[:10]}")


def outcome(run: Callable[..., Any], call: Awaitable[Any]) -> tuple[str, str]:
    try:
        value = run(call)
    except ChatError as exc:
        return "raised", type(exc).__name__
    return ("nothing", repr(value)) if value in (None, False, [], {}) else ("rows", "")


def snapshot(run: Callable[..., Any], stores: dict[str, Any], w: World) -> Any:
    """All that is stored of a world, as the workflows' store reads it."""
    system: ChatStore = stores["system"]

    async def branches() -> int:
        async with stores["db"].connection() as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM conversations"
                                     " WHERE origin_conversation_id = %s", (w.conversation,))
            row = await cur.fetchone()
        return int(row["n"])

    return (run(system.get_conversation(w.conversation)),
            run(system.list_messages(w.conversation)), run(branches()))


def test_every_public_method_is_scoped_or_the_workflows_own() -> None:
    public = {name for name, _ in inspect.getmembers(ChatStore, inspect.isfunction)
              if not name.startswith("_")}
    unclassified = public - set(CASES) - CREATES - set(UNSCOPED)
    assert not unclassified, (f"new ChatStore methods {sorted(unclassified)}: give each a "
                              "case in CASES (it must answer only the person's rows), or "
                              "name it in UNSCOPED if only the turn workflows call it")
    assert not (set(CASES) | CREATES | set(UNSCOPED)) - public  # no stale names


@pytest.mark.parametrize("name", sorted(UNSCOPED))
def test_only_the_workflows_call_the_unscoped_methods(name: str) -> None:
    callers = {str(path.relative_to(ROOT / "chat_core"))
               for path in (ROOT / "chat_core").rglob("*.py")
               if path.name != "chat_store.py"
               and re.search(rf"\.{name}\(", path.read_text(encoding="utf-8"))}
    assert callers <= UNSCOPED[name], f"{name} is unscoped: called from {callers}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_someone_elses_id_answers_like_a_random_one(
        setting: tuple[Callable[..., Any], dict[str, Any]], name: str) -> None:
    run, stores = setting
    case = CASES[name]
    hers = world(run, stores["system"], stores["a"])
    before = snapshot(run, stores, hers)
    theirs = outcome(run, case(stores["b"], hers))
    missing = outcome(run, case(stores["b"], nobodys()))
    assert theirs == missing, f"B with A's ids: {theirs}; with random ids: {missing}"
    assert theirs[0] != "rows"
    assert snapshot(run, stores, hers) == before, "B's call changed A's rows"
    assert outcome(run, case(stores["admin"], hers))[0] == "rows"  # the admin reaches it
    assert outcome(run, case(stores["a"], world(run, stores["system"], stores["a"])))[0] \
        == "rows"  # and so does its owner


def test_the_lists_hold_only_the_persons_own(
        setting: tuple[Callable[..., Any], dict[str, Any]]) -> None:
    run, stores = setting
    hers = world(run, stores["system"], stores["a"])
    his = world(run, stores["system"], stores["b"])

    def listed(store: ChatStore) -> set[uuid.UUID]:
        rows = {r["id"] for r in run(store.list_conversations(1000))}
        assert rows == {r["id"] for r in run(store.list_conversation_titles(1000))}
        return rows

    assert hers.conversation in listed(stores["a"]) and his.conversation in listed(stores["b"])
    assert hers.conversation not in listed(stores["b"])
    assert his.conversation not in listed(stores["a"])
    assert {hers.conversation, his.conversation} <= listed(stores["admin"])
    assert hers.turn not in run(stores["b"].recent_workflow_ids(1000))
    assert hers.turn in run(stores["admin"].recent_workflow_ids(1000))


def test_what_a_person_creates_is_theirs(
        setting: tuple[Callable[..., Any], dict[str, Any]]) -> None:
    run, stores = setting
    made = run(stores["b"].create_conversation("b's"))
    imported = run(stores["b"].import_conversation(
        {"id": uuid.uuid4(), "title": "imported", "settings": {}, "last_seq": 0,
         "created_at": None}, []))
    for row in (made, imported):
        assert row["owner_id"] == stores["b"].person.id
        assert outcome(run, stores["a"].get_conversation(row["id"])) == ("raised", "NotFound")
        assert run(stores["b"].get_conversation(row["id"]))["id"] == row["id"]


def test_making_someone_elses_conversation_again_answers_like_a_missing_one(
        setting: tuple[Callable[..., Any], dict[str, Any]]) -> None:
    """A conversation's insert retried after a lost answer reads back what it made, scoped: B
    naming A's id gets NotFound, as for an id nobody has, and A's row stays as it was."""
    run, stores = setting
    hers = run(stores["a"].create_conversation("a's"))
    assert outcome(run, stores["b"]._insert_conversation(hers["id"], "b's")) == (
        "raised", "NotFound")
    assert run(stores["a"].get_conversation(hers["id"]))["title"] == "a's"
    assert run(stores["a"]._insert_conversation(hers["id"], "again"))["title"] == "a's"


# -- the other stores of a person's data (ratings, dataset rows) -------------------------------

def _other_stores() -> dict[type, dict[str, Callable[[Any, World], Awaitable[Any]]]]:
    """Every public method of the smaller stores, and how to call it with a world's ids; a new
    method fails test_every_other_store_method_is_classified until it has a case."""
    from chat_core.store.dataset_rows import DatasetRows
    from chat_core.store.ratings import RatingStore

    return {
        RatingStore: {
            "rate": lambda s, w: s.rate(w.conversation, w.reply, 1, ["t"], "c"),
            "unrate": lambda s, w: s.unrate(w.conversation, w.reply),
            "of_reply": lambda s, w: s.of_reply(w.conversation, w.reply),
            "of_conversation": lambda s, w: s.of_conversation(w.conversation),
        },
        DatasetRows: {
            "conversations": lambda s, w: _only(w, s.conversations(after=None, limit=10_000)),
            "messages": lambda s, w: s.messages([w.conversation]),
        },
    }


# What only the owner does, an admin included: write or take back a rating.
OWNER_ONLY = ("rate", "unrate")


async def _only(w: World, rows: Awaitable[list[Any]]) -> list[Any]:
    """The rows of this world's conversation (the list holds the person's others too)."""
    return [r for r in await rows if r["id"] == w.conversation]


# DatasetRows' votes, by comparison: test_someone_elses_votes_are_not_in_a_dataset.
VOTE_METHODS = {"votes", "vote_pages"}


def test_every_other_store_method_is_classified() -> None:
    for store, cases in _other_stores().items():
        public = {name for name, _ in inspect.getmembers(store, inspect.isfunction)
                  if not name.startswith("_")} - VOTE_METHODS
        assert public == set(cases), f"{store.__name__}: classify {sorted(public ^ set(cases))}"


@pytest.mark.parametrize("store,name", sorted(
    ((store.__name__, name) for store, cases in _other_stores().items() for name in cases)))
def test_someone_elses_rating_or_row_answers_like_a_random_one(
        setting: tuple[Callable[..., Any], dict[str, Any]], store: str, name: str) -> None:
    run, stores = setting
    kind = next(s for s in _other_stores() if s.__name__ == store)
    case = _other_stores()[kind][name]

    def made_for(who: str) -> Any:
        return kind(stores["db"], stores[who].person)

    def ratings(w: World) -> Any:
        return run(kind(stores["db"]).of_conversation(w.conversation)) \
            if store == "RatingStore" else None

    hers = world(run, stores["system"], stores["a"])
    if store == "RatingStore":  # something to find, change or delete
        assert run(made_for("a").rate(hers.conversation, hers.reply, -1, [], "")) is not None
    before = (snapshot(run, stores, hers), ratings(hers))
    theirs = outcome(run, case(made_for("b"), hers))
    missing = outcome(run, case(made_for("b"), nobodys()))
    assert theirs == missing, f"B with A's ids: {theirs}; with random ids: {missing}"
    assert theirs[0] != "rows"
    assert (snapshot(run, stores, hers), ratings(hers)) == before, "B's call changed A's rows"
    for who in ("admin", "a"):  # the admin and the owner reach it
        if store == "RatingStore":
            run(made_for("a").rate(hers.conversation, hers.reply, -1, [], ""))
        if who == "admin" and name in OWNER_ONLY:  # a rating is the owner's own judgement
            before = (snapshot(run, stores, hers), ratings(hers))
            assert outcome(run, case(made_for(who), hers)) == missing, name
            assert (snapshot(run, stores, hers), ratings(hers)) == before
            continue
        assert outcome(run, case(made_for(who), hers))[0] == "rows", who


# -- comparisons (chat_core/store/comparisons.py) and sealed sides -----------------------------

def _side(model: str = "m") -> Any:
    from chat_core.store.comparisons import SideRow
    return SideRow(uuid.uuid4(), model, None, {"model": model})


def _comparison_store(stores: dict[str, Any], who: str) -> Any:
    from chat_core.store.comparisons import ComparisonStore
    return ComparisonStore(stores["db"], stores[who].person)


async def _only_comparison(k: uuid.UUID, rows: Awaitable[list[Any]]) -> list[Any]:
    return [r for r in await rows if r.get("id") == k or r.get("a") == f"label-{k}"]


COMPARISON_CASES: dict[str, Callable[[Any, uuid.UUID], Awaitable[Any]]] = {
    "create": lambda s, k: s.create(k, "taken", False, _side("x"), _side("y")),
    "get": lambda s, k: s.get(k),
    "list": lambda s, k: _only_comparison(k, s.list(1000)),
    "vote": lambda s, k: s.vote(k, "a", 1),
    "battles": lambda s, k: _only_comparison(k, s.battles()),
    "delete": lambda s, k: s.delete(k),
}
# The person's own rows by definition (no id to pass): withdrawal's.
COMPARISON_OWN = {"delete_own", "own_side_conversations"}


def _hers(run: Callable[..., Any], stores: dict[str, Any], voted: bool) -> uuid.UUID:
    k = uuid.uuid4()
    store = _comparison_store(stores, "a")
    a, b = _side("m1"), _side("m2")
    run(store.create(k, "hers", True, dataclasses.replace(a, label=f"label-{k}"), b))
    if voted:
        assert run(store.vote(k, "a", 1))
    return k


def test_every_comparison_store_method_is_classified() -> None:
    from chat_core.store.comparisons import ComparisonStore
    public = {name for name, _ in inspect.getmembers(ComparisonStore, inspect.isfunction)
              if not name.startswith("_")}
    assert public == set(COMPARISON_CASES) | COMPARISON_OWN


@pytest.mark.parametrize("name", sorted(COMPARISON_CASES))
def test_someone_elses_comparison_answers_like_a_random_one(
        setting: tuple[Callable[..., Any], dict[str, Any]], name: str) -> None:
    run, stores = setting
    case = COMPARISON_CASES[name]
    k = _hers(run, stores, voted=name == "battles")
    system = _comparison_store(stores, "system")
    before = run(system.get(k))
    theirs = outcome(run, case(_comparison_store(stores, "b"), k))
    missing = outcome(run, case(_comparison_store(stores, "b"), uuid.uuid4()))
    if name == "create":  # B's create with A's id makes nothing, and shows nothing
        missing = ("nothing", "None")
    assert theirs == missing, f"B with A's id: {theirs}; with a random id: {missing}"
    assert theirs[0] != "rows"
    assert run(system.get(k)) == before, "B's call changed A's comparison"
    for who in ("admin", "a"):
        if name == "create":
            continue
        k = _hers(run, stores, voted=name == "battles")
        assert outcome(run, case(_comparison_store(stores, who), k))[0] == "rows", who


def test_withdrawals_comparison_methods_touch_only_the_persons_own(
        setting: tuple[Callable[..., Any], dict[str, Any]]) -> None:
    run, stores = setting
    k = _hers(run, stores, voted=False)
    theirs = _comparison_store(stores, "b")
    sides = run(_comparison_store(stores, "system").get(k))
    assert not {sides["conversation_a"], sides["conversation_b"]} & set(
        run(theirs.own_side_conversations()))
    run(theirs.delete_own())
    assert run(_comparison_store(stores, "system").get(k)) is not None
    assert {sides["conversation_a"], sides["conversation_b"]} <= set(
        run(_comparison_store(stores, "a").own_side_conversations()))


# The Workflows tab lists a sealed side's turns (showing no model): these two see them.
SEES_SEALED_TURNS = {"recent_workflow_ids", "replies_of_workflows"}


@pytest.mark.parametrize("name", sorted(set(CASES) - SEES_SEALED_TURNS))
def test_a_sealed_side_answers_its_owner_like_a_missing_one(
        setting: tuple[Callable[..., Any], dict[str, Any]], name: str) -> None:
    """A blind comparison's side before the vote: every query of the owner's (and an
    admin's) store answers as for an id nobody has; only the system's sees it."""
    run, stores = setting
    k = _hers(run, stores, voted=False)
    side = run(_comparison_store(stores, "system").get(k))["conversation_a"]
    system: ChatStore = stores["system"]
    turn, word = f"turn-{uuid.uuid4()}", f"heron{uuid.uuid4().hex[:10]}"
    user, reply = run(system.save_user_turn(side, turn, uuid.uuid4(), uuid.uuid4(),
                                            f"the word is {word}"))
    run(system.finish_reply(reply["id"], content="noted", status=COMPLETE))
    _, pending = run(system.save_user_turn(side, f"turn-{uuid.uuid4()}", uuid.uuid4(),
                                           uuid.uuid4(), "and another"))
    sealed = World(stores["a"].person.id, side, user["id"], reply["id"], pending["id"], turn,
                   word)
    case = CASES[name] if name != "list_conversations" else \
        (lambda s, w: _only(w, s.list_conversations(1000, 0, owner=w.owner)))
    before = snapshot(run, stores, sealed)
    for who in ("a", "admin"):
        assert outcome(run, case(stores[who], sealed)) == \
            outcome(run, case(stores[who], nobodys())), who
    assert snapshot(run, stores, sealed) == before
    assert run(_comparison_store(stores, "a").vote(k, "a", 1))  # unsealed by the vote
    if not name.startswith("list_conversation"):  # (a side is never among the chats)
        assert outcome(run, case(stores["a"], sealed))[0] == "rows"


def test_someone_elses_votes_are_not_in_a_dataset(
        setting: tuple[Callable[..., Any], dict[str, Any]]) -> None:
    from chat_core.store.dataset_rows import DatasetRows
    run, stores = setting
    k = _hers(run, stores, voted=False)
    row = run(_comparison_store(stores, "system").get(k))
    system: ChatStore = stores["system"]
    for side in ("a", "b"):
        _, reply = run(system.save_user_turn(row[f"conversation_{side}"], f"turn-{uuid.uuid4()}",
                                             uuid.uuid4(), uuid.uuid4(), "which?"))
        run(system.finish_reply(reply["id"], content=f"side {side}", status=COMPLETE))
    assert run(_comparison_store(stores, "a").vote(k, "a", 1))

    def voted(who: str) -> set[uuid.UUID]:
        rows = DatasetRows(stores["db"], stores[who].person)

        async def every_page() -> set[uuid.UUID]:
            return {r["comparison_id"] async for page in rows.vote_pages() for r in page}
        page = run(rows.votes(after=None, limit=10_000))
        assert {r["comparison_id"] for r in page} == run(every_page())
        return {r["comparison_id"] for r in page}

    assert k not in voted("b")
    assert k in voted("a") and k in voted("admin")
