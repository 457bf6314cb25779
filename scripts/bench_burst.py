"""Benchmark (issue 16): a room's burst, and what a turn and a token cost the app.

Against an emulated vLLM paced like a loaded RTX 5090 (--ttft-ms 150, then --tpot-ms 50:
20 tokens/s per stream, --tokens 250), in one run:

    burst   C conversations, made beforehand, each send one message at the same moment:
            straight to the emulator (direct), through the REST API (?stream=true) and through
            the chat tab (the page's own events on Gradio's queue, as a browser sends them).
            Time to first token p50/p99 and throughput, against direct.
    cost    128 turns, 32 at once (tokens 10 ms apart), through the REST API (SSE): with 2-token replies, the CPU
            per turn of the app's processes; with 402-token replies, the CPU per streamed token
            (the difference over 400 tokens a turn); the same on the chat tab. PostgreSQL's own
            CPU per turn beside it (not counted in the app's).
    opening after the bursts, --page-opens new visitors (64) open the chat page at once: when
            the last one is ready, and the app's CPU a page.
    floor   DBOS's own CPU for an empty turn: a workflow of four no-op async steps, same
            concurrency, in a process of its own (scripts/dbos_floor.py); after the cost runs,
            a bare relay's CPU per streamed token (aiohttp in, SSE out through uvicorn: no
            database, no middleware), same pacing, at least 64 turns (scripts/relay_floor.py).

    python scripts/bench_burst.py                  # bursts of 16 and 64, then of 256 paced
                                                   # like a 5090 at full load (83 ms/token,
                                                   # about 12 tokens/s); about 6 minutes
    python scripts/bench_burst.py --bursts 16,64,256 --tpot-ms 83 --full-load-bursts ''
    python scripts/bench_burst.py --only-cost --markdown   # replies as a model writes them

`scripts/bench.py --quick` runs it too and prints its targets with its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat_core.testing.app_process import AppProcess, free_port  # noqa: E402
from scripts.bench import (Database, DirectClient, GradioPageClient, RestClient,  # noqa: E402
                           Sample, app_env, pct, start_emulator)
# The cost runs' reply lengths, the relay floor's too.
from scripts.relay_floor import LONG, SHORT  # noqa: E402


@dataclass
class Burst:
    mode: str
    size: int
    tpot_ms: float
    samples: list[Sample] = field(default_factory=list)
    wall_sec: float = 0.0
    errors: int = 0

    def ttft(self, q: float) -> float:
        return pct([s.ttft_ms for s in self.samples], q)

    @property
    def turns_per_sec(self) -> float:
        return len(self.samples) / self.wall_sec if self.wall_sec else 0.0


@dataclass
class Cost:
    mode: str
    app_ms_per_turn: float
    pg_ms_per_turn: float
    ms_per_token: float
    # The app's CPU to open each turn's conversation beforehand (not in the per-turn figure):
    # on the chat tab a page opened (its load events: Gradio builds the session's state).
    open_ms: float = 0.0
    # Of the app's figures, the web process's own (the rest is its turn workers').
    web_ms_per_turn: float = 0.0
    web_ms_per_token: float = 0.0
    # The app's CPU a second with nobody using it (its pollers), measured before the turns:
    # a longer run pays it for longer, so it is part of the per-token figure too.
    idle_ms_per_sec: float = 0.0
    # A second message in each of the short turns' conversations (the per-turn figure is a
    # new conversation's first message; on the chat tab a follow-up's steps differ).
    follow_up_ms_per_turn: float = 0.0


class CpuMeter:
    """CPU seconds of the app's processes (the app and its children) and of PostgreSQL's."""

    def __init__(self, app_pid: int) -> None:
        self.app = psutil.Process(app_pid)

    def _app(self, alone: bool = False) -> float:
        total = 0.0
        for p in [self.app] if alone else [self.app, *self.app.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    @staticmethod
    def _postgres() -> float:
        total = 0.0
        for p in psutil.process_iter(["name"]):
            if p.info["name"] in ("postgres", "postmaster"):
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
        return total

    def read(self) -> tuple[float, float]:
        return self._app(), self._postgres()

    def web(self) -> float:
        """The web process alone (without its turn workers)."""
        return self._app(alone=True)


TurnFn = Callable[[Any, int, int], Awaitable[Sample]]


@dataclass
class Opening:
    """A room opening the link at once: `pages` new visitors' pages loading together."""
    mode: str  # "chat tab", with the turn workers' count where --workers gives one
    pages: int
    last_ms: float  # until the last page had run its load events
    cpu_ms_per_page: float  # the app's


