"""Inspect and steer turn workflows: the Workflows tab, the REST API and notebooks use this.

It reads DBOS's own records (through DBOS's API, not its tables) and joins them with the turn's
rows, so a workflow shows which conversation it belongs to and what its reply became.

Made for one person (with the store scoped to them): someone who does not see all is shown only
the turns of their own conversations, and any other turn id answers like a missing one.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from dbos import DBOS, SetWorkflowID

from chat_core.accounts.person import LOCAL, Person
from chat_core.store.chat_store import ChatStore, iso
from chat_core.errors import Conflict, InvalidInput, NotFound
from chat_core.turns.progress import TurnHub
from chat_core.turns.workflow import OVERRIDE_SUFFIX, STEP_NAMES, WORKFLOW_NAME, reply_id_for
from chat_core.validation import check_settings
from chat_core.states import CANCELLED, WORKFLOW_ACTIVE, WORKFLOW_STATES

TURN_ID_PREFIX = "turn-"
# (turn id, conversation id, reply id, rerun): raises TooManyTurns over the person's limits.
Admit = Callable[[str, str, str, bool], Awaitable[None]]


def _ms_to_iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return iso(datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc))


def check_turn_id(turn_id: Any) -> str:
    if not isinstance(turn_id, str) or not turn_id.startswith(TURN_ID_PREFIX) \
            or len(turn_id) > 80:
        raise NotFound(f"turn {str(turn_id)[:80]!r} does not exist")
    return turn_id


class WorkflowAdmin:
    def __init__(self, store: ChatStore, hub: TurnHub, person: Person = LOCAL,
                 admit: Admit | None = None) -> None:
        self.store = store
        self.hub = hub
        self.person = person
        # The person's turn limits (ChatService.admit_turn): a fork or a resume is a turn too.
        self.admit = admit

    async def list_turns(self, status: str | None = None, limit: int = 50,
                         conversation_id: str | None = None,
                         owner: uuid.UUID | None = None) -> list[dict[str, Any]]:
        """Recent turn workflows, newest first: id, conversation, owner, status, started,
        duration, recovery attempts, error, and the state of the reply. `owner` narrows an
        admin's view to one person's turns."""
        if status is not None and status not in WORKFLOW_STATES:
            raise InvalidInput(f"status must be one of {', '.join(WORKFLOW_STATES)}")
        if not 1 <= limit <= 500:
            raise InvalidInput("limit must be 1..500")
        ids: list[str] | None = None
        if conversation_id is not None:
            ids = await self.store.workflow_ids_of_conversation(uuid.UUID(conversation_id))
        elif owner is not None or not self.person.sees_all:
            # Recent turns by their replies; DBOS's status filter applies on top, so look a
            # little further back than `limit`.
            ids = await self.store.recent_workflow_ids(min(limit * 4, 2000), owner)
        if ids is not None and not ids:
            return []
        workflows = await DBOS.list_workflows_async(
            name=WORKFLOW_NAME, status=status, limit=limit, sort_desc=True,
            workflow_ids=ids, load_input=False, load_output=False)
        replies = await self.store.replies_of_workflows([w.workflow_id for w in workflows])
        now_ms = time.time() * 1000
        out = []
        for w in workflows:
            reply = replies.get(w.workflow_id, {})
            ended = w.status not in WORKFLOW_ACTIVE
            end_ms = (w.completed_at or w.updated_at) if ended else now_ms
            out.append({
                "workflow_id": w.workflow_id,
                "conversation_id": str(reply["conversation_id"]) if reply else None,
                "conversation_title": reply.get("title"),
                "owner": reply.get("owner_name"),
                "status": w.status,
                "reply_status": reply.get("status"),
                "started_at": _ms_to_iso(w.created_at),
                "duration_ms": round(end_ms - w.created_at, 1) if w.created_at else None,
                "recovery_attempts": w.recovery_attempts,
                "executor_id": w.executor_id,
                "forked_from": w.forked_from,
                "error": _error_text(w.error) or reply.get("error"),
            })
        return out

    async def get(self, workflow_id: str) -> dict[str, Any]:
        check_turn_id(workflow_id)
        status = await DBOS.get_workflow_status_async(workflow_id)
        if status is None or status.name != WORKFLOW_NAME:
            raise NotFound(f"turn workflow {workflow_id} does not exist")
        replies = await self.store.replies_of_workflows([workflow_id])
        reply = replies.get(workflow_id, {})
        if not reply and not self.person.sees_all and not self._started_by_me(status):
            raise NotFound(f"turn workflow {workflow_id} does not exist")
        return {
            "workflow_id": workflow_id, "status": status.status,
            "conversation_id": str(reply["conversation_id"]) if reply else None,
            "owner": reply.get("owner_name"),
            "reply_status": reply.get("status"),
            "started_at": _ms_to_iso(status.created_at),
            "updated_at": _ms_to_iso(status.updated_at),
            "recovery_attempts": status.recovery_attempts, "executor_id": status.executor_id,
            "app_version": status.app_version, "forked_from": status.forked_from,
            "error": _error_text(status.error) or reply.get("error"),
        }

    def _started_by_me(self, status: Any) -> bool:
        """A turn whose rows are not written yet: the owner its input names."""
        args = status.input.get("args") if isinstance(status.input, dict) else None
        request = args[0] if args and isinstance(args[0], dict) else {}
        return bool(request.get("owner")) and request.get("owner") == self.person.key

    async def steps(self, workflow_id: str) -> list[dict[str, Any]]:
        """The steps a turn has run, with their durations; step numbers are what "fork from
        step" takes."""
        await self.get(workflow_id)
        steps = await DBOS.list_workflow_steps_async(workflow_id, load_output=False)
        out = []
        for s in steps:
            started, completed = s.get("started_at_epoch_ms"), s.get("completed_at_epoch_ms")
            out.append({
                "step": s["function_id"],
                "name": s["function_name"],
                "started_at": _ms_to_iso(started),
                "duration_ms": (completed - started) if started and completed else None,
                "error": _error_text(s.get("error")),
            })
        return out

    async def cancel(self, workflow_id: str) -> dict[str, Any]:
        """Cancel a running turn: generation stops at once, the reply keeps its partial text
        and is marked cancelled. Later turns of the conversation go on."""
        info = await self.get(workflow_id)
        if info["status"] not in WORKFLOW_ACTIVE:
            raise Conflict(f"turn {workflow_id} is {info['status']}, not running")
        await DBOS.cancel_workflow_async(workflow_id)
        progress = self.hub.get(workflow_id)
        text = progress.text if progress else None
        message = "cancelled from the Workflows tab"
        await self.store.mark_interrupted([reply_id_for(workflow_id)], CANCELLED, message,
                                          content=text)
        self.hub.finish(workflow_id, CANCELLED, text or "", message)
        return await self.get(workflow_id)

    async def resume(self, workflow_id: str) -> dict[str, Any]:
        """Run a cancelled or stuck turn again from its last completed step."""
        info = await self.get(workflow_id)
        if info["status"] == "SUCCESS":
            raise Conflict(f"turn {workflow_id} already succeeded; fork it to run it again")
        if self.admit is not None and info["conversation_id"]:
            await self.admit(workflow_id, info["conversation_id"],
                             str(reply_id_for(workflow_id)), True)
        await self.store.reopen_reply(reply_id_for(workflow_id))
        self.hub.forget(workflow_id)  # its end, kept for late watchers, is no longer the end
        await DBOS.resume_workflow_async(workflow_id)
        return await self.get(workflow_id)

    async def fork(self, workflow_id: str, start_step: int,
                   params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new turn that copies this one's steps before `start_step` and runs the rest again,
        with other generation parameters if given (a new system prompt is fitted into the
        history from step 2 on); its reply is added as an alternative to the original's."""
        info = await self.get(workflow_id)
        replies = await self.store.replies_of_workflows([workflow_id])
        if replies.get(workflow_id, {}).get("unjudged"):
            # A fork's reply would become the one judged (with other settings, or another
            # model), and comparing a fork with each model would tell a blind side's.
            raise Conflict(f"turn {workflow_id} is a side of a comparison that has no vote "
                           "yet; vote first, then fork it")
        if not isinstance(start_step, int) or isinstance(start_step, bool) \
                or not 1 <= start_step <= len(STEP_NAMES):
            raise InvalidInput(f"start_step must be 1..{len(STEP_NAMES)} "
                               f"({', '.join(f'{i + 1}={n}' for i, n in enumerate(STEP_NAMES))})")
        overrides = None
        if params:
            overrides = {k: v for k, v in check_settings(params).items() if v is not None}
        new_id = f"{TURN_ID_PREFIX}{uuid.uuid4()}"
        if overrides:
            new_id += OVERRIDE_SUFFIX
        if self.admit is not None and info["conversation_id"]:
            await self.admit(new_id, info["conversation_id"], str(reply_id_for(new_id)), False)
        if overrides:
            # Written before the fork exists, so its steps always find them.
            await self.store.save_turn_overrides(new_id, overrides)
        with SetWorkflowID(new_id):
            await DBOS.fork_workflow_async(workflow_id, start_step)
        return {"workflow_id": new_id, "forked_from": workflow_id, "start_step": start_step,
                "params": overrides or {}}


def _error_text(error: Any) -> str | None:
    if error is None:
        return None
    message = getattr(error, "message", None)
    return str(message if message else error)[:1000]
