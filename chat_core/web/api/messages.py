"""Sending a message, and what can be done to one: answer it again (retry), go on from a stopped
reply (continue), edit it (a new branch), branch from it, show another of its replies (select).
Those that start a turn answer with its messages once it has finished, or stream its events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chat_core.errors import InvalidInput
from chat_core.web.api.bodies import json_object
from chat_core.web.api.deps import IdempotencyKey, Json, Service, WantsStream
from chat_core.web.api.errors import GuardedRoute
from chat_core.web.api.streaming import sse_response, turn_answer

router = APIRouter(prefix="/api/conversations/{conversation_id}/messages", tags=["messages"],
                   route_class=GuardedRoute)



def _content(body: Json, what: str) -> Any:
    if "content" not in body:
        raise InvalidInput(f'the body needs a "content" field with {what}', field="content")
    return body["content"]


@router.post("")
async def send_message(service: Service, conversation_id: str, stream: WantsStream,
                       idempotency_key: IdempotencyKey = None,
                       body: Json = json_object("content")) -> Any:
    """{"content"} -> {"user_message", "assistant_message"}, or with ?stream=true its events."""
    content = _content(body, "the message text")
    if stream:
        turn = await service.start_turn(conversation_id, content,
                                        idempotency_key=idempotency_key)
        return sse_response(service, turn, turn.turn_id)
    return await service.send_message(conversation_id, content, idempotency_key=idempotency_key)


@router.post("/{message_id}/retry")
async def retry(service: Service, conversation_id: str, message_id: str,
                stream: WantsStream) -> Any:
    """Answer this user message again; the earlier replies stay, as alternatives."""
    return await turn_answer(service, await service.retry_turn(conversation_id, message_id),
                             stream)


@router.post("/{message_id}/continue")
async def continue_reply(service: Service, conversation_id: str, message_id: str,
                         stream: WantsStream) -> Any:
    """Go on from a stopped reply."""
    return await turn_answer(service, await service.continue_reply(conversation_id, message_id),
                             stream)


@router.post("/{message_id}/edit")
async def edit_message(service: Service, conversation_id: str, message_id: str,
                       stream: WantsStream, idempotency_key: IdempotencyKey = None,
                       body: Json = json_object("content")) -> Any:
    """{"content"}: a new branch with the edited message, answered; the original stays."""
    branch, turn = await service.edit_message(conversation_id, message_id,
                                              _content(body, "the new text"),
                                              idempotency_key=idempotency_key)
    return await turn_answer(service, turn, stream, {"conversation": branch})


@router.post("/{message_id}/branch", status_code=201)
async def branch(service: Service, conversation_id: str, message_id: str,
                 idempotency_key: IdempotencyKey = None) -> Json:
    """A new conversation with the turns up to this message."""
    key = None if idempotency_key is None else service.check_idempotency_key(idempotency_key)
    return await service.branch_conversation(conversation_id, message_id, key=key)


@router.post("/{message_id}/select")
async def select_reply(service: Service, conversation_id: str, message_id: str) -> Json:
    """Show this alternative reply, and send it as history from now on."""
    return await service.select_reply(conversation_id, message_id)
