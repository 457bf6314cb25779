"""The DBOS queue that hands turns to turn workers (TURN_WORKERS, turns/worker_pool.py).

With workers, the web process enqueues each new turn here instead of running it, and listens to
no turn queue itself; every worker listens to this one alone, so DBOS gives each turn to
whichever worker dequeues it first, on this machine or another one on the same database. The
queue's row and its settings live in DBOS's tables: every process registers the same ones.

A worker looks for turns every POLL_SEC (DBOS polls; it has no notification for a new
entry), which adds up to that much to a turn's start and costs an idle worker about three
small queries each time (docs/performance.md#turn-workers).
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS, Queue, SetWorkflowID, WorkflowHandleAsync

from chat_core.turns.payloads import TurnRequest
from chat_core.turns.workflow import chat_turn

QUEUE_NAME = "chat_turns"
POLL_SEC = 0.05

_queue: Queue | None = None


async def register() -> None:
    """Every process, once DBOS has launched: the web process to enqueue, the workers to
    dequeue. The web process never listens to it (runtime.py), with or without workers: it
    would poll it POLL_SEC for nothing (measured: 0.1 of a core, idle)."""
    global _queue
    _queue = await DBOS.register_queue_async(QUEUE_NAME, polling_interval_sec=POLL_SEC,
                                             on_conflict="always_update")


async def enqueue(turn_id: str, request: TurnRequest) -> WorkflowHandleAsync[Any]:
    """The turn for a worker; a turn id already enqueued (a repeated Idempotency-Key) gets
    the handle of the one there."""
    if _queue is None:
        raise RuntimeError("turn_queue.register() must run first")
    with SetWorkflowID(turn_id):
        return await _queue.enqueue_async(chat_turn, request)


async def take_over_leftovers(executor_id: str, workers: int) -> int:
    """At a web process's start: what an earlier run left to workers this run does not have
    (TURN_WORKERS lowered since, or 0) would wait for ever: the turns still on the turn queue
    when there are no workers, and whatever a retired worker was running, from any queue
    (turns, and the resumed, forked or recovered workflows it took from DBOS's own queue).
    They go on from their last step, on their queue again when it has workers, else on DBOS's
    own, which every process runs. A worker that is started again recovers its own work
    itself, as DBOS does for any executor. Returns how many were taken over."""
    prefix = f"{executor_id}-w"

    def retired(executor: str | None) -> bool:
        index = (executor or "")[len(prefix):]
        return bool(executor and executor.startswith(prefix) and index.isdigit()
                    and int(index) > workers)

    pending = await DBOS.list_workflows_async(status="PENDING", load_input=False,
                                              load_output=False)
    queued = [] if workers else await DBOS.list_workflows_async(
        status="ENQUEUED", queue_name=QUEUE_NAME, load_input=False, load_output=False)
    left = [w for w in pending if retired(w.executor_id)] + queued
    to_turn_queue = [w.workflow_id for w in left if workers and w.queue_name == QUEUE_NAME]
    to_dbos_queue = [w.workflow_id for w in left if w.workflow_id not in to_turn_queue]
    if to_turn_queue:
        await DBOS.resume_workflows_async(to_turn_queue, queue_name=QUEUE_NAME)
    if to_dbos_queue:
        await DBOS.resume_workflows_async(to_dbos_queue)
    return len(left)
