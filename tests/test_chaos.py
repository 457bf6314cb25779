"""Small chaos runs in the suite (scripts/chaos.py is the full one).

mixed: kill -9 of the app, a crash-restart of PostgreSQL and LLM faults under concurrent
traffic; nothing may be lost, duplicated, mismatched or left unfinished.
backlog (issue 13): messages pile up across kill -9 cycles with LLM outages, clients moving on
after a cut request; after the last start the backlog must drain without a stall, within the
start-up time plus 1.5x the LLM time it needs at the configured cap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # runs scripts/chaos.py: app processes killed and restarted


def _chaos(tmp_path: Path, *args: str) -> dict:
    report_path = tmp_path / "chaos.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), *args, "--quiet", "--json",
         str(report_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] is True
    assert report["lost"] == report["duplicated"] == report["mismatched"] == 0
    assert report["unfinished"] == report["orphaned_workflows"] == report["server_errors"] == 0
    return report


def test_small_chaos_run(tmp_path: Path) -> None:
    # Events 0.3-1 s apart (the full run's 1-3 s spent 18 s of this run's 36 waiting between
    # nine events); each kill still waits for the restart before the next event.
    report = _chaos(tmp_path, "--kills", "2", "--conversations", "8", "--turns", "3",
                    "--pg-restarts", "1", "--llm-faults", "6", "--seed", "7",
                    "--gap", "0.3", "1.0")
    assert report["kills_survived"] == 2 and report["pg_restarts_survived"] == 1
    assert report["accepted"] == report["turns_sent"] >= 24
    assert all(k["resumed_sec"] is not None for k in report["kills"])


def test_small_backlog_run_drains_at_the_speed_of_the_llm(tmp_path: Path) -> None:
    # A slower reply (1.3 s) than the full run's, so that the LLM time, not the fixed cost
    # of a start (DBOS's recovery queue polls once a second), decides a small drain.
    report = _chaos(tmp_path, "--scenario", "backlog", "--kills", "3", "--conversations",
                    "12", "--ttft-ms", "200", "--tpot-ms", "60", "--seed", "7")
    assert report["stall"] is None and report["kills_survived"] == 3
    assert [s["backlog"] for s in report["starts"]][-1] >= 12
    assert report["drain_sec"] <= report["allowed_sec"]
    assert report["unanswered_last"] == 0 and report["slowest_last_sec"] is not None
    # Every message reached the app before its kill (and was checked for one final reply).
    assert report["accepted"] == report["turns_sent"] == 12 * 4
