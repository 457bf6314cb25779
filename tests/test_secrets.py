"""Secrets are never shown: a password in VLLM_BASE_URL or DATABASE_URL, LLM_API_KEY and the
SHARE_AUTH passwords stay out of /healthz, the UI's header, error bodies and the log; an error
body names no database URL and carries no SQL."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any, Iterator

import httpx
import psycopg
import pytest
from gradio_client import Client

from chat_core.config import url_credentials
from chat_core.store.database import ensure_database_exists, retry_transient
from chat_core.testing.emulated_llm import EmulatedLLM
from chat_core.errors import DatabaseUnavailable, LLMUnavailable
from chat_core.llm.client import LLMClient
from chat_core.secrets_mask import mask_secrets, mask_url, remember_secrets
from chat_core.ui.page import backend_line
from tests.helpers import (PG_ADMIN_URL, InProcessApp, base_env, close_soon, free_port,
                           wait_until)

# Every secret of the app under test contains SECRET, so one search finds any of them.
LLM_TOKEN, API_KEY, DB_PASSWORD = "tok-SECRET-123", "sk-SECRET-KEY-456", "db-SECRET-pw"
USER, SHARE_PASSWORD = "alice", "share-SECRET-789"


# -- the masking functions -------------------------------------------------------------------------

@pytest.mark.parametrize("url,shown", [
    ("http://user:token@gpu:5000", "http://user:***@gpu:5000"),
    ("postgresql://app:p@ss:w@rd@db:5432/chat", "postgresql://app:***@db:5432/chat"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),  # no password, nothing to hide
    ("https://gpu/v1?api_key=abc&model=x", "https://gpu/v1?api_key=***&model=x"),
    ("http://[::1", "<unparseable URL>"),
])
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_mask_secrets_finds_every_url_and_remembered_value_in_a_text() -> None:
    remember_secrets(["sk-remembered-key-1", "EMPTY", "ab"])
    text = ("vLLM at http://u:tok1@a:5000/v1 (then postgresql://x:tok2@b/c): key "
            "sk-remembered-key-1 refused; Authorization: Bearer abc.def-123456789; "
            "a basic understanding of EMPTY ab")
    masked = mask_secrets(text)
    for secret in ("tok1", "tok2", "sk-remembered-key-1", "abc.def-123456789"):
        assert secret not in masked
    assert "http://u:***@a:5000/v1" in masked and "postgresql://x:***@b/c" in masked
    assert masked.endswith("a basic understanding of EMPTY ab")  # prose left alone


def test_the_logging_net_masks_every_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """app.configure_logging masks records of the root handlers and of loggers with handlers
    of their own (uvicorn's, DBOS's), exception text included."""
    import app as app_module

    remember_secrets([API_KEY])
    root, own = io.StringIO(), io.StringIO()
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.StreamHandler(root)])
    factory = logging.getLogRecordFactory()
    try:
        app_module.configure_logging("INFO")
        private = logging.getLogger("test_secrets.private")
        private.addHandler(logging.StreamHandler(own))
        monkeypatch.setattr(private, "propagate", False)
        for logger, stream in ((logging.getLogger("test_secrets"), root), (private, own)):
            try:
                raise RuntimeError(f"failed at http://u:{LLM_TOKEN}@h:1")
            except RuntimeError:
                logger.exception("calling %s with key %s", f"http://u:{LLM_TOKEN}@h", API_KEY)
            assert "calling http://u:***@h with key ***" in stream.getvalue()
            assert "SECRET" not in stream.getvalue()
        private.handlers.clear()
    finally:
        logging.setLogRecordFactory(factory)


def test_database_errors_name_no_url(caplog: pytest.LogCaptureFixture) -> None:
    """After a long outage the error (REST body, /healthz, the chat tab) names no URL; the log
    has it, masked."""

    class Store:
        db = type("Db", (), {"url": f"postgresql://chat:{DB_PASSWORD}@db.example:5432/chat",
                             "retry_for_sec": 0.2})()

        @retry_transient
        async def write(self) -> None:
            raise psycopg.OperationalError("connection refused")

    with caplog.at_level(logging.WARNING), pytest.raises(DatabaseUnavailable) as caught:
        asyncio.run(Store().write())
    assert "postgresql://" not in caught.value.message and "db.example" not in caught.value.message
    assert "has been unreachable" in caught.value.message
    assert "connection refused" not in caught.value.message  # the driver's text: log only
    assert "postgresql://chat:***@db.example:5432/chat" in caplog.text
    assert "connection refused" in caplog.text
    assert "SECRET" not in caplog.text


def test_llm_errors_mask_the_url_password() -> None:
    client = LLMClient(f"http://llm:{LLM_TOKEN}@127.0.0.1:{free_port()}", api_key=API_KEY)

    async def probe() -> str:
        try:
            await client.model_info()
        except LLMUnavailable as exc:
            return exc.message
        finally:
            await client.close()
        raise AssertionError("a closed port answered")

    message = asyncio.run(probe())
    assert "refused" in message and "http://llm:***@127.0.0.1" in message
    assert "SECRET" not in message


# -- the app, with a secret in every setting -------------------------------------------------------

@pytest.fixture(scope="module")
def records() -> Iterator[list[logging.LogRecord]]:
    """Everything logged at INFO and above while the module's app runs."""
    found: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = found.append  # type: ignore[method-assign]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    loggers = [root] + [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "dbos")]
    for logger in loggers:
        logger.addHandler(handler)
    yield found
    for logger in loggers:
        logger.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
