"""A turn worker's process (turns/worker_pool.py starts it; not meant to be run by hand).

It runs what the web process's runtime runs except the web server: the database pool, the LLM
clients, DBOS listening to the turn queue alone, and the relay of its turns' progress. It
writes one line, `ready`, to its standard output once DBOS has launched, and stops on SIGTERM
(turns still running after the grace stay pending and resume at the next start) or when its
parent is gone (at once, as after a crash: its turns resume in the worker that replaces it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from chat_core.config import ConfigError, Settings, load_settings
from chat_core.logging_setup import configure_logging
from chat_core.web.event_loop import run as run_loop

PARENT_CHECK_SEC = 0.5


async def _serve(settings: Settings, local_llm_url: str | None) -> None:
    from chat_core.heap import freeze_startup_heap
    from chat_core.runtime import WORKER, ChatRuntime
    freeze_startup_heap()  # before DBOS hands this worker turns (heap.py)
    runtime = ChatRuntime(settings, role=WORKER, local_llm_url=local_llm_url)
    await runtime.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stopping.set)
        except NotImplementedError:  # Windows' event loops
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stopping.set))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    # Nobody reads the pipe after that line: anything printed later goes where logs go,
    # rather than filling the pipe until a print blocks the worker.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    parent = os.getppid()
    try:
        while not stopping.is_set():
            if os.getppid() != parent:
                os._exit(1)  # the web process died: leave the turns to the next worker
            try:
                await asyncio.wait_for(stopping.wait(), PARENT_CHECK_SEC)
            except asyncio.TimeoutError:
                pass
    finally:
        await runtime.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="worker")
    parser.add_argument("--local-llm", default=None,
                        help="the URL of the local model server the web process started")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, args.name)
    run_loop(_serve(settings, args.local_llm), fast=settings.fast_io)
    return 0


if __name__ == "__main__":
    sys.exit(main())
