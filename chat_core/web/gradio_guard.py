"""Gradio's routes, held to what this app's page needs: every Gradio event is a public API.

A Gradio event input of a component that can carry files (Chatbot, File, UploadButton...)
accepts a payload naming a file by its server path; Gradio copies that file into its cache and
serves it back. Mounted with `mount_gradio_app`, the Blocks is never marked launched and
Gradio skips its own path check entirely; marked launched, it still allows every file of its
upload folder. So this middleware refuses, before Gradio sees the request:
- a file payload anywhere in a request, except in the inputs of events that take uploads
  (the Import button), and there only a path inside Gradio's upload folder;
- `/gradio_api/file=<URL>`, with which Gradio fetches any public URL for the caller: this app
  never shows remote files, and it is no proxy.
With accounts on, nobody without a login gets this far (auth.AccountAuth stands in front): not
even the heartbeat stream, which stays open forever (free connections for a stranger).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder, is_in_or_equal
from starlette.types import ASGIApp, Receive, Scope, Send

from chat_core.web.request_guards import refuse, replay_body

# Components whose event inputs legitimately carry a file a visitor uploaded.
FILE_INPUTS = (gr.UploadButton, gr.File)
MAX_GRADIO_BODY = 16 * 1024 * 1024  # JSON bodies only; uploads go to /gradio_api/upload
# Gradio serves files at /file=<path> and, for old clients, /file/<path>; both fetch an http(s)
# URL for the caller and serve it from this app's origin with the upstream's content type.
_FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/", "/gradio_api/proxy=")
_REMOTE = re.compile(r"^(//|[A-Za-z][A-Za-z0-9+.-]*:)")
# Routes this app's page never uses: component server functions (no component here has any)
# answered malformed calls with a 500.
_NO_ROUTES = ("/gradio_api/component_server",)
_JSON_ROUTES = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/call/",
                "/gradio_api/api/", "/gradio_api/stream/", "/gradio_api/component_server",
                "/gradio_api/mcp/")


def _names_remote_file(path: str) -> bool:
    for prefix in _FILE_ROUTES:
        if path.startswith(prefix):
            return bool(_REMOTE.match(path[len(prefix):]))
    return False


def file_paths(value: Any) -> list[str]:
    """Every server path a payload names: dicts with a "path" (Gradio's FileData and the
    shapes it accepts) or a FileData type marker, at any depth."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            meta = item.get("meta")
            if "path" in item or (isinstance(meta, dict) and "_type" in meta):
                found.append(str(item.get("path")))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def is_uploaded_file(path: str) -> bool:
    """Whether a path lies in Gradio's upload folder (symlinks resolved)."""
    folder = get_upload_folder()
    try:
        return is_in_or_equal(os.path.realpath(path), os.path.realpath(folder))
    except (OSError, ValueError):
        return False


def malformed_call(blocks: gr.Blocks, body: Any, route: str) -> str | None:
    """Why a call to an event (queue/join, run/, call/) is malformed, or None. Gradio answers
    these with a 500 or a traceback in the log: an unknown fn_index is a KeyError, too few
    inputs a ValueError, and its 422 for a wrong shape echoes the input, which fails to encode
    when it holds a lone surrogate."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    data = body.get("data")
    if not isinstance(data, list):
        return '"data" must be a list of the event\'s input values'
    fn_index = body.get("fn_index")
    if "fn_index" in body and (type(fn_index) is not int or fn_index not in blocks.fns):
        return '"fn_index" names no event of this app'
    needed = _inputs_needed(blocks, fn_index, route)
    if needed is not None and len(data) < needed:
        return f"the event takes {needed} input values, got {len(data)}"
    for key, kind in (("trigger_id", int), ("session_hash", str)):
        value = body.get(key)
        if value is not None and (type(value) is not kind):
            return f'"{key}" must be {"an integer" if kind is int else "a string"} or null'
    return None


def _inputs_needed(blocks: gr.Blocks, fn_index: Any, route: str) -> int | None:
    """How many values `data` must hold: every input for a queue join (the page sends State
    inputs as null); for a named call (run/, call/), those Gradio does not fill in itself."""
    if route == "/gradio_api/queue/join":
        fn = blocks.fns.get(fn_index) if type(fn_index) is int else None
        return len(fn.inputs) if fn is not None else None
    name = route.split("/")[3] if route.count("/") >= 3 else ""
    fns = [f for f in blocks.fns.values() if f.api_name == name]
    if type(fn_index) is int:
        fns = [blocks.fns[fn_index]]
    if len(fns) != 1:
        return None
    return sum(1 for b in fns[0].inputs if not getattr(b, "stateful", False))


def refused_files(blocks: gr.Blocks, route: str, body: Any) -> str | None:
    """Why a request's file payloads are refused, or None when it carries none it may not."""
    data = body.get("data") if isinstance(body, dict) else None
    fn_index = body.get("fn_index") if isinstance(body, dict) else None
    fn = blocks.fns.get(fn_index) if isinstance(fn_index, int) else None
    if route == "/gradio_api/queue/join" and fn is not None and isinstance(data, list):
        outside = [v for v in body if v != "data"]
        if any(file_paths(body[k]) for k in outside):
            return "files are accepted only as an event's input"
        for i, value in enumerate(data):
            paths = file_paths(value)
            if not paths:
                continue
            block = fn.inputs[i] if i < len(fn.inputs) else None
            if not isinstance(block, FILE_INPUTS):
                return "this event takes no files"
            if not all(is_uploaded_file(p) for p in paths):
                return "only files uploaded through /gradio_api/upload are accepted"
        return None
    return "this request takes no files" if file_paths(body) else None


class GradioGuard:
    """ASGI middleware in front of the mounted Gradio app (see the module docstring)."""

    def __init__(self, app: ASGIApp, blocks: gr.Blocks) -> None:
        self.app = app
        self.blocks = blocks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if _names_remote_file(path):
            await refuse(send, 403, "forbidden", "this app serves no remote files")
            return
        if path.startswith(_NO_ROUTES):
            await refuse(send, 404, "not_found", "no such route in this app")
            return
        if scope["type"] == "http" and scope["method"] == "POST" \
                and path.startswith(_JSON_ROUTES):
            await self._checked(scope, receive, send, path)
            return
        await self.app(scope, receive, send)

    async def _checked(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_GRADIO_BODY:
                await refuse(send, 413, "payload_too_large", "the request is too large")
                return
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        try:
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError):
            body = None  # not JSON: Gradio answers it, and a non-JSON body carries no FileData
        route = "/gradio_api/queue/join" if path.rstrip("/") == "/gradio_api/queue/join" \
            else path
        if route == "/gradio_api/queue/join" or route.startswith(("/gradio_api/run/",
                                                                   "/gradio_api/call/")):
            malformed = malformed_call(self.blocks, body, route)
            if malformed is not None:
                await refuse(send, 422, "invalid_event", f"not a call of this app's events: "
                             f"{malformed}")
                return
        reason = refused_files(self.blocks, route, body)
        if reason is not None:
            await refuse(send, 400, "file_not_allowed",
                         f"refused a file path in the request: {reason}")
            return
        await self.app(scope, replay_body(raw, receive), send)


__all__ = ["GradioGuard", "refused_files", "malformed_call", "file_paths", "is_uploaded_file",
           "FILE_INPUTS"]