def secret_app(database_url: str, llm: EmulatedLLM, records: list[logging.LogRecord],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    db_url = database_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
    llm_url = llm.base_url.replace("http://", f"http://llm:{LLM_TOKEN}@", 1)
    env = base_env(db_url, llm_url, tmp_path_factory.mktemp("secrets"), LLM_API_KEY=API_KEY,
                   SHARE_AUTH=f"{USER}:{SHARE_PASSWORD}", LLM_MAX_ATTEMPTS="1")
    app = InProcessApp(env).start()
    yield app
    app.stop()


@pytest.fixture
def http(secret_app: InProcessApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secret_app.url, auth=(USER, SHARE_PASSWORD), timeout=60) as c:
        yield c


def _log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(message)s")
    return "\n".join(formatter.format(r) for r in records)


@pytest.mark.slow
def test_healthz_and_the_ui_header_show_the_url_without_its_password(
        secret_app: InProcessApp, http: httpx.Client) -> None:
    health = http.get("/healthz")
    assert health.status_code == 200 and "llm:***@127.0.0.1" in health.text
    assert "SECRET" not in health.text
    assert secret_app.service is not None
    header = backend_line(secret_app.service)
    assert "llm:***@127.0.0.1" in header and "SECRET" not in header
    assert http.post("/login", data={"username": USER, "password": SHARE_PASSWORD}
                     ).status_code == 200
    page = http.get("/config")  # the page's initial state, header included
    assert page.status_code == 200 and "llm:***@127.0.0.1" in page.text
    assert "SECRET" not in page.text


@pytest.mark.slow
def test_an_llm_error_shows_neither_the_url_password_nor_the_key(
        secret_app: InProcessApp, llm: EmulatedLLM, http: httpx.Client) -> None:
    # Servers echo what they were sent: this one names the key and the URL it was called by.
    llm.settings.script.append({"action": "error", "status": 401, "message":
                                f"Incorrect API key provided: {API_KEY} for "
                                f"http://llm:{LLM_TOKEN}@127.0.0.1/v1"})
    cid = http.post("/api/conversations").json()["id"]
    failed = http.post(f"/api/conversations/{cid}/messages", json={"content": "hi"})
    assert failed.status_code >= 400 and "Incorrect API key provided: ***" in failed.text
    shown = [failed.text, http.get(f"/api/conversations/{cid}/messages").text,
             http.get("/api/workflows", params={"conversation_id": cid}).text]
    assert not [text for text in shown if "SECRET" in text]


@pytest.mark.slow
def test_an_unexpected_error_in_the_ui_shows_no_exception_text(
        secret_app: InProcessApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """show_error=False: a bug's exception text (here psycopg's, with its SQL) stays in the
    log; the browser gets a generic error."""
    assert secret_app.service is not None

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise psycopg.errors.UndefinedTable(
            'relation "conversations" does not exist\nLINE 1: SELECT id, title FROM conversations')

    monkeypatch.setattr(secret_app.service, "conversation_titles", broken)  # the sidebar
    client = Client(secret_app.url, auth=(USER, SHARE_PASSWORD), verbose=False)
    try:
        with pytest.raises(Exception) as caught:
            client.predict(api_name="/new_chat")
    finally:
        close_soon(client)
    assert "SELECT" not in str(caught.value) and "relation" not in str(caught.value)


@pytest.mark.slow
def test_a_database_outage_error_body_names_no_url_and_no_sql(
        secret_app: InProcessApp, http: httpx.Client, database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL refuses the app's connections for longer than the app retries."""
    assert secret_app.service is not None
    db = secret_app.service.store.db
    monkeypatch.setattr(db, "retry_for_sec", 0.5)
    monkeypatch.setattr(db._pool, "timeout", 0.3)  # wait less for a connection that won't come
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s", (name,))
            bodies = [http.get("/api/conversations"), http.get("/healthz")]
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert bodies[0].status_code == 503 and bodies[1].json()["status"] == "degraded"
    for body in bodies:
        assert "postgresql://" not in body.text and "SELECT" not in body.text
        assert "SECRET" not in body.text
    wait_until(lambda: http.get("/healthz").json()["status"] == "ok", timeout=60)


@pytest.mark.slow
def test_the_log_holds_no_secret(secret_app: InProcessApp, http: httpx.Client,
                                 records: list[logging.LogRecord]) -> None:
    """Last in this module: the log of everything above, the outage included."""
    http.get("/healthz")
    text = _log_text(records)
    assert "LLM backend: vllm at http://llm:***@127.0.0.1" in text  # the app did log it
    assert "SECRET" not in text


def test_a_token_in_the_user_part_of_an_llm_url_is_masked() -> None:
    assert mask_url("http://sk-live-abcdef123456@gpu:5000/v1") == "http://***@gpu:5000/v1"
    assert "postgres@" in mask_url("postgresql://postgres@db:5432/chat")  # a user, no secret
    assert url_credentials("http://sk-live-abcdef123456@gpu:5000") == ["sk-live-abcdef123456"]
    assert url_credentials("postgresql://app:p%ZZSECRET@db/chat") == ["p%ZZSECRET"]
    assert "abcdef123456" not in mask_secrets("GET http://sk-live-abcdef123456@gpu:5000/v1 failed")


def test_a_malformed_database_password_is_not_shown() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        asyncio.run(ensure_database_exists("postgresql://app:p%ZZSECRET@127.0.0.1:5432/chat"))
    assert "SECRET" not in caught.value.message and "percent-encode" in caught.value.message


def test_the_tokenizer_requests_log_no_credentials(llm: EmulatedLLM,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs every request's URL at INFO: the URL's user:password goes as a header
    (Basic auth, as httpx made it of a URL's credentials before)."""
    async def count() -> list[int] | None:
        client = LLMClient(llm.base_url.replace("http://", "http://llm:SECRET-T0K@", 1))
        try:
            return await client.count_tokens(["how many tokens is this?"])
        finally:
            await client.close()

    caplog.set_level(logging.INFO)
    for library in ("httpx", "httpx2"):  # the app quiets them; a notebook may not
        caplog.set_level(logging.INFO, logger=library)
    counted = asyncio.run(count())
    assert counted and counted[0] > 0
    # Both clients' requests were logged (the openai client's, our tokenizer's)...
    assert "/v1/models" in caplog.text and "/tokenize" in caplog.text
    assert "SECRET" not in caplog.text  # ...without the credentials
