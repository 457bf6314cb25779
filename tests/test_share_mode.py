"""Share mode: what a public link exposes is locked: login for the UI and the REST API, no
direct-call API around the queue, no monitoring page, links and images in replies inert.
(Accounts, sessions and tokens in depth: tests/test_accounts.py, tests/test_login_web.py.)"""

from __future__ import annotations

import base64
import contextlib
import logging
from typing import Iterator

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from chat_core.ui.render import render_reply
from chat_core.web.app import parse_credentials
from tests.helpers import EarlyExits, InProcessApp, base_env

USER, PASSWORD = "alice", "correct horse battery"
# Non-ASCII on both sides of the colon: Basic auth must compare bytes, not str.
USER2, PASSWORD2 = "jürgen", "pässwörd-lang"


@pytest.fixture(scope="module")
def shared(database_url: str, llm: EmulatedLLM, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[InProcessApp]:
    env = base_env(database_url, llm.base_url, tmp_path_factory.mktemp("share"),
                   SHARE_AUTH=f"{USER}:{PASSWORD},{USER2}:{PASSWORD2}")
    app = InProcessApp(env, share=True).start()
    yield app
    app.stop()


@pytest.mark.slow  # the real app in share mode
def test_rest_api_requires_the_credentials(shared: InProcessApp) -> None:
    with httpx.Client(base_url=shared.url) as http:
        for path in ("/api/conversations", "/healthz"):
            denied = http.get(path)
            assert denied.status_code == 401
            assert denied.headers["www-authenticate"].startswith("Basic")
        assert http.get("/api/conversations", auth=(USER, "wrong password")).status_code == 401
        created = http.post("/api/conversations", auth=(USER, PASSWORD))
        assert created.status_code == 201
        sent = http.post(f"/api/conversations/{created.json()['id']}/messages",
                         json={"content": "hi"}, auth=(USER, PASSWORD))
        assert sent.status_code == 200


@contextlib.contextmanager
def logged_records() -> Iterator[list[logging.LogRecord]]:
    """Every record logged meanwhile, uvicorn's own loggers (which do not propagate) included."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@pytest.mark.slow  # the real app in share mode
@pytest.mark.parametrize("header", [
    "Basic jürgen:pässwörd".encode(),  # raw non-ASCII where base64 belongs
    b"Basic " + base64.b64encode("jürgen:wrong-pässwörd".encode()),
    b"Basic " + base64.b64encode(b"\xff\xfe:\xfa"),  # not UTF-8 at all
    b"Basic !!!notbase64",
])
def test_malformed_or_non_ascii_basic_credentials_are_a_401_without_a_traceback(
        shared: InProcessApp, header: bytes) -> None:
    with logged_records() as records, httpx.Client(base_url=shared.url) as http:
        response = http.get("/api/conversations", headers={"Authorization": header})
    assert response.status_code == 401, response.text
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.slow  # the real app in share mode
def test_a_non_ascii_share_password_works_for_the_api_and_the_ui(shared: InProcessApp) -> None:
    with httpx.Client(base_url=shared.url) as http:
        assert http.get("/api/conversations", auth=(USER2, PASSWORD2)).status_code == 200
        assert http.get("/api/conversations", auth=(USER2, "pässwörd-falsch")).status_code \
            == 401
        assert http.post("/login", data={"username": USER2, "password": PASSWORD2}
                         ).status_code == 200


@pytest.mark.slow  # the real app in share mode
def test_the_ui_asks_for_a_login(shared: InProcessApp) -> None:
    with httpx.Client(base_url=shared.url) as http:
        entry = http.get("/")
        assert entry.status_code == 200 and 'action=\'/auth/login\'' in entry.text
        assert "input id=password name=password type=password" in entry.text
        assert http.get("/config").status_code == 401
        login = http.post("/auth/login", data={"username": USER, "password": PASSWORD,
                                               "next": "/"})
        assert login.status_code == 303 and login.headers["location"] == "/"
        assert http.get("/config").status_code == 200
        assert "gradio" in http.get("/").text.lower()  # the app's page now
        bad = httpx.post(f"{shared.url}/auth/login", data={"username": USER, "password": "nope"})
        assert bad.status_code == 401 and "wrong name or password" in bad.text
        assert "dc_session" not in bad.headers.get("set-cookie", "")


@pytest.mark.slow  # the real app in share mode
def test_no_direct_api_and_no_monitoring(shared: InProcessApp) -> None:
    with httpx.Client(base_url=shared.url) as http:
        http.post("/login", data={"username": USER, "password": PASSWORD})
        direct = http.post("/gradio_api/run/send", json={"data": ["hi", None, []]})
        assert direct.status_code in (401, 403, 404, 405), direct.text
        for path in ("/monitoring", "/monitoring/summary"):
            page = http.get(path)
            assert page.status_code == 403 and "not enabled" in page.text
    # The page's queue-less first step is a plain request, but only after a login.
    anonymous = httpx.post(f"{shared.url}/gradio_api/run/page_send",
                           json={"data": ["hi", None, {}]})
    assert anonymous.status_code in (401, 403), anonymous.text


def test_links_and_images_in_replies_are_inert_in_share_mode() -> None:
    text = "see [docs](https://evil.example/?q=secret) ![x](https://evil.example/p.png) " \
           "https://evil.example/raw `https://code.example/kept`"
    shown = render_reply(text, share_mode=True)
    assert "<a" not in shown and "<img" not in shown and "src=" not in shown
    assert "[image: x]" in shown
    assert "<code>https://code.example/kept</code>" in shown  # code is left as typed


@pytest.mark.parametrize("value,words", [("alice", "user:password"),
                                          ("alice:short", "shorter than 8")])
def test_weak_or_malformed_credentials_are_refused(value: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_credentials(value)


NOBODY_COULD_ADMINISTER = [
    ({"SHARE_INVITE": "room-code-42"}, "set SHARE_AUTH=host:password so someone can administer"),
    ({"SHARE_AUTH": f"{USER}:{PASSWORD}", "SHARE_ADMINS": "mallory"},
     "SHARE_ADMINS names 'mallory', who is not a SHARE_AUTH user"),
]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EarlyExits]:
    """The runs of app.py the tests below expect to refuse, all started at once, by name:
    "share", and "admins-<n>" for each of NOBODY_COULD_ADMINISTER."""
    runs = EarlyExits()
    for name, args, extra in [("share", ["--share"], {})] + [
            (f"admins-{n}", [], extra) for n, (extra, _) in enumerate(NOBODY_COULD_ADMINISTER)]:
        tmp = tmp_path_factory.mktemp(name)
        runs.start(name, {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp), "HOME": str(tmp),
                          **extra}, tmp, *args)
    yield runs
    runs.close()


@pytest.mark.slow  # app.py as a subprocess
def test_share_without_credentials_refuses_to_start(refusals: EarlyExits) -> None:
    result = refusals.result("share", timeout=60)
    assert result.returncode != 0
    assert "SHARE_AUTH=user:password" in result.stderr
    assert not (refusals.cwd("share") / "pgdata").exists()  # refused before starting anything


@pytest.mark.slow  # app.py as a subprocess
@pytest.mark.parametrize("n", range(len(NOBODY_COULD_ADMINISTER)),
                         ids=["invite-without-an-admin", "admin-without-an-account"])
def test_accounts_nobody_could_administer_refuse_to_start(refusals: EarlyExits, n: int) -> None:
    _, words = NOBODY_COULD_ADMINISTER[n]
    result = refusals.result(f"admins-{n}")
    assert result.returncode != 0
    assert words in result.stderr
    assert not (refusals.cwd(f"admins-{n}") / "pgdata").exists()  # refused before anything
