"""Password guessing is throttled at every door of a shared app, the login form (and the
scripts' POST /login) and the REST API's Basic auth: a growing delay per account (never a
lockout), a budget of failures per client address, both decided before any password is
compared. A fake clock stands in for time, so no test waits for a real delay."""

from __future__ import annotations

import concurrent.futures
from typing import Iterator

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from chat_core.web.login_throttle import (ACCOUNT_FAILURES_PER_MINUTE, ADDRESS_FAILURES_PER_MINUTE,
                                      FREE_FAILURES, MAX_DELAY_SEC, MAX_TRACKED, LoginThrottle,
                                      account_key, client_address)
from chat_core.web.auth import served_over_https
from tests.helpers import InProcessApp, base_env

ALICE, ALICE_PW = "alice", "correct horse battery"
BOB, BOB_PW = "bob", "staple grapefruit lamp"
WRONG = "not the password"
TUNNEL = "abc123.gradio.live"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- the throttle on its own ---------------------------------------------------------------------

def _fail(throttle: LoginThrottle, account: str, address: str = "198.51.100.1") -> float:
    """One attempt that turns out wrong; returns the wait the throttle imposed (0: it ran)."""
    return throttle.check(account, address)


def test_the_delay_starts_after_the_free_failures_and_doubles_up_to_the_cap() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(FREE_FAILURES):
        assert _fail(throttle, ALICE) == 0
    waits = []
    for _ in range(8):
        wait = _fail(throttle, ALICE)
        assert wait > 0  # refused before any password comparison
        waits.append(wait)
        clock.advance(wait)
        assert _fail(throttle, ALICE) == 0  # one more try after the wait, wrong again
    assert waits == [1, 2, 4, 8, 16, MAX_DELAY_SEC, MAX_DELAY_SEC, MAX_DELAY_SEC]


def test_a_success_clears_the_accounts_delay() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(FREE_FAILURES):
        _fail(throttle, ALICE)
    clock.advance(_fail(throttle, ALICE))
    assert throttle.check(ALICE, "198.51.100.1") == 0
    throttle.succeeded(ALICE, "198.51.100.1")
    for _ in range(FREE_FAILURES):  # a fresh allowance, no delay
        assert _fail(throttle, ALICE) == 0


def test_attempts_in_flight_count_before_their_outcome_is_known() -> None:
    """50 tries at once: only the free ones pass the check, the rest wait."""
    throttle = LoginThrottle(clock=FakeClock())
    waits = [throttle.check(ALICE, "198.51.100.1") for _ in range(50)]
    assert sum(1 for w in waits if w == 0) == FREE_FAILURES


def test_an_address_gets_a_budget_of_failures_per_minute_across_accounts() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for i in range(ADDRESS_FAILURES_PER_MINUTE):
        assert _fail(throttle, f"user{i}", "203.0.113.9") == 0
        clock.advance(1)
    wait = throttle.check(BOB, "203.0.113.9")
    assert 0 < wait <= 60 - ADDRESS_FAILURES_PER_MINUTE + 1
    assert throttle.check(BOB, "198.51.100.7") == 0  # another client is not affected
    clock.advance(wait)
    assert throttle.check(BOB, "203.0.113.9") == 0


def test_a_strangers_failures_slow_neither_the_owner_nor_another_account() -> None:
    """A stranger guessing alice's password without pause, under the address budget, must not
    keep alice out: the delay belongs to the stranger's address."""
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(40):  # 40 minutes of one guess a minute after each wait
        clock.advance(max(_fail(throttle, ALICE, "203.0.113.9"), 60))
        assert throttle.check(ALICE, "198.51.100.7") == 0  # the owner gets in
        throttle.succeeded(ALICE, "198.51.100.7")
    assert throttle.check(BOB, "203.0.113.9") == 0  # within the stranger's address budget


def test_an_account_has_a_budget_across_addresses() -> None:
    """Guessing spread over many addresses is capped per account too."""
    throttle = LoginThrottle(clock=FakeClock())
    for i in range(ACCOUNT_FAILURES_PER_MINUTE):
        assert _fail(throttle, ALICE, f"203.0.113.{i}") == 0
    assert throttle.check(ALICE, "198.51.100.200") > 0
    assert throttle.check(BOB, "198.51.100.200") == 0


