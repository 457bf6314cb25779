"""Who a request is: accounts, their logins, sessions, API tokens and consent.

One AccountDirectory per process, started after the database (runtime.py). Its answers are
`Person`s, which the store and the service are scoped by. Sessions and tokens live in
PostgreSQL (a restart does not log anyone out); each is known to the server only by its
SHA-256. Lookups are cached for SESSION_CACHE_SEC, so other processes see a disabled account
or a revoked token within seconds, this one at once.

Timing tells nothing about which names exist: an unknown name costs one argon2 verification
of a dummy hash, like a real one; a SHARE_AUTH account's password stays in the environment and
is compared in memory in constant time, after the same dummy verification. Guessing is
throttled by the caller (web layer) before any of this runs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Hashable, TypeVar

from chat_core.accounts.account_store import AccountStore, Row
from chat_core.accounts.config_accounts import ConfigAccount, config_accounts, first_admin_key
from chat_core.accounts.expiring_cache import ExpiringCache
from chat_core.accounts.passwords import (Hashing, check_name, check_password, name_key,
                                          usable_password)
from chat_core.accounts.person import Person
from chat_core.config import ConfigError, Settings
from chat_core.errors import Conflict, DatabaseUnavailable, InvalidInput, NotFound
from chat_core.store.database import Database
from chat_core.store.chat_store import iso

log = logging.getLogger(__name__)
V = TypeVar("V")

SESSION_CACHE_SEC = 5.0
MAX_SECRET_CHARS = 200  # longer than any session or API token this app makes
MAX_TOKENS_PER_PERSON = 50
MAX_TOKEN_NAME_CHARS = 100
API_TOKEN_PREFIX = "dct_"  # recognisable in a leaked file or a secret scanner
WRONG_INVITE = "the invite code is missing or wrong; ask the host for it"
SIGNUP_OFF = "sign-up is off on this app (no SHARE_INVITE); ask the host for an account"
_NO_ACCOUNTS = "API tokens need accounts (SHARE_AUTH); without them the API needs no token"


def secret_hash(secret: str) -> bytes:
    """What the database keeps of a session cookie or an API token."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def person_of(row: Row) -> Person:
    return Person(row["id"], row["name"], bool(row["is_admin"]))


