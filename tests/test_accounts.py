"""Accounts against PostgreSQL: names and passwords (hostile ones included), argon2id hashing,
sign-up with the invite code, sessions that outlive a restart, disabling, API tokens, consent,
and the SHARE_* settings' mistakes.

The module has a database of its own (not the shared migrated_database_url): starting a
directory hands every conversation without an owner to its first admin, which would change
other modules' rows under them.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

from chat_core.accounts.directory import (SIGNUP_OFF, WRONG_INVITE, AccountDirectory,
                                          secret_hash)
from chat_core.accounts.passwords import MAX_PASSWORD_CHARS, check_name, name_key
from chat_core.accounts.person import Person
from chat_core.config import ConfigError, Settings
from chat_core.errors import Conflict, DatabaseUnavailable, InvalidInput, NotFound
from chat_core.store.database import Database
from chat_core.store.migrations import apply_migrations
from tests.helpers import create_database, drop_database, query

T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]

HOST, HOST_PW = "host", "host password long"
INVITE = "workshop-2025-code"


class World:
    """One event loop and one database for the module; directories made on demand, each with
    a pool of its own (a new AccountDirectory on a new pool is what a restart is)."""

    def __init__(self, url: str, runner: asyncio.Runner) -> None:
        self.url = url
        self.runner = runner
        self.pools: list[Database] = []

    def run(self, coro: Awaitable[T]) -> T:
        return self.runner.run(coro)  # type: ignore[arg-type]

    def close_pools(self) -> None:
        while self.pools:
            self.run(self.pools.pop().close())

    def directory(self, **settings: Any) -> AccountDirectory:
        settings.setdefault("share_auth", f"{HOST}:{HOST_PW}")
        settings.setdefault("share_invite", INVITE)
        db = Database(self.url, max_size=2, retry_for_sec=2)
        self.run(db.open())
        self.pools.append(db)
        directory = AccountDirectory(db, Settings(**settings))
        self.run(directory.start())
        return directory


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    url = create_database("accounts")
    asyncio.run(apply_migrations(url))
    with asyncio.Runner() as runner:
        world = World(url, runner)
        try:
            yield world
        finally:
            world.close_pools()
    drop_database(url)


@pytest.fixture(autouse=True)
def _pools_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's pools are closed after it: PostgreSQL's connections are shared with every
    other test run on the machine."""
    yield
    if "world" in request.fixturenames:
        request.getfixturevalue("world").close_pools()


@pytest.fixture()
def accounts(world: World) -> AccountDirectory:
    return world.directory()


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


# -- names and passwords, without a database ------------------------------------------------------

@pytest.mark.parametrize("name", ["", "   ", "a" * 41, "x\x00y", "Robert'); DROP TABLE accounts;--",
                                  "<script>", "a\u202eb", "😀", "tab\there", "x:y", "....",
                                  "\u00a0nbsp"])
