"""The dataset export: GET /api/dataset?format=openai|sharegpt|preference, answered as JSON
Lines (application/x-ndjson), streamed a page of conversations at a time, with the filters
model, since, until, min_rating (chat_core/data/dataset_export.py says what each means) and
pseudonyms=false (owners by name, accounts on). The options are checked before the answer
starts: a bad one is a 4xx with a message, never a half-written file."""

from __future__ import annotations

import logging
from typing import Annotated, AsyncIterator

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from chat_core.errors import InvalidInput
from chat_core.web.api.deps import Service
from chat_core.web.api.errors import GuardedRoute, as_chat_error

router = APIRouter(prefix="/api", tags=["dataset"], route_class=GuardedRoute)
log = logging.getLogger("chat_core.web.api")

Text = Annotated[str | None, Query()]


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise InvalidInput(f"{name} must be true or false, got {value[:20]!r}", field=name)


@router.get("/dataset")
async def dataset(service: Service, fmt: Annotated[str, Query(
        alias="format", description="openai, sharegpt or preference")] = "openai",
        model: Text = None, since: Text = None, until: Text = None,
        min_rating: Text = None, pseudonyms: Text = None) -> StreamingResponse:
    """One JSON object a line; the caller's conversations (an admin's: everyone's who
    accepted the notice)."""
    lines = service.dataset(fmt, model=model or None, since=since or None,
                            until=until or None, min_rating=min_rating or None,
                            pseudonyms=_flag(pseudonyms, "pseudonyms"))
    return StreamingResponse(_logged(lines), media_type="application/x-ndjson", headers={
        "Content-Disposition": f'attachment; filename="dataset-{fmt}.jsonl"'})


async def _logged(lines: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """The lines as bytes; a failure once the answer has started (the database going away)
    is logged and cuts the answer short, so the client sees an incomplete body, not a file
    that looks whole."""
    try:
        async for line in lines:
            yield line.encode("utf-8")
    except Exception as exc:
        as_chat_error(exc, "dataset")
        raise
