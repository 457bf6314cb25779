"""The seed's REST API, same paths and JSON shapes, plus streaming, stop and retry.

    GET  /healthz
    GET  /api/conversations                                  list, newest first
    POST /api/conversations                                  {"title"?} -> conversation
    GET  /api/conversations/{id}                             one conversation
    GET  /api/conversations/{id}/messages                    its messages in order
    POST /api/conversations/{id}/messages                    {"content"} -> {"user_message",
                                                             "assistant_message"}; optional
                                                             Idempotency-Key header; with
                                                             ?stream=true: server-sent events
    PATCH /api/conversations/{id}                            {"title"?, "settings"?}
    DELETE /api/conversations/{id}                           (cancels a turn in flight first)
    GET  /api/conversations?q=words                          ranked full-text search
    GET  /api/conversations/{id}/export?format=json|markdown
    POST /api/conversations/import                           an export, as JSON
    POST /api/conversations/{id}/messages/{mid}/retry        answer a user message again
    POST /api/conversations/{id}/messages/{mid}/continue     go on from a stopped reply
    POST /api/conversations/{id}/messages/{mid}/edit         {"content"}: branch and answer
    POST /api/conversations/{id}/messages/{mid}/branch       copy the turns up to it
    POST /api/conversations/{id}/messages/{mid}/select       show this alternative reply
    GET  /api/turns/{turn_id}/events                         re-attach to a reply (SSE)
    POST /api/turns/{turn_id}/stop                           stop it, keeping the text so far
    GET  /api/workflows[?status=&limit=&conversation_id=]    recent turn workflows
    GET  /api/workflows/{id}, /api/workflows/{id}/steps      one workflow, its steps
    POST /api/workflows/{id}/cancel | /resume | /fork        steer it ({"start_step": n})

Bodies are parsed here rather than by FastAPI's models, so every malformed input gets a 4xx with
a message that says what to fix, in the same {"error", "code"} shape as every other error.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .conversation_export import MAX_IMPORT_BYTES
from .database import is_transient
from .errors import ChatError, InvalidInput, MalformedRequest, PayloadTooLarge
from .service import ChatService, Turn
from .validation import MAX_OFFSET, int_param, parse_id

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Response]]


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _guarded(handler: Handler) -> Handler:
    """Turn service errors into their JSON error responses; anything else is a bug: logged with
    its traceback, answered with a 500 that reveals nothing of the server's internals."""

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(*args, **kwargs)
        except ChatError as exc:
            return _json(exc.to_json(), exc.status)
        except Exception as exc:
            if is_transient(exc) or is_transient(getattr(exc, "orig", None) or exc):
                log.warning("database unavailable in %s: %s", handler.__name__, exc)
                return _json({"error": "the database is unreachable (restarting?); retry the "
                              "request", "code": "database_unavailable"}, 503)
            log.exception("unexpected error in %s", handler.__name__)
            return _json({"error": "internal error; see the server log", "code": "internal_error"},
                         500)

    return wrapper


