"""The DBOS workflows behind the turns: list and read them, their steps; cancel, resume, fork."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from chat_core.validation import int_param, parse_id
from chat_core.web.api.admin import person_named
from chat_core.web.api.bodies import json_object
from chat_core.web.api.deps import Json, Service
from chat_core.web.api.errors import GuardedRoute

router = APIRouter(prefix="/api/workflows", tags=["workflows"], route_class=GuardedRoute)



@router.get("")
async def list_workflows(service: Service, status: Annotated[str | None, Query()] = None,
                         limit: Annotated[str | None, Query()] = None,
                         conversation_id: Annotated[str | None, Query()] = None,
                         owner: Annotated[str | None, Query(
                             description="admins: only this person's (their name)")] = None
                         ) -> list[Json]:
    """Recent turn workflows, newest first, by status and conversation when given: a
    person's own; an admin's everyone's, or one person's with `owner` (anyone else gets a
    404 for it, as for a name nobody has)."""
    count = int_param({} if limit is None else {"limit": limit}, "limit", 50, 1, 500)
    cid = None if conversation_id is None else str(parse_id(conversation_id))
    only = None if owner is None else (await person_named(service, owner)).id
    return await service.workflows.list_turns(status, count, cid, owner=only)


@router.get("/{workflow_id}")
async def get_workflow(service: Service, workflow_id: str) -> Json:
    return await service.workflows.get(workflow_id)


@router.get("/{workflow_id}/steps")
async def workflow_steps(service: Service, workflow_id: str) -> list[Json]:
    return await service.workflows.steps(workflow_id)


@router.post("/{workflow_id}/cancel")
async def cancel_workflow(service: Service, workflow_id: str) -> Json:
    return await service.workflows.cancel(workflow_id)


@router.post("/{workflow_id}/resume")
async def resume_workflow(service: Service, workflow_id: str) -> Json:
    return await service.workflows.resume(workflow_id)


@router.post("/{workflow_id}/fork", status_code=202)
async def fork_workflow(service: Service, workflow_id: str,
                        body: Json = json_object("start_step", "params")) -> Json:
    """{"start_step"?, "params"?}: run the turn again from that step, with other parameters."""
    return await service.workflows.fork(workflow_id, body.get("start_step"), body.get("params"))
