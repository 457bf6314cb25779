"""A turn left in flight by the code before the move into subpackages (issue 14) finishes in
the code of today, exactly once.

DBOS stores a turn's input, each finished step's output and the errors it recorded (pickled)
and replays them after a restart, into whatever code then runs. So the test runs the real old
code: app.py and chat_core/ of OLD_LAYOUT_COMMIT, taken from this repository's history, killed
with -9 with two turns in flight:
    A  - steps 1 and 2 checkpointed by the old code, the LLM call in progress;
    B  - steps 1 to 3 checkpointed, its reply row written, step 4 not checkpointed.
Then today's app.py starts on the same database with the same executor id and application
version and must finish both from the old checkpoints: one user message and one complete reply
each, every workflow SUCCESS with the seed's four steps.
"""

from __future__ import annotations

import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

import httpx
import pytest

from chat_core.config import PROJECT_ROOT
from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import AppProcess, base_env, query, wait_until

pytestmark = pytest.mark.slow

# The last commit with the flat layout (chat_core/turn_workflow.py, chat_core/chat_store.py...).
OLD_LAYOUT_COMMIT = "edc10db4e6023b0c9517136ab153a11f3f958c98"


def _old_tree(dest: Path) -> Path:
    """app.py, chat_core/ and migrations/ as they were at OLD_LAYOUT_COMMIT."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "archive", "--format=tar", OLD_LAYOUT_COMMIT,
             "app.py", "chat_core", "migrations"],
            check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"this test needs the repository's history (commit {OLD_LAYOUT_COMMIT}); "
                    f"run it in a full clone, not a shallow one or an export: {exc}")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    assert (dest / "chat_core" / "turn_workflow.py").exists()  # the flat layout indeed
    return dest


def _send(url: str, cid: str, text: str) -> None:
    try:
        httpx.post(f"{url}/api/conversations/{cid}/messages", json={"content": text},
                   headers={"Idempotency-Key": text}, timeout=0.5)
    except httpx.TransportError:
        pass  # the turn goes on without this request, or the old app dies under it


def _rows(database_url: str, cid: str) -> list[tuple]:
    return query(database_url, "SELECT role, content, status FROM messages WHERE"
                 " conversation_id = %s ORDER BY seq, role DESC", (cid,))


def _steps(database_url: str, cid: str) -> tuple[str, list[str]]:
    wid = query(database_url, "SELECT workflow_id FROM messages WHERE conversation_id = %s"
                " AND role = 'assistant'", (cid,))[0][0]
    status = query(database_url, "SELECT status FROM dbos.workflow_status WHERE"
                   " workflow_uuid = %s", (wid,))[0][0]
    names = query(database_url, "SELECT function_name FROM dbos.operation_outputs WHERE"
                  " workflow_uuid = %s ORDER BY function_id", (wid,))
    return status, [n[0] for n in names]


def _checkpointed(database_url: str, cid: str) -> list[str]:
    return _steps(database_url, cid)[1] if _rows(database_url, cid) else []


def test_turns_in_flight_under_the_old_layout_finish_in_the_new(
        database_url: str, llm: EmulatedLLM, tmp_path: Path) -> None:
    old_root = _old_tree(tmp_path / "old")
    env = base_env(database_url, llm.base_url, tmp_path, EXECUTOR_ID="layout-upgrade",
                   CHAT_FAULT_FILE=str(tmp_path / "fault"))
    old = AppProcess(env, tmp_path / "old.log", root=old_root).start()
    try:
        a = httpx.post(f"{old.url}/api/conversations").json()["id"]
        b = httpx.post(f"{old.url}/api/conversations").json()["id"]
        llm.script({"action": "hang"})
        _send(old.url, a, "turn A")
        wait_until(lambda: len(llm.requests) == 1)
        assert _checkpointed(database_url, a) == ["save_user_message", "read_history"]
        (tmp_path / "fault").write_text("save_reply:committed")
        _send(old.url, b, "turn B")
        assert old.wait_exit(60) == 137, old.log()  # B's reply row committed, step 4 not
    finally:
        old.stop()
    assert _rows(database_url, b)[1][2] == "complete"
    assert _checkpointed(database_url, b) == ["save_user_message", "read_history", "call_llm"]

    llm.release()
    new = AppProcess(env, tmp_path / "new.log").start()
    try:
        for cid, text in ((a, "turn A"), (b, "turn B")):
            wait_until(lambda: _steps(database_url, cid)[0] == "SUCCESS", timeout=60)
            rows = _rows(database_url, cid)
            assert [(r[0], r[2]) for r in rows] == [("user", "complete"),
                                                     ("assistant", "complete")], rows
            assert rows[0][1] == text and rows[1][1].startswith(f"Reply to [{text}]")
            assert _steps(database_url, cid)[1] == ["save_user_message", "read_history",
                                                    "call_llm", "save_reply"]
        replies = httpx.get(f"{new.url}/api/conversations/{a}/messages").json()
        assert [m["status"] for m in replies] == ["complete", "complete"]
    finally:
        new.stop()