class AccountDirectory:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.settings = settings
        self.store = AccountStore(db)
        self.hashing = Hashing()
        self._config: dict[str, ConfigAccount] = {}
        self._first_admin: Person | None = None
        self._sessions: ExpiringCache[Person | None] = ExpiringCache(SESSION_CACHE_SEC)
        self._tokens: ExpiringCache[Person | None] = ExpiringCache(SESSION_CACHE_SEC)
        self._people: ExpiringCache[Person | None] = ExpiringCache(SESSION_CACHE_SEC)
        self._consent: ExpiringCache[datetime | None] = ExpiringCache(SESSION_CACHE_SEC)

    # -- start -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Make or update the SHARE_AUTH accounts and admins, retire the ones SHARE_AUTH no
        longer names, and give every conversation without an owner to the first admin."""
        accounts = config_accounts(self.settings)
        first_key = first_admin_key(self.settings)
        kept = []
        for account in accounts:
            try:
                row = await self.store.sync_config_account(account.name, account.key,
                                                           account.is_admin)
            except Conflict as exc:
                raise ConfigError(exc.message) from None
            kept.append(row["id"])
            if account.key == first_key:
                self._first_admin = person_of(row)
        self._config = {a.key: a for a in accounts}
        retired = await self.store.retire_config_accounts(kept)
        if retired:
            log.info("%d SHARE_AUTH account(s) no longer configured: sessions ended", retired)
        if self._first_admin is not None:
            claimed = await self.store.claim_unowned(self._first_admin.id)  # type: ignore[arg-type]
            if claimed:
                log.info("%d conversation(s) without an owner given to %s", claimed,
                         self._first_admin.name)

    def first_admin(self) -> Person:
        if self._first_admin is None:
            raise ConfigError("no admin: set SHARE_AUTH=host:password (and start the directory)")
        return self._first_admin

    # -- logins ------------------------------------------------------------------------------

    async def login(self, name: str, password: str) -> Person | None:
        """The person these credentials name, or None (wrong, unknown or disabled alike, in the
        same time). Throttling guesses is the caller's job, before calling this."""
        secret = usable_password(password)
        if secret is None:  # too long, NUL...: no account has it, and no hash is spent on it
            return None
        key = _key_or_none(name)
        row = await self.store.account_by_key(key) if key else None
        configured = self._config.get(key or "") if row and row["source"] == "config" else None
        if configured is not None:
            await self.hashing.verify(None, secret)  # the same time as a real verification
            ok = hmac.compare_digest(secret.encode(), configured.password.encode())
        else:
            ok = await self.hashing.verify(row["password_hash"] if row else None, secret)
        if not ok or row is None or row["disabled_at"] is not None:
            return None
        if row["password_hash"] and self.hashing.needs_rehash(row["password_hash"]):
            await self.store.set_password_hash(row["id"], await self.hashing.hash(secret))
        return person_of(row)

    def invite_matches(self, code: object) -> bool:
        """Whether `code` is SHARE_INVITE, compared in constant time (False when sign-up is
        off)."""
        invite = self.settings.share_invite
        if not invite or not isinstance(code, str):
            return False
        given = code.strip().encode("utf-8", "surrogatepass")
        return hmac.compare_digest(given, invite.encode())

    async def signup(self, invite_code: object, name: object, password: object) -> Person:
        """A new account with the invite code; InvalidInput (one message for a wrong and a
        missing code), Conflict for a name that is taken."""
        if not self.settings.share_invite:
            raise NotFound(SIGNUP_OFF)
        if not self.invite_matches(invite_code):
            raise InvalidInput(WRONG_INVITE)
        shown, secret = check_name(name), check_password(password)
        key = name_key(shown)
        if await self.store.account_by_key(key) is not None:  # refused before hashing
            raise Conflict(f"the name {shown!r} is taken (names are the same whatever their "
                           "case); choose another")
        row = await self.store.insert_signup_account(shown, key, await self.hashing.hash(secret))
        log.info("signed up: %s", shown)
        return person_of(row)

    # -- sessions ----------------------------------------------------------------------------

    async def create_session(self, person: Person) -> str:
        """A new browser session; the token goes in the cookie, its hash in the database."""
        token = secrets.token_urlsafe(32)
        await self.store.insert_session(secret_hash(token), _id(person),
                                        timedelta(days=self.settings.share_session_days))
        return token

    async def person_for_session(self, token: str | None) -> Person | None:
        if not token or len(token) > MAX_SECRET_CHARS:
            return None
        digest = secret_hash(token)
        return await _cached(self._sessions, digest, lambda: self.store.session_account(digest),
                             _person_or_none)

    async def end_session(self, token: str | None) -> None:
        if not token or len(token) > MAX_SECRET_CHARS:
            return
        digest = secret_hash(token)
        self._sessions.pop(digest)
        await self.store.delete_session(digest)

    # -- API tokens --------------------------------------------------------------------------

    async def create_token(self, person: Person, name: object) -> dict[str, Any]:
        """A new API token: the only time its text is shown; only its hash is kept."""
        label = _token_name(name)
        account = _id(person)
        if len(await self.store.list_tokens(account)) >= MAX_TOKENS_PER_PERSON:
            raise Conflict(f"you have {MAX_TOKENS_PER_PERSON} API tokens; revoke one you no "
                           "longer use first")
        token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = await self.store.insert_token(uuid.uuid4(), account, secret_hash(token), label)
        return {**_public_token(row), "token": token}

    async def list_tokens(self, person: Person) -> list[dict[str, Any]]:
        if person.id is None:
            return []
        return [_public_token(r) for r in await self.store.list_tokens(person.id)]

    async def revoke_token(self, person: Person, token_id: str) -> bool:
        """False for a missing, revoked or someone else's id alike."""
        parsed = _uuid_or_none(token_id)
        if parsed is None or person.id is None:
            return False
        revoked = await self.store.revoke_token(person.id, parsed)
        if revoked:
            self._tokens.clear()  # the text is unknown here: forget every cached token
        return revoked

    async def person_for_token(self, token: str | None) -> Person | None:
        if not token or len(token) > MAX_SECRET_CHARS:
            return None
        digest = secret_hash(token)
        return await _cached(self._tokens, digest, lambda: self.store.token_account(digest),
                             _person_or_none)

    # -- people ------------------------------------------------------------------------------

    async def person_by_id(self, account_id: str) -> Person | None:
        """The enabled person with this id (gr.Request.username holds it), or None."""
        parsed = _uuid_or_none(account_id)
        if parsed is None:
            return None
        return await _cached(self._people, parsed, lambda: self.store.account_by_id(parsed),
                             _enabled_person)

    async def person_by_name(self, name: object) -> Person | None:
        """The person with this name (any case, NFKC), disabled or not: an admin's owner
        filter still finds a disabled person's data."""
        key = _key_or_none(name)
        row = await self.store.account_by_key(key) if key else None
        return person_of(row) if row else None

    async def set_disabled(self, admin: Person, name: str, disabled: bool) -> dict[str, Any]:
        """An admin disables (ending every session; tokens and Basic stop working) or enables
        a person. NotFound for a non-admin, as for a missing person."""
        key = _key_or_none(name)
        if not admin.is_admin or admin.id is None or key is None:
            raise NotFound(f"no person named {str(name)[:60]!r}")
        if disabled and name_key(admin.name) == key:
            raise InvalidInput("you cannot disable your own account; ask another admin")
        row = await self.store.set_disabled(key, disabled)
        if row is None:
            raise NotFound(f"no person named {str(name)[:60]!r}")
        for cache in (self._sessions, self._tokens, self._people):
            cache.clear()
        log.info("%s %s %s", admin.name, "disabled" if disabled else "enabled", row["name"])
        return _public_person(row)

    async def list_people(self) -> list[dict[str, Any]]:
        """Every account, for admins (the route checks who asks)."""
        return [_public_person(r) for r in await self.store.list_accounts()]

    # -- consent -----------------------------------------------------------------------------

    async def accept_notice(self, person: Person) -> datetime | None:
        if person.id is None:
            return None
        return self._consent.put(person.id, await self.store.set_consent(person.id, True))

    async def withdraw_consent(self, person: Person) -> None:
        if person.id is not None:
            self._consent.put(person.id, await self.store.set_consent(person.id, False))

    async def consent_of(self, person: Person) -> datetime | None:
        """When the person accepted SHARE_NOTICE; None if not (or withdrawn)."""
        account = person.id
        if account is None:
            return None
        return await _cached(self._consent, account, lambda: self.store.account_by_id(account),
                             lambda row: row["consent_at"] if row else None)


