"""Benchmark: does one person's burst starve everyone else? (issue 15, "Fair use")

The app runs as a process with accounts (SHARE_AUTH, one per person, HTTP Basic on the REST
API) against the emulated LLM, with the LLM cap at --cap (LLM_MAX_CONCURRENCY). Per mode:

    idle    10 people send 1 turn each, at once, on an idle app
    loaded  1 person sends 50 turns at once (50 conversations, per-person limits raised so the
            whole burst reaches the LLM's queue); as soon as all 50 have reached the LLM
            (8 hold its places, the rest wait), the same 10 people send 1 turn each

and it prints the 10's time to first token at p50 in both, their ratio (target: loaded within
2x of idle), and how many of the burst's turns started before each of the 10 (p50). The modes
are the fair gate (round-robin across people with preemption, the default), optionally
round-robin alone (LLM_PREEMPT=0), and LLM_FAIR_SHARE=0 (arrival order, the baseline), each on
a fresh app and database in the same run.

    python scripts/bench_fairness.py                 # 3 rounds per mode: about 3 minutes
    python scripts/bench_fairness.py --json out.json

The emulated server answers every request after --ttft-ms, then --tokens tokens at --tpot-ms
(the defaults are scripts/bench.py's: a reply takes about 1.1 s). Times are measured by the
client, from sending the message to its first `delta` event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat_core.testing.app_process import AppProcess, free_port  # noqa: E402
from scripts.bench import Database, app_env, pct, start_emulator  # noqa: E402

BURSTER = "burster"
# The gate's modes: the default (round-robin with preemption), round-robin alone, and arrival
# order (the first-come-first-served baseline).
MODES = {"fair": {"LLM_FAIR_SHARE": "1", "LLM_PREEMPT": "1"},
         "rr": {"LLM_FAIR_SHARE": "1", "LLM_PREEMPT": "0"},
         "fifo": {"LLM_FAIR_SHARE": "0"}}
PASSWORD = "bench-password-1"


@dataclass
class Sent:
    """One turn as its sender saw it (times from time.perf_counter)."""
    person: str
    sent_at: float
    first_token_at: float | None = None
    waited: bool = False  # got a `waiting` event
    reached_at: float | None = None  # its first `waiting` or `delta` event: at the LLM's gate

    @property
    def ttft_ms(self) -> float:
        assert self.first_token_at is not None
        return (self.first_token_at - self.sent_at) * 1000


@dataclass
class ModeResult:
    mode: str
    idle_ttft_ms: list[float] = field(default_factory=list)
    loaded_ttft_ms: list[float] = field(default_factory=list)
    # Loaded: from sending to reaching the LLM's gate (saving the message, reading history).
    loaded_reach_ms: list[float] = field(default_factory=list)
    # Loaded: from reaching the gate to the first token (the wait for a place, and the LLM's
    # time to first token): what the gate's order decides.
    loaded_gate_ms: list[float] = field(default_factory=list)
    # For each of the 10 in the loaded phase: the burst's turns whose first token came after
    # the 10 sent theirs and before theirs came (turns that went ahead of them).
    burst_ahead: list[int] = field(default_factory=list)
    # Per round: the burst's turns waiting for the LLM when the 10 sent theirs.
    burst_queued: list[int] = field(default_factory=list)

    @property
    def idle_p50(self) -> float:
        return pct(self.idle_ttft_ms, 50)

    @property
    def loaded_p50(self) -> float:
        return pct(self.loaded_ttft_ms, 50)

    @property
    def ratio(self) -> float:
        return self.loaded_p50 / self.idle_p50


class Person:
    def __init__(self, base_url: str, name: str) -> None:
        self.name = name
        self.http = httpx.AsyncClient(base_url=base_url, timeout=600, auth=(name, PASSWORD),
                                      limits=httpx.Limits(max_connections=None))

    async def new_conversation(self) -> str:
        response = await self.http.post("/api/conversations")
        response.raise_for_status()
        return str(response.json()["id"])

    async def send(self, cid: str, text: str, sent: Sent,
                   at_llm: Callable[[], None] | None = None) -> Sent:
        """Send one message with ?stream=true and read its events to the end; `at_llm` is
        called once the turn has reached the LLM: told to wait for it, or its first token."""
        sent.sent_at = time.perf_counter()
        async with self.http.stream("POST", f"/api/conversations/{cid}/messages?stream=true",
                                    json={"content": text}) as response:
            if response.status_code != 200:
                raise RuntimeError(f"{self.name}: {response.status_code} "
                                   f"{(await response.aread())[:300]!r}")
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    continue
                if not line.startswith("data: "):
                    continue
                if event == "error":
                    raise RuntimeError(f"{self.name}: {line[:300]}")
                if event not in ("waiting", "delta"):
                    continue
                if sent.reached_at is None:
                    sent.reached_at = time.perf_counter()
                    if at_llm is not None:
                        at_llm()
                if event == "waiting":
                    sent.waited = True
                elif sent.first_token_at is None:
                    sent.first_token_at = time.perf_counter()
        if sent.first_token_at is None:
            raise RuntimeError(f"{self.name}: the reply ended without a token")
        return sent


async def ten_at_once(people: list[Person], label: str,
                      cids: list[str] | None = None) -> list[Sent]:
    """One turn from each person at once (in conversations made before, if given)."""
    cids = cids or [await p.new_conversation() for p in people]
    turns = [Sent(p.name, 0.0) for p in people]
    await asyncio.gather(*(p.send(cid, f"{label}: hello from {p.name}", t)
                           for p, cid, t in zip(people, cids, turns)))
    return turns


async def loaded_phase(burster: Person, people: list[Person], args: argparse.Namespace,
                       result: ModeResult) -> None:
    """The burst, then the 10 as soon as every turn of the burst has reached the LLM (holds
    a place or waits for one)."""
    cids = [await burster.new_conversation() for _ in range(args.burst)]
    their_cids = [await p.new_conversation() for p in people]
    burst = [Sent(BURSTER, 0.0) for _ in cids]
    arrived = asyncio.Event()
    count = 0

    def one_arrived() -> None:
        nonlocal count
        count += 1
        if count == len(burst):
            arrived.set()

    burst_tasks = [asyncio.create_task(burster.send(cid, f"burst {i}", s, one_arrived))
                   for i, (cid, s) in enumerate(zip(cids, burst))]
    await asyncio.wait_for(arrived.wait(), timeout=300)
    # The burst's turns waiting for the LLM at this moment (told to wait, no token yet).
    result.burst_queued.append(sum(s.waited and s.first_token_at is None for s in burst))
    theirs = await ten_at_once(people, "loaded", their_cids)
    await asyncio.gather(*burst_tasks)
    result.loaded_ttft_ms += [t.ttft_ms for t in theirs]
    result.loaded_reach_ms += [((t.reached_at or t.sent_at) - t.sent_at) * 1000 for t in theirs]
    result.loaded_gate_ms += [(t.first_token_at - (t.reached_at or t.sent_at)) * 1000
                              for t in theirs if t.first_token_at is not None]
    for t in theirs:
        assert t.first_token_at is not None
        result.burst_ahead.append(sum(
            1 for s in burst if s.first_token_at is not None
            and t.sent_at < s.first_token_at < t.first_token_at))


def accounts_env(args: argparse.Namespace, names: list[str]) -> dict[str, str]:
    return {
        "SHARE_AUTH": ",".join(f"{n}:{PASSWORD}" for n in names),
        "SHARE_ADMINS": BURSTER,
        # The burst must reach the LLM's queue, not stop at the per-person limits.
        "SHARE_MAX_IN_FLIGHT": str(args.burst + 10),
        "SHARE_MAX_TURNS_PER_MINUTE": str(args.burst * 10),
        "LLM_MAX_CONCURRENCY": str(args.cap),
    }


async def run_mode(mode: str, llm_url: str, args: argparse.Namespace) -> ModeResult:
    db = Database()
    workdir = Path(tempfile.mkdtemp(prefix="bench-fair-"))
    names = [BURSTER] + [f"person{i:02d}" for i in range(args.people)]
    env = {**app_env(db.url, llm_url, free_port(), workdir), **accounts_env(args, names),
           **MODES[mode]}
    app = AppProcess(env, workdir / "app.log", root=args.app_root)
    result = ModeResult(mode)
    try:
        app.start(timeout=300)  # a loaded machine imports the app slowly
        burster = Person(app.url, BURSTER)
        people = [Person(app.url, n) for n in names[1:]]
        await ten_at_once(people, "warm-up")  # first-turn costs (model, tokenizer probes)
        for _ in range(args.repeat):  # idle, then loaded, again: both see the same machine
            result.idle_ttft_ms += [t.ttft_ms for t in await ten_at_once(people, "idle")]
            await loaded_phase(burster, people, args, result)
        for p in [burster, *people]:
            await p.http.aclose()
    except Exception:
        print(app.log(), file=sys.stderr)
        raise
    finally:
        app.stop()
        db.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def report(results: list[ModeResult], args: argparse.Namespace) -> None:
    print(f"\n{args.people} people, 1 turn each; then with {args.burst} turns of one person in "
          f"flight; LLM cap {args.cap}; emulated LLM {args.ttft_ms:.0f} ms to first token, "
          f"{args.tokens} tokens at {args.tpot_ms:.0f} ms")
    print(f"{'mode':>6}  {'idle p50 ms':>11}  {'loaded p50 ms':>13}  {'ratio':>6}  "
          f"{'loaded p99 ms':>13}  {'to the gate p50':>15}  {'at the gate p50':>15}  "
          f"{'burst queued':>12}  {'burst turns ahead p50':>21}")
    print(f"({args.repeat} rounds of idle then loaded per mode; percentiles over all rounds; "
          "loaded ≈ to the gate (sending to reaching the LLM's queue) + at the gate (to the "
          "first token); burst queued: the fewest of the burst's turns waiting when the 10 sent "
          "theirs)")
    for r in results:
        print(f"{r.mode:>6}  {r.idle_p50:11.0f}  {r.loaded_p50:13.0f}  {r.ratio:5.1f}x  "
              f"{pct(r.loaded_ttft_ms, 99):13.0f}  {pct(r.loaded_reach_ms, 50):15.0f}  "
              f"{pct(r.loaded_gate_ms, 50):15.0f}  "
              f"{min(r.burst_queued):>12}  "
              f"{pct(r.burst_ahead, 50):21.0f}")
    fair = next((r for r in results if r.mode == "fair"), None)
    if fair is not None:
        verdict = "met" if fair.ratio <= 2.0 else "NOT met"
        print(f"target (fair: loaded p50 within 2x of idle): {verdict} ({fair.ratio:.1f}x)")


async def main(args: argparse.Namespace) -> list[ModeResult]:
    emulator, llm_url = start_emulator(args)
    try:
        results = []
        for mode in args.modes.split(","):
            print(f"mode {mode}...", flush=True)
            results.append(await run_mode(mode, llm_url, args))
        return results
    finally:
        emulator.terminate()
        emulator.wait(10)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=10)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--cap", type=int, default=8, help="LLM_MAX_CONCURRENCY")
    ap.add_argument("--modes", default="fair,fifo",
                    help="fair (round-robin with preemption, the default), rr (round-robin "
                    "without preemption: LLM_PREEMPT=0), fifo (arrival order: the baseline)")
    ap.add_argument("--ttft-ms", type=float, default=100.0)
    ap.add_argument("--tpot-ms", type=float, default=25.0)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of idle then loaded")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--app-root", type=Path, default=ROOT,
                    help="the source tree whose app.py runs (another checkout, to compare)")
    return ap.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    outcome = asyncio.run(main(arguments))
    report(outcome, arguments)
    if arguments.json:
        arguments.json.write_text(json.dumps(
            [{**asdict(r), "idle_p50": r.idle_p50, "loaded_p50": r.loaded_p50,
              "ratio": r.ratio} for r in outcome], indent=2))