async def open_pages(mode: str, page: GradioPageClient, meter: CpuMeter, pages: int
                     ) -> Opening:
    """`pages` new visitors' chat pages at once, each running its load events (one after
    another, where a browser sends them together; the scripts, styles and Gradio's config a
    browser also fetches are left out): about a third of a page's CPU is Gradio building the
    new session's state (docs/performance.md)."""
    cpu0, started = meter.read()[0], time.perf_counter()
    await asyncio.gather(*(page.new_conversation() for _ in range(pages)))
    last = time.perf_counter() - started
    return Opening(mode, pages, last * 1000, (meter.read()[0] - cpu0) / pages * 1000)


async def burst(mode: str, size: int, new: Callable[[], Awaitable[Any]], turn: TurnFn,
                tpot_ms: float = 0.0, spy: Callable[[], subprocess.Popen[bytes]] | None = None,
                spy_sec: float = 0.0) -> Burst:
    """`spy`: a profiler started before the burst, stopped `spy_sec` after its messages left
    (their acceptance, not the replies' streaming)."""
    result = Burst(mode, size, tpot_ms)
    conversations = [await new() for _ in range(size)]
    gate = asyncio.Event()

    async def one(i: int, conv: Any) -> None:
        await gate.wait()
        try:
            result.samples.append(await turn(conv, i, 0))
        except Exception as exc:  # counted, shown in the table
            result.errors += 1
            if result.errors <= 3:
                print(f"  ! {mode} error: {type(exc).__name__}: {str(exc)[:200]}", flush=True)

    tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(conversations)]
    profiler = spy() if spy is not None else None
    await asyncio.sleep(0.2)  # every sender waiting on the gate
    started = time.perf_counter()
    gate.set()
    if profiler is not None:
        await asyncio.sleep(spy_sec)
        profiler.send_signal(2)
        await asyncio.to_thread(profiler.wait, 60)
    await asyncio.gather(*tasks)
    result.wall_sec = time.perf_counter() - started
    return result


async def cost(mode: str, meter: CpuMeter, args: argparse.Namespace,
               new: Callable[[], Awaitable[Any]], turn: TurnFn) -> Cost:
    turns, profile = args.cost_turns, args.profile
    per_turn, open_ms = {}, 0.0
    for tokens in (SHORT, LONG):
        # Tokens 10 ms apart: each still its own read and event, four waves in seconds.
        httpx.post(f"{args.llm_url}/_control",
                   json={"reply_tokens": tokens, "tpot_ms": args.cost_tpot_ms}
                   ).raise_for_status()
        opened0, _ = meter.read()
        conversations = [await new() for _ in range(turns)]
        if tokens == SHORT:
            open_ms = (meter.read()[0] - opened0) / turns * 1000
        # Profiled as metered: the turns, not the opening of their pages.
        spy = _profiler(meter.app.pid, profile / f"{mode.replace(' ', '_')}-{tokens}.txt") \
            if profile else None
        limit = asyncio.Semaphore(args.cost_concurrency)

        async def one(i: int, conv: Any) -> None:
            async with limit:
                await turn(conv, i, 0)

        (app0, pg0), web0 = meter.read(), meter.web()
        await asyncio.gather(*(one(i, c) for i, c in enumerate(conversations)))
        (app1, pg1), web1 = meter.read(), meter.web()
        if spy is not None:
            spy.send_signal(2)  # py-spy writes its file on SIGINT
            spy.wait(60)
        per_turn[tokens] = ((app1 - app0) / turns * 1000, (pg1 - pg0) / turns * 1000,
                            (web1 - web0) / turns * 1000)
        if tokens == SHORT:
            follow_up = await _follow_ups(meter, conversations, turn, limit)
    return Cost(mode, per_turn[SHORT][0], per_turn[SHORT][1],
                (per_turn[LONG][0] - per_turn[SHORT][0]) / (LONG - SHORT), open_ms,
                per_turn[SHORT][2], (per_turn[LONG][2] - per_turn[SHORT][2]) / (LONG - SHORT),
                follow_up_ms_per_turn=follow_up)


