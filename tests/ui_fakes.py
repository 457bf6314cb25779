"""A ChatService stand-in for the UI's handler tests: conversations and messages in memory,
turns that answer with a scripted list of snapshots. Only what the handlers call."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, AsyncIterator

from chat_core.errors import ChatError, InvalidInput, NotFound
from chat_core.service import Turn
from chat_core.states import COMPLETE, STREAMING
from chat_core.turns.progress import Snapshot

DEFAULTS = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 512, "system_prompt": ""}


@dataclass
class FakeService:
    conversations: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # What watch_turn yields for the next turn watched (then it raises `watch_error`, if set).
    snapshots: list[tuple[str, str]] = field(default_factory=lambda: [(STREAMING, "Hel"),
                                                                      (COMPLETE, "Hello")])
    watch_error: ChatError | None = None
    stopped: list[str] = field(default_factory=list)
    in_flight_turns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    settings: Any = field(default_factory=lambda: SimpleNamespace(max_message_chars=100))
    backend: dict[str, Any] = field(default_factory=lambda: {"kind": "local", "model": "fake"})
    llm: Any = field(default_factory=lambda: SimpleNamespace(current_model_id=lambda: "fake"))

    # -- conversations ------------------------------------------------------------------------

    @staticmethod
    def title_for(first_message: str) -> str:
        return first_message[:20]

    def default_params(self) -> dict[str, Any]:
        return dict(DEFAULTS)

    def params_for(self, conversation: dict[str, Any]) -> dict[str, Any]:
        return {**DEFAULTS, **(conversation.get("settings") or {})}

    async def create_conversation(self, title: str | None = None) -> dict[str, Any]:
        cid = str(uuid.uuid4())
        self.conversations[cid] = {"id": cid, "title": title or "", "settings": {}}
        self.messages[cid] = []
        return self.conversations[cid]

    async def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        if conversation_id not in self.conversations:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return self.conversations[conversation_id]

    async def list_conversations(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.conversations.values())[:limit]

    async def list_messages(self, conversation_id: str, last_turns: int | None = None
                            ) -> list[dict[str, Any]]:
        await self.get_conversation(conversation_id)
        return list(self.messages[conversation_id])

    async def in_flight(self, conversation_id: str) -> list[dict[str, Any]]:
        return self.in_flight_turns.get(conversation_id, [])

    async def delete_conversation(self, conversation_id: str) -> dict[str, Any]:
        await self.get_conversation(conversation_id)
        del self.conversations[conversation_id]
        return {"cancelled_turns": 0}

    async def import_conversation(self, data: Any) -> dict[str, Any]:
        conversation = await self.create_conversation(data["conversation"]["title"])
        for message in data["messages"][::2]:
            self.add_turn(conversation["id"], message["content"], "imported")
        return conversation

    async def update_conversation(self, conversation_id: str, *, title: str | None = None,
                                  settings: dict[str, Any] | None = None) -> dict[str, Any]:
        conversation = await self.get_conversation(conversation_id)
        if title is not None:
            conversation["title"] = title.strip()
        if settings is not None:
            conversation["settings"] = settings
        return conversation

    # -- turns --------------------------------------------------------------------------------

    def add_turn(self, conversation_id: str, text: str, reply: str | None = None,
                 status: str = COMPLETE, finish_reason: str | None = "stop") -> Turn:
        """A turn as the workflow records it: the user message, then its reply (if any)."""
        rows = self.messages[conversation_id]
        seq = len([m for m in rows if m["role"] == "user"]) + 1
        turn = Turn(f"turn-{uuid.uuid4()}", conversation_id, str(uuid.uuid4()),
                    str(uuid.uuid4()))
        rows.append({"id": turn.user_message_id, "role": "user", "content": text, "seq": seq,
                     "status": COMPLETE})
        if reply is not None:
            rows.append({"id": turn.reply_id, "role": "assistant", "content": reply,
                         "seq": seq, "status": status, "parent_id": turn.user_message_id,
                         "active": True, "error": None, "finish_reason": finish_reason,
                         "workflow_id": turn.turn_id})
        return turn

    async def start_turn(self, conversation_id: str, content: Any) -> Turn:
        await self.get_conversation(conversation_id)
        if not isinstance(content, str) or not content.strip():
            raise InvalidInput("the message is empty: type something to send")
        return self.add_turn(conversation_id, content, self.snapshots[-1][1],
                             self.snapshots[-1][0])

    async def retry_turn(self, conversation_id: str, message_id: str) -> Turn:
        await self.get_conversation(conversation_id)
        return Turn(f"turn-{uuid.uuid4()}", conversation_id, message_id, str(uuid.uuid4()))

    async def watch_turn(self, turn_id: str, min_interval: float = 0.0
                         ) -> AsyncIterator[Snapshot]:
        reply_id = next((m["id"] for rows in self.messages.values() for m in rows
                         if m.get("workflow_id") == turn_id), "reply-unknown")
        for status, text in self.snapshots:
            yield Snapshot(turn_id, reply_id, status, text, 0)
        if self.watch_error is not None:
            raise self.watch_error

    async def stop_turn(self, turn_id: str) -> bool:
        self.stopped.append(turn_id)
        return True

    async def search_conversations(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        return [{"id": c["id"], "title": c["title"], "snippet": query}
                for c in self.conversations.values()
                if any(query in m["content"] for m in self.messages[c["id"]])][:limit]
