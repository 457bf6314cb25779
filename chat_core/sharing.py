"""Read-only links: a person publishes one of their conversations as a public page.

The link is the only key: 32 random bytes (`secrets.token_urlsafe`), shown once to whoever
publishes it; the database keeps only its SHA-256, so a leaked table opens no page. A link can
expire and can be revoked; an unknown, expired and revoked link answer alike (NotFound), so a
visitor learns nothing from trying tokens. Publishing, listing and revoking go through the
person's scoped service: someone else's conversation is a missing one. Reading a link needs no
person (chat_core/web/shared_page.py serves it outside any login).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from typing import Any

from chat_core.accounts.person import SYSTEM
from chat_core.errors import InvalidInput, NotFound
from chat_core.states import MAX_LINK_DAYS, MAX_LIVE_LINKS
from chat_core.service import ChatService
from chat_core.store.chat_store import ChatStore, iso, public_conversation, public_message
from chat_core.store.database import Database
from chat_core.store.shared_links import SharedLinkStore
from chat_core.validation import parse_id

LINK_PATH = "/s/"               # the public page of a link is LINK_PATH + token
LINK_TOKEN_BYTES = 32           # 256 bits: not guessable, whatever the rate of tries
# What secrets.token_urlsafe(LINK_TOKEN_BYTES) produces: anything else is no link of ours,
# refused before it is hashed or looked up.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def token_hash(token: str) -> bytes:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode("ascii")).digest()


def _links(service: ChatService) -> SharedLinkStore:
    return SharedLinkStore(service.store.db, service.person)


def _public_link(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "created_at": iso(row["created_at"]),
            "expires_at": iso(row["expires_at"])}


def check_expiry(expires_in_days: Any) -> int | None:
    """None (never expires) or a whole number of days, 1..MAX_LINK_DAYS."""
    if expires_in_days is None:
        return None
    if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int) \
            or not 1 <= expires_in_days <= MAX_LINK_DAYS:
        raise InvalidInput(f"'expires_in_days' must be a whole number from 1 to {MAX_LINK_DAYS},"
                           " or null (the link never expires)", field="expires_in_days")
    return expires_in_days


async def publish_link(service: ChatService, conversation_id: Any,
                       expires_in_days: Any = None) -> dict[str, Any]:
    """A new link to this conversation: {id, url_path, created_at, expires_at}. `url_path` holds
    the token and is given only here; keep it, it cannot be shown again (revoke and publish a
    new one instead)."""
    cid = parse_id(conversation_id)
    days = check_expiry(expires_in_days)
    token = secrets.token_urlsafe(LINK_TOKEN_BYTES)
    row = await _links(service).create(cid, uuid.uuid4(), token_hash(token), days,
                                       MAX_LIVE_LINKS)
    return {**_public_link(row), "url_path": LINK_PATH + token}


async def list_links(service: ChatService, conversation_id: Any) -> list[dict[str, Any]]:
    """The conversation's links that still open a page, newest first (without their tokens)."""
    return [_public_link(r) for r in await _links(service).list_live(parse_id(conversation_id))]


async def revoke_link(service: ChatService, conversation_id: Any, link_id: Any
                      ) -> dict[str, Any]:
    """Close a link for good: its page answers like any unknown link from now on."""
    cid, lid = parse_id(conversation_id), parse_id(link_id, "link")
    if not await _links(service).revoke(cid, lid):
        raise NotFound(f"link {lid} does not exist")
    return {"revoked": str(lid)}


async def read_shared(db: Database, token: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The conversation and messages a live link opens; NotFound for anything else."""
    missing = NotFound("this link does not exist, has expired or was revoked")
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise missing
    cid = await SharedLinkStore(db).resolve(token_hash(token))
    if cid is None:
        raise missing
    store = ChatStore(db, SYSTEM)
    try:
        conversation = public_conversation(await store.get_conversation(cid))
    except NotFound:  # deleted since (its links go with it): answered alike
        raise missing from None
    return conversation, [public_message(r) for r in await store.list_messages(cid)]