async def _follow_ups(meter: CpuMeter, conversations: list[Any], turn: TurnFn,
                      limit: asyncio.Semaphore) -> float:
    """The app's CPU per turn for a second message in each conversation."""
    async def one(i: int, conv: Any) -> None:
        async with limit:
            await turn(conv, i, 1)

    before = meter.read()[0]
    await asyncio.gather(*(one(i, c) for i, c in enumerate(conversations)))
    return (meter.read()[0] - before) / len(conversations) * 1000


async def idle_cpu(meter: CpuMeter, seconds: float) -> float:
    """The app's CPU in ms a second while no one uses it."""
    before, started = meter.read()[0], time.monotonic()
    await asyncio.sleep(seconds)
    return (meter.read()[0] - before) / (time.monotonic() - started) * 1000


def _profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the app into collapsed stacks: the thread holding the GIL, the CPU that
    one process can give."""
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid),
                            "-r", "250", "--gil", "--subprocesses", "--format", "raw",
                            "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the load starts
    return spy


@dataclass
class Floors:
    """What the app's CPU is held against, measured in the same run: DBOS's own per turn, and
    a bare relay's per streamed token (None when no cost run was made, or it failed)."""
    engine_ms_per_turn: float
    relay_ms_per_token: float | None = None


def relay_floor(args: argparse.Namespace) -> float | None:
    """A figure beside the targets: should it fail, the run's results still count."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "relay_floor.py"), args.llm_url,
                          "--turns", str(args.cost_turns),
                          "--concurrency", str(args.cost_concurrency),
                          "--tpot-ms", str(args.cost_tpot_ms)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        print(f"  relay floor: not measured, scripts/relay_floor.py failed:\n{out.stderr[-2000:]}",
              flush=True)
        return None
    return float(json.loads(out.stdout.strip().splitlines()[-1])["cpu_ms_per_token"])


def engine_floor(db_url: str, args: argparse.Namespace) -> float:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "dbos_floor.py"), db_url,
                          "--turns", str(args.cost_turns),
                          "--concurrency", str(args.cost_concurrency)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["cpu_ms_per_turn"])


async def paced_bursts(args: argparse.Namespace, modes: list[tuple[str, Any, TurnFn]],
                       sizes: str, tpot_ms: float) -> list[Burst]:
    """Bursts of each size through each mode, the emulator at `tpot_ms` per token."""
    httpx.post(f"{args.llm_url}/_control", json={"reply_tokens": args.tokens,
                                                 "tpot_ms": tpot_ms}).raise_for_status()
    done = []
    for size in [int(x) for x in sizes.split(",")]:
        for mode, new, turn in modes:
            spy = None
            if args.profile and getattr(args, "app_pid", None) and mode != "direct":
                out = args.profile / f"burst-{mode.replace(' ', '_')}-{size}.txt"
                spy = partial(_profiler, args.app_pid, out)
            b = await burst(mode, size, new, turn, tpot_ms, spy, args.profile_burst_sec)
            done.append(b)
            print(f"  burst {mode:>8} x{size:<4} at {tpot_ms:.0f} ms/token: ttft p50 "
                  f"{b.ttft(50):7.0f} ms, {b.turns_per_sec:5.1f} turns/s, {b.errors} errors",
                  flush=True)
            if b.samples and b.samples[0].steps:
                print(f"    {'':>8} when its steps ended, ms (first / p50 / p90 / last): "
                      f"{timeline_line(b)}", flush=True)
    return done


def timeline(b: Burst) -> dict[str, dict[str, float]]:
    """When each step of a message ended (REST: the turn accepted; the chat tab: the page's
    send, its stream of the reply opened and ended, its finish) and its first words, ms after
    sending, first / p50 / p90 / last over a burst's messages: where a message's time went,
    and whether the messages were served in the order they came (docs/performance.md)."""
    marks: dict[str, list[float]] = {}
    for sample in b.samples:
        for name, at in sample.steps.items():
            marks.setdefault(name, []).append(at)
        marks.setdefault("first words", []).append(sample.ttft_ms)
    order = sorted(marks, key=lambda name: pct(marks[name], 50))
    return {name: {"first": min(marks[name]), "p50": pct(marks[name], 50),
                   "p90": pct(marks[name], 90), "last": max(marks[name])} for name in order}


def timeline_line(b: Burst) -> str:
    return "; ".join(f"{name} {t['first']:.0f} / {t['p50']:.0f} / {t['p90']:.0f} / "
                     f"{t['last']:.0f}" for name, t in timeline(b).items())


async def run(args: argparse.Namespace
              ) -> tuple[list[Burst], list[Cost], Floors, list[Opening]]:
    emulator, llm_url = start_emulator(args)
    args.llm_url = llm_url
    bursts: list[Burst] = []
    costs: list[Cost] = []
    openings: list[Opening] = []
    db: Database | None = None
    floor_db: Database | None = None
    try:
        httpx.post(f"{llm_url}/_control", json={"markdown": args.markdown}).raise_for_status()
        db, floor_db = Database(), Database()
        floor = Floors(engine_floor(floor_db.url, args))
        print(f"  engine floor: {floor.engine_ms_per_turn:.1f} ms CPU per empty turn",
              flush=True)
        direct = DirectClient(llm_url)
        counts = [int(x) for x in args.workers.split(",")] if args.workers else [None]
        for i, workers in enumerate(counts):
            label = "" if workers is None else f" w{workers}"
            env = dict(kv.split("=", 1) for kv in args.app_env)
            if workers is not None:
                env["TURN_WORKERS"] = str(workers)
            await _run_app(args, db, env, label, direct if i == 0 else None, bursts, costs,
                           openings)
        if not args.only_bursts:  # right after the cost runs: the machine's speed drifts
            floor.relay_ms_per_token = relay_floor(args)
            if floor.relay_ms_per_token is not None:
                print(f"  relay floor: {floor.relay_ms_per_token:.3f} ms CPU per streamed token",
                      flush=True)
        await direct.client.close()
    finally:
        emulator.terminate()
        for each in (db, floor_db):
            if each is not None:
                each.drop()
    return bursts, costs, floor, openings


async def _run_app(args: argparse.Namespace, db: Database, env: dict[str, str], label: str,
                   direct: DirectClient | None, bursts: list[Burst], costs: list[Cost],
                   openings: list[Opening]) -> None:
    """The bursts and the cost runs through one app (`label` names its rows); direct's
    bursts beside the first app's."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    app = None
    try:
        app = AppProcess({**app_env(db.url, args.llm_url, free_port(), workdir), **env},
                         workdir / "app.log", root=args.app_root).start(timeout=240)
        rest, page = RestClient(app.url), GradioPageClient(app.url)
        modes = [("direct", direct.new_conversation, direct.turn)] if direct else []
        modes += [("rest" + label, rest.new_conversation, rest.turn),
                  ("chat tab" + label, page.new_conversation, page.turn)]
        await burst("warm-up", 4, rest.new_conversation, rest.turn)
        await burst("warm-up", 4, page.new_conversation, page.turn)
        args.app_pid = app.pid
        if not args.only_cost:
            bursts += await paced_bursts(args, modes, args.bursts, args.tpot_ms)
            if args.full_load_bursts:
                bursts += await paced_bursts(args, modes, args.full_load_bursts,
                                             args.full_load_tpot_ms)
        meter = CpuMeter(app.pid)
        if args.page_opens and not args.only_cost:  # after the bursts: their conversations
            openings.append(await open_pages("chat tab" + label, page, meter, args.page_opens))
            o = openings[-1]
            print(f"  {o.mode}: {o.pages} pages opened at once, the last ready after "
                  f"{o.last_ms:.0f} ms, {o.cpu_ms_per_page:.1f} ms of CPU a page", flush=True)
        idle = 0.0 if args.only_bursts else await idle_cpu(meter, args.idle_sec)
        for mode, new, turn in [] if args.only_bursts else modes[-2:]:
            costs.append(await cost(mode, meter, args, new, turn))
            c = costs[-1]
            c.idle_ms_per_sec = idle
            print(f"  cost {mode:>8}: {c.app_ms_per_turn:.1f} ms CPU/turn, "
                  f"{c.ms_per_token:.3f} ms/token, PostgreSQL {c.pg_ms_per_turn:.1f} ms/turn",
                  flush=True)
        await rest.aclose()
        await page.aclose()
    finally:
        if app is not None:
            app.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def targets(bursts: list[Burst], costs: list[Cost], floor: Floors) -> list[str]:
    """The issue's targets, each as PASS or MISS with the figure."""
    checks: list[str] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append(f"  [{'PASS' if ok else 'MISS'}] {name}: {detail}")

    def beside(c: Cost) -> str:
        relay = floor.relay_ms_per_token
        return f" (a bare relay {relay:.3f} ms: {c.ms_per_token / relay:.1f} x)" \
            if relay else ""

    direct = {(b.size, b.tpot_ms): b for b in bursts if b.mode == "direct"}
    for b in bursts:
        d = direct.get((b.size, b.tpot_ms))
        if b.mode == "direct" or d is None:
            continue
        o50, o99 = b.ttft(50) - d.ttft(50), b.ttft(99) - d.ttft(99)
        ratio = b.turns_per_sec / d.turns_per_sec if d.turns_per_sec else 0.0
        name = f"burst of {b.size} at {b.tpot_ms:.0f} ms/token, {b.mode}"
        check(f"{name}: TTFT p50 within 100 ms of direct", o50 <= 100,
              f"{o50:+.0f} ms ({d.ttft(50):.0f} -> {b.ttft(50):.0f})")
        check(f"{name}: TTFT p99 within 300 ms of direct", o99 <= 300, f"{o99:+.0f} ms")
        check(f"{name}: throughput >= 0.95 x direct", ratio >= 0.95, f"{ratio:.2f}")
    for c in costs:
        engine = floor.engine_ms_per_turn
        check(f"CPU per turn, {c.mode}, <= engine floor", c.app_ms_per_turn <= engine,
              f"{c.app_ms_per_turn:.1f} ms vs floor {engine:.1f} ms "
              f"(PostgreSQL {c.pg_ms_per_turn:.1f} ms/turn beside it)")
    for c in costs:
        if c.mode.startswith("rest"):
            check(f"CPU per streamed token, {c.mode} (SSE), <= 0.03 ms",
                  c.ms_per_token <= 0.03, f"{c.ms_per_token:.3f} ms{beside(c)}")
        else:
            check(f"CPU per streamed token, {c.mode}, <= 1.5 x REST's target (0.045 ms)",
                  c.ms_per_token <= 0.045, f"{c.ms_per_token:.3f} ms{beside(c)}")
    return checks


