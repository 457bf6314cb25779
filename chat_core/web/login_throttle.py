"""Slows password guessing at every door of a shared app: the login and sign-up forms
(login_pages.py: /auth/login, /auth/signup and the scripts' POST /login) and the REST API's
HTTP Basic auth (auth.py). Sign-up tries count against one pseudo-account, so the invite code
cannot be guessed faster than a password.

Three limits, all decided before any password is compared:

- Per account and client address, a growing delay rather than a lockout: after FREE_FAILURES
  consecutive failures each further try from that address must wait 1 s, then 2, 4, ... up to
  MAX_DELAY_SEC. Guessing a long password at one try per 30 s is hopeless, and a stranger's
  failures never slow the owner, who comes from another address. A success clears the record.
- Per client address, at most ADDRESS_FAILURES_PER_MINUTE failures in any 60 s, whichever
  accounts they name: one client cannot try many accounts.
- Per account, at most ACCOUNT_FAILURES_PER_MINUTE failures in any 60 s from all addresses
  together: guessing spread over many addresses is capped too (only such a crowd can slow the
  owner, and only while it keeps going).

Every attempt the throttle lets through counts as a failure at once and is taken back when it
succeeds, so a burst of parallel tries cannot all pass the check before the first failure is
recorded. The client's address is the socket peer, except for requests that arrive through
the share tunnel (peer on loopback, Host *.gradio.live) or from a proxy named in
TRUSTED_PROXIES: those carry the visitor's address as the last entry of X-Forwarded-For, which
the tunnel or proxy appends.

State is in memory, per process; the clock is injectable so tests need not wait.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, TypeVar

from starlette.responses import JSONResponse
from starlette.types import Scope

from chat_core.accounts.passwords import check_name, name_key
from chat_core.errors import InvalidInput

FREE_FAILURES = 5
FIRST_DELAY_SEC = 1.0
MAX_DELAY_SEC = 30.0
ADDRESS_FAILURES_PER_MINUTE = 20
ACCOUNT_FAILURES_PER_MINUTE = 60
WINDOW_SEC = 60.0
# Bounds on remembered accounts and addresses: an attacker naming a million accounts must not
# grow memory without limit. The least recently touched entries are forgotten first.
MAX_TRACKED = 10_000
TUNNEL_HOST_SUFFIX = ".gradio.live"
V = TypeVar("V")


@dataclass
class _Account:
    failures: int = 0
    last_failure: float = 0.0


class LoginThrottle:
    """Per-account delay and per-address failure budget (see the module's docstring)."""

    def __init__(self, *, free_failures: int = FREE_FAILURES,
                 first_delay_sec: float = FIRST_DELAY_SEC, max_delay_sec: float = MAX_DELAY_SEC,
                 address_failures_per_minute: int = ADDRESS_FAILURES_PER_MINUTE,
                 account_failures_per_minute: int = ACCOUNT_FAILURES_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free_failures = free_failures
        self.first_delay_sec = first_delay_sec
        self.max_delay_sec = max_delay_sec
        self.address_limit = address_failures_per_minute
        self.account_limit = account_failures_per_minute
        self.clock = clock
        self._accounts: OrderedDict[str, _Account] = OrderedDict()  # by (address, account)
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()
        self._account_windows: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, account: str, address: str) -> float:
        """Seconds to wait before this attempt is allowed (0: go ahead). An allowed attempt is
        counted as a failure until `succeeded` is called for it."""
        now, pair = self.clock(), f"{address}\n{account}"
        wait = max(self._account_wait(pair, now),
                   _window_wait(self._addresses.get(address), self.address_limit, now),
                   _window_wait(self._account_windows.get(account), self.account_limit, now))
        if wait > 0:
            return wait
        state = _touch(self._accounts, pair, _Account)
        state.failures += 1
        state.last_failure = now
        _touch(self._addresses, address, deque).append(now)
        _touch(self._account_windows, account, deque).append(now)
        return 0.0

    def succeeded(self, account: str, address: str) -> None:
        """The attempt let through for (account, address) was right: clear that pair's
        failures and give the address and the account their try back."""
        self._accounts.pop(f"{address}\n{account}", None)
        for table, key in ((self._addresses, address), (self._account_windows, account)):
            failures = table.get(key)
            if failures:
                failures.pop()

    def delay_after(self, failures: int) -> float:
        """The wait imposed after `failures` consecutive failures."""
        if failures < self.free_failures:
            return 0.0
        exponent = min(failures - self.free_failures, 30)  # 2**30 s is past any cap
        return min(self.first_delay_sec * 2 ** exponent, self.max_delay_sec)

    def _account_wait(self, pair: str, now: float) -> float:
        state = self._accounts.get(pair)
        if state is None:
            return 0.0
        return max(0.0, state.last_failure + self.delay_after(state.failures) - now)


def _window_wait(failures: deque[float] | None, limit: int, now: float) -> float:
    """Wait until fewer than `limit` of these failure times lie in the last WINDOW_SEC."""
    if not failures:
        return 0.0
    while failures and failures[0] <= now - WINDOW_SEC:
        failures.popleft()
    if len(failures) < limit:
        return 0.0
    return failures[-limit] + WINDOW_SEC - now


def _touch(table: OrderedDict[str, V], key: str, make: Callable[[], V]) -> V:
    """The entry for `key`, created if missing and marked most recently used; the least
    recently used entries are dropped beyond MAX_TRACKED."""
    entry = table.get(key)
    if entry is None:
        entry = table[key] = make()
        while len(table) > MAX_TRACKED:
            table.popitem(last=False)
    table.move_to_end(key)
    return entry


def _header(scope: Scope, name: bytes) -> str:
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == name]
    return ",".join(values)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def client_address(scope: Scope, trusted_proxies: frozenset[str] = frozenset()) -> str:
    """Who is trying: the socket peer, or for a request through the share tunnel (peer on
    loopback, Host *.gradio.live) or from a trusted proxy the last X-Forwarded-For entry, the
    one the tunnel or proxy added. Earlier entries are whatever the visitor sent, so they are
    never trusted."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    host = _header(scope, b"host").rsplit(":", 1)[0].lower()
    tunnel = _is_loopback(peer) and host.endswith(TUNNEL_HOST_SUFFIX)
    if not (tunnel or peer in trusted_proxies):
        return peer
    forwarded = [part.strip() for part in _header(scope, b"x-forwarded-for").split(",")]
    last = forwarded[-1] if forwarded else ""
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return peer


def too_many_attempts(wait: float) -> JSONResponse:
    """The 429 for a throttled attempt, with Retry-After in whole seconds."""
    seconds = max(1, math.ceil(wait))
    return JSONResponse({"error": f"too many failed logins; wait {seconds} s before trying "
                         "again", "code": "too_many_attempts", "retry_after": seconds},
                        status_code=429, headers={"Retry-After": str(seconds)})


def account_key(name: str) -> str:
    """The account a try counts against: the name as the directory knows it (any case, NFKC),
    so "Alice" and "ＡＬＩＣＥ" share alice's delay; a name no account can have counts for its
    address only ("")."""
    try:
        return name_key(check_name(name))
    except InvalidInput:
        return ""


__all__ = ["LoginThrottle", "account_key", "client_address", "too_many_attempts"]
