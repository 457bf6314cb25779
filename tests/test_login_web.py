"""Logging in to the real app with accounts on: our own login pages and database sessions in
front of Gradio and the REST API. What a visitor, a script and an attacker notice: the cookie,
the page, a restart that logs nobody out, Basic and Bearer on the API, the 401s, the notice,
sign-up with the invite code, throttled guessing that never reaches the password hash, logout,
disabling, and that Gradio's routes want a login too."""

from __future__ import annotations

import base64
import concurrent.futures
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from playwright.sync_api import sync_playwright

from chat_core.accounts.directory import AccountDirectory
from chat_core.testing.emulated_llm import EmulatedLLM
from chat_core.web.auth import SESSION_COOKIE
from chat_core.web.login_throttle import FREE_FAILURES, LoginThrottle
from tests.browser_support import CHROMIUM_ARGS
from tests.helpers import AppProcess, InProcessApp, base_env

pytestmark = pytest.mark.slow  # the real app, in-process and as a process

HOST, HOST_PW = "host", "host password long"
BOB, BOB_PW = "bob", "bob password long"
INVITE = "invite-code-for-the-room"
NOTICE = "Be kind.\n\nYour messages are kept for the workshop's analysis."


def _env(database_url: str, llm: EmulatedLLM, tmp: Path, **extra: str) -> dict[str, str]:
    return base_env(database_url, llm.base_url, tmp,
                    SHARE_AUTH=f"{HOST}:{HOST_PW},{BOB}:{BOB_PW}", SHARE_INVITE=INVITE,
                    SHARE_NOTICE=NOTICE, ALLOWED_HOSTS="abc123.gradio.live", **extra)


@pytest.fixture(scope="module")
def served(database_url: str, llm: EmulatedLLM, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[InProcessApp]:
    app = InProcessApp(_env(database_url, llm, tmp_path_factory.mktemp("login"))).start()
    yield app
    app.stop()


def _state(app: InProcessApp) -> object:
    assert app._server is not None
    return app._server.config.app.state


def _accounts(app: InProcessApp) -> AccountDirectory:
    accounts: AccountDirectory = _state(app).accounts  # type: ignore[attr-defined]
    return accounts


@pytest.fixture(autouse=True)
def fresh_throttle(served: InProcessApp) -> LoginThrottle:
    """For each test, the throttle emptied, on a clock that stands still: no delay runs out
    during a test, however slow the machine, and no test inherits another's failures."""
    throttle: LoginThrottle = _state(served).login_throttle  # type: ignore[attr-defined]
    for table in (throttle._accounts, throttle._addresses, throttle._account_windows):
        table.clear()
    throttle.clock = lambda: 1000.0
    _state(served).basic_auth_cache.clear()  # type: ignore[attr-defined]
    return throttle


def log_in(http: httpx.Client, name: str, password: str, accept: bool = True) -> str:
    """Through the login page, as a browser does; accepts the notice; returns the cookie."""
    answer = http.post("/auth/login", data={"username": name, "password": password,
                                            "next": "/"})
    assert answer.status_code == 303, answer.text
    if accept:
        assert http.post("/auth/notice", data={"next": "/"}).status_code == 303
    return answer.cookies[SESSION_COOKIE]


def _new_person(http: httpx.Client) -> tuple[str, str]:
    name, password = f"p{uuid.uuid4().hex[:8]}", "a good password"
    made = http.post("/auth/signup", data={"invite": INVITE, "username": name,
                                           "password": password, "password2": password})
    assert made.status_code == 303, made.text
    http.cookies.clear()
    return name, password


# -- the login page and the session cookie ------------------------------------------------------

def test_logging_in_sets_a_safe_cookie_and_opens_the_page(served: InProcessApp) -> None:
    with served.client() as http:
        entry = http.get("/")
        assert entry.status_code == 200 and "Log in" in entry.text
        assert "default-src 'none'" in entry.headers["content-security-policy"]
        answer = http.post("/auth/login", data={"username": HOST.upper(), "password": HOST_PW,
                                                "next": "/?x=1"})
        assert answer.status_code == 303 and answer.headers["location"] == "/?x=1"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
        assert http.get("/", headers={"Accept": "text/html"}).headers["location"] \
            .startswith("/auth/notice")  # the notice comes first
        assert http.get("/api/conversations").json()["code"] == "notice_not_accepted"
        notice = http.get("/auth/notice")
        assert "Your messages are kept" in notice.text and "Accept" in notice.text
        assert http.post("/auth/notice", data={"next": "/"}).headers["location"] == "/"
        page = http.get("/")
        assert page.status_code == 200 and "gradio" in page.text.lower()
        me = http.get("/api/me").json()
        assert me["name"] == HOST and me["admin"] is True and me["consent"]


def test_a_login_through_the_share_tunnel_gets_a_secure_cookie(served: InProcessApp) -> None:
    with served.client() as http:
        tunnel = http.post("/auth/login", data={"username": HOST, "password": HOST_PW},
                           headers={"Host": "abc123.gradio.live"})
        assert tunnel.status_code == 303, tunnel.text
        assert "secure" in tunnel.headers["set-cookie"].lower()  # the browser is on https
        claimed = http.post("/auth/login", data={"username": HOST, "password": HOST_PW},
                            headers={"X-Forwarded-Proto": "https"})  # from nobody trusted
        assert "secure" not in claimed.headers["set-cookie"].lower()


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil",
                                    "/auth/logout", "javascript:alert(1)"])
