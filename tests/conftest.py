from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import pytest

from chat_core.store.migrations import apply_migrations
from chat_core.testing.emulated_llm import EmulatedLLM, EmulatorSettings
from tests.helpers import InProcessApp, base_env, create_database, drop_database


@pytest.fixture(scope="module")
def llm() -> Iterator[EmulatedLLM]:
    """An emulated OpenAI-compatible server whose replies name the message they answer."""
    server = EmulatedLLM()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_llm_script(request: pytest.FixtureRequest) -> None:
    if "llm" in request.fixturenames:
        server: EmulatedLLM = request.getfixturevalue("llm")
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