def test_hostile_names_are_refused_with_what_to_do(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_name(name)
    assert any(word in refused.value.message for word in ("choose", "letter", "at most"))


@pytest.mark.parametrize("name,shown", [("Zoë", "Zoë"), ("李小龙", "李小龙"),
                                        ("  Ann   Lee ", "Ann Lee"), ("Jose\u0301", "José"),
                                        ("DROP TABLE accounts", "DROP TABLE accounts"),
                                        ("a" * 40, "a" * 40), ("o'neil".replace("'", "_"),
                                                               "o_neil")])
def test_names_in_any_script_are_kept_as_typed(name: str, shown: str) -> None:
    assert check_name(name) == shown


def test_names_are_the_same_whatever_their_case_or_width() -> None:
    assert name_key("Ann") == name_key("ann") == name_key("ＡＮＮ") == name_key(" ANN ")
    assert name_key("Straße") == name_key("STRASSE")
    assert name_key("Ann") != name_key("Anne")


# -- hashing and logins ----------------------------------------------------------------------------

def test_a_signed_up_password_is_stored_as_an_argon2id_hash(world: World,
                                                             accounts: AccountDirectory) -> None:
    name, password = _unique("ada"), "correct horse battery"
    person = world.run(accounts.signup(INVITE, name, password))
    stored = query(world.url, "SELECT password_hash, source FROM accounts WHERE id = %s",
                   (person.id,))[0]
    assert stored[0].startswith("$argon2id$") and password not in stored[0]
    assert stored[1] == "signup"
    assert world.run(accounts.login(name.upper(), password)) == person
    assert world.run(accounts.login(name, password + "x")) is None
    assert world.run(accounts.login(name, "correct horse battery ")) is None


def test_names_are_unique_whatever_their_case_or_width(world: World,
                                                       accounts: AccountDirectory) -> None:
    base = _unique("ann")
    world.run(accounts.signup(INVITE, base, "first password"))
    for lookalike in (base.upper(), base.capitalize(),
                      "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in base)):
        with pytest.raises(Conflict, match="taken"):
            world.run(accounts.signup(INVITE, lookalike, "second password"))
    with pytest.raises(Conflict, match="taken"):  # a SHARE_AUTH name is taken too
        world.run(accounts.signup(INVITE, HOST.upper(), "third password"))


@pytest.mark.parametrize("password,words", [
    ("", "at least 8"), ("short", "at least 8"), ("x" * 10_240, f"at most {MAX_PASSWORD_CHARS}"),
    ("pass\x00word-long", "NUL"), ("bad\ud800surrogate", "surrogate"),
])
def test_hostile_passwords_are_refused_before_any_hashing(
        world: World, accounts: AccountDirectory, password: str, words: str) -> None:
    before = accounts.hashing.hashes
    with pytest.raises(InvalidInput, match=words):
        world.run(accounts.signup(INVITE, _unique("pw"), password))
    assert accounts.hashing.hashes == before
    assert world.run(accounts.login(HOST, password)) is None  # refused, also without a hash
    assert accounts.hashing.hashes == before


@pytest.mark.parametrize("password", ["pässwörd-lang ✓", "' OR '1'='1' --", "密码密码密码密码"])
def test_unicode_and_sql_looking_passwords_are_just_passwords(
        world: World, accounts: AccountDirectory, password: str) -> None:
    name = _unique("uni")
    person = world.run(accounts.signup(INVITE, name, password))
    assert world.run(accounts.login(name, password)) == person
    assert world.run(accounts.login(name, "' OR '1'='1")) is None
    assert query(world.url, "SELECT count(*) FROM accounts WHERE name = %s", (name,))[0][0] == 1


def test_every_login_costs_one_hash_whether_the_name_exists_or_not(
        world: World, accounts: AccountDirectory) -> None:
    """So the time does not tell which names exist: unknown, SHARE_AUTH and signed-up names."""
    name = _unique("timing")
    world.run(accounts.signup(INVITE, name, "signed up password"))
    for who in ("nobody-" + name, HOST, name):
        before = accounts.hashing.hashes
        assert world.run(accounts.login(who, "a wrong password")) is None
        assert accounts.hashing.hashes == before + 1, who
    assert world.run(accounts.login(HOST, HOST_PW)) is not None


# -- sign-up ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [None, "", "wrong code", INVITE + "x", INVITE[:-1], 42])
def test_sign_up_with_a_wrong_or_missing_invite_code_says_the_same(
        world: World, accounts: AccountDirectory, code: object) -> None:
    name = _unique("nocode")
    with pytest.raises(InvalidInput) as refused:
        world.run(accounts.signup(code, name, "good password"))
    assert refused.value.message == WRONG_INVITE
    assert world.run(accounts.person_by_name(name)) is None


def test_sign_up_is_off_without_an_invite_code(world: World) -> None:
    closed = world.directory(share_invite="")
    with pytest.raises(NotFound) as refused:
        world.run(closed.signup(INVITE, _unique("closed"), "good password"))
    assert refused.value.message == SIGNUP_OFF


# -- sessions --------------------------------------------------------------------------------------

def test_a_session_outlives_a_restart_and_logging_out_ends_it(world: World,
                                                              accounts: AccountDirectory) -> None:
    host = world.run(accounts.login(HOST, HOST_PW))
    assert host is not None and host.is_admin
    token = world.run(accounts.create_session(host))
    stored = query(world.url, "SELECT token_hash FROM sessions WHERE account_id = %s", (host.id,))
    assert bytes(stored[-1][0]) == hashlib.sha256(token.encode()).digest()  # never the token
    restarted = world.directory()
    assert world.run(restarted.person_for_session(token)) == host
    world.run(restarted.end_session(token))
    assert world.run(restarted.person_for_session(token)) is None
    assert world.run(world.directory().person_for_session(token)) is None
    for garbage in (None, "", "x" * 10_000, "\x00", token + "x"):
        assert world.run(restarted.person_for_session(garbage)) is None


def test_disabling_ends_sessions_tokens_and_logins(world: World,
                                                   accounts: AccountDirectory) -> None:
    host = world.run(accounts.login(HOST, HOST_PW))
    name, password = _unique("dis"), "disabled password"
    person = world.run(accounts.signup(INVITE, name, password))
    session = world.run(accounts.create_session(person))
    token = world.run(accounts.create_token(person, "script"))["token"]
    assert world.run(accounts.person_for_session(session)) == person  # cached from now on
    world.run(accounts.set_disabled(host, name.upper(), True))
    assert world.run(accounts.person_for_session(session)) is None
    assert world.run(accounts.person_for_token(token)) is None
    assert world.run(accounts.login(name, password)) is None
    assert world.run(accounts.person_by_id(str(person.id))) is None
    assert world.run(world.directory().person_for_session(session)) is None  # another process
    listed = {p["name"]: p for p in world.run(accounts.list_people())}
    assert listed[name]["disabled"] is True and listed[name]["source"] == "signup"
    world.run(accounts.set_disabled(host, name, False))
    assert world.run(accounts.login(name, password)) == person
    assert world.run(accounts.person_for_session(session)) is None  # ended, not paused
    assert world.run(accounts.person_for_token(token)) == person


def test_only_an_admin_disables_and_not_themselves(world: World,
                                                   accounts: AccountDirectory) -> None:
    host = world.run(accounts.login(HOST, HOST_PW))
    assert host is not None
    person = world.run(accounts.signup(INVITE, _unique("plain"), "plain password"))
    with pytest.raises(NotFound):
        world.run(accounts.set_disabled(person, HOST, True))
    with pytest.raises(InvalidInput, match="your own"):
        world.run(accounts.set_disabled(host, HOST, True))
    with pytest.raises(NotFound):
        world.run(accounts.set_disabled(host, "nobody-" + _unique("x"), True))


# -- API tokens ------------------------------------------------------------------------------------

def test_tokens_are_shown_once_stored_hashed_and_revocable(world: World,
                                                           accounts: AccountDirectory) -> None:
    person = world.run(accounts.signup(INVITE, _unique("tok"), "token password"))
    made = world.run(accounts.create_token(person, "notebook"))
    assert made["token"].startswith("dct_") and made["name"] == "notebook"
    listed = world.run(accounts.list_tokens(person))
    assert [t["id"] for t in listed] == [made["id"]] and "token" not in listed[0]
    rows = query(world.url, "SELECT token_hash, name FROM api_tokens WHERE account_id = %s",
                 (person.id,))
    assert bytes(rows[0][0]) == secret_hash(made["token"])
    assert made["token"] not in repr(query(world.url, "SELECT * FROM api_tokens"))
    assert world.run(accounts.person_for_token(made["token"])) == person
    assert world.run(accounts.list_tokens(person))[0]["last_used_at"] is not None
    assert world.run(accounts.revoke_token(person, made["id"])) is True
    assert world.run(accounts.person_for_token(made["token"])) is None
    assert world.run(accounts.revoke_token(person, made["id"])) is False  # already revoked
    assert world.run(accounts.list_tokens(person)) == []


def test_someone_elses_token_id_acts_like_a_missing_one(world: World,
                                                        accounts: AccountDirectory) -> None:
    owner = world.run(accounts.signup(INVITE, _unique("own"), "owner password"))
    other = world.run(accounts.signup(INVITE, _unique("oth"), "other password"))
    made = world.run(accounts.create_token(owner, "mine"))
    for token_id in (made["id"], str(uuid.uuid4()), "not-a-uuid", "'; DELETE FROM api_tokens;--"):
        assert world.run(accounts.revoke_token(other, token_id)) is False
    assert world.run(accounts.person_for_token(made["token"])) == owner
    assert world.run(accounts.list_tokens(other)) == []


@pytest.mark.parametrize("name", [123, "x" * 101, "nul\x00"])
def test_a_hostile_token_name_is_refused(world: World, accounts: AccountDirectory,
                                         name: object) -> None:
    person = world.run(accounts.login(HOST, HOST_PW))
    assert person is not None
    with pytest.raises(InvalidInput):
        world.run(accounts.create_token(person, name))


# -- consent ---------------------------------------------------------------------------------------

def test_consent_is_recorded_with_its_time_and_can_be_withdrawn(
        world: World, accounts: AccountDirectory) -> None:
    person = world.run(accounts.signup(INVITE, _unique("con"), "consent password"))
    assert world.run(accounts.consent_of(person)) is None
    accepted = world.run(accounts.accept_notice(person))
    assert accepted is not None and world.run(world.directory().consent_of(person)) == accepted
    world.run(accounts.withdraw_consent(person))
    assert world.run(accounts.consent_of(person)) is None
    row = query(world.url, "SELECT consent_at, withdrawn_at FROM accounts WHERE id = %s",
                (person.id,))[0]
    assert row[0] is None and row[1] is not None


# -- the settings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("settings,words", [
    ({"share_auth": "", "share_invite": INVITE}, "set SHARE_AUTH=host:password"),
    ({"share_admins": "stranger"}, "SHARE_ADMINS names 'stranger'"),
    ({"share_auth": f"a:{HOST_PW},A:{HOST_PW}"}, "twice"),
    ({"share_auth": f"bad name!:{HOST_PW}"}, "SHARE_AUTH, account 'bad name!'"),
    ({"share_auth": "host:short"}, "shorter than 8"),
    ({"share_invite": "abc"}, "SHARE_INVITE is shorter"),
])
def test_mistakes_in_the_settings_stop_the_start(world: World, settings: dict[str, str],
                                                  words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        world.directory(**settings)


def test_admins_and_unowned_conversations(world: World) -> None:
    cid = uuid.uuid4()
    query(world.url, "INSERT INTO conversations (id, title) VALUES (%s, 'from local mode')"
          " RETURNING id", (cid,))
    directory = world.directory(share_auth=f"{HOST}:{HOST_PW},Bea:bea password,cy:cy password1",
                                share_admins="bea, CY")
    first = directory.first_admin()
    assert first.name == "Bea" and first.is_admin
    owner = query(world.url, "SELECT owner_id FROM conversations WHERE id = %s", (cid,))[0][0]
    assert owner == first.id
    people = {p["name"]: p["admin"] for p in world.run(directory.list_people())}
    assert people["Bea"] and people["cy"] and not people[HOST]
    default = world.directory()  # no SHARE_ADMINS: the first SHARE_AUTH user
    assert default.first_admin().name == HOST
    assert not world.run(default.person_by_name("bea")).is_admin  # type: ignore[union-attr]


def test_an_account_dropped_from_share_auth_loses_its_sessions(world: World) -> None:
    both = world.directory(share_auth=f"{HOST}:{HOST_PW},dora:dora password")
    dora = world.run(both.login("dora", "dora password"))
    assert isinstance(dora, Person)
    session = world.run(both.create_session(dora))
    after = world.directory()  # SHARE_AUTH without dora
    assert world.run(after.person_for_session(session)) is None
    assert world.run(after.login("dora", "dora password")) is None


def test_a_share_auth_name_taken_by_sign_up_stops_the_start(world: World,
                                                           accounts: AccountDirectory) -> None:
    name = _unique("taken")
    world.run(accounts.signup(INVITE, name, "signed up first"))
    with pytest.raises(ConfigError, match="signed up under that name"):
        world.directory(share_auth=f"{HOST}:{HOST_PW},{name.upper()}:host chose this")


def test_a_person_seen_a_moment_ago_is_known_while_the_database_is_away(
        world: World, accounts: AccountDirectory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Their request then gets the app's own answer to the outage (503, retry), not a 401."""
    person = world.run(accounts.signup(INVITE, _unique("away"), "outage password"))
    assert world.run(accounts.person_by_id(str(person.id))) == person

    async def away(*_: object) -> None:
        raise DatabaseUnavailable("PostgreSQL has been unreachable; the request can be retried")

    monkeypatch.setattr(accounts.store, "account_by_id", away)
    later = time.monotonic() + 3600
    monkeypatch.setattr(accounts._people, "clock", lambda: later)  # the entry has expired
    assert world.run(accounts.person_by_id(str(person.id))) == person
    with pytest.raises(DatabaseUnavailable):  # nobody is made up
        world.run(accounts.person_by_id(str(uuid.uuid4())))
