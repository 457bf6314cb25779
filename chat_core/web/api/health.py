"""GET /healthz: the database and the LLM answer, for load balancers and people."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from chat_core.web.api.deps import Service
from chat_core.web.api.errors import GuardedRoute

router = APIRouter(tags=["health"], route_class=GuardedRoute)


@router.get("/healthz")
async def healthz(service: Service) -> Response:
    """{"status": "ok", "database_ms", "model", "backend", "servers"}; 503 "degraded" with the
    reason when the database or the default LLM server does not answer. "servers": every LLM
    server's state ({"server" (masked), "state": up|down, "models", "error"}); another server
    that is down makes only its models unavailable."""
    health = await service.health()
    return JSONResponse(health, status_code=200 if health["status"] == "ok" else 503)