def test_after_login_only_a_page_of_this_app_is_opened(served: InProcessApp,
                                                       target: str) -> None:
    with served.client() as http:
        answer = http.post("/auth/login", data={"username": HOST, "password": HOST_PW,
                                                "next": target})
        assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_without_a_login_pages_redirect_and_everything_else_is_a_401(
        served: InProcessApp) -> None:
    with served.client() as http:
        page = http.get("/gradio_api/info?x=1", headers={"Sec-Fetch-Mode": "navigate"})
        assert page.status_code == 303
        assert page.headers["location"] == "/auth/login?next=/gradio_api/info%3Fx%3D1"
        for method, path in [("GET", "/api/conversations"), ("GET", "/healthz"),
                             ("POST", "/gradio_api/queue/join"), ("GET", "/config"),
                             ("GET", "/gradio_api/heartbeat/x"), ("POST", "/gradio_api/upload"),
                             ("GET", "/gradio_api/user"), ("GET", "/api/docs")]:
            answer = http.request(method, path)
            assert answer.status_code == 401, path
            assert set(answer.json()) == {"error", "code"} and answer.json()["code"] == \
                "unauthorized", path
            assert answer.headers["www-authenticate"], path
        api = http.get("/api/conversations")
        assert api.headers["www-authenticate"].startswith("Basic")


def test_gradio_hands_events_the_account_id(served: InProcessApp) -> None:
    with served.client() as http:
        log_in(http, BOB, BOB_PW)
        bob = _accounts(served)
        person = served.call(bob.person_by_name(BOB))
        assert person is not None
        assert http.get("/gradio_api/user").json() == str(person.id)


# -- a restart logs nobody out --------------------------------------------------------------------

def test_a_session_outlives_a_restart_of_the_app_process(
        served: InProcessApp, database_url: str, llm: EmulatedLLM, tmp_path: Path) -> None:
    """Logged in on the module's app, the cookie is honoured by an app.py process started
    afterwards with the same settings on the same database: nothing of the session lives in
    the memory of the process that made it. (What a restart shows, at one start instead of
    two: before, a first app.py process made the cookie and was stopped.)"""
    with served.client() as http:
        cookie = log_in(http, HOST, HOST_PW, accept=False)
        assert http.get("/config").status_code == 200
    app = AppProcess(_env(database_url, llm, tmp_path, LOG_LEVEL="INFO"),
                     tmp_path / "app.log").start()
    try:
        with httpx.Client(base_url=app.url, timeout=30,
                          cookies={SESSION_COOKIE: cookie}) as http:
            page = http.get("/")
            assert page.status_code == 200 and "gradio" in page.text.lower()
            assert http.get("/api/me").json()["name"] == HOST
            assert http.post("/auth/logout").status_code == 303
        with httpx.Client(base_url=app.url, cookies={SESSION_COOKIE: cookie}) as http:
            assert http.get("/api/me").status_code == 401  # logging out ended it
    finally:
        app.stop()


# -- the REST API: Basic and Bearer ----------------------------------------------------------------

def test_basic_and_bearer_on_the_api(served: InProcessApp, fresh_throttle: LoginThrottle) -> None:
    with served.client() as http:
        name, password = _new_person(http)
        log_in(http, name, password)  # accepts the notice
        made = http.post("/api/me/tokens", json={"name": "notebook"})
        assert made.status_code == 201
        token = made.json()["token"]
        assert "token" not in http.get("/api/me/tokens").json()[0]
    with served.client() as http:
        assert http.get("/api/me", auth=(name.upper(), password)).json()["name"] == name
        bearer = {"Authorization": f"Bearer {token}"}
        assert http.get("/api/conversations", headers=bearer).status_code == 200
        assert http.get("/api/me", headers=bearer).json()["name"] == name
        token_id = made.json()["id"]
        assert http.delete(f"/api/me/tokens/{token_id}", headers=bearer).status_code == 200
        refused = http.get("/api/conversations", headers=bearer)
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
        for header in ("Bearer", "Bearer x", "Bearer " + "x" * 5000, "Digest abc", "Basic !!!"):
            assert http.get("/api/me", headers={"Authorization": header}).status_code == 401


