"""Turns of one conversation handed to turn workers are saved in the order they were accepted.

A worker's first step saves the user message and takes its place (seq) there, so two turns of
one conversation queued within moments of each other could reach that step in either order:
measured (2026-12-01), 3 of 30 pairs whose second message was sent only after the first was
accepted were stored the other way round, under CPU load. So the web process names, in each
turn it queues, the turns of the same conversation it queued before and that have not
finished (`after`: [turn id, reply id] pairs), and the worker saves the message only once each
of those has its rows, or its workflow has ended. The turns then answer in order as in-process
ones do (workflow._wait_for_earlier_turns)."""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
import uuid
from typing import Any, Protocol

from dbos import DBOS

from chat_core.states import WORKFLOW_ACTIVE
from chat_core.turns.progress import TurnProgress

# The first look again after this, then twice as long each time up to MAX_POLL_SEC: a turn
# behind one that is about to save waits milliseconds, a backlog does not poll all at once.
POLL_SEC = 0.05
MAX_POLL_SEC = 1.0
# Looks between asking DBOS whether the earlier turn still runs (cancelled or failed before
# its first step, it never saves a row); asked at the first look too.
STATUS_EVERY = 5


class Replies(Protocol):
    async def reply_state(self, reply_id: uuid.UUID) -> Any: ...


def earlier_turns(in_flight: list[TurnProgress], conversation_id: str,
                  turn_id: str) -> list[list[str]]:
    """The turns of `conversation_id` this process queued before `turn_id` and that have
    not finished: what the worker waits for (the `after` of its request)."""
    return [[p.turn_id, p.reply_id] for p in in_flight
            if p.conversation_id == conversation_id and p.turn_id != turn_id]


async def wait_for_earlier_saves(replies: Replies, after: list[list[str]], own_reply_id: str,
                                 wait_sec: float) -> None:
    """Return once every turn of `after` has saved its message (its reply row exists) or has
    ended, or after `wait_sec` (the turn's own order wait takes over from there); at once
    for a turn that saved its own already (recovered, resumed: its first step is recorded).
    Runs in the workflow's body, so it asks DBOS nothing there (still_running)."""
    if await replies.reply_state(uuid.UUID(own_reply_id)) is not None:
        return
    deadline = time.monotonic() + wait_sec
    for turn_id, reply_id in after:
        looks, delay = 0, POLL_SEC
        while await replies.reply_state(uuid.UUID(reply_id)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if looks % STATUS_EVERY == 0 and not await still_running(turn_id):
                break
            looks += 1
            await asyncio.sleep(min(left, delay * random.uniform(0.8, 1.2)))
            delay = min(delay * 2, MAX_POLL_SEC)


async def still_running(turn_id: str) -> bool:
    """Whether `turn_id`'s workflow is queued or running. Asked from a context of its own:
    called in a workflow's body, DBOS would record the call as one of its steps, and a replay
    that asks a different number of times would no longer line up with the recorded steps."""
    ask = asyncio.create_task(DBOS.get_workflow_status_async(turn_id),
                              context=contextvars.Context())
    status = await ask
    return status is not None and status.status in WORKFLOW_ACTIVE
