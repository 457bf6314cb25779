"""A small chaos run in the suite (scripts/chaos.py is the full one): kill -9 of the app,
a crash-restart of PostgreSQL and LLM faults under concurrent traffic; nothing may be lost,
duplicated, mismatched or left unfinished."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def test_small_chaos_run(tmp_path: Path) -> None:
    report_path = tmp_path / "chaos.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--kills", "2",
         "--conversations", "8", "--turns", "3", "--pg-restarts", "1", "--llm-faults", "6",
         "--seed", "7", "--quiet", "--json", str(report_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] is True
    assert report["lost"] == report["duplicated"] == report["mismatched"] == 0
    assert report["unfinished"] == report["orphaned_workflows"] == report["server_errors"] == 0
    assert report["kills_survived"] == 2 and report["pg_restarts_survived"] == 1
    assert report["accepted"] == report["turns_sent"] >= 24
    assert all(k["resumed_sec"] is not None for k in report["kills"])