def test_someone_elses_token_id_answers_like_a_missing_one(served: InProcessApp) -> None:
    with served.client() as http:
        log_in(http, HOST, HOST_PW)
        token_id = http.post("/api/me/tokens", json={}).json()["id"]
    with served.client() as http:
        log_in(http, BOB, BOB_PW)
        theirs = http.delete(f"/api/me/tokens/{token_id}")
        missing = http.delete(f"/api/me/tokens/{uuid.uuid4()}")
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["code"] == missing.json()["code"] == "not_found"


def test_admin_routes_are_a_404_for_everyone_else_and_disabling_ends_sessions(
        served: InProcessApp) -> None:
    with served.client() as bob_http:
        name, password = _new_person(bob_http)
        log_in(bob_http, name, password)
        not_admin = bob_http.get("/api/admin/people")
        missing = bob_http.get("/api/admin/peoplez")
        assert not_admin.status_code == missing.status_code == 404
        assert not_admin.json()["code"] == missing.json()["code"]
        assert bob_http.post(f"/api/admin/people/{HOST}/disable").status_code == 404
        with served.client() as admin:
            log_in(admin, HOST, HOST_PW)
            assert name in [p["name"] for p in admin.get("/api/admin/people").json()]
            assert admin.post(f"/api/admin/people/{name}/disable").json()["disabled"] is True
            assert bob_http.get("/api/me").status_code == 401  # at once, in this process
            assert bob_http.get("/config").status_code == 401
            assert admin.post(f"/api/admin/people/{name}/enable").json()["disabled"] is False
        assert bob_http.get("/api/me").status_code == 401  # the session stays ended


# -- sign-up ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("invite", ["", "wrong", INVITE.upper()])
def test_sign_up_with_a_wrong_or_missing_code(served: InProcessApp, invite: str,
                                               fresh_throttle: LoginThrottle) -> None:
    name = f"nope{uuid.uuid4().hex[:6]}"
    with served.client() as http:
        answer = http.post("/auth/signup", data={"invite": invite, "username": name,
                                                 "password": "good password",
                                                 "password2": "good password"})
        assert answer.status_code == 422 and "invite code is missing or wrong" in answer.text
        assert SESSION_COOKIE not in answer.cookies
        assert http.get("/api/me", auth=(name, "good password")).status_code == 401


def test_sign_up_refuses_a_taken_name_and_hostile_input(served: InProcessApp) -> None:
    with served.client() as http:
        base = {"invite": INVITE, "password": "good password", "password2": "good password"}
        taken = http.post("/auth/signup", data={**base, "username": BOB.upper()})
        assert taken.status_code == 409 and "taken" in taken.text
        for name in ("", "<script>x", "x" * 41):
            answer = http.post("/auth/signup", data={**base, "username": name})
            assert answer.status_code == 422 and "<script>x" not in answer.text
        long = "x" * 10_240
        answer = http.post("/auth/signup", data={**base, "username": "longpw",
                                                 "password": long, "password2": long})
        assert answer.status_code == 422 and "at most 1024" in answer.text
        differ = http.post("/auth/signup", data={**base, "username": "differ",
                                                 "password2": "other password"})
        assert differ.status_code == 422 and "differ" in differ.text
        assert http.post("/auth/signup", content=b"x" * 70_000, headers={
            "Content-Type": "application/x-www-form-urlencoded"}).status_code == 413


# -- guessing: throttled before any hashing --------------------------------------------------------

def test_throttled_guesses_never_reach_the_password_hash(
        served: InProcessApp, fresh_throttle: LoginThrottle) -> None:
    """50 wrong tries at once, at each door: the first FREE_FAILURES are checked (one argon2
    verification each), the rest are 429s that cost no hash."""
    accounts = _accounts(served)
    with served.client() as http:
        name, _ = _new_person(http)
    doors = {
        "form": lambda: httpx.post(f"{served.url}/auth/login", timeout=60,
                                   data={"username": name, "password": "a wrong guess"}),
        "basic": lambda: httpx.get(f"{served.url}/api/conversations", timeout=60,
                                   auth=(name, "a wrong guess")),
    }
    for door, attempt in doors.items():
        fresh_throttle._accounts.clear()
        fresh_throttle._addresses.clear()
        fresh_throttle._account_windows.clear()
        before = accounts.hashing.hashes
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda _: attempt().status_code, range(50)))
        assert codes.count(401) == FREE_FAILURES, door
        assert codes.count(429) == 50 - FREE_FAILURES, door
        assert accounts.hashing.hashes - before == FREE_FAILURES, door