def test_memory_stays_bounded_whatever_names_are_tried() -> None:
    throttle = LoginThrottle(clock=FakeClock(), address_failures_per_minute=10**9)
    for i in range(MAX_TRACKED + 500):
        throttle.check(f"user{i}", f"10.0.{i // 256 % 256}.{i % 256}")
    assert len(throttle._accounts) <= MAX_TRACKED and len(throttle._addresses) <= MAX_TRACKED


def _scope(peer: str, host: str, forwarded: str | None = None) -> dict:
    headers = [(b"host", host.encode())]
    if forwarded is not None:
        headers.append((b"x-forwarded-for", forwarded.encode()))
    return {"type": "http", "client": (peer, 50000), "headers": headers}


@pytest.mark.parametrize("peer,host,forwarded,expected", [
    ("127.0.0.1", TUNNEL, "203.0.113.9", "203.0.113.9"),
    ("127.0.0.1", f"{TUNNEL}:443", "10.9.9.9, 203.0.113.9", "203.0.113.9"),  # the tunnel's
    ("::1", TUNNEL, "2001:db8::5", "2001:db8::5"),
    ("127.0.0.1", "localhost:8080", "203.0.113.9", "127.0.0.1"),  # not through the tunnel
    ("198.51.100.7", TUNNEL, "203.0.113.9", "198.51.100.7"),  # a remote peer cannot claim it
    ("127.0.0.1", TUNNEL, "not-an-address", "127.0.0.1"),
    ("127.0.0.1", TUNNEL, None, "127.0.0.1"),
])
def test_the_client_address(peer: str, host: str, forwarded: str | None, expected: str) -> None:
    assert client_address(_scope(peer, host, forwarded)) == expected


def test_a_trusted_proxy_names_the_client() -> None:
    proxy = frozenset({"10.0.0.2"})
    scope = _scope("10.0.0.2", "chat.example.org", "198.51.100.1, 203.0.113.9")
    assert client_address(scope, proxy) == "203.0.113.9"
    assert client_address(_scope("10.0.0.3", "chat.example.org", "203.0.113.9"), proxy) \
        == "10.0.0.3"


@pytest.mark.parametrize("name,expected", [
    ("alice", "alice"), ("ALICE", "alice"), (" Alice ", "alice"),
    ("\uff21\uff2c\uff29\uff23\uff25", "alice"),  # fullwidth: the same account
    ("bad!name", ""), ("", ""), ("x" * 500, ""),
])
def test_the_account_a_try_counts_against(name: str, expected: str) -> None:
    """The account as the directory knows it: no spelling of a name dodges its delay, and a
    name no account can have counts for the address only."""
    assert account_key(name) == expected


@pytest.mark.parametrize("peer,host,proto,scheme,secure", [
    ("127.0.0.1", TUNNEL, None, "http", True),  # the share tunnel is https to the browser
    ("10.0.0.2", "chat.example.org", "https", "http", True),  # a trusted proxy says so
    ("10.0.0.3", "chat.example.org", "https", "http", False),  # anyone else may claim it
    ("127.0.0.1", "localhost:8080", "https", "http", False),
    ("198.51.100.7", "chat.example.org", None, "https", True),  # TLS to this server itself
])
def test_whether_the_browser_came_over_https(peer: str, host: str, proto: str | None,
                                             scheme: str, secure: bool) -> None:
    """The session cookie is Secure exactly then (a Secure cookie over http is dropped)."""
    scope = _scope(peer, host)
    scope["scheme"] = scheme
    if proto is not None:
        scope["headers"].append((b"x-forwarded-proto", proto.encode()))
    assert served_over_https(scope, frozenset({"10.0.0.2"})) is secure


# -- through HTTP, against the app in share mode ---------------------------------------------------

