"""The engine's floor (issue 16): the CPU an empty durable turn costs DBOS itself.

An async workflow of four no-op async steps, the shape of a turn (chat_core/turns/workflow.py),
on DBOS configured as the app configures it (one database, the same engine options), run
--turns times with --concurrency at once after a warm-up. Prints one JSON line: this process's
CPU seconds for the measured workflows, per workflow, and their wall time. scripts/bench_burst.py
runs it beside the app, in the same run, as the bar the app's CPU per turn is held to.

    python scripts/dbos_floor.py postgresql://postgres@127.0.0.1:5432/some_db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dbos import DBOS  # noqa: E402

from chat_core.runtime import DBOS_NOTIFY_EVERY_SEC  # noqa: E402
from chat_core.store.database import sqlalchemy_url  # noqa: E402


@DBOS.step(name="save_user_message")
async def step_one(n: int) -> int:
    return n


@DBOS.step(name="build_prompt")
async def step_two(n: int) -> int:
    return n


@DBOS.step(name="call_llm")
async def step_three(n: int) -> int:
    return n


@DBOS.step(name="save_reply")
async def step_four(n: int) -> int:
    return n


@DBOS.workflow(name="empty_turn")
async def empty_turn(n: int) -> int:
    return await step_four(await step_three(await step_two(await step_one(n))))


async def run(turns: int, concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with limit:
            handle = await DBOS.start_workflow_async(empty_turn, n)
            await handle.get_result()

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(turns)))
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> dict[str, float]:
    DBOS(config={"name": "engine-floor", "system_database_url": sqlalchemy_url(args.database_url),
                 "executor_id": "engine-floor", "log_level": "WARNING",
                 "db_engine_kwargs": {"pool_pre_ping": False, "pool_size": 40},
                 "notification_coalesce_sec": DBOS_NOTIFY_EVERY_SEC})
    DBOS.launch()
    try:
        await run(min(args.turns, 32), args.concurrency)  # warm-up: pools, imports, caches
        cpu0 = time.process_time()
        wall = await run(args.turns, args.concurrency)
        cpu = time.process_time() - cpu0
    finally:
        DBOS.destroy()
    return {"turns": args.turns, "concurrency": args.concurrency, "cpu_sec": cpu,
            "cpu_ms_per_turn": cpu / args.turns * 1000, "wall_sec": wall}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database_url")
    parser.add_argument("--turns", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=32)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
