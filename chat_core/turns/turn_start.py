"""Starting a turn's workflow in this process, its LLM request already on its way.

A new message's turn is followed, and its head start's request sent (turns/head_start.py),
before DBOS writes the workflow's row: in a burst each request then leaves after its
conversation's read alone, not behind the burst's DBOS inserts too (docs/performance.md).

Until DBOS has the row there is nothing to cancel, so the turn's `recorded` stays cleared: a
delete of its conversation waits for it (ChatService.delete_conversation). DBOS writes the row
on a thread that a cancelled caller cannot stop, so the start runs to its end in a task of its
own whatever happens to the request that asked for it, and its end decides: a workflow running
here keeps its watchers and its head start (a person who went away finds the reply when they
come back), one that did not start, or started elsewhere, loses both."""

from __future__ import annotations

import asyncio
from typing import Any, TypeGuard

from dbos import DBOS, SetWorkflowID
# Private: DBOS has no public way to tell a workflow started here from one already running
# elsewhere (both are WorkflowHandleAsync); only the former can be followed from its first token.
from dbos._core import WorkflowHandleAsyncTask

from chat_core.turns.payloads import TurnRequest
from chat_core.turns.progress import TurnHub, TurnProgress
from chat_core.turns.workflow import begin_head_start, chat_turn, discard_head_start


def runs_here(handle: Any) -> TypeGuard[WorkflowHandleAsyncTask[Any]]:
    """Whether the workflow of `handle` runs in this process (its result can be awaited)."""
    return isinstance(handle, WorkflowHandleAsyncTask)


def follow_new(hub: TurnHub, turn_id: str, reply_id: str, request: TurnRequest) -> TurnProgress:
    """Follow a turn from before DBOS records it; `recorded` is set once DBOS has its workflow
    or will not (the caller's part)."""
    progress = hub.track(turn_id, reply_id, request.get("owner", ""))
    progress.conversation_id = request["conversation_id"]
    progress.recorded.clear()
    return progress


async def start_here(hub: TurnHub, turn_id: str, request: TurnRequest, reply_id: str,
                     next_seq: int | None, new: bool) -> Any:
    """Start the turn's workflow in this process; `next_seq`: where a new message goes in a
    conversation with no turn in flight, for its head start; `new`: False when `turn_id` may
    name a turn started before (a repeated Idempotency-Key: no head start, followed only once
    DBOS says it runs here)."""
    if not new:
        handle = await _start_workflow(turn_id, request)
        if runs_here(handle):
            hub.track(turn_id, reply_id, request.get("owner", "")).conversation_id = \
                request["conversation_id"]
        return handle
    progress = follow_new(hub, turn_id, reply_id, request)
    try:
        begin_head_start(turn_id, request, progress, next_seq)
        start = asyncio.ensure_future(_start_workflow(turn_id, request))
    except BaseException:
        _settle(hub, progress, None)
        raise
    start.add_done_callback(lambda task: _settle(hub, progress, task))
    return await asyncio.shield(start)


async def _start_workflow(turn_id: str, request: TurnRequest) -> Any:
    with SetWorkflowID(turn_id):
        return await DBOS.start_workflow_async(chat_turn, request)


def _settle(hub: TurnHub, progress: TurnProgress, start: "asyncio.Future[Any] | None") -> None:
    """The start has ended (None: it never began). A turn not running here is unfollowed, its
    watchers told first (so that nothing after can skip it), and its head start's request
    goes; then whoever waits for the turn's row goes on."""
    ran_here = (start is not None and not start.cancelled() and start.exception() is None
                and runs_here(start.result()))
    if not ran_here:
        hub.detach(progress.turn_id)
        discard_head_start(progress.turn_id)
    progress.recorded.set()