def print_report(bursts: list[Burst], costs: list[Cost], floor: Floors,
                 args: argparse.Namespace, openings: Sequence[Opening] = ()) -> list[str]:
    shape = "Markdown replies" if args.markdown else "one-paragraph replies"
    print(f"\nBursts (emulated LLM: {args.ttft_ms:.0f} ms to the first token, then "
          f"{args.tokens} tokens at the row's ms/token, {shape}; times in ms)")
    print(f"{'mode':>9} {'burst':>5} {'ms/token':>8} {'ttft p50':>9} {'ttft p99':>9} "
          f"{'turns/s':>8} {'errors':>6}")
    for b in bursts:
        print(f"{b.mode:>9} {b.size:5d} {b.tpot_ms:8.0f} {b.ttft(50):9.0f} {b.ttft(99):9.0f} "
              f"{b.turns_per_sec:8.2f} {b.errors:6d}")
    relay = f"; a bare relay {floor.relay_ms_per_token:.3f} ms CPU per streamed token" \
        if floor.relay_ms_per_token else ""
    print(f"\nCost ({args.cost_turns} turns, {args.cost_concurrency} at once; engine floor "
          f"{floor.engine_ms_per_turn:.1f} ms CPU per empty turn{relay})")
    for c in costs:
        print(f"{c.mode:>9}: app {c.app_ms_per_turn:.1f} ms CPU/turn, "
              f"{c.ms_per_token:.3f} ms CPU/token (the web process alone {c.web_ms_per_turn:.1f}"
              f" / {c.web_ms_per_token:.3f}); PostgreSQL {c.pg_ms_per_turn:.1f} ms/turn; "
              f"opening its {'page' if c.mode.startswith('chat tab') else 'conversation'} "
              f"before: {c.open_ms:.1f} ms; idle: {c.idle_ms_per_sec:.1f} ms CPU a second; "
              f"a second message: {c.follow_up_ms_per_turn:.1f} ms CPU/turn")
    for o in openings:
        print(f"\nA room opening the link ({o.mode}): {o.pages} new visitors' pages at once, the"
              f" last ready after {o.last_ms:.0f} ms; {o.cpu_ms_per_page:.1f} ms of the app's CPU"
              " a page")
    checks = targets(bursts, costs, floor)
    print("\nTargets (issue 16):")
    print("\n".join(checks))
    return checks


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a count of 0 or more, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bursts", default="16,64")
    parser.add_argument("--ttft-ms", type=float, default=150.0)
    parser.add_argument("--tpot-ms", type=float, default=50.0)
    parser.add_argument("--tokens", type=int, default=250)
    parser.add_argument("--full-load-bursts", default="256", metavar="SIZES",
                        help="bursts paced like a 5090 at full load, after the others ('': none)")
    parser.add_argument("--full-load-tpot-ms", type=float, default=83.0,
                        help="their time per token: about 12 tokens/s per stream")
    parser.add_argument("--app-root", type=Path, default=ROOT)
    parser.add_argument("--app-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the app under test (repeatable), e.g. "
                        "TURN_START_CONCURRENCY=0 for a before/after in one machine's hour")
    parser.add_argument("--workers", default="", metavar="COUNTS",
                        help="run everything once per TURN_WORKERS count (e.g. 0,1,2), the "
                        "rows named 'rest w1' and so on ('': the app's own setting)")
    parser.add_argument("--cost-turns", type=int, default=128)
    parser.add_argument("--cost-concurrency", type=int, default=32)
    parser.add_argument("--cost-tpot-ms", type=float, default=10.0)
    parser.add_argument("--idle-sec", type=float, default=5.0,
                        help="how long the app's idle CPU is measured, before the cost runs")
    parser.add_argument("--profile", type=Path, help="py-spy the app during the cost runs and "
                        "the bursts' first seconds and write collapsed stacks here (needs "
                        "py-spy in the virtualenv)")
    parser.add_argument("--profile-burst-sec", type=float, default=1.5,
                        help="how long after a burst's messages leave its profile runs")
    parser.add_argument("--markdown", action="store_true",
                        help="replies shaped like a chat model's Markdown (paragraphs, lists, "
                        "code, a table) instead of one paragraph: the chat page renders those "
                        "by their blocks")
    parser.add_argument("--page-opens", type=_count, default=64, metavar="N",
                        help="after the bursts, N new visitors open the chat page at once "
                        "(0: not measured)")
    parser.add_argument("--only-cost", action="store_true", help="skip the bursts")
    parser.add_argument("--only-bursts", action="store_true", help="skip the cost runs")


