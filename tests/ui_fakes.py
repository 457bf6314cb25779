"""Stand-ins for the UI's handler tests: a ChatService with conversations and messages in
memory and turns that answer with a scripted list of snapshots (only what the handlers call),
and what share mode adds: an account directory and a Gradio request naming the caller."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

from chat_core.accounts.person import LOCAL, Person
from chat_core.config import Settings
from chat_core.errors import ChatError, InvalidInput, NotFound
from chat_core.llm.fair_gate import FairGate
from chat_core.service import ChatService, Turn
from chat_core.states import COMPLETE, STREAMING
from chat_core.store.chat_store import ChatStore
from chat_core.store.database import Database
from chat_core.turns.progress import Snapshot, TurnHub
from chat_core.turns.workflow import (STEP_NAMES, WORKFLOW_NAME, reply_id_for,
                                      user_message_id_for)

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
    settings: Any = field(default_factory=lambda: SimpleNamespace(max_message_chars=100,
                                                                  accounts_enabled=False))
    person: Person = LOCAL
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
        """Newest first, as the store lists them."""
        return list(reversed(self.conversations.values()))[:limit]

    async def conversation_titles(self, limit: int = 100) -> list[dict[str, Any]]:
        return [{"id": c["id"], "title": c["title"]} for c in await self.list_conversations(limit)]

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

    @staticmethod
    def check_sendable(content: Any) -> str:
        if not isinstance(content, str) or not content.strip():
            raise InvalidInput("the message is empty: type something to send")
        return content

    async def start_conversation(self, content: Any) -> tuple[dict[str, Any], Turn]:
        """As the service: the text is checked before the conversation is made; the making
        takes a while (what the page reads meanwhile runs)."""
        self.check_sendable(content)
        await asyncio.sleep(0)
        conversation = await self.create_conversation()
        return conversation, await self.start_turn(conversation["id"], content)

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


class FakePeople:
    """The account directory as the UI and the REST API use it (accounts/directory.py)."""

    def __init__(self, *people: Person) -> None:
        self.people = list(people)

    async def person_by_id(self, account_id: str) -> Person | None:
        return next((p for p in self.people if str(p.id) == account_id), None)

    async def person_by_name(self, name: str) -> Person | None:
        return next((p for p in self.people if p.name.casefold() == name.casefold()), None)

    async def list_people(self) -> list[dict[str, Any]]:
        return [{"name": p.name, "admin": p.is_admin} for p in self.people]


def caller(person: Person | None) -> Any:
    """The gr.Request Gradio hands a handler: the account id as `username` (None: a call
    that reached Gradio without a login)."""
    return SimpleNamespace(username=None if person is None else str(person.id))


# -- a real service for three people --------------------------------------------------------------

class FakeDBOS:
    """DBOS's records of turn workflows, for a service with no DBOS launched: what the
    visibility checks and the Workflows tab read (status, list, steps). A turn id not added
    is unknown, as DBOS answers for one it never ran."""

    def __init__(self) -> None:
        self.records: dict[str, Any] = {}

    def add(self, turn_id: str, owner: Person, status: str = "SUCCESS") -> None:
        now = 1_780_000_000_000
        self.records[turn_id] = SimpleNamespace(
            workflow_id=turn_id, name=WORKFLOW_NAME, status=status, created_at=now,
            updated_at=now + 500, completed_at=now + 500, recovery_attempts=1,
            executor_id="local", app_version="test", forked_from=None, error=None,
            input={"args": [{"owner": owner.key}], "kwargs": {}})

    async def get_workflow_status_async(self, turn_id: str) -> Any:
        return self.records.get(turn_id)

    async def list_workflows_async(self, *, workflow_ids: list[str] | None = None,
                                   status: str | None = None, limit: int | None = None,
                                   **_: Any) -> list[Any]:
        rows = [r for r in self.records.values()
                if (workflow_ids is None or r.workflow_id in workflow_ids)
                and (status is None or r.status == status)]
        return rows[:limit]

    async def list_workflow_steps_async(self, turn_id: str, **_: Any) -> list[dict[str, Any]]:
        return [{"function_id": i, "function_name": name, "started_at_epoch_ms": 1,
                 "completed_at_epoch_ms": 2, "error": None}
                for i, name in enumerate(STEP_NAMES, 1)] if turn_id in self.records else []


@dataclass
class Room:
    """The real ChatService and store on PostgreSQL, accounts on, with two people and an
    admin (fresh names each time: the database is shared), DBOS stood in for."""
    service: ChatService
    system: ChatStore
    dbos: FakeDBOS
    run: Callable[[Awaitable[Any]], Any]
    alice: Person
    bob: Person
    admin: Person

    def conversation(self, owner: Person, title: str) -> str:
        return str(self.run(self.service.for_person(owner).create_conversation(title))["id"])

    def turn(self, owner: Person, conversation_id: str, text: str, reply: str | None = None
             ) -> tuple[str, str, str]:
        """A turn as its workflow records it: (turn id, user message id, reply id); the
        reply finished with `reply`, or still pending."""
        turn_id = f"turn-{uuid.uuid4()}"
        user, placeholder = self.run(self.system.save_user_turn(
            uuid.UUID(conversation_id), turn_id, user_message_id_for(turn_id),
            reply_id_for(turn_id), text))
        if reply is not None:
            self.run(self.system.finish_reply(placeholder["id"], content=reply,
                                              status=COMPLETE))
        self.dbos.add(turn_id, owner, "SUCCESS" if reply is not None else "PENDING")
        return turn_id, str(user["id"]), str(placeholder["id"])


@contextmanager
def room(database_url: str, monkeypatch: Any) -> Iterator[Room]:
    suffix = uuid.uuid4().hex[:8]
    alice, bob = (Person(uuid.uuid4(), f"{n}-{suffix}") for n in ("alice", "bob"))
    admin = Person(uuid.uuid4(), f"host-{suffix}", is_admin=True)
    dbos = FakeDBOS()
    for module in ("chat_core.service", "chat_core.turns.admin"):
        monkeypatch.setattr(f"{module}.DBOS", dbos)
    with asyncio.Runner() as runner:
        db = Database(database_url, max_size=4, retry_for_sec=2)
        runner.run(db.open())
        try:
            runner.run(add_accounts(db, alice, bob, admin))
            settings = Settings(share_auth=f"{admin.name}:not-used-here")
            service = ChatService(settings, ChatStore(db), SimpleNamespace(gate=FairGate(2)),
                                  TurnHub())
            service.people = FakePeople(alice, bob, admin)  # type: ignore[attr-defined]
            yield Room(service, ChatStore(db), dbos, runner.run, alice, bob, admin)
        finally:
            runner.run(db.close())


async def add_accounts(db: Database, *people: Person) -> None:
    async with db.connection() as conn:
        for p in people:
            await conn.execute(
                "INSERT INTO accounts (id, name, name_key, is_admin, source)"
                " VALUES (%s, %s, %s, %s, 'config')", (p.id, p.name, p.name, p.is_admin))
