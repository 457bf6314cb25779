"""Migrations: applied in order, once each, recorded; two processes starting at once agree."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from chat_core.store.migrations import apply_migrations, discover
from tests.helpers import ROOT, create_database, drop_database, query


@pytest.fixture()
def empty_db() -> Iterator[str]:
    url = create_database("chat_mig")
    yield url
    drop_database(url)


def test_applied_once_and_recorded(empty_db: str) -> None:
    names = [m.name for m in discover()]
    assert names[0] == "001_init"
    assert asyncio.run(apply_migrations(empty_db)) == names
    assert asyncio.run(apply_migrations(empty_db)) == []
    recorded = [r[0] for r in query(empty_db, "SELECT name FROM schema_migrations ORDER BY name")]
    assert recorded == names
    tables = {r[0] for r in query(empty_db, "SELECT tablename FROM pg_tables"
                                  " WHERE schemaname = 'public'")}
    assert {"conversations", "messages", "schema_migrations"} <= tables


def test_long_conversation_reads_use_an_index(empty_db: str) -> None:
    asyncio.run(apply_migrations(empty_db))
    plan = "\n".join(r[0] for r in query(
        empty_db, "EXPLAIN SELECT * FROM messages WHERE conversation_id ="
        " '00000000-0000-0000-0000-000000000000' AND seq > 10 ORDER BY seq DESC LIMIT 64"))
    assert "Index" in plan


@pytest.mark.slow  # four Python processes importing the app
def test_two_processes_starting_at_once(empty_db: str) -> None:
    code = ("import asyncio, sys; from chat_core.store.migrations import apply_migrations;"
            "print(asyncio.run(apply_migrations(sys.argv[1])))")
    procs = [subprocess.Popen([sys.executable, "-c", code, empty_db], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    applied = [out for out, _ in outputs if out.strip() != "[]"]
    assert len(applied) == 1  # exactly one process applied them; the others found them done
    assert query(empty_db, "SELECT count(*) FROM schema_migrations")[0][0] == len(discover())


def test_a_failing_migration_leaves_no_trace(empty_db: str, tmp_path: Path) -> None:
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE a (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE b (id int); SELECT no_such_function();")
    with pytest.raises(Exception, match="no_such_function"):
        asyncio.run(apply_migrations(empty_db, tmp_path))
    tables = {r[0] for r in query(empty_db, "SELECT tablename FROM pg_tables"
                                  " WHERE schemaname = 'public'")}
    assert "b" not in tables and "a" not in tables
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE b (id int);")
    assert asyncio.run(apply_migrations(empty_db, tmp_path)) == ["001_ok", "002_bad"]


def test_misnamed_files_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="NNN_lower_snake.sql"):
        discover(tmp_path)


def test_004_upgrades_search_and_branch_copies_in_place(empty_db: str, tmp_path: Path) -> None:
    """Data written under 001–003 is fixed by 004 without losing a row: branch copies (also one
    whose source conversation was deleted) stop naming the source's turn, a turn run in the
    branch keeps its own, a reply still streaming is left out of search, and an empty reply
    made active over a good one gives way to it."""
    for m in discover()[:3]:
        (tmp_path / f"{m.name}.sql").write_text(m.sql)
    asyncio.run(apply_migrations(empty_db, tmp_path))
    a, b, c = (f"00000000-0000-0000-0000-00000000000{x}" for x in "abc")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(f"""
        INSERT INTO conversations (id, title, created_at, origin_conversation_id,
                                   origin_message_id) VALUES
            ('{a}', 'source', '2026-01-01', NULL, NULL),
            ('{b}', 'branch', '2026-01-02', '{a}', '00000000-0000-0000-0000-000000000001'),
            ('{c}', 'orphan branch', '2026-01-03', NULL, '00000000-0000-0000-0000-000000000009');
        INSERT INTO messages (id, conversation_id, seq, role, content, workflow_id, status,
                              created_at) VALUES
            ('00000000-0000-0000-0000-000000000001', '{a}', 1, 'user', 'planning a trip',
             'turn-1', 'complete', '2026-01-01 10:00'),
            ('00000000-0000-0000-0000-000000000002', '{a}', 2, 'user', 'half written plans',
             'turn-2', 'streaming', '2026-01-01 11:00'),
            (uuid_from('{b}', '00000000-0000-0000-0000-000000000001'), '{b}', 1, 'user',
             'planning a trip', 'turn-1', 'complete', '2026-01-01 10:00'),
            ('00000000-0000-0000-0000-000000000003', '{b}', 2, 'user', 'run in the branch',
             'turn-3', 'complete', '2026-01-02 09:00'),
            ('00000000-0000-0000-0000-000000000004', '{c}', 1, 'user', 'copied, source gone',
             'turn-9', 'complete', '2026-01-01 08:00');
        INSERT INTO messages (id, conversation_id, seq, role, content, status, parent_id,
                              active, created_at) VALUES
            ('00000000-0000-0000-0000-0000000000f1', '{a}', 1, 'assistant', 'a good reply',
             'complete', '00000000-0000-0000-0000-000000000001', false, '2026-01-01 10:01'),
            ('00000000-0000-0000-0000-0000000000f2', '{a}', 1, 'assistant', '',
             'stopped', '00000000-0000-0000-0000-000000000001', true, '2026-01-01 10:02');
        """)
    assert asyncio.run(apply_migrations(empty_db)) == [m.name for m in discover()[3:]]
    rows = query(empty_db, "SELECT conversation_id::text, seq, workflow_id, search IS NULL"
                 " FROM messages WHERE role = 'user' ORDER BY conversation_id, seq")
    assert rows == [(a, 1, "turn-1", False), (a, 2, "turn-2", True),
                    (b, 1, None, False), (b, 2, "turn-3", False), (c, 1, None, False)]
    assert query(empty_db, "SELECT count(*) FROM messages WHERE search @@"
                 " websearch_to_tsquery('english', 'plans')")[0][0] == 2
    assert query(empty_db, "SELECT content, active FROM messages WHERE role = 'assistant'"
                 " ORDER BY created_at") == [("a good reply", True), ("", False)]
