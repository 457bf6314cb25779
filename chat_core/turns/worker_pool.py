"""Turn workers: processes that run the turns, so that one app uses more than one core.

With TURN_WORKERS=N the web process (HTTP, the UI, the REST API) starts N child processes
(`python -m chat_core.turns.worker_main`), each a DBOS executor of its own that runs the turns
it dequeues from turns/turn_queue.py and relays their progress back (turns/relay.py). The web
process keeps them running: one that exits is started again with the same executor id, and
DBOS then re-enqueues the turns it left unfinished, which continue from their last step. They
exit with the web process, even after a kill -9 of it (the kernel's parent-death signal on
Linux; each also checks that its parent is alive).

Why processes and DBOS's queue (docs/performance.md#turn-workers): the app's CPU per turn and
per token is mostly Python on one event loop, so one process serves about one core. DBOS's
queue hands work to whichever process dequeues it and recovers it after a crash; no balancer of
our own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from chat_core.config import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

READY = b"ready\n"
START_TIMEOUT_SEC = 120.0
STOP_TIMEOUT_SEC = 10.0
# A worker that keeps dying is started again after a growing pause, up to this; one that ran
# for STEADY_SEC before it died is started again after the shortest pause.
MAX_RESTART_PAUSE_SEC = 30.0
STEADY_SEC = 60.0
MIN_POOL = 5


def worker_executor_id(executor_id: str, index: int) -> str:
    return f"{executor_id}-w{index}"


def worker_env(settings: Settings, database_url: str, index: int) -> dict[str, str]:
    """A worker's settings: the web process's, with its own executor id, the database the web
    process found or started, the app's cap on LLM requests counted across its processes in
    PostgreSQL (runtime.py sets LLM_GLOBAL_CONCURRENCY with workers), and a share of
    DB_POOL_MAX (every process has its own pools, ours and DBOS's at twice it: without the
    share, each worker would add as many connections as the web process)."""
    return {**os.environ,
            "DATABASE_URL": database_url,
            "EXECUTOR_ID": worker_executor_id(settings.executor_id, index),
            "TURN_WORKERS": "0",
            "LLM_GLOBAL_CONCURRENCY": str(settings.llm_global_concurrency),
            "DB_POOL_MAX": str(max(MIN_POOL, math.ceil(
                settings.db_pool_max / settings.turn_workers))),
            "LLM_CONTEXT_TOKENS": str(settings.llm_context_tokens or ""),
            "DATA_DIR": str(settings.data_dir),
            "PYTHONUNBUFFERED": "1"}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    starts: int = 0


class TurnWorkers:
    """The web process's turn workers: started, watched, started again, stopped."""

    def __init__(self, settings: Settings, database_url: str, local_llm_url: str | None,
                 on_exit: Callable[[str], None]) -> None:
        self.settings = settings
        self.database_url = database_url
        self.local_llm_url = local_llm_url
        # Called with a worker's executor id when it exited unexpectedly: the turns followed
        # from it are no longer relayed (relay.py's copies are dropped and read from the
        # database).
        self.on_exit = on_exit
        self._workers = [_Worker(i + 1) for i in range(settings.turn_workers)]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        """Start every worker and wait until each has launched DBOS and listens to the queue
        (turns enqueued before then wait there)."""
        self._tasks = [asyncio.create_task(self._keep(w), name=f"turn-worker-{w.index}")
                       for w in self._workers]
        try:
            async with asyncio.timeout(START_TIMEOUT_SEC):
                await asyncio.gather(*(w.ready.wait() for w in self._workers))
        except TimeoutError:
            raise RuntimeError(f"the turn workers did not start within {START_TIMEOUT_SEC:.0f} s;"
                               " see their log lines above, or set TURN_WORKERS=0 to run the "
                               "turns in the web process") from None
        log.info("%d turn worker(s) running", len(self._workers))

    def running(self) -> int:
        return sum(1 for w in self._workers if w.ready.is_set())

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process is not None]

    async def _keep(self, worker: _Worker) -> None:
        pause = 1.0
        while not self._stopping:
            started = time.monotonic()
            code = await self._run_once(worker)
            if self._stopping:
                return
            worker.ready.clear()
            if time.monotonic() - started >= STEADY_SEC:
                pause = 1.0
            log.warning("turn worker %d exited (code %s); starting it again in %.0f s: its "
                        "unfinished turns resume there", worker.index, code, pause)
            self.on_exit(worker_executor_id(self.settings.executor_id, worker.index))
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_RESTART_PAUSE_SEC)

    async def _run_once(self, worker: _Worker) -> int | None:
        args = [sys.executable, "-m", "chat_core.turns.worker_main", "--name",
                f"worker-{worker.index}"]
        if self.local_llm_url:
            args += ["--local-llm", self.local_llm_url]
        worker.process = await asyncio.create_subprocess_exec(
            *args, env=worker_env(self.settings, self.database_url, worker.index),
            stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, cwd=PROJECT_ROOT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        worker.starts += 1
        assert worker.process.stdout is not None
        if await worker.process.stdout.readline() == READY:
            worker.ready.set()
        return await worker.process.wait()

    async def stop(self) -> None:
        """Ask every worker to stop (they give their turns the same grace as the web process,
        then leave them pending for the next start) and wait for them."""
        self._stopping = True
        live = [w.process for w in self._workers
                if w.process is not None and w.process.returncode is None]
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if live:
            done, left = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in live],
                                            timeout=STOP_TIMEOUT_SEC)
            for process in live:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