def check_bursts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Each burst is compared with direct's of the same size and pace: the two sets of bursts
    must not repeat one."""
    sizes = {int(x) for x in args.bursts.split(",") if x}
    full = {int(x) for x in args.full_load_bursts.split(",") if x}
    if sizes & full and args.tpot_ms == args.full_load_tpot_ms:
        parser.error(f"--bursts and --full-load-bursts both run {sorted(sizes & full)} at "
                     f"{args.tpot_ms:g} ms/token; give the size once")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    check_bursts(parser, args)
    bursts, costs, floor, openings = asyncio.run(run(args))
    checks = print_report(bursts, costs, floor, args, openings)
    if args.json:
        args.json.write_text(json.dumps(report(bursts, costs, floor, checks, openings),
                                        indent=2))
    return 0


def report(bursts: list[Burst], costs: list[Cost], floor: Floors, checks: list[str],
           openings: Sequence[Opening] = ()) -> dict[str, Any]:
    """The results as --json writes them (scripts/bench.py adds them to its own)."""
    return {"floor_ms": floor.engine_ms_per_turn,
            "relay_floor_ms_per_token": floor.relay_ms_per_token, "targets": checks,
            "openings": [vars(o) for o in openings],
            "bursts": [{"mode": b.mode, "size": b.size, "tpot_ms": b.tpot_ms,
                        "ttft_p50": b.ttft(50), "ttft_p99": b.ttft(99),
                        "turns_per_sec": b.turns_per_sec, "errors": b.errors,
                        "steps": timeline(b)} for b in bursts],
            "costs": [vars(c) for c in costs]}


if __name__ == "__main__":
    sys.exit(main())
