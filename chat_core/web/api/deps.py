"""What the routes take besides their path: the service, the Idempotency-Key header, whether
the client wants server-sent events. (The current user will be one more dependency.)"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request

from chat_core.service import ChatService


def get_service(request: Request) -> ChatService:
    """The service `install_rest_api` put on the app: created at start-up, before the routes."""
    service: ChatService = request.app.state.chat_service
    return service


Service = Annotated[ChatService, Depends(get_service)]

# What the routes return: the service's JSON-ready values.
Json = dict[str, Any]

IdempotencyKey = Annotated[str | None, Header(
    description="Any text; the same key in the same conversation names the same turn, so a "
                "retried request does not send the message twice")]


def wants_stream(
        stream: Annotated[str, Query(description="true: answer with server-sent events")] = "",
        accept: Annotated[str, Header()] = "") -> bool:
    """?stream=true (or 1, yes), or an Accept header asking for text/event-stream."""
    return stream.lower() in ("1", "true", "yes") or "text/event-stream" in accept


WantsStream = Annotated[bool, Depends(wants_stream)]
