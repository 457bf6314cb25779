"""Benchmark: what the app adds on top of the LLM server, measured side by side in one run.

The same workload (conversations of several streaming turns, each turn sending the history so
far) runs against
    direct   the emulated vLLM server, straight through the openai client
    service  ChatService in this process (DBOS workflow, PostgreSQL, streaming from memory)
    rest     app.py's REST API, streaming (server-sent events)
    gradio   app.py's Gradio API (/gradio_api/call/send), streaming
    page     the chat page's own events for Enter in the message box, as a browser runs them
             (queue/join, every step of the chain; not in the default modes)
at several concurrency levels, and prints one table: turns/s, time to first token p50/p99,
turn latency p50/p99, overhead against direct, throughput against direct, the app's CPU time per
turn and peak memory, and PostgreSQL transactions per turn. Then one turn at a time on a fresh
conversation and on one with 10,000 earlier messages. Targets are checked at the end.

    python scripts/bench.py --quick        # concurrency 1, 16, 64: a few minutes
    python scripts/bench.py                # 1, 16, 64, 256, 512

The emulated server (chat_core/testing/emulated_llm.py, its own process) stands in for a GPU: it
answers every request after --ttft-ms, then one token every --tpot-ms. Everything shares this
machine's cores, so the numbers are comparisons within one run, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat_core.testing.app_process import AppProcess, free_port  # noqa: E402
from chat_core.config import load_settings  # noqa: E402
from chat_core.llm.client import LLMClient  # noqa: E402
from chat_core.runtime import ChatRuntime  # noqa: E402
from chat_core.ui.chat.streaming import WAITING_MARK  # noqa: E402
from chat_core.ui.chat.view import PENDING_TEXT  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


@dataclass
class Sample:
    ttft_ms: float
    latency_ms: float
    # When each of the page's steps ended, ms after the message was sent (the chat tab's
    # chain: its send, the reply followed, its finish), to say where a burst's time goes.
    steps: dict[str, float] = field(default_factory=dict)


# One for every client below: httpx would build one (loading the CA bundle) per client.
_TLS = ssl.create_default_context()


def own_client(base_url: str) -> httpx.AsyncClient:
    """The HTTP client of one person (their browser, their script), with connections of its
    own. One client shared by hundreds of conversations cost the benchmark itself seconds in a
    burst: httpcore's pool looks at every connection each time a request starts or ends (46 %
    of the benchmark's CPU in the chat tab's burst of 256, holding the page's streams back by
    up to 6 s: docs/performance.md), a delay that was the client's, not the app's."""
    return httpx.AsyncClient(base_url=base_url, timeout=600, verify=_TLS)


@dataclass
class Result:
    mode: str
    concurrency: int
    samples: list[Sample] = field(default_factory=list)
    wall_sec: float = 0.0
    errors: int = 0
    cpu_sec: float | None = None
    peak_rss_mb: float | None = None
    db_tx: int | None = None

    @property
    def turns(self) -> int:
        return len(self.samples)

    @property
    def turns_per_sec(self) -> float:
        return self.turns / self.wall_sec if self.wall_sec else 0.0

    def p(self, attr: str, q: float) -> float:
        return pct([getattr(s, attr) for s in self.samples], q)


class Database:
    def __init__(self) -> None:
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = PG_ADMIN.rsplit("/", 1)[0] + "/" + self.name

    def transactions(self) -> int:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE"
                               " datname = %s", (self.name,)).fetchone()
        return int(row[0]) if row else 0

    def drop(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class ProcessMeter:
    """CPU seconds and peak RSS of one process (and its children) while a level runs."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self.cpu0 = self._cpu()
        self.peak = self.proc.memory_info().rss
        self._task = asyncio.create_task(self._sample())

    def stop(self) -> tuple[float, float]:
        assert self._task is not None
        self._task.cancel()
        return self._cpu() - self.cpu0, self.peak / 2**20


# -- clients for each mode ---------------------------------------------------------------------

TurnFn = Callable[[Any, int, int], Awaitable[Sample]]


MIN_SAMPLES = [30]


