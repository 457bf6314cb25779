"""How the REST API answers errors: always {"error", "code"} (plus a ChatError's details), with
the status of the error, and never a word of the server's internals.

`ChatError`s answer themselves (their message says what to fix). Any other exception is a bug,
or the database going away: `as_chat_error` logs it and picks the answer (503
database_unavailable, else 500 internal_error). Both handlers are registered on the app.

Starlette runs an app's handler for bare `Exception` in ServerErrorMiddleware, outside every
other middleware, and re-raises after answering: the answer would miss the security headers the
request guards add, and uvicorn would log a second traceback ("Exception in ASGI application"),
even for a database restart. So the API's routes use `GuardedRoute`, which answers unexpected
errors with the same handler where they happen; the app-level handler is the backstop for what
escapes a middleware.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from chat_core.errors import ChatError, DatabaseUnavailable, TooManyTurns
from chat_core.store.database import is_transient

log = logging.getLogger("chat_core.web.api")

# Exceptions the app has handlers for (its own and FastAPI's defaults): GuardedRoute lets them by.
_HANDLED = (ChatError, HTTPException, RequestValidationError)


def as_chat_error(exc: Exception, where: str) -> ChatError:
    """The error an unexpected exception is answered with, logged here: a transient database
    error with a warning (its text, which may name the server, stays in the log), anything else
    with its traceback."""
    if isinstance(exc, ChatError):
        return exc
    if is_transient(exc) or is_transient(getattr(exc, "orig", None) or exc):
        log.warning("database unavailable in %s: %s", where, exc)
        return DatabaseUnavailable("the database is unreachable (restarting?); retry the request")
    log.error("unexpected error in %s", where, exc_info=exc)
    return ChatError("internal error; see the server log")  # the base class: 500 internal_error


def _where(request: Request) -> str:
    """The endpoint's function name for the log, as the server names it (not the raw path)."""
    endpoint = request.scope.get("endpoint")
    return getattr(endpoint, "__name__", None) or request.url.path[:200]


async def error_response(request: Request, exc: Exception) -> Response:
    """The handler of ChatError and of every other exception."""
    error = as_chat_error(exc, _where(request))
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, TooManyTurns) \
        else None
    return JSONResponse(error.to_json(), status_code=error.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ChatError, error_response)
    app.add_exception_handler(Exception, error_response)


class GuardedRoute(APIRoute):
    """An API route that answers unexpected exceptions itself, inside the middleware stack (see
    the module docstring); the errors the app has handlers for go on to them."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # No pydantic response model from the return annotations (they are for readers): the
        # service's values are JSON-ready, and checking them again costs time on every answer.
        kwargs["response_model"] = None
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except _HANDLED:
                raise
            except Exception as exc:
                return await error_response(request, exc)

        return guarded


unknown_endpoints = APIRouter(include_in_schema=False)


@unknown_endpoints.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def unknown(rest: str, request: Request) -> Response:
    """Included last: any other path under /api/ is a JSON 404, not Gradio's page."""
    return JSONResponse({"error": f"no endpoint {request.method} /api/{rest[:100]}; see "
                         "/api/docs", "code": "not_found"}, status_code=404)
