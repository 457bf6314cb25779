"""scripts/bench.py keeps working: a tiny run of every mode prints the table and the targets.
(The numbers are not checked here: speed targets live in the benchmark, not in tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # runs scripts/bench.py as a process


def test_bench_runs_every_mode_and_prints_every_issue_16_figure(tmp_path: Path) -> None:
    """One tiny run of everything --quick runs (bench_burst's part with tiny options too: one
    process, one start of the app's fork server)."""
    out = tmp_path / "bench.json"
    burst = ("--bursts 3 --full-load-bursts 2 --full-load-tpot-ms 7 --tokens 4 --tpot-ms 5"
             " --ttft-ms 10 --cost-turns 3 --cost-concurrency 3 --cost-tpot-ms 0 --idle-sec 0.5"
             " --page-opens 3")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--concurrency", "1,2",
         "--turns", "2", "--tokens", "5", "--tpot-ms", "5", "--ttft-ms", "10",
         "--long-messages", "200", "--long-turns", "2", "--burst-args", burst,
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "turns/s" in result.stdout and "Targets:" in result.stdout
    report = json.loads(out.read_text())
    modes = {(r["mode"], r["concurrency"]) for r in report["results"]}
    for mode in ("direct", "service", "rest", "gradio"):
        assert {(mode, 1), (mode, 2)} <= modes
    assert all(r["errors"] == 0 and r["turns"] > 0 for r in report["results"])
    assert {"rest-fresh", "rest-0k-msgs", "direct-0k-msgs"} <= {r["mode"] for r in report["results"]}
    _check_burst_report(report["burst"], result.stdout)


def _check_burst_report(report: dict[str, Any], stdout: str) -> None:
    assert {(b["mode"], b["size"], b["tpot_ms"]) for b in report["bursts"]} == {
        (mode, size, tpot) for mode in ("direct", "rest", "chat tab")
        for size, tpot in ((3, 5), (2, 7))}
    assert all(b["errors"] == 0 for b in report["bursts"])
    # Where each message's time went: the chat tab's steps in the order the page runs them.
    for b in report["bursts"]:
        steps = {name: t["p50"] for name, t in b["steps"].items()}
        if b["mode"] == "chat tab":
            assert steps["page_send"] <= steps["stream asked"] <= steps["stream opened"] \
                <= steps["reply followed"] <= steps["finish"], b["steps"]
        elif b["mode"] == "rest":
            assert 0 < steps["accepted"] <= steps["first words"], b["steps"]
    assert "when its steps ended" in stdout
    assert [c["mode"] for c in report["costs"]] == ["rest", "chat tab"]
    assert report["floor_ms"] > 0 and all(c["app_ms_per_turn"] > 0 for c in report["costs"])
    # A bare relay's CPU per token in the same run, beside each per-token target.
    assert report["relay_floor_ms_per_token"] > 0
    assert sum("a bare relay" in t for t in report["targets"]) == 2, report["targets"]
    assert all(c["idle_ms_per_sec"] >= 0 for c in report["costs"]) and "idle: " in stdout
    # A second message in each conversation, metered apart (a follow-up's steps differ).
    assert all(c["follow_up_ms_per_turn"] > 0 for c in report["costs"])
    assert "a second message: " in stdout
    [opening] = report["openings"]
    assert opening["mode"] == "chat tab" and opening["pages"] == 3
    assert opening["last_ms"] > 0 and opening["cpu_ms_per_page"] > 0
    assert "A room opening the link (chat tab): 3 new visitors' pages at once" in stdout
    printed = "\n".join(report["targets"])
    assert "burst of 2 at 7 ms/token, chat tab: TTFT p50 within 100 ms" in printed
    for target in ("TTFT p50 within 100 ms", "TTFT p99 within 300 ms", "throughput >= 0.95",
                   "CPU per turn, rest, <= engine floor", "CPU per streamed token, rest (SSE)"):
        assert target in printed and target in stdout


def test_burst_bench_compares_worker_counts(tmp_path: Path) -> None:
    """--workers runs the bursts and the cost runs once per TURN_WORKERS count, each row named
    by its count, direct's once: the table docs/performance.md shows for turn workers."""
    out = tmp_path / "burst.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_burst.py"), "--workers", "0,1",
         "--bursts", "3", "--full-load-bursts", "", "--tokens", "4", "--tpot-ms", "5",
         "--ttft-ms", "10", "--cost-turns", "3", "--cost-concurrency", "3",
         "--cost-tpot-ms", "0", "--idle-sec", "0.3", "--markdown", "--page-opens", "2",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert sorted(b["mode"] for b in report["bursts"]) == [
        "chat tab w0", "chat tab w1", "direct", "rest w0", "rest w1"]
    assert all(b["errors"] == 0 for b in report["bursts"])
    assert [c["mode"] for c in report["costs"]] == ["rest w0", "chat tab w0", "rest w1",
                                                    "chat tab w1"]
    assert "burst of 3 at 5 ms/token, chat tab w1: TTFT p50 within 100 ms" in result.stdout
    assert "Markdown replies" in result.stdout
    assert [(o["mode"], o["pages"]) for o in report["openings"]] == [("chat tab w0", 2),
                                                                     ("chat tab w1", 2)]


def test_burst_args_are_checked_before_anything_runs() -> None:
    """A burst size given at one pace twice, or a negative count, is refused at once, not
    after the main run."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--burst-args",
         "--bursts 2 --full-load-bursts 2 --tpot-ms 7 --full-load-tpot-ms 7"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "give the size once" in result.stderr, result.stderr
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_burst.py"), "--page-opens", "-3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "a count of 0 or more" in result.stderr, result.stderr
