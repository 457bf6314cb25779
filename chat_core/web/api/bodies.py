"""JSON request bodies, parsed here rather than by FastAPI's models, so that every malformed
input gets a 4xx whose message says what to fix, in the {"error", "code"} shape of every other
error (FastAPI's own validation answers {"detail": [...]}). Routes take a body through
`json_object(...)` (a dependency) or call `read_json_body`."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Depends, Request

from chat_core.errors import InvalidInput, MalformedRequest, PayloadTooLarge, UnsupportedMediaType
from chat_core.web.api.deps import Service


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than the {max_bytes:,}-byte limit "
                           "(MAX_BODY_BYTES)")


async def _read_bytes(request: Request, max_bytes: int) -> bytes:
    """The body, refused as soon as it is known to pass `max_bytes` (declared or received)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > max_bytes
        except ValueError:
            raise MalformedRequest("Content-Length is not a number") from None
        if too_big:
            raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    return bytes(body)


def _check_json_type(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {ctype or 'none'}")


async def read_json_body(request: Request, max_bytes: int, *, required: bool) -> Any:
    """The request body as JSON, or None when it is empty and not required."""
    body = await _read_bytes(request, max_bytes)
    if not body.strip():
        if required:
            raise MalformedRequest('the body is empty; send JSON such as {"content": "Hello"}')
        return None
    _check_json_type(request)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("the body is not valid UTF-8") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise MalformedRequest("the JSON is nested too deeply") from None
    except ValueError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None


def check_object(body: Any, allowed: set[str]) -> dict[str, Any]:
    """`body` as a JSON object with no fields but `allowed` (a typo is an error, not ignored)."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(map(repr, unknown))[:200]}; "
                           f"allowed: {', '.join(sorted(allowed))}")
    return body


def json_object(*allowed: str, required: bool = True) -> Any:
    """A dependency: the body as a JSON object with only the `allowed` fields, at most
    MAX_BODY_BYTES; when not `required`, an empty body is an empty object."""

    async def parse(request: Request, service: Service) -> dict[str, Any]:
        body = await read_json_body(request, service.settings.max_body_bytes, required=required)
        # Only an empty body stands for "no fields"; a JSON null is not an object.
        return {} if body is None and not required else check_object(body, set(allowed))

    return Depends(parse)
