"""The one service API: the Gradio UI, the REST API and notebooks all call this, and nothing
else touches the store, the LLM or DBOS. Methods take and return plain JSON-ready values and
raise chat_core.errors exceptions whose messages can be shown to a user as they are."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from dbos import DBOS, SetWorkflowID
from dbos._core import WorkflowHandleAsyncTask
from dbos._error import DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError

from .chat_store import ChatStore, public_conversation, public_message, title_from
from .config import Settings
from .errors import ChatError, Conflict, InvalidInput, NotFound, TurnCancelled, TurnFailed
from .llm_client import LLMClient
from .turn_progress import Snapshot, TurnHub
from .turn_workflow import chat_turn, reply_id_for, user_message_id_for
from .validation import check_text, parse_id
from .workflow_admin import TURN_ID_PREFIX, WorkflowAdmin, check_turn_id



@dataclass(frozen=True)
class Turn:
    """A started turn: its workflow id, and the ids its rows have (or will have)."""

    turn_id: str
    conversation_id: str
    user_message_id: str
    reply_id: str
    # The DBOS handle when this process started the workflow: awaiting it is immediate, where a
    # handle retrieved by id polls the database once a second.
    handle: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, str]:
        return {"turn_id": self.turn_id, "conversation_id": self.conversation_id,
                "user_message_id": self.user_message_id, "reply_id": self.reply_id}


def turn_id_for(conversation_id: uuid.UUID, idempotency_key: str) -> str:
    """The workflow id of a turn. The client's key is hashed with the conversation id, so any
    key is safe to use, and the same key in two conversations names two turns."""
    digest = uuid.uuid5(uuid.NAMESPACE_URL, f"chat-idempotency:{conversation_id}:{idempotency_key}")
    return f"{TURN_ID_PREFIX}{digest}"


class ChatService:
    def __init__(self, settings: Settings, store: ChatStore, llm: LLMClient, hub: TurnHub,
                 backend: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.llm = llm
        self.hub = hub
        self.backend = backend or {}
        self.workflows = WorkflowAdmin(store, hub)

    # -- conversations -------------------------------------------------------------------------

    @staticmethod
    def title_for(first_message: str) -> str:
        """The title a conversation gets from its first message."""
        return title_from(first_message)

    async def create_conversation(self, title: str | None = None) -> dict[str, Any]:
        if title is not None:
            check_text(title, "title", 200, allow_empty=True)
        row = await self.store.create_conversation((title or "").strip())
        return public_conversation(row)

    async def list_conversations(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        if not (1 <= limit <= 1000) or offset < 0:
            raise InvalidInput("limit must be 1..1000 and offset 0 or more")
        return [public_conversation(r) for r in await self.store.list_conversations(limit, offset)]

    async def get_conversation(self, conversation_id: str | uuid.UUID) -> dict[str, Any]:
        return public_conversation(await self.store.get_conversation(parse_id(conversation_id)))

    async def list_messages(self, conversation_id: str | uuid.UUID,
                            last_turns: int | None = None) -> list[dict[str, Any]]:
        """All messages in reading order, or those of the newest `last_turns` turns."""
        cid = parse_id(conversation_id)
        rows = await self.store.list_messages(cid, last_turns)
        if not rows:
            await self.store.get_conversation(cid)  # 404 for an unknown conversation
        return [public_message(r) for r in rows]

    # -- turns ---------------------------------------------------------------------------------

    def default_params(self) -> dict[str, Any]:
        s = self.settings
        return {"temperature": s.default_temperature, "max_tokens": s.default_max_tokens,
                "top_p": s.default_top_p, "system_prompt": s.default_system_prompt}

    def check_idempotency_key(self, key: Any) -> str:
        if not isinstance(key, str) or not key.strip():
            raise InvalidInput("the idempotency key must be a non-empty string")
        if len(key) > self.settings.max_idempotency_key_chars:
            raise InvalidInput(
                f"the idempotency key is longer than {self.settings.max_idempotency_key_chars} "
                "characters")
        return check_text(key, "Idempotency-Key", self.settings.max_idempotency_key_chars)

    async def start_turn(self, conversation_id: str | uuid.UUID, content: Any, *,
                         idempotency_key: str | None = None) -> Turn:
        """Accept a user message: once this returns, the turn is recorded in PostgreSQL and
        will finish, whatever crashes. The message itself is saved by the workflow's first step."""
        cid = parse_id(conversation_id)
        text = check_text(content, "content", self.settings.max_message_chars)
        key = self.check_idempotency_key(idempotency_key) if idempotency_key is not None \
            else str(uuid.uuid4())
        await self.store.get_conversation(cid)
        turn_id = turn_id_for(cid, key)
        user_id = user_message_id_for(turn_id)
        request = {"conversation_id": str(cid), "content": text, "user_message_id": str(user_id),
                   "params": self.default_params()}
        return await self._start(turn_id, request, str(user_id))

    async def retry_turn(self, conversation_id: str | uuid.UUID,
                         message_id: str | uuid.UUID) -> Turn:
        """Answer a user message again (after an error, or to regenerate): a new turn whose
        reply is added next to the earlier ones, which are kept."""
        cid = parse_id(conversation_id)
        mid = parse_id(message_id, "message")
        message = await self.store.get_message(mid)
        if message is None or message["conversation_id"] != cid:
            raise NotFound(f"message {mid} does not exist in conversation {cid}")
        if message["role"] == "assistant":
            message = await self.store.get_message(message["parent_id"])
            assert message is not None
        busy = await self.store.in_flight_replies(cid)
        if busy:
            raise Conflict("a reply is still being generated in this conversation; wait for it "
                           "or stop it, then retry", turn_id=busy[0]["workflow_id"])
        turn_id = f"{TURN_ID_PREFIX}{uuid.uuid4()}"
        request = {"conversation_id": str(cid), "content": None,
                   "user_message_id": str(message["id"]), "params": self.default_params()}
        return await self._start(turn_id, request, str(message["id"]))

    async def _start(self, turn_id: str, request: dict[str, Any], user_id: str) -> Turn:
        reply_id = str(reply_id_for(turn_id))
        with SetWorkflowID(turn_id):
            handle = await DBOS.start_workflow_async(chat_turn, request)
        if isinstance(handle, WorkflowHandleAsyncTask):
            # Runs here: watchers can follow it from the first token on.
            self.hub.track(turn_id, reply_id)
        return Turn(turn_id, request["conversation_id"], user_id, reply_id, handle)

    async def wait_turn(self, turn: Turn) -> dict[str, Any]:
        """The finished turn as {"user_message", "assistant_message"}; raises TurnFailed (the
        reply is a recorded error) or TurnCancelled, both carrying the saved rows."""
        if turn.handle is not None and isinstance(turn.handle, WorkflowHandleAsyncTask):
            try:
                result: dict[str, Any] = await turn.handle.get_result()
                return result
            except TurnFailed as exc:
                raise TurnFailed(exc.message, turn_id=turn.turn_id,
                                 **await self._turn_rows(turn)) from None
            except (DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError):
                raise TurnCancelled("the turn was cancelled before its reply was finished",
                                    turn_id=turn.turn_id, **await self._turn_rows(turn)) from None
        # Started elsewhere (or a repeated request): follow the reply to its end, then read it.
        async for snap in self.watch_turn(turn.turn_id):
            if snap.finished:
                break
        rows = await self._turn_rows(turn)
        reply = rows["assistant_message"] or {}
        if reply.get("status") == "error":
            raise TurnFailed(reply.get("error") or "the reply failed", turn_id=turn.turn_id,
                             **rows)
        if reply.get("status") == "cancelled" or not reply:
            raise TurnCancelled("the turn was cancelled before its reply was finished",
                                turn_id=turn.turn_id, **rows)
        return rows

    async def send_message(self, conversation_id: str | uuid.UUID, content: Any, *,
                           idempotency_key: str | None = None) -> dict[str, Any]:
        """The seed's POST /messages: accept, run the turn, return both messages."""
        turn = await self.start_turn(conversation_id, content, idempotency_key=idempotency_key)
        result = await self.wait_turn(turn)
        if idempotency_key is not None and result["user_message"]["content"] != content:
            raise InvalidInput(
                "this Idempotency-Key was already used for a different message in this "
                "conversation; use a new key for a new message", turn_id=turn.turn_id)
        return result

    async def _turn_rows(self, turn: Turn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, mid in (("user_message", turn.user_message_id),
                          ("assistant_message", turn.reply_id)):
            row = await self.store.get_message(uuid.UUID(mid))
            out[name] = public_message(row) if row else None
        return out

    async def watch_turn(self, turn_id: str, poll_sec: float = 0.25,
                         min_interval: float = 0.0) -> AsyncIterator[Snapshot]:
        """Snapshots of a reply as it is generated, ending with its final state. Reads this
        process's live progress when the turn runs here, else the checkpoints in the database
        (a turn run by another process, or not yet resumed after a restart)."""
        reply_id = str(reply_id_for(turn_id))
        last: Snapshot | None = None
        while True:
            progress = self.hub.get(turn_id)
            if progress is not None:
                async for snap in progress.watch(min_interval):
                    yield snap
                    last = snap
                if last is not None and last.finished:
                    return
                continue
            row = await self.store.get_message(uuid.UUID(reply_id))
            if row is None:
                status = await DBOS.get_workflow_status_async(turn_id)
                if status is None:
                    raise NotFound(f"turn {turn_id} does not exist")
                if status.status in ("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
                    yield Snapshot(turn_id, reply_id, "error", "", 0,
                                   str(status.error) if status.error else status.status)
                    return
                await asyncio.sleep(poll_sec)
                continue
            snap = Snapshot(turn_id, reply_id, row["status"], row["content"], 0, row["error"])
            if snap != last:
                yield snap
                last = snap
            if snap.finished:
                return
            await asyncio.sleep(poll_sec)

    async def stop_turn(self, turn_id: str) -> bool:
        """Stop generating; the text so far is kept as the reply, marked stopped. Returns False
        if the turn had already finished."""
        check_turn_id(turn_id)
        reply_id = reply_id_for(turn_id)
        progress = self.hub.get(turn_id)
        if progress is not None and not progress.snapshot().finished:
            progress.request_stop()
        # Also in the database: the turn may run in another process, or crash and resume.
        flagged = await self.store.request_stop(reply_id)
        return flagged or (progress is not None and not progress.snapshot().finished)

    async def check_turn_exists(self, turn_id: str) -> None:
        check_turn_id(turn_id)
        if self.hub.get(turn_id) is not None:
            return
        if await self.store.get_message(reply_id_for(turn_id)) is not None:
            return
        if await DBOS.get_workflow_status_async(turn_id) is None:
            raise NotFound(f"turn {turn_id} does not exist")

    async def in_flight(self, conversation_id: str | uuid.UUID) -> list[dict[str, Any]]:
        """Replies of this conversation still being generated, for re-attaching after a reload."""
        rows = await self.store.in_flight_replies(parse_id(conversation_id))
        return [public_message(r) for r in rows]

    async def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "backend": self.backend}
        try:
            out["database_ms"] = round(await self.store.db.ping(), 2)
        except ChatError as exc:
            out["status"] = "degraded"
            out["database_error"] = exc.message
        try:
            info = await asyncio.wait_for(self.llm.model_info(), timeout=5)
            out["model"] = info.id
        except (ChatError, asyncio.TimeoutError) as exc:
            out["status"] = "degraded"
            out["llm_error"] = exc.message if isinstance(exc, ChatError) else "timeout"
        return out
