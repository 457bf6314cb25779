"""GET /api/models: the models a conversation can name in its settings ({"model": id}), from
every LLM server of VLLM_BASE_URL (llm/servers.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chat_core.web.api.deps import Service
from chat_core.web.api.errors import GuardedRoute

router = APIRouter(prefix="/api", tags=["models"], route_class=GuardedRoute)


@router.get("/models")
async def list_models(service: Service) -> list[dict[str, Any]]:
    """[{"id", "server" (its URL, password masked), "max_context" (null when the server does
    not say), "available" (false while its server does not answer)}], the default server's
    first. The lists are looked at again when older than 30 s."""
    return await service.list_models()