async def _cached(cache: ExpiringCache[V], key: Hashable,
                  load: Callable[[], Awaitable[Row | None]],
                  value_of: Callable[[Row | None], V]) -> V:
    """The cached value, or the one loaded now; while PostgreSQL is unreachable, the last one
    known (see expiring_cache.py), else the DatabaseUnavailable (a 503 to retry)."""
    cached = cache.get(key)
    if not ExpiringCache.missing(cached):
        return cached  # type: ignore[return-value]
    try:
        row = await load()
    except DatabaseUnavailable:
        stale = cache.stale(key)
        if ExpiringCache.missing(stale):
            raise
        return stale  # type: ignore[return-value]
    return cache.put(key, value_of(row))


def _person_or_none(row: Row | None) -> Person | None:
    return person_of(row) if row else None


def _enabled_person(row: Row | None) -> Person | None:
    return person_of(row) if row and row["disabled_at"] is None else None


def _id(person: Person) -> uuid.UUID:
    if person.id is None:
        raise InvalidInput(_NO_ACCOUNTS)
    return person.id


def _key_or_none(name: object) -> str | None:
    try:
        return name_key(check_name(name))
    except InvalidInput:
        return None


def _uuid_or_none(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if isinstance(value, (str, uuid.UUID)) else None
    except ValueError:
        return None


def _token_name(name: object) -> str:
    label = "" if name is None else name
    if not isinstance(label, str):
        raise InvalidInput('"name" must be a string: what the token is for')
    label = label.strip()
    if len(label) > MAX_TOKEN_NAME_CHARS or "\x00" in label or \
            any(0xD800 <= ord(ch) <= 0xDFFF for ch in label):
        raise InvalidInput(f"a token's name is text of at most {MAX_TOKEN_NAME_CHARS} "
                           "characters; choose a shorter one")
    return label


def _public_token(row: Row) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "created_at": iso(row["created_at"]),
            "last_used_at": iso(row["last_used_at"])}


def _public_person(row: Row) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "admin": bool(row["is_admin"]),
            "created": iso(row["created_at"]), "disabled": row["disabled_at"] is not None,
            "consent_at": iso(row["consent_at"]), "source": row["source"]}