@pytest.fixture(scope="module")
def shared(database_url: str, llm: EmulatedLLM, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[InProcessApp]:
    env = base_env(database_url, llm.base_url, tmp_path_factory.mktemp("throttle"),
                   SHARE_AUTH=f"{ALICE}:{ALICE_PW},{BOB}:{BOB_PW}")
    app = InProcessApp(env, share=True).start()
    yield app
    app.stop()


@pytest.fixture
def clock(shared: InProcessApp) -> FakeClock:
    """A fresh throttle state on a fake clock, for each test."""
    assert shared._server is not None
    throttle: LoginThrottle = shared._server.config.app.state.login_throttle
    fake = FakeClock()
    throttle.clock = fake
    throttle._accounts.clear()
    throttle._addresses.clear()
    throttle._account_windows.clear()
    shared._server.config.app.state.basic_auth_cache.clear()
    return fake


def _login(http: httpx.Client, user: str, password: str, **headers: str) -> httpx.Response:
    return http.post("/login", data={"username": user, "password": password}, headers=headers)


def _api(http: httpx.Client, user: str, password: str, **headers: str) -> httpx.Response:
    return http.get("/api/conversations", auth=(user, password), headers=headers)


@pytest.mark.slow
@pytest.mark.parametrize("door", [_login, _api], ids=["login-form", "basic-auth"])
def test_guessing_gets_429_and_the_right_password_works_after_the_wait(
        shared: InProcessApp, clock: FakeClock, door) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=shared.url) as http:
        for _ in range(FREE_FAILURES):
            assert door(http, ALICE, WRONG).status_code == 401
        refused = door(http, ALICE, ALICE_PW)  # even the right password waits its turn
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == "too_many_attempts"
        clock.advance(float(refused.headers["retry-after"]))
        assert door(http, ALICE, ALICE_PW).status_code == 200
        assert door(http, ALICE, WRONG).status_code == 401  # the success reset it


@pytest.mark.slow
def test_fifty_wrong_tries_at_once_reach_the_password_check_only_five_times(
        shared: InProcessApp, clock: FakeClock) -> None:
    with concurrent.futures.ThreadPoolExecutor(16) as pool, \
            httpx.Client(base_url=shared.url) as http:
        codes = list(pool.map(lambda _: _login(http, ALICE, WRONG).status_code, range(50)))
        assert codes.count(401) == FREE_FAILURES and codes.count(429) == 50 - FREE_FAILURES
        assert _login(http, ALICE, ALICE_PW).status_code == 429
        # No other spelling or encoding of the form dodges alice's delay.
        multipart = http.post("/login", files={"username": (None, "ALICE"),
                                               "password": (None, ALICE_PW)})
        assert multipart.status_code == 429, multipart.text


@pytest.mark.slow
def test_a_stranger_locks_out_neither_the_owner_nor_another_client(
        shared: InProcessApp, clock: FakeClock) -> None:
    """The stranger comes through the share tunnel: each client is known by the address the
    tunnel forwards."""
    stranger = {"Host": TUNNEL, "X-Forwarded-For": "203.0.113.9"}
    friend = {"Host": TUNNEL, "X-Forwarded-For": "198.51.100.7"}
    with httpx.Client(base_url=shared.url) as http:
        for _ in range(FREE_FAILURES + 1):
            _login(http, ALICE, WRONG, **stranger)
        assert _login(http, ALICE, WRONG, **stranger).status_code == 429  # the stranger waits
        assert _login(http, ALICE, ALICE_PW, **friend).status_code == 200  # the owner does not
        assert _login(http, BOB, BOB_PW, **friend).status_code == 200
        assert _api(http, BOB, BOB_PW, **stranger).status_code == 200  # within its budget
        for i in range(ADDRESS_FAILURES_PER_MINUTE):
            _login(http, f"nobody{i}", WRONG, **stranger)
        # Credentials not verified before now wait; the ones verified above are remembered
        # (whatever the spelling of the name or of the header) and are no guess.
        spent = _api(http, BOB, WRONG, **stranger)
        assert spent.status_code == 429 and int(spent.headers["retry-after"]) > 0
        assert _api(http, BOB.upper(), BOB_PW, **stranger).status_code == 200
        assert _api(http, BOB, BOB_PW, **friend).status_code == 200