def test_a_verified_basic_header_is_not_hashed_again(served: InProcessApp,
                                                     fresh_throttle: LoginThrottle) -> None:
    accounts = _accounts(served)
    header = "Basic " + base64.b64encode(f"{HOST}:{HOST_PW}".encode()).decode()
    with served.client() as http:
        log_in(http, HOST, HOST_PW)
        before = accounts.hashing.hashes
        for _ in range(10):
            assert http.get("/api/me", headers={"Authorization": header}).status_code == 200
        assert accounts.hashing.hashes - before == 1


def test_the_same_credentials_spelled_or_sent_differently_are_hashed_once(
        served: InProcessApp, fresh_throttle: LoginThrottle) -> None:
    """Found in review: the cache was keyed by the header's text, so "Basic" + more spaces
    forced a hash per request; and parallel first requests tripped the throttle."""
    accounts = _accounts(served)
    encoded = base64.b64encode(f"{BOB}:{BOB_PW}".encode()).decode()
    headers = [f"Basic{' ' * (k + 1)}{encoded}" for k in range(10)] + \
        [f"basic {encoded}"] * 10
    before = accounts.hashing.hashes

    def call(header: str) -> int:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            return http.get("/api/me", headers={"Authorization": header}).status_code
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(call, headers))
    assert codes == [200] * len(headers)
    assert accounts.hashing.hashes - before == 1


def test_signup_code_guessing_is_throttled(served: InProcessApp,
                                           fresh_throttle: LoginThrottle) -> None:
    with served.client() as http:
        codes = [http.post("/auth/signup", data={"invite": f"guess{i}", "username": "g",
                                                 "password": "good password",
                                                 "password2": "good password"}).status_code
                 for i in range(FREE_FAILURES + 2)]
        assert codes[:FREE_FAILURES] == [422] * FREE_FAILURES
        assert codes[FREE_FAILURES:] == [429, 429]


# -- logout ----------------------------------------------------------------------------------------

def test_logout_ends_the_session(served: InProcessApp) -> None:
    with served.client() as http:
        cookie = log_in(http, BOB, BOB_PW)
        assert "Log out" in http.get("/auth/logout").text
        assert http.get("/logout").headers["location"] == "/auth/logout"  # Gradio's old path
        answer = http.post("/auth/logout")
        assert answer.status_code == 303 and answer.headers["location"] == "/auth/login"
        assert f'{SESSION_COOKIE}=""' in answer.headers["set-cookie"] or \
            "max-age=0" in answer.headers["set-cookie"].lower()
    with served.client() as http:
        http.cookies.set(SESSION_COOKIE, cookie)
        assert http.get("/api/me").status_code == 401
        assert http.get("/config").status_code == 401


def test_another_sites_form_cannot_log_anyone_in_or_out(served: InProcessApp) -> None:
    with served.client() as http:
        for path in ("/auth/login", "/auth/logout", "/auth/signup", "/auth/notice"):
            answer = http.post(path, data={"username": HOST, "password": HOST_PW},
                               headers={"Origin": "https://evil.example"})
            assert answer.status_code == 403, path
            assert SESSION_COOKIE not in answer.cookies


# -- in a phone's browser -----------------------------------------------------------------------

def test_a_phone_logs_in_accepts_the_notice_and_reaches_the_chat(served: InProcessApp) -> None:
    """390 px wide, as a visitor on a phone: every page fits without sideways scrolling."""
    executable = shutil.which("chromium")
    assert executable, "Chromium is missing: apt-get install chromium (scripts/test.sh does it)"
    with served.client() as http:
        name, password = _new_person(http)
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 390, "height": 844},
                                       is_mobile=True).new_page()
            page.set_default_timeout(30_000)
            page.goto(served.url)
            assert page.evaluate(fits)
            page.locator("input[type=text]").first.fill(name)
            page.locator("input[type=password]").fill(password)
            page.locator("button", has_text="Login").click()
            page.wait_for_url("**/auth/notice**")
            assert "Your messages are kept" in page.content() and page.evaluate(fits)
            page.locator("button", has_text="Accept").click()
            page.wait_for_selector("#message-box textarea")
            cookie = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE][0]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        finally:
            browser.close()