async def run_level(mode: str, concurrency: int, turns_per_conv: int,
                    new_conversation: Callable[[], Awaitable[Any]], turn: TurnFn) -> Result:
    """Each of `concurrency` conversations runs its turns back to back; at low concurrency
    conversations get more turns, so that every level has at least MIN_SAMPLES samples."""
    result = Result(mode, concurrency)
    turns_per_conv = max(turns_per_conv, -(-MIN_SAMPLES[0] // concurrency))
    conversations = [await new_conversation() for _ in range(concurrency)]

    async def converse(index: int, conv: Any) -> None:
        for n in range(turns_per_conv):
            try:
                result.samples.append(await turn(conv, index, n))
            except Exception as exc:  # counted, and shown in the table
                result.errors += 1
                if result.errors <= 3:
                    print(f"  ! {mode} error: {type(exc).__name__}: {str(exc)[:200]}",
                          flush=True)

    started = time.perf_counter()
    await asyncio.gather(*(converse(i, c) for i, c in enumerate(conversations)))
    result.wall_sec = time.perf_counter() - started
    return result


def text_for(index: int, n: int) -> str:
    return f"conversation {index} turn {n}: tell me something about durable workflows"


class DirectClient:
    """What a client of vLLM would do itself: keep the history, stream each reply."""

    def __init__(self, base_url: str) -> None:
        self.client = LLMClient(base_url, max_concurrency=100_000, read_timeout_sec=300)

    async def new_conversation(self) -> list[dict[str, str]]:
        return []

    async def turn(self, history: list[dict[str, str]], index: int, n: int) -> Sample:
        history.append({"role": "user", "content": text_for(index, n)})
        started = time.perf_counter()
        first: list[float] = []

        async def on_delta(delta: str) -> bool:
            if not first:
                first.append(time.perf_counter())
            return False

        completion = await self.client.stream_chat(history, temperature=0.7, max_tokens=256,
                                                   top_p=1.0, on_delta=on_delta)
        ended = time.perf_counter()
        history.append({"role": "assistant", "content": completion.text})
        return Sample((first[0] - started) * 1000, (ended - started) * 1000)


class ServiceClient:
    def __init__(self, service: Any) -> None:
        self.service = service

    async def new_conversation(self) -> str:
        return str((await self.service.create_conversation())["id"])

    async def turn(self, cid: str, index: int, n: int) -> Sample:
        started = time.perf_counter()
        turn = await self.service.start_turn(cid, text_for(index, n))
        first = None
        async for snap in self.service.watch_turn(turn.turn_id):
            if first is None and snap.text:
                first = time.perf_counter()
        await self.service.wait_turn(turn)
        ended = time.perf_counter()
        return Sample(((first or ended) - started) * 1000, (ended - started) * 1000)


class RestClient:
    """An API client per conversation (own_client)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.clients: dict[str, httpx.AsyncClient] = {}

    async def new_conversation(self) -> str:
        client = own_client(self.base_url)
        cid = str((await client.post("/api/conversations")).json()["id"])
        self.clients[cid] = client
        return cid

    def _client(self, cid: str) -> httpx.AsyncClient:
        """A conversation made elsewhere (the long one) gets its client when first used."""
        if cid not in self.clients:
            self.clients[cid] = own_client(self.base_url)
        return self.clients[cid]

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    async def turn(self, cid: str, index: int, n: int) -> Sample:
        started = time.perf_counter()
        first = None
        done = False
        steps: dict[str, float] = {}
        async with self._client(cid).stream(
                "POST", f"/api/conversations/{cid}/messages?stream=true",
                json={"content": text_for(index, n)}) as response:
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "turn":  # the turn is recorded: its stream begins
                        steps["accepted"] = (time.perf_counter() - started) * 1000
                    elif event == "delta" and first is None:
                        first = time.perf_counter()
                    elif event == "done":
                        done = True
                    elif event == "error":
                        raise RuntimeError(line[6:200])
        ended = time.perf_counter()
        if not done:
            raise RuntimeError("stream ended without a done event")
        return Sample(((first or ended) - started) * 1000, (ended - started) * 1000, steps)


class GradioClient:
    """Gradio's HTTP API as its own clients use it: join the queue, read the event stream."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.pages: list[httpx.AsyncClient] = []

    async def new_conversation(self) -> dict[str, Any]:
        conv = {"id": None, "http": own_client(self.base_url)}
        self.pages.append(conv["http"])
        return conv

    async def aclose(self) -> None:
        for client in self.pages:
            await client.aclose()

    async def turn(self, conv: dict[str, Any], index: int, n: int) -> Sample:
        started = time.perf_counter()
        joined = await conv["http"].post("/gradio_api/call/send", json={
            "data": [text_for(index, n), conv["id"]]})
        event_id = joined.json()["event_id"]
        first = None
        outputs = None
        async with conv["http"].stream("GET", f"/gradio_api/call/send/{event_id}") as response:
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event in ("generating", "complete"):
                    data = json.loads(line[6:])
                    if isinstance(data[0], str):
                        conv["id"] = data[0]
                    if isinstance(data[2], list):
                        outputs = data[2]
                        if first is None and len(outputs) >= 2:
                            text = outputs[-1]["content"]
                            text = text[0]["text"] if isinstance(text, list) else text
                            if shows_words(text):
                                first = time.perf_counter()
                elif event == "error":
                    raise RuntimeError(line[:200])
        ended = time.perf_counter()
        if outputs is None:
            raise RuntimeError("no output")
        return Sample(((first or ended) - started) * 1000, (ended - started) * 1000)


class GradioPageClient:
    """What the chat page itself does when Enter is pressed in the message box: run the events
    that box's submit triggers, one after the other as the page chains them (`.then()`), each
    joined on Gradio's queue and followed on the session's event stream (or, for a step that
    skips the queue, posted to its route), with the values the page would send. Works against
    any version of the page: it reads the chain from /config.

    Each conversation is a page opened first: its load events and the steps chained after
    them run (which is when Gradio builds the session's state, a copy of the page's
    configuration) before any message is sent, as for a room of people who have the page open
    when they press Enter together. Steps chained after the same step run together, as in a
    browser. A step the page runs as its own script (no server side) is the reply drawn from
    the app's event stream (chat_core/ui/chat/live_reply.py): the client reads that stream as
    the page does, and with no reply to follow the script fails its step, which ends that
    branch of the chain (Gradio runs a `.then()` step only after one that succeeded)."""

    def __init__(self, base_url: str) -> None:
        self.http = own_client(base_url)  # the page's configuration; each page its own
        self.pages: list[httpx.AsyncClient] = []
        self.chain: list[dict[str, Any]] = []
        self.on_load: list[dict[str, Any]] = []
        self.after: dict[int, list[dict[str, Any]]] = {}  # the steps chained after each

    async def _load_chain(self) -> None:
        config = (await self.http.get("/config")).json()
        ids = {c["props"].get("elem_id"): c["id"] for c in config["components"]
               if isinstance(c.get("props"), dict)}
        self.box, self.chatbot = ids["message-box"], ids["chatbot"]
        self.live = ids.get("live-turn")
        self.conversation = next(c["id"] for c in config["components"]
                                 if c.get("type") == "browserstate")
        deps = config["dependencies"]
        self.on_load = [d for d in deps if d.get("backend_fn")
                        and any(t[1] == "load" for t in d["targets"])]
        for d in deps:
            if d.get("trigger_after") is not None:
                self.after.setdefault(d["trigger_after"], []).append(d)
        step = next(d for d in deps if [self.box, "submit"] in d["targets"])
        while step is not None:
            self.chain.append(step)
            step = next((d for d in deps if d.get("trigger_after") == step["id"]), None)

    async def new_conversation(self) -> dict[str, Any]:
        """A page opened by a new visitor (nothing in its browser storage)."""
        if not self.chain:
            await self._load_chain()
        conv: dict[str, Any] = {"id": None, "session": uuid.uuid4().hex,
                                "http": own_client(str(self.http.base_url)),
                                "queued": asyncio.Lock()}
        self.pages.append(conv["http"])
        for step in self.on_load:
            await self._run_chain(step, conv,
                                  next(t[0] for t in step["targets"] if t[1] == "load"))
        return conv

    async def _run_chain(self, step: dict[str, Any], conv: dict[str, Any], trigger: int
                         ) -> None:
        """`step` and the steps chained after it, those after the same step together, all
        set off by `trigger` (the page's load)."""
        if await self._run_step(step, self._inputs(step, conv), conv, [], trigger) is False:
            return
        await asyncio.gather(*(self._run_chain(after, conv, trigger)
                               for after in self.after.get(step["id"], [])))

    async def aclose(self) -> None:
        for client in [self.http, *self.pages]:
            await client.aclose()

    async def turn(self, conv: dict[str, Any], index: int, n: int) -> Sample:
        started = time.perf_counter()
        first: list[float] = []
        steps: dict[str, float] = {}
        for step in self.chain:
            data = self._inputs(step, conv, text_for(index, n))
            if await self._run_step(step, data, conv, first) is False:
                break  # the page's script had no reply to follow: the chain ends
            name = "reply followed" if not step.get("backend_fn") else \
                step.get("api_name") or str(step["id"])
            steps[name] = (time.perf_counter() - started) * 1000
            if "opened" in conv:
                asked, opened = conv.pop("opened")
                steps["stream asked"] = (asked - started) * 1000
                steps["stream opened"] = (opened - started) * 1000
        ended = time.perf_counter()
        return Sample(((first[0] if first else ended) - started) * 1000,
                      (ended - started) * 1000, steps)

    def _inputs(self, step: dict[str, Any], conv: dict[str, Any], text: str | None = None
                ) -> list[Any]:
        """What the page sends for `step`'s inputs: the message box's text, the conversation
        it shows, the reply it follows; None for the rest (states are the server's own)."""
        return [text if i == self.box else conv["id"] if i == self.conversation else
                conv.get("live") if i == self.live else None for i in step["inputs"]]

    async def _run_step(self, step: dict[str, Any], data: list[Any], conv: dict[str, Any],
                        first: list[float], trigger: int | None = None) -> bool | None:
        """False: the step failed as the page's script does with no reply to follow."""
        if not step.get("backend_fn"):
            if self.live not in step["inputs"]:  # a script with nothing to ask the server
                return None
            if not conv.get("live"):  # as that version of the page's script does
                return False if re.search(r"if \(!turnId\) throw", step["js"]) else None
            conv["opened"] = await self._follow_live(conv, first)
            return None
        trigger = self.box if trigger is None else trigger
        body = {"data": data, "event_data": None, "fn_index": step["id"],
                "trigger_id": trigger, "session_hash": conv["session"]}
        http = conv["http"]
        if step.get("queue") is False:  # the page posts these straight to the event's route
            answer = await http.post(f"/gradio_api/run/{step['api_name']}", json=body)
            answer.raise_for_status()
            self._note(step, answer.json()["data"], conv, first)
            return
        async with conv["queued"]:
            await self._queued(step, body, conv, first)

    async def _queued(self, step: dict[str, Any], body: dict[str, Any], conv: dict[str, Any],
                      first: list[float]) -> None:
        """A step through Gradio's queue: joined, then followed on the session's event stream
        (one at a time for a page: a browser reads all of a session's events on one stream,
        and a second stream of the same session would not get them)."""
        http = conv["http"]
        joined = await http.post("/gradio_api/queue/join", json=body)
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        outputs: list[Any] = []
        async with http.stream("GET", "/gradio_api/queue/data",
                                    params={"session_hash": conv["session"]}) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                message = json.loads(line[6:])
                if message.get("event_id") != event_id:
                    continue
                if message.get("msg") in ("process_generating", "process_completed"):
                    output = message.get("output") or {}
                    if "error" in output and output["error"]:
                        raise RuntimeError(str(output["error"])[:200])
                    outputs = _apply_outputs(outputs, output.get("data"))
                    self._note(step, outputs, conv, first)
                if message.get("msg") == "process_completed":
                    return

    async def _follow_live(self, conv: dict[str, Any], first: list[float]
                           ) -> tuple[float, float]:
        """Reads the reply's stream as the page does; returns when it was asked for and when
        its headers came."""
        asked = time.perf_counter()
        async with conv["http"].stream("GET", f"/api/turns/{conv['live']}/events",
                                    params={"render": "html"}) as response:
            opened = time.perf_counter()
            async for line in response.aiter_lines():
                if line.startswith("data: ") and not first and shows_words(
                        json.loads(line[6:]).get("html")):
                    first.append(time.perf_counter())
        return asked, opened

    def _note(self, step: dict[str, Any], outputs: list[Any], conv: dict[str, Any],
              first: list[float]) -> None:
        """The conversation's id and the turn the page follows once known, and when the reply
        first shows text."""
        for component, value in zip(step["outputs"], outputs):
            value = value.get("value") if isinstance(value, dict) and \
                value.get("__type__") == "update" else value
            if component == self.conversation and isinstance(value, str):
                conv["id"] = value
            elif component == self.live and isinstance(value, str):
                conv["live"] = value
            elif component == self.chatbot and isinstance(value, list) and value and \
                    not first and value[-1].get("role") == "assistant":
                content = value[-1]["content"]
                text = content[0].get("text") if isinstance(content, list) and content \
                    else content
                if shows_words(text):
                    first.append(time.perf_counter())


def shows_words(content: Any) -> bool:
    """Whether a reply's entry in the pane shows some of its words: not the pending mark, not
    the place in the LLM's line (streaming.waiting_entry)."""
    if not isinstance(content, str):
        return False
    text = re.sub(r"<[^>]*>", "", content).strip()
    return bool(text) and text != PENDING_TEXT and not text.startswith(WAITING_MARK)


def _apply_outputs(current: list[Any], data: Any) -> list[Any]:
    """Gradio streams a generator's first outputs whole and then each output as a list of
    edits ([op, path, value]) against the one before."""
    if not isinstance(data, list):
        return current
    if not current:
        return list(data)
    return [_patch(old, new) for old, new in zip(current, data)]


def _patch(value: Any, edits: Any) -> Any:
    if not isinstance(edits, list) or not all(isinstance(e, list) and len(e) == 3
                                              for e in edits):
        return edits
    for op, path, new in edits:
        if not path:
            value = value + new if op == "append" else new
            continue
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if op == "replace":
            parent[key] = new
        elif op == "append":
            parent[key] += new
        elif op == "add":
            parent.insert(key, new) if isinstance(parent, list) else parent.__setitem__(key, new)
        elif op == "delete":
            del parent[key]
    return value


# -- orchestration -----------------------------------------------------------------------------


def start_emulator(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "chat_core.testing.emulated_llm", "--port", str(port),
                             "--ttft-ms", str(args.ttft_ms), "--tpot-ms", str(args.tpot_ms),
                             "--tokens", str(args.tokens), "--max-model-len", "16384"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("emulated LLM did not start")


def app_env(db_url: str, llm_url: str, port: int, workdir: Path) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "VLLM_BASE_URL": llm_url, "PORT": str(port),
            "DATA_DIR": str(workdir), "EXECUTOR_ID": f"bench-{port}", "LOG_LEVEL": "WARNING",
            "LLM_MAX_CONCURRENCY": "1024", "LLM_READ_TIMEOUT_SEC": "300",
            "MAX_MESSAGE_CHARS": "100000"}


async def bench(args: argparse.Namespace) -> list[Result]:
    levels = [int(x) for x in args.concurrency.split(",")]
    modes = args.modes.split(",")
    emulator, llm_url = start_emulator(args)
    args.llm_url = llm_url
    db = Database()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    results: list[Result] = []
    app_proc = None
    try:
        if "direct" in modes:
            direct = DirectClient(llm_url)
            for c in levels:
                results.append(await run_level("direct", c, args.turns, direct.new_conversation,
                                               direct.turn))
                report_line(results[-1])
            await direct.client.close()

        if "service" in modes:
            env = app_env(db.url, llm_url, free_port(), workdir)
            runtime = ChatRuntime(load_settings(env, env_file=ROOT / "no-such.env"))
            service = await runtime.start()
            try:
                client = ServiceClient(service)
                meter = ProcessMeter(os.getpid())
                for c in levels:
                    tx0 = db.transactions()
                    meter.start()
                    r = await run_level("service", c, args.turns, client.new_conversation,
                                        client.turn)
                    r.cpu_sec, r.peak_rss_mb = meter.stop()
                    r.db_tx = db.transactions() - tx0
                    results.append(r)
                    report_line(r)
            finally:
                await runtime.stop()

        if {"rest", "gradio", "page"} & set(modes) or args.long_messages:
            app_proc = AppProcess(app_env(db.url, llm_url, free_port(), workdir),
                                  workdir / "app.log", root=args.app_root).start()
            base = app_proc.url
            meter = ProcessMeter(app_proc.pid)
            for mode, client_cls in (("rest", RestClient), ("gradio", GradioClient),
                                     ("page", GradioPageClient)):
                if mode not in modes:
                    continue
                client = client_cls(base)
                for c in levels:
                    tx0 = db.transactions()
                    meter.start()
                    r = await run_level(mode, c, args.turns, client.new_conversation,
                                        client.turn)
                    r.cpu_sec, r.peak_rss_mb = meter.stop()
                    r.db_tx = db.transactions() - tx0
                    results.append(r)
                    report_line(r)
                await client.aclose()
            if args.long_messages:
                results.extend(await long_conversation(base, db, args))
    finally:
        if app_proc is not None:
            app_proc.stop()
        emulator.terminate()
        db.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


async def long_conversation(base: str, db: Database, args: argparse.Namespace) -> list[Result]:
    """The same single turns on a fresh conversation and on one with N earlier messages."""
    client = RestClient(base)
    long_id = str(uuid.uuid4())
    with psycopg.connect(db.url, autocommit=True) as conn:
        # Rows shaped like the ones turns write; inserted in bulk because the measurement is
        # about reading a long conversation, not about writing it.
        turns = args.long_messages // 2
        conn.execute("INSERT INTO conversations (id, title, last_seq) VALUES (%s, 'long', %s)",
                     (long_id, turns))
        conn.execute(
            "INSERT INTO messages (id, conversation_id, seq, role, content, status)"
            " SELECT gen_random_uuid(), %s, g, 'user', 'earlier question ' || g || ' about"
            " the history of the durable workflow idea', 'complete'"
            " FROM generate_series(1, %s) g", (long_id, turns))
        conn.execute(
            "INSERT INTO messages (id, conversation_id, seq, role, parent_id, content, status)"
            " SELECT gen_random_uuid(), %s, u.seq, 'assistant', u.id, 'an earlier answer of"
            " about the same length as the question ' || u.seq, 'complete'"
            " FROM messages u WHERE u.conversation_id = %s", (long_id, long_id))
        conn.execute("ANALYZE messages")
    out = []
    for label, make in (("fresh", client.new_conversation), ("long", None)):
        r = Result(f"rest-{label}" if label == "fresh" else
                   f"rest-{args.long_messages // 1000}k-msgs", 1)
        started = time.perf_counter()
        for i in range(args.long_turns):
            cid = await make() if make else long_id
            r.samples.append(await client.turn(cid, 10_000 + i, i))
        r.wall_sec = time.perf_counter() - started
        out.append(r)
        report_line(r)
    await client.aclose()

    # The same request straight to the LLM server: the history the app sent (the turns that
    # fitted the window), so the comparison isolates what the app adds.
    with psycopg.connect(db.url, autocommit=True) as conn:
        sent = conn.execute(
            "SELECT (params->>'prompt_messages')::int FROM messages WHERE conversation_id = %s"
            " AND role = 'assistant' AND params ? 'prompt_messages' ORDER BY seq DESC LIMIT 1",
            (long_id,)).fetchone()
        keep = sent[0] - 1 if sent else 50  # the earlier messages; the new one is added below
        rows = conn.execute(
            "SELECT role, content FROM messages WHERE conversation_id = %s AND status ="
            " 'complete' ORDER BY seq DESC, role ASC LIMIT %s", (long_id, keep)).fetchall()
    history = [{"role": role, "content": content} for role, content in reversed(rows)]
    direct = DirectClient(args.llm_url)
    r = Result(f"direct-{args.long_messages // 1000}k-msgs", 1)
    started = time.perf_counter()
    for i in range(args.long_turns):
        r.samples.append(await direct.turn(list(history), 20_000 + i, i))
    r.wall_sec = time.perf_counter() - started
    await direct.client.close()
    out.append(r)
    report_line(r)
    return out


def report_line(r: Result) -> None:
    print(f"  measured {r.mode:>14} x{r.concurrency:<4} {r.turns:5d} turns, "
          f"{r.turns_per_sec:7.1f}/s, latency p50 {r.p('latency_ms', 50):7.1f} ms"
          + (f", {r.errors} errors" if r.errors else ""), flush=True)


def print_table(results: list[Result], args: argparse.Namespace) -> list[str]:
    direct = {r.concurrency: r for r in results if r.mode == "direct"}
    header = ("mode", "conc", "turns", "turns/s", "ttft p50", "ttft p99", "lat p50",
              "lat p99", "overhead p50", "overhead p99", "vs direct", "CPU ms/turn",
              "peak MB", "DB tx/turn", "errors")
    rows = []
    long_direct = next((r for r in results if r.mode.startswith("direct-")), None)
    for r in results:
        d = direct.get(r.concurrency)
        if r.mode.startswith("rest-"):
            d = long_direct if r.mode.endswith("-msgs") and long_direct else direct.get(1)
        over50 = r.p("latency_ms", 50) - d.p("latency_ms", 50) if d else None
        over99 = r.p("latency_ms", 99) - d.p("latency_ms", 99) if d else None
        ratio = r.turns_per_sec / d.turns_per_sec if d and d.turns_per_sec and \
            not r.mode.startswith(("rest-", "direct-")) else None
        rows.append((r.mode, str(r.concurrency), str(r.turns), f"{r.turns_per_sec:.1f}",
                     f"{r.p('ttft_ms', 50):.1f}", f"{r.p('ttft_ms', 99):.1f}",
                     f"{r.p('latency_ms', 50):.1f}", f"{r.p('latency_ms', 99):.1f}",
                     "" if r.mode.startswith("direct") or over50 is None else f"{over50:+.1f}",
                     "" if r.mode.startswith("direct") or over99 is None else f"{over99:+.1f}",
                     "" if ratio is None or r.mode == "direct" else f"{ratio:.2f}",
                     "" if r.cpu_sec is None else f"{r.cpu_sec / max(r.turns, 1) * 1000:.1f}",
                     "" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}",
                     "" if r.db_tx is None else f"{r.db_tx / max(r.turns, 1):.1f}",
                     str(r.errors)))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    print()
    print(f"Emulated LLM: time to first token {args.ttft_ms} ms, {args.tpot_ms} ms per token, "
          f"{args.tokens} tokens per reply; {args.turns} turns per conversation; "
          f"{os.cpu_count()} CPU cores shared by all processes; times in ms.")
    print("\n".join(lines))
    return lines


def check_targets(results: list[Result]) -> list[str]:
    direct = {r.concurrency: r for r in results if r.mode == "direct"}
    checks = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append(f"  [{'PASS' if ok else 'MISS'}] {name}: {detail}")

    for r in results:
        if r.mode not in ("service", "rest", "gradio", "page"):
            continue
        d = direct.get(r.concurrency)
        if d is None:
            continue
        if r.concurrency == 1:
            o50 = r.p("latency_ms", 50) - d.p("latency_ms", 50)
            o99 = r.p("latency_ms", 99) - d.p("latency_ms", 99)
            check(f"{r.mode} overhead p50 <= 15 ms at concurrency 1", o50 <= 15, f"{o50:.1f} ms")
            check(f"{r.mode} overhead p99 <= 50 ms at concurrency 1", o99 <= 50, f"{o99:.1f} ms")
            t = r.p("ttft_ms", 50) - d.p("ttft_ms", 50)
            check(f"{r.mode} time to first token <= direct + 20 ms (p50)", t <= 20,
                  f"{t:+.1f} ms")
        if r.concurrency in (64, 512):
            want = 0.95 if r.concurrency == 64 else 0.8
            ratio = r.turns_per_sec / d.turns_per_sec if d.turns_per_sec else 0
            check(f"{r.mode} throughput >= {want} x direct at {r.concurrency}", ratio >= want,
                  f"{ratio:.2f}")
    fresh = next((r for r in results if r.mode == "rest-fresh"), None)
    long = next((r for r in results if r.mode.startswith("rest-") and r.mode != "rest-fresh"),
                None)
    long_direct = next((r for r in results if r.mode.startswith("direct-")), None)
    if fresh and long and long_direct and 1 in direct:
        of = fresh.p("latency_ms", 50) - direct[1].p("latency_ms", 50)
        ol = long.p("latency_ms", 50) - long_direct.p("latency_ms", 50)
        check(f"turn on a {long.mode[5:]} conversation within 1.2 x the overhead of a fresh one",
              ol <= 1.2 * max(of, 1e-9), f"{ol:.1f} ms vs {of:.1f} ms")
    return checks


def burst_options(args: argparse.Namespace) -> argparse.Namespace:
    """scripts/bench_burst.py's options: its own defaults (its pacing differs from this
    script's), or --burst-args; checked before anything runs."""
    from scripts import bench_burst

    burst_parser = argparse.ArgumentParser(prog="bench.py --burst-args")
    bench_burst.add_arguments(burst_parser)
    try:
        options = shlex.split(args.burst_args)
    except ValueError as exc:
        burst_parser.error(f"{exc}: {args.burst_args!r}")
    burst_args = burst_parser.parse_args(["--app-root", str(args.app_root), *options])
    bench_burst.check_bursts(burst_parser, burst_args)
    return burst_args


def run_burst(burst_args: argparse.Namespace) -> dict[str, Any]:
    """bench_burst's part; its report, targets included."""
    from scripts import bench_burst

    bursts, costs, floor, openings = asyncio.run(bench_burst.run(burst_args))
    checks = bench_burst.print_report(bursts, costs, floor, burst_args, openings)
    return bench_burst.report(bursts, costs, floor, checks, openings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="concurrency 1,16,64 and fewer long-conversation turns")
    parser.add_argument("--concurrency", default="1,16,64,256,512")
    parser.add_argument("--modes", default="direct,service,rest,gradio")
    parser.add_argument("--turns", type=int, default=3, help="turns per conversation")
    parser.add_argument("--ttft-ms", type=float, default=100.0)
    parser.add_argument("--tpot-ms", type=float, default=25.0)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--long-messages", type=int, default=10_000,
                        help="earlier messages in the long conversation (0: skip)")
    parser.add_argument("--long-turns", type=int, default=30)
    parser.add_argument("--min-samples", type=int, default=30,
                        help="turns measured at least per level (more conversation turns at "
                        "low concurrency)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--uvloop", action="store_true", help="run this process on uvloop")
    parser.add_argument("--burst", action=argparse.BooleanOptionalAction, default=None,
                        help="also run scripts/bench_burst.py (bursts, CPU per turn and per "
                        "token against the engine floor; issue 16); on with --quick")
    parser.add_argument("--burst-args", default="", metavar="OPTIONS",
                        help="options for that part, as scripts/bench_burst.py takes them "
                        "(e.g. \"--bursts 16 --full-load-bursts ''\"); turns it on")
    parser.add_argument("--app-root", type=Path, default=ROOT,
                        help="the source tree whose app.py is measured (e.g. a git worktree of "
                        "an earlier commit, for a before/after comparison with the same "
                        "clients); default: this one")
    args = parser.parse_args()
    if args.quick:
        args.concurrency = "1,16,64"
        args.long_turns = 12
        args.min_samples = 20
    MIN_SAMPLES[0] = args.min_samples
    burst_args = burst_options(args) if args.burst or (
        args.burst is None and (args.quick or args.burst_args)) else None
    if args.uvloop:
        import uvloop

        results = uvloop.run(bench(args))
    else:
        results = asyncio.run(bench(args))
    lines = print_table(results, args)
    checks = check_targets(results)
    burst: dict[str, Any] | None = None
    if burst_args is not None:
        burst = run_burst(burst_args)
        checks += burst["targets"]
    print("\nTargets:")
    print("\n".join(checks))
    if args.json:
        args.json.write_text(json.dumps({
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "table": lines, "targets": checks,
            "results": [{"mode": r.mode, "concurrency": r.concurrency, "turns": r.turns,
                         "turns_per_sec": r.turns_per_sec, "errors": r.errors,
                         "latency_p50": r.p("latency_ms", 50),
                         "latency_p99": r.p("latency_ms", 99),
                         "ttft_p50": r.p("ttft_ms", 50),
                         "cpu_ms_per_turn": None if r.cpu_sec is None else
                         r.cpu_sec / max(r.turns, 1) * 1000} for r in results],
            "burst": burst}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
