"""The REST API: the seed's paths and JSON shapes, plus streaming, stop and retry.

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
    PUT  /api/conversations/{id}/messages/{mid}/rating       {"value": 1|-1|0, "tags"?,
                                                             "comment"?} rate a reply
    POST /api/comparisons, GET /api/comparisons[/{id}]       blind side-by-side comparisons
    POST /api/comparisons/{id}/messages | /vote              go on in both; vote once
    GET  /api/leaderboard                                    ratings from the votes
    GET  /api/models                                         every server's models
    GET  /api/dataset?format=openai|sharegpt|preference      JSON Lines, with filters
    GET  /api/turns/{turn_id}/events                         re-attach to a reply (SSE)
    POST /api/turns/{turn_id}/stop                           stop it, keeping the text so far
    GET  /api/workflows[?status=&limit=&conversation_id=]    recent turn workflows
    GET  /api/workflows/{id}, /api/workflows/{id}/steps      one workflow, its steps
    POST /api/workflows/{id}/cancel | /resume | /fork        steer it ({"start_step": n})
    GET  /api/me, /api/me/tokens, /api/admin/people ...      the account (account.py)

Every error is {"error", "code"} with a message that says what to fix (errors.py); bodies and
numeric parameters are parsed by us, not FastAPI's models, to keep that shape (bodies.py).
One module per resource, each an APIRouter; the service comes in as a dependency (deps.py).
"""

from __future__ import annotations

from fastapi import FastAPI

from chat_core.service import ChatService
from chat_core.web import shared_page
from chat_core.web.api import (account, admin, comparisons, conversations, dataset, health,
                               links, messages, models, my_data, ratings, turns, workflows)
from chat_core.web.api.errors import install_error_handlers, unknown_endpoints


def install_rest_api(app: FastAPI, service: ChatService) -> None:
    """The routes and error handlers on `app`, which serves `service` (read by deps.get_service
    from app.state)."""
    app.state.chat_service = service
    install_error_handlers(app)
    for module in (health, models, conversations, messages, ratings, comparisons, turns,
                   workflows, links, my_data, dataset, shared_page, account, admin):
        app.include_router(module.router)
    app.include_router(unknown_endpoints)  # last: it matches any path under /api/
