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
import time
import uuid
from typing import Any, Protocol

from dbos import DBOS

from chat_core.states import WORKFLOW_ACTIVE
from chat_core.turns.progress import TurnProgress

POLL_SEC = 0.05
# Polls between asking DBOS whether the earlier turn still runs (cancelled before its first
# step, it never saves a row).
STATUS_EVERY = 20


class Replies(Protocol):
    async def reply_state(self, reply_id: uuid.UUID) -> Any: ...


def earlier_turns(in_flight: list[TurnProgress], conversation_id: str,
                  turn_id: str) -> list[list[str]]:
    """The turns of `conversation_id` this process queued before `turn_id` and that have
    not finished: what the worker waits for (the `after` of its request)."""
    return [[p.turn_id, p.reply_id] for p in in_flight
            if p.conversation_id == conversation_id and p.turn_id != turn_id]


async def wait_for_earlier_saves(replies: Replies, after: list[list[str]],
                                 wait_sec: float) -> None:
    """Return once every turn of `after` has saved its message (its reply row exists) or has
    ended, or after `wait_sec`: the turn's own order wait takes over from there."""
    deadline = time.monotonic() + wait_sec
    for turn_id, reply_id in after:
        polls = 0
        while await replies.reply_state(uuid.UUID(reply_id)) is None:
            if time.monotonic() >= deadline:
                return
            polls += 1
            if polls % STATUS_EVERY == 0 and not await still_running(turn_id):
                break
            await asyncio.sleep(POLL_SEC)


async def still_running(turn_id: str) -> bool:
    status = await DBOS.get_workflow_status_async(turn_id)
    return status is not None and status.status in WORKFLOW_ACTIVE