async def read_json_body(request: Request, max_bytes: int, *, required: bool) -> Any:
    """The request body as JSON, or None when it is empty and not required."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > max_bytes
        except ValueError:
            raise MalformedRequest("Content-Length is not a number") from None
        if too_big:
            raise PayloadTooLarge(f"the body is larger than the {max_bytes:,}-byte limit "
                                  "(MAX_BODY_BYTES)")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"the body is larger than the {max_bytes:,}-byte limit "
                                  "(MAX_BODY_BYTES)")
    if not body.strip():
        if required:
            raise MalformedRequest('the body is empty; send JSON such as {"content": "Hello"}')
        return None
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise MalformedRequest(
            f"Content-Type must be application/json, got {ctype or 'none'}",
            code="unsupported_media_type")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("the body is not valid UTF-8") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise MalformedRequest("the JSON is nested too deeply") from None
    except ValueError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None


def _object(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(map(repr, unknown))[:200]}; "
                           f"allowed: {', '.join(sorted(allowed))}")
    return body


def _wants_stream(request: Request) -> bool:
    flag = request.query_params.get("stream", "").lower()
    return flag in ("1", "true", "yes") or "text/event-stream" in request.headers.get("accept", "")


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def turn_events(service: ChatService, turn: Turn | None, turn_id: str) -> AsyncIterator[bytes]:
    """Server-sent events of one turn: `turn` (ids), `delta` (new text), `reset` (an attempt
    failed and the text starts over), then `done` (both messages) or `error`."""
    if turn is not None:
        yield _sse("turn", turn.to_json())
    sent = 0
    attempt = -1
    try:
        async for snap in service.watch_turn(turn_id):
            if snap.attempt != attempt or len(snap.text) < sent:
                if attempt != -1:
                    yield _sse("reset", {"attempt": snap.attempt})
                attempt, sent = snap.attempt, 0
            if len(snap.text) > sent:
                yield _sse("delta", {"text": snap.text[sent:]})
                sent = len(snap.text)
            if snap.finished:
                break
        if turn is not None:
            result = await service.wait_turn(turn)
            yield _sse("done", result)
        else:
            yield _sse("done", {"status": snap.status, "error": snap.error})
    except ChatError as exc:
        yield _sse("error", {**exc.to_json(), "status": exc.status})


def build_rest_api(get_service: Callable[[], ChatService]) -> APIRouter:
    """Routes for the app's FastAPI server; `get_service` is called per request because the
    service is created at start-up, after the routes."""
    router = APIRouter()

    def svc() -> ChatService:
        return get_service()

    @router.get("/healthz")
    @_guarded
    async def healthz() -> Response:
        health = await svc().health()
        return _json(health, 200 if health["status"] == "ok" else 503)

    @router.get("/api/conversations")
    @_guarded
    async def list_conversations(request: Request) -> Response:
        q = request.query_params
        limit = int_param(q, "limit", 20 if "q" in q else 100, 1, 1000)
        offset = int_param(q, "offset", 0, 0, MAX_OFFSET)
        if "q" in q:
            return _json(await svc().search_conversations(q["q"], limit))
        return _json(await svc().list_conversations(limit, offset))

    @router.post("/api/conversations/import")
    @_guarded
    async def import_conversation(request: Request) -> Response:
        body = await read_json_body(request, MAX_IMPORT_BYTES, required=True)
        return _json(await svc().import_conversation(body), 201)

    @router.post("/api/conversations")
    @_guarded
    async def create_conversation(request: Request) -> Response:
        body = await read_json_body(request, svc().settings.max_body_bytes, required=False)
        title = None
        if body is not None:
            title = _object(body, {"title"}).get("title")
        return _json(await svc().create_conversation(title), 201)

    @router.get("/api/conversations/{conversation_id}")
    @_guarded
    async def get_conversation(conversation_id: str) -> Response:
        return _json(await svc().get_conversation(conversation_id))

    @router.patch("/api/conversations/{conversation_id}")
    @_guarded
    async def update_conversation(conversation_id: str, request: Request) -> Response:
        service = svc()
        body = _object(await read_json_body(request, service.settings.max_body_bytes,
                                            required=True), {"title", "settings"})
        return _json(await service.update_conversation(
            conversation_id, title=body.get("title"), settings=body.get("settings")))

    @router.delete("/api/conversations/{conversation_id}")
    @_guarded
    async def delete_conversation(conversation_id: str) -> Response:
        return _json(await svc().delete_conversation(conversation_id))

    @router.get("/api/conversations/{conversation_id}/export")
    @_guarded
    async def export_conversation(conversation_id: str, request: Request) -> Response:
        fmt = request.query_params.get("format", "json")
        exported = await svc().export_conversation(conversation_id, fmt)
        name = f"conversation-{conversation_id}"
        if isinstance(exported, str):
            return Response(exported, media_type="text/markdown; charset=utf-8", headers={
                "Content-Disposition": f'attachment; filename="{name}.md"'})
        return JSONResponse(exported, headers={
            "Content-Disposition": f'attachment; filename="{name}.json"'})

    @router.get("/api/conversations/{conversation_id}/messages")
    @_guarded
    async def list_messages(conversation_id: str) -> Response:
        return _json(await svc().list_messages(conversation_id))

    @router.post("/api/conversations/{conversation_id}/messages")
    @_guarded
    async def send_message(conversation_id: str, request: Request) -> Response:
        service = svc()
        body = _object(await read_json_body(request, service.settings.max_body_bytes,
                                            required=True), {"content"})
        if "content" not in body:
            raise InvalidInput('the body needs a "content" field with the message text',
                               field="content")
        key = request.headers.get("idempotency-key")
        if _wants_stream(request):
            turn = await service.start_turn(conversation_id, body["content"],
                                            idempotency_key=key)
            return StreamingResponse(turn_events(service, turn, turn.turn_id),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return _json(await service.send_message(conversation_id, body["content"],
                                                idempotency_key=key))

    @router.post("/api/conversations/{conversation_id}/messages/{message_id}/retry")
    @_guarded
    async def retry(conversation_id: str, message_id: str, request: Request) -> Response:
        service = svc()
        turn = await service.retry_turn(conversation_id, message_id)
        return await _turn_response(service, turn, request)

    async def _turn_response(service: ChatService, turn: Turn, request: Request,
                             extra: dict[str, Any] | None = None) -> Response:
        if _wants_stream(request):
            return StreamingResponse(turn_events(service, turn, turn.turn_id),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return _json({**(extra or {}), **await service.wait_turn(turn)})

    @router.post("/api/conversations/{conversation_id}/messages/{message_id}/continue")
    @_guarded
    async def continue_reply(conversation_id: str, message_id: str,
                             request: Request) -> Response:
        service = svc()
        turn = await service.continue_reply(conversation_id, message_id)
        return await _turn_response(service, turn, request)

    @router.post("/api/conversations/{conversation_id}/messages/{message_id}/edit")
    @_guarded
    async def edit_message(conversation_id: str, message_id: str, request: Request) -> Response:
        service = svc()
        body = _object(await read_json_body(request, service.settings.max_body_bytes,
                                            required=True), {"content"})
        if "content" not in body:
            raise InvalidInput('the body needs a "content" field with the new text',
                               field="content")
        branch, turn = await service.edit_message(
            conversation_id, message_id, body["content"],
            idempotency_key=request.headers.get("idempotency-key"))
        return await _turn_response(service, turn, request, {"conversation": branch})

    @router.post("/api/conversations/{conversation_id}/messages/{message_id}/branch")
    @_guarded
    async def branch(conversation_id: str, message_id: str, request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        service = svc()
        if key is not None:
            key = service.check_idempotency_key(key)
        return _json(await service.branch_conversation(conversation_id, message_id, key=key),
                     201)

    @router.post("/api/conversations/{conversation_id}/messages/{message_id}/select")
    @_guarded
    async def select_reply(conversation_id: str, message_id: str) -> Response:
        return _json(await svc().select_reply(conversation_id, message_id))

    @router.get("/api/turns/{turn_id}/events")
    @_guarded
    async def events(turn_id: str) -> Response:
        service = svc()
        await service.check_turn_exists(turn_id)
        return StreamingResponse(turn_events(service, None, turn_id),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @router.post("/api/turns/{turn_id}/stop")
    @_guarded
    async def stop(turn_id: str) -> Response:
        service = svc()
        await service.check_turn_exists(turn_id)
        stopped = await service.stop_turn(turn_id)
        return _json({"turn_id": turn_id, "stopping": stopped})

    @router.get("/api/workflows")
    @_guarded
    async def list_workflows(request: Request) -> Response:
        q = request.query_params
        limit = int_param(q, "limit", 50, 1, 500)
        cid = q.get("conversation_id")
        if cid is not None:
            cid = str(parse_id(cid))
        return _json(await svc().workflows.list_turns(q.get("status"), limit, cid))

    @router.get("/api/workflows/{workflow_id}")
    @_guarded
    async def get_workflow(workflow_id: str) -> Response:
        return _json(await svc().workflows.get(workflow_id))

    @router.get("/api/workflows/{workflow_id}/steps")
    @_guarded
    async def workflow_steps(workflow_id: str) -> Response:
        return _json(await svc().workflows.steps(workflow_id))

    @router.post("/api/workflows/{workflow_id}/cancel")
    @_guarded
    async def cancel_workflow(workflow_id: str) -> Response:
        return _json(await svc().workflows.cancel(workflow_id))

    @router.post("/api/workflows/{workflow_id}/resume")
    @_guarded
    async def resume_workflow(workflow_id: str) -> Response:
        return _json(await svc().workflows.resume(workflow_id))

    @router.post("/api/workflows/{workflow_id}/fork")
    @_guarded
    async def fork_workflow(workflow_id: str, request: Request) -> Response:
        service = svc()
        body = _object(await read_json_body(request, service.settings.max_body_bytes,
                                            required=True), {"start_step", "params"})
        return _json(await service.workflows.fork(workflow_id, body.get("start_step"),
                                                  body.get("params")), 202)

    @router.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
    async def unknown(rest: str, request: Request) -> Response:
        return _json({"error": f"no endpoint {request.method} /api/{rest[:100]}; see /api/docs",
                      "code": "not_found"}, 404)

    return router
