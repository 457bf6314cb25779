from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import pytest

from chat_core.store.migrations import apply_migrations
from chat_core.testing.emulated_llm import EmulatedLLM, EmulatorSettings
from tests.helpers import (AppProcess, InProcessApp, base_env, create_database, drop_database,
                           shared_room)


@pytest.fixture(scope="module")
def llm() -> Iterator[EmulatedLLM]:
    """An emulated OpenAI-compatible server whose replies name the message they answer."""
    server = EmulatedLLM()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_llm_script(request: pytest.FixtureRequest) -> None:
    for name in ("llm", "room_llm"):
        if name in request.fixturenames:
            server: EmulatedLLM = request.getfixturevalue(name)
            server.settings = EmulatorSettings()
            server.requests.clear()


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def migrated_database_url() -> Iterator[str]:
    """One throwaway database with the app's tables for the whole run, for the fast store and
    schema tests: creating and migrating one costs about a second, so not one per test. Tests
    sharing it make their own conversations and never assume an empty table."""
    url = create_database("chat_store")
    asyncio.run(apply_migrations(url))
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def app(database_url: str, llm: EmulatedLLM, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[InProcessApp]:
    """The real app in this process, on PostgreSQL and the emulated LLM."""
    tmp: Path = tmp_path_factory.mktemp("app")
    server = InProcessApp(base_env(database_url, llm.base_url, tmp)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def room_llm() -> Iterator[EmulatedLLM]:
    """The emulated LLM of `room`, which outlives any one module."""
    server = EmulatedLLM()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _room_process(room_llm: EmulatedLLM, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[AppProcess]:
    with shared_room(room_llm.base_url, tmp_path_factory.mktemp("room"), EXECUTOR_ID="isolation",
                     SHARE_MAX_TURNS_PER_MINUTE="1000", SHARE_MAX_IN_FLIGHT="50") as app:
        yield app


@pytest.fixture(scope="module")
def room(_room_process: AppProcess) -> AppProcess:
    """Three people sharing one app.py process (tests.helpers.ROOM: alice is its admin), for
    the isolation tests of the REST API and of the browser: one start (5-12 s) serves both
    modules. Their tests make conversations of their own and never assume an empty room; the
    kill -9 test starts it again. Stopped once the tests using it are done (below), started
    again for any later module that asks for it."""
    if _room_process.proc is None or _room_process.proc.poll() is not None:
        _room_process.start(timeout=240)
    return _room_process


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop `room` after the last of the tests in a row that use it: idle, an app process
    still takes a few percent of a core, which the rest of a 2-core run would pay for."""
    uses = "room" in getattr(item, "fixturenames", ())
    if uses and "room" not in getattr(nextitem, "fixturenames", ()):
        room: AppProcess | None = getattr(item, "funcargs", {}).get("room")
        if room is not None:
            room.stop()
