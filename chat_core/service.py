"""The one service API: the Gradio UI, the REST API and notebooks all call this, and nothing
else touches the store, the LLM or DBOS. Methods take and return plain JSON-ready values and
raise chat_core.errors exceptions whose messages can be shown to a user as they are."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from dbos import DBOS, WorkflowStatusString
from dbos import error as dbos_error

from chat_core.accounts.person import LOCAL, Person

if TYPE_CHECKING:
    from chat_core.accounts.directory import AccountDirectory
    from chat_core.comparisons.service import ComparisonService
from chat_core.store.chat_store import ChatStore, public_conversation, public_message, title_from
from chat_core.store.turn_admissions import TurnAdmissions
from chat_core.store.dataset_rows import DatasetRows, DatasetSecret
from chat_core.store.dataset_rows import batches as dataset_batches
from chat_core.store.ratings import RatingStore, check_rating, public_rating
from chat_core.config import Settings
from chat_core.errors import (ChatError, Conflict, InvalidInput, LLMRejected, LLMUnavailable,
                              NotFound, ShuttingDown, TooManyTurns, TurnCancelled, TurnFailed)
from chat_core.llm.client import LLMClient
from chat_core.llm.servers import LLMServers
from chat_core.turns.payloads import TurnParams, TurnRequest
from chat_core.turns.progress import Snapshot, TurnHub
from chat_core.turns import queued_order, turn_queue
from chat_core.turns.turn_start import follow_new, runs_here, start_here
from chat_core.turns.workflow import reply_id_for, user_message_id_for
from chat_core.data import conversation_export, dataset_export
from chat_core.states import (FINAL, ANSWERED, CANCELLED, ERROR, IN_FLIGHT, MAX_SEARCH_CHARS,
                              MAX_TITLE_CHARS, WORKFLOW_ACTIVE, WORKFLOW_FAILED)
from chat_core.validation import check_settings, check_text, parse_id
from chat_core.turns.admin import TURN_ID_PREFIX, WorkflowAdmin, check_turn_id
from chat_core.turns.comparison_round import ROUND_ID_PREFIX

# A dataset export hands the event loop back after about this many characters of lines.
DATASET_CHUNK_CHARS = 256 * 1024


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


# A reply followed from its row checks its workflow every this many polls (watch_turn).
WORKFLOW_CHECK_POLLS = 8


class ChatService:
    """The service for one person: `for_person` gives each caller their own, whose store
    answers only what they may see. The one built at start-up serves the local person (no
    accounts), notebooks and the workflows, and sees everything."""

    def __init__(self, settings: Settings, store: ChatStore, llm: LLMClient, hub: TurnHub,
                 backend: dict[str, Any] | None = None,
                 people: "AccountDirectory | None" = None,
                 servers: LLMServers | None = None) -> None:
        self.settings = settings
        self.store = store
        self.llm = llm
        # Every LLM server (VLLM_BASE_URL's list); `llm` is the default, the first.
        # (None only for stand-ins built without a client, in tests.)
        self.servers = servers if servers is not None else \
            LLMServers([llm]) if llm is not None else None
        self.hub = hub
        self.backend = backend or {}
        # Who is who, with accounts on (SHARE_AUTH / SHARE_INVITE); None in local mode.
        self.people = people
        self.person = LOCAL
        self.workflows = WorkflowAdmin(store, hub, self.person, self.admit_turn)
        # With TURN_WORKERS: how many are running now (set by the runtime), for /healthz.
        self.turn_workers_running: Callable[[], int] | None = None

    def for_person(self, person: Person) -> "ChatService":
        """This service as `person` sees it: every query scoped to them (an admin's to
        everyone), what they create is theirs, their turns count against their limits."""
        scoped = copy.copy(self)
        scoped.person = person
        scoped.store = self.store.scoped(person)
        scoped.workflows = WorkflowAdmin(scoped.store, self.hub, person, scoped.admit_turn)
        return scoped

    # -- conversations -------------------------------------------------------------------------

    @staticmethod
    def title_for(first_message: str) -> str:
        """The title a conversation gets from its first message."""
        return title_from(first_message)

    async def create_conversation(self, title: str | None = None) -> dict[str, Any]:
        if title is not None:
            check_text(title, "title", MAX_TITLE_CHARS, allow_empty=True)
        row = await self.store.create_conversation((title or "").strip())
        return public_conversation(row)

    async def list_conversations(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        if not (1 <= limit <= 1000) or offset < 0:
            raise InvalidInput("limit must be 1..1000 and offset 0 or more")
        return [public_conversation(r) for r in await self.store.list_conversations(limit, offset)]

    async def conversation_titles(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest conversations' ids and titles (and owners, for an admin seeing
        everyone's): what a list of them shows, for a fraction of list_conversations' cost."""
        return [{"id": str(r["id"]), "title": r["title"],
                 **({"owner": r["owner_name"]} if r["owner_name"] is not None else {})}
                for r in await self.store.list_conversation_titles(limit)]

    async def get_conversation(self, conversation_id: str | uuid.UUID) -> dict[str, Any]:
        return public_conversation(await self.store.get_conversation(parse_id(conversation_id)))

    async def list_messages(self, conversation_id: str | uuid.UUID,
                            last_turns: int | None = None) -> list[dict[str, Any]]:
        """All messages in reading order, or those of the newest `last_turns` turns."""
        cid = parse_id(conversation_id)
        rows = await self.store.list_messages(cid, last_turns)
        if not rows:
            await self.store.get_conversation(cid)  # 404 for an unknown conversation
        return await self._with_ratings(cid, [public_message(r) for r in rows])

    async def _with_ratings(self, cid: uuid.UUID, messages: list[dict[str, Any]]
                            ) -> list[dict[str, Any]]:
        """Each reply with its `rating` ({"value", "tags", "comment", ...} or null)."""
        if any(m["role"] == "assistant" for m in messages):
            ratings = await self.ratings().of_conversation(cid)
            for m in messages:
                if m["role"] == "assistant":
                    m["rating"] = public_rating(ratings.get(uuid.UUID(m["id"])))
        return messages

    def comparisons(self) -> "ComparisonService":
        """Comparisons as this person sees them (the Compare tab, /api/comparisons)."""
        from chat_core.comparisons.service import ComparisonService
        return ComparisonService(self)

    def ratings(self) -> RatingStore:
        """The ratings of the replies this person can see."""
        return RatingStore(self.store.db, self.store.person)

    async def rating_of(self, conversation_id: str | uuid.UUID, message_id: str | uuid.UUID
                        ) -> dict[str, Any] | None:
        """The rating of a reply ({"value", "tags", "comment", ...}), or None when it has
        none; a reply the person cannot see answers like a missing one (None)."""
        cid, mid = parse_id(conversation_id), parse_id(message_id, "message")
        return public_rating(await self.ratings().of_reply(cid, mid))

    def _own(self) -> ChatService:
        """This service narrowed to the person's own conversations (an admin's too), for what
        only an owner does: a rating is the owner's judgement of a reply, so an admin, who
        sees everyone's, rates only their own. The local person (no accounts) owns all."""
        if self.person.id is None or not self.person.sees_all:
            return self
        return self.for_person(dataclasses.replace(self.person, is_admin=False))

    async def rate_reply(self, conversation_id: str | uuid.UUID, message_id: str | uuid.UUID,
                         value: Any, tags: Any = None, comment: Any = None) -> dict[str, Any]:
        """Rate a finished reply of one's own conversations: 1 (thumbs up) or -1 (down), with
        optional tags and a comment, replacing an earlier rating; 0 removes it. Answers
        {"message_id", "conversation_id", "value", "tags", "comment", ...} (value 0 once
        removed). Someone else's reply answers like a missing one, an admin's call too."""
        checked = check_rating(value, tags, comment)  # before any lookup: the same for any id
        own = self._own()
        cid, message = await own._message_in(conversation_id, message_id)
        if message["role"] != "assistant":
            raise InvalidInput("only a reply (an assistant message) can be rated; "
                               f"message {message['id']} is a user message", field="message_id")
        if message["status"] in IN_FLIGHT:
            raise Conflict("this reply is still being written; rate it once it has finished",
                           turn_id=message["workflow_id"])
        ids = {"message_id": str(message["id"]), "conversation_id": str(cid)}
        if checked[0] == 0:
            await own.ratings().unrate(cid, message["id"])
            return {**ids, "value": 0, "tags": [], "comment": "", "created_at": None,
                    "updated_at": None}
        row = await own.ratings().rate(cid, message["id"], *checked)
        if row is None:  # deleted (or no longer the person's) since it was read
            raise NotFound(f"message {message['id']} does not exist in conversation {cid}")
        return {**ids, **(public_rating(row) or {})}

    def dataset(self, fmt: Any, model: Any = None, since: Any = None, until: Any = None,
                min_rating: Any = None, pseudonyms: Any = True) -> AsyncIterator[str]:
        """The person's conversations as a dataset, JSON Lines a chunk of whole lines at a
        time (format openai, sharegpt or preference: chat_core/data/dataset_export.py). The
        options are checked here, before anything is read: a bad one raises now, not
        part-way through. An admin's holds everyone's; with accounts on, other people's only
        if they accepted the notice, under pseudonyms unless `pseudonyms` is false."""
        query = dataset_export.parse_query(fmt, model, since, until, min_rating, pseudonyms)
        return self._dataset_lines(query)

    async def _dataset_lines(self, query: dataset_export.DatasetQuery,
                             page: int = 200) -> AsyncIterator[str]:
        """A page of conversations at a time, their messages a bounded batch at a time
        (dataset_rows.batches), turned into lines in a worker thread a chunk at a time:
        the CPU work of a big conversation never holds up the event loop, and no more than
        a chunk of lines waits in memory for a slow client."""
        rows = DatasetRows(self.store.db, self.store.person)
        accounts = self.settings.accounts_enabled
        secret = await DatasetSecret(self.store.db).pseudonyms() \
            if accounts and query.pseudonyms else None
        pairs = query.format == "preference"
        if pairs:  # votes first: the strongest source (dataset_export.SOURCES)
            async for votes in rows.vote_pages(since=query.since, until=query.until,
                                               consented_only=accounts):
                lines = dataset_export.vote_lines(votes, query)
                while chunk := await asyncio.to_thread(dataset_export.take, lines,
                                                       DATASET_CHUNK_CHARS):
                    yield chunk
        after = None
        while True:
            conversations = await rows.conversations(
                after=after, limit=page, model=query.model, consented_only=accounts,
                # A pair's time is its message's: an older conversation may hold newer ones.
                created_since=None if pairs else query.since,
                active_since=query.since if pairs else None, created_until=query.until)
            if not conversations:
                return
            after = (conversations[-1]["created_at"], conversations[-1]["id"])
            for batch in dataset_batches(conversations):
                messages = await rows.messages([c["id"] for c in batch], accounts)
                lines = dataset_export.dataset_lines(batch, messages, query, accounts, secret)
                while chunk := await asyncio.to_thread(dataset_export.take, lines,
                                                       DATASET_CHUNK_CHARS):
                    yield chunk

    # -- turns ---------------------------------------------------------------------------------

    def default_params(self) -> TurnParams:
        s = self.settings
        return {"temperature": s.default_temperature, "max_tokens": s.default_max_tokens,
                "top_p": s.default_top_p, "system_prompt": s.default_system_prompt}

    def params_for(self, conversation: dict[str, Any]) -> TurnParams:
        """The configured defaults, overridden by the conversation's settings. Fixed into the
        turn's workflow input, so a recovered turn runs with what it was accepted with."""
        params = self.default_params()
        params.update({k: v for k, v in (conversation.get("settings") or {}).items()
                       if v is not None})
        return params

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
        text = self._message_text(content)
        key = self.check_idempotency_key(idempotency_key) if idempotency_key is not None \
            else None
        return await self._start_message(await self.store.conversation_for_turn(cid), text, key)

    async def start_conversation(self, content: Any) -> tuple[dict[str, Any], Turn]:
        """A new conversation and its first message's turn (the chat page's first message): the
        conversation as made is what the turn starts from, with no read back. A message that
        cannot be sent (its text, the person's limits, the app stopping) leaves no empty
        conversation behind."""
        text = self.check_sendable(content)
        row = await self.store.create_conversation("")
        try:
            turn = await self._start_message(row, text, None)
        except ChatError:  # refused before it started (the limits, the app stopping)
            with contextlib.suppress(ChatError):
                await self.store.delete_conversation(row["id"])
            raise
        return public_conversation(row), turn

    def check_sendable(self, content: Any) -> str:
        """The text of a message that can be sent now: InvalidInput says what to change in it,
        ShuttingDown that the app is stopping. Nothing is read or written for it before (the
        person's limits are checked as its turn starts)."""
        text = self._message_text(content)
        self._refuse_if_closing()
        return text

    def _message_text(self, content: Any) -> str:
        return check_text(content, "content", self.settings.max_message_chars,
                          setting="MAX_MESSAGE_CHARS")

    async def _start_message(self, conversation: dict[str, Any], text: str,
                             idempotency_key: str | None) -> Turn:
        """The turn of a new message `text` to `conversation` (a row with its `next_seq`,
        ChatStore.conversation_for_turn), under `idempotency_key` if the client gave one."""
        cid = conversation["id"]
        turn_id = turn_id_for(cid, idempotency_key or str(uuid.uuid4()))
        user_id = user_message_id_for(turn_id)
        request: TurnRequest = {"conversation_id": str(cid), "content": text,
                                "user_message_id": str(user_id),
                                "params": self.params_for(conversation)}
        # A repeated key may name a turn that has run already: only a new turn gets a head start.
        turn = await self._start(turn_id, request, str(user_id),
                                 next_seq=None if idempotency_key else conversation["next_seq"],
                                 new=idempotency_key is None)
        if idempotency_key is not None:
            await self._check_key_reuse(turn_id, text)
        return turn

    async def _check_key_reuse(self, turn_id: str, text: str) -> None:
        """A repeated request returns the first one's turn; the same key with other text is a
        client bug, refused rather than mistaken for a repeat. Checked once the turn is started
        (DBOS hands back the first one's when the id exists, whatever the input): its recorded
        input is the reference, there before the message is saved, and no race can slip past."""
        earlier = await DBOS.get_workflow_status_async(turn_id)
        if earlier is None or not isinstance(earlier.input, dict):
            return
        args = earlier.input.get("args") or ()
        if args and isinstance(args[0], dict) and args[0].get("content") != text:
            raise InvalidInput(
                "this Idempotency-Key was already used for a different message in this "
                "conversation; use a new key for a new message", turn_id=turn_id)

    async def retry_turn(self, conversation_id: str | uuid.UUID,
                         message_id: str | uuid.UUID) -> Turn:
        """Answer a user message again (after an error, or to regenerate): a new turn whose
        reply is added next to the earlier ones, which are kept."""
        cid, message = await self._message_in(conversation_id, message_id)
        if message["role"] == "assistant":
            message = await self.store.get_message(message["parent_id"])
            assert message is not None
        conversation = await self._idle_conversation(cid)
        turn_id = f"{TURN_ID_PREFIX}{uuid.uuid4()}"
        request: TurnRequest = {"conversation_id": str(cid), "content": None,
                                "user_message_id": str(message["id"]),
                                "params": self.params_for(conversation)}
        return await self._start(turn_id, request, str(message["id"]))

    async def continue_reply(self, conversation_id: str | uuid.UUID,
                             reply_id: str | uuid.UUID) -> Turn:
        """Go on from where a stopped (or cut-off) reply ended: a new reply that starts with
        the old one's text, which is kept as an alternative."""
        cid, reply = await self._message_in(conversation_id, reply_id)
        if reply["role"] != "assistant" or reply["status"] not in ANSWERED \
                or not reply["content"]:
            raise InvalidInput("only a stopped or finished reply with text can be continued")
        conversation = await self._idle_conversation(cid)
        turn_id = f"{TURN_ID_PREFIX}{uuid.uuid4()}"
        request: TurnRequest = {"conversation_id": str(cid), "content": None,
                                "user_message_id": str(reply["parent_id"]),
                                "continue_reply_id": str(reply["id"]),
                                "params": self.params_for(conversation)}
        return await self._start(turn_id, request, str(reply["parent_id"]))

    async def _message_in(self, conversation_id: str | uuid.UUID,
                          message_id: str | uuid.UUID) -> tuple[uuid.UUID, dict[str, Any]]:
        cid = parse_id(conversation_id)
        mid = parse_id(message_id, "message")
        message = await self.store.get_message(mid)
        if message is None or message["conversation_id"] != cid:
            raise NotFound(f"message {mid} does not exist in conversation {cid}")
        return cid, message

    async def _idle_conversation(self, cid: uuid.UUID) -> dict[str, Any]:
        conversation = await self.store.get_conversation(cid)
        busy = await self.store.in_flight_replies(cid)
        if busy:
            raise Conflict("a reply is still being generated in this conversation; wait for it "
                           "or stop it, then try again", turn_id=busy[0]["workflow_id"])
        return conversation

    # -- conversation management ---------------------------------------------------------------

    async def update_conversation(self, conversation_id: str | uuid.UUID, *,
                                  title: Any = None, settings: Any = None) -> dict[str, Any]:
        """Rename it and/or change its generation settings (a null setting goes back to the
        configured default). Applies to turns accepted from now on."""
        cid = parse_id(conversation_id)
        if title is None and settings is None:
            raise InvalidInput('nothing to change: send "title" and/or "settings"')
        if title is not None:
            title = check_text(title, "title", MAX_TITLE_CHARS).strip()
        changes = check_settings(settings) if settings is not None else None
        if changes and changes.get("model"):
            await self.check_model(changes["model"])
        return public_conversation(await self.store.update_conversation(
            cid, title=title, settings=changes))

    async def delete_conversation(self, conversation_id: str | uuid.UUID) -> dict[str, Any]:
        """Delete it with its messages; a reply still being generated is cancelled first."""
        cid = parse_id(conversation_id)
        await self.store.get_conversation(cid)
        cancelled = []
        for turn_id in await self._turns_in_flight(cid):
            try:
                await self.workflows.cancel(turn_id)
                cancelled.append(turn_id)
            except ChatError:
                pass  # finished meanwhile
        deleted = await self.store.delete_conversation(cid)
        if not deleted:
            raise NotFound(f"conversation {cid} does not exist")
        return {"deleted": str(cid), "cancelled_turns": cancelled}

    async def _turns_in_flight(self, cid: uuid.UUID) -> list[str]:
        """The conversation's turns still running: those with an unfinished reply, and those
        started here that have none yet (a message sent just now), once DBOS has their
        workflow, so that the cancel finds it. The conversation is the person's (checked by
        the caller in the store); the cancel checks each turn as the Workflows tab does."""
        turns = [reply["workflow_id"] for reply in await self.store.in_flight_replies(cid)]
        for progress in self.hub.of_conversation(str(cid)):
            await progress.recorded.wait()
            turns.append(progress.turn_id)
        return list(dict.fromkeys(turns))

    async def delete_my_data(self) -> dict[str, Any]:
        """Withdrawal: every conversation of this person (an admin's own only) with its
        messages, and DBOS's records of their turns, whose inputs and step outputs hold the
        same text. Exports and notebooks read these tables, so they no longer contain it."""
        if self.person.id is None:
            raise InvalidInput("deleting a person's data needs accounts (SHARE_AUTH)")
        admissions = TurnAdmissions(self.store.db)
        deleted, turns = 0, set(await admissions.turns_of(self.person.id))
        compared, side_turns = await self.comparisons().delete_all_mine()
        turns |= side_turns
        # The rounds that started any of their turns (a comparison deleted earlier too).
        turns |= {f"{ROUND_ID_PREFIX}{t}" for t in turns if t.startswith(TURN_ID_PREFIX)}
        while rows := await self.store.list_conversations(1000, 0, owner=self.person.id):
            for row in rows:
                turns.update(await self.store.workflow_ids_of_conversation(row["id"]))
                await self.delete_conversation(row["id"])
                deleted += 1
        found = [t for t in turns if await DBOS.get_workflow_status_async(t) is not None]
        if found:
            await DBOS.delete_workflows_async(found, delete_children=True)
        # A comparison's rounds: no turns themselves, so not counted.
        found = [t for t in found if t.startswith(TURN_ID_PREFIX)]
        await admissions.forget(self.person.id)
        return {"deleted_conversations": deleted, "deleted_comparisons": compared,
                "deleted_turns": len(found)}

    async def withdraw(self) -> dict[str, Any]:
        """Delete the person's data, then withdraw their consent: in this order, so a failure
        half-way leaves them consenting to what is left, never the reverse."""
        counts = await self.delete_my_data()
        if self.people is not None:
            await self.people.withdraw_consent(self.person)
        return {**counts, "consent_withdrawn": self.people is not None}

    async def check_model(self, model: str) -> None:
        """A model some configured server lists (InvalidInput naming those there are)."""
        if self.servers is None:
            return
        try:
            await self.servers.route(model)
        except (LLMRejected, LLMUnavailable) as exc:  # unknown, or its server may be down
            raise InvalidInput(exc.message, field="model") from None

    async def list_models(self) -> list[dict[str, Any]]:
        """Every model of every LLM server: id, server (masked URL), max_context, available
        (false while its server does not answer)."""
        return await self.servers.models() if self.servers is not None else []

    def llm_load(self) -> dict[str, Any]:
        """This process's LLM gates: per person, turns at the LLM and turns waiting for it,
        summed over the servers; with several, also each server's totals."""
        clients = self.servers.clients if self.servers is not None else [self.llm]
        loads = [c.gate.load().to_json() for c in clients]
        if len(loads) == 1:
            return loads[0]
        owners: dict[str, dict[str, Any]] = {}
        for load in loads:
            for row in load["owners"]:
                mine = owners.setdefault(row["owner"], {"owner": row["owner"], "running": 0,
                                                        "waiting": 0})
                mine["running"] += row["running"]
                mine["waiting"] += row["waiting"]
        return {"capacity": sum(x["capacity"] for x in loads), "fair": loads[0]["fair"],
                "running": sum(x["running"] for x in loads),
                "waiting": sum(x["waiting"] for x in loads),
                "owners": sorted(owners.values(),
                                 key=lambda r: (-r["running"], -r["waiting"], r["owner"])),
                "servers": [{"server": c.shown_url, "capacity": x["capacity"],
                             "running": x["running"], "waiting": x["waiting"]}
                            for c, x in zip(clients, loads)]}

    async def search_conversations(self, query: Any, limit: int = 20) -> list[dict[str, Any]]:
        """Ranked full-text search over messages (PostgreSQL, English stemming): words,
        "exact phrases", -excluded words, or."""
        text = check_text(query, "q", MAX_SEARCH_CHARS)
        if not 1 <= limit <= 100:
            raise InvalidInput("limit must be 1..100")
        return [{**public_conversation(r), "message_id": str(r["message_id"]),
                 "rank": round(float(r["rank"]), 6), "snippet": r["snippet"]}
                for r in await self.store.search(text, limit)]

    async def select_reply(self, conversation_id: str | uuid.UUID,
                           reply_id: str | uuid.UUID) -> dict[str, Any]:
        """Show this alternative reply, and send it as history from now on."""
        cid, reply = await self._message_in(conversation_id, reply_id)
        if reply["role"] != "assistant":
            raise InvalidInput("only a reply can be selected among alternatives")
        row = await self.store.select_reply(reply["id"])
        if row is None:
            raise InvalidInput(f"reply {reply['id']} is {reply['status']}; only a finished "
                               "or stopped reply can be selected")
        return public_message(row)

    async def branch_conversation(self, conversation_id: str | uuid.UUID,
                                  message_id: str | uuid.UUID, *, before: bool = False,
                                  key: str | None = None) -> dict[str, Any]:
        """A new conversation with this one's turns up to (or, `before`, up to but not
        including) the turn of `message_id`, linked to its origin; the original is unchanged."""
        cid, message = await self._message_in(conversation_id, message_id)
        source = await self.store.get_conversation(cid)
        upto = message["seq"] - 1 if before else message["seq"]
        new_id = uuid.uuid5(uuid.NAMESPACE_URL,
                            f"chat-branch:{cid}:{message['id']}:{before}:{key or uuid.uuid4()}")
        title = f"{source['title'] or 'Conversation'} (branch)"[:MAX_TITLE_CHARS]
        return public_conversation(await self.store.branch(cid, upto, new_id, title,
                                                           message["id"]))

    async def edit_message(self, conversation_id: str | uuid.UUID, message_id: str | uuid.UUID,
                           content: Any, *, idempotency_key: str | None = None
                           ) -> tuple[dict[str, Any], Turn]:
        """Edit an earlier user message: the conversation branches into a new one that holds
        the turns before it and the edited message, which is answered; the original stays."""
        text = check_text(content, "content", self.settings.max_message_chars,
                          setting="MAX_MESSAGE_CHARS")
        key = self.check_idempotency_key(idempotency_key) if idempotency_key is not None \
            else str(uuid.uuid4())
        self._refuse_if_closing()  # before the branch is made
        _, message = await self._message_in(conversation_id, message_id)
        if message["role"] != "user":
            raise InvalidInput("only a user message can be edited")
        branch = await self.branch_conversation(conversation_id, message_id, before=True,
                                                key=key)
        try:
            turn = await self.start_turn(branch["id"], text, idempotency_key=key)
        except TooManyTurns:
            # Refused by the person's limits: no empty branch is left behind.
            await self.store.delete_conversation(uuid.UUID(branch["id"]))
            raise
        return branch, turn

    async def export_conversation(self, conversation_id: str | uuid.UUID,
                                  fmt: str = "json") -> dict[str, Any] | str:
        cid = parse_id(conversation_id)
        conversation = public_conversation(await self.store.get_conversation(cid))
        messages = await self._with_ratings(
            cid, [public_message(r) for r in await self.store.list_messages(cid)])
        if fmt == "json":
            return conversation_export.to_json(conversation, messages)
        if fmt in ("markdown", "md"):
            return conversation_export.to_markdown(conversation, messages)
        raise InvalidInput("format must be json or markdown")

    async def import_conversation(self, data: Any) -> dict[str, Any]:
        """Create a conversation from an export (validated first; a bad file changes nothing)."""
        conversation, messages = conversation_export.parse_import(
            data, max_chars=self.settings.max_message_chars)
        if conversation["settings"].get("model"):  # a model no server lists: refused here
            await self.check_model(conversation["settings"]["model"])
        # The file's ratings rate the new copies of its replies, and are the importer's.
        ratings = [m.pop("rating") for m in messages if m.get("rating") is not None]
        for m in messages:
            m.pop("rating", None)
        return public_conversation(await self.store.import_conversation(conversation, messages,
                                                                         ratings))

    async def _start(self, turn_id: str, request: TurnRequest, user_id: str,
                     next_seq: int | None = None, new: bool = True) -> Turn:
        """Start the turn's workflow; `next_seq`: where a new message goes in a conversation
        with no turn in flight (ChatStore.conversation_for_turn), for its head start; `new`:
        False when `turn_id` may name a turn started before (a repeated Idempotency-Key)."""
        self._refuse_if_closing()
        reply_id = str(reply_id_for(turn_id))
        if self.person.id is not None:
            request["owner"] = self.person.key
        await self.admit_turn(turn_id, request["conversation_id"], reply_id)
        if self.settings.turn_workers:
            return await self._enqueue(turn_id, request, user_id, reply_id, next_seq, new)
        handle = await start_here(self.hub, turn_id, request, reply_id, next_seq, new)
        return Turn(turn_id, request["conversation_id"], user_id, reply_id, handle)

    async def _enqueue(self, turn_id: str, request: TurnRequest, user_id: str, reply_id: str,
                       next_seq: int | None, new: bool) -> Turn:
        """The turn for a turn worker (TURN_WORKERS), followed here as the worker relays it
        (turns/relay.py); a turn that existed already is followed from the database, since
        a finished one has nothing left to relay."""
        existed = not new and await DBOS.get_workflow_status_async(turn_id) is not None
        cid = request["conversation_id"]
        # A turn of the conversation handed to a worker and not finished may have no rows yet
        # (still queued): this one is saved after it (queued_order.py), and its place is not
        # known for sure, so no head start.
        earlier = queued_order.earlier_turns(self.hub.in_flight(), cid, turn_id)
        if earlier:
            request["after"] = earlier
        elif next_seq is not None:
            request["head_seq"] = next_seq  # the worker gives it the head start
        progress = None
        if not existed:  # followed from before it is enqueued: no word of it can come first
            progress = follow_new(self.hub, turn_id, reply_id, request)
            progress.relayed = True
        try:
            handle = await turn_queue.enqueue(turn_id, request)
        except BaseException:
            if progress is not None:
                self.hub.detach(turn_id)
            raise
        finally:
            if progress is not None:
                progress.recorded.set()
        return Turn(turn_id, cid, user_id, reply_id, handle)

    async def admit_turn(self, turn_id: str, conversation_id: str, reply_id: str,
                         rerun: bool = False) -> None:
        """Share mode's per-person limits (SHARE_MAX_IN_FLIGHT, SHARE_MAX_TURNS_PER_MINUTE) for
        every turn a person starts: sent, retried, continued, edited, forked; `rerun` (resumed):
        turns in flight only. Raises TooManyTurns (429); nothing to count without accounts."""
        if self.person.id is None:
            return
        s = self.settings
        refusal = await TurnAdmissions(self.store.db).admit(
            self.person.id, turn_id, uuid.UUID(conversation_id), uuid.UUID(reply_id),
            max_in_flight=s.share_max_in_flight, per_minute=s.share_max_turns_per_minute,
            rerun=rerun)
        if refusal is None:
            return
        if refusal.reason == "in_flight":
            text = (f"you have {refusal.limit} replies being written already; wait for one to "
                    "finish (or stop one), then send again")
        else:
            text = (f"you have sent {refusal.limit} messages in the last minute; send again in "
                    f"{refusal.retry_after_sec} s")
        raise TooManyTurns(text, retry_after_sec=refusal.retry_after_sec, limit=refusal.limit)

    def begin_shutdown(self) -> None:
        """The process is stopping: whoever waits for a reply is answered now (ShuttingDown, a
        503) rather than cut off when the server gives up on open connections. The turns go on
        in the next process."""
        self.hub.close()

    def _refuse_if_closing(self) -> None:
        # A turn accepted now could only be answered "shutting down", and a client resending
        # it without an Idempotency-Key would get it answered twice after the restart.
        if self.hub.closing:
            raise ShuttingDown("the app is shutting down and starts no turn now; send the "
                               "request again once the app is back")

    def _shutting_down(self, turn_id: str) -> ShuttingDown:
        return ShuttingDown(
            f"the app is shutting down; turn {turn_id} is saved and finishes when the app is "
            f"back: follow GET /api/turns/{turn_id}/events then (or send the request again "
            "with the same Idempotency-Key, if it had one) to get its reply", turn_id=turn_id)

    async def wait_turn(self, turn: Turn) -> dict[str, Any]:
        """The finished turn as {"user_message", "assistant_message"}; raises TurnFailed (the
        reply is a recorded error) or TurnCancelled, both carrying the saved rows, or
        ShuttingDown."""
        if runs_here(turn.handle):
            # DBOS shields the workflow from a cancelled get_result(): dropping it is safe.
            waiting = asyncio.ensure_future(turn.handle.get_result())
            closing = asyncio.ensure_future(self.hub.closed.wait())
            try:
                await asyncio.wait({waiting, closing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closing.cancel()
                answered = waiting.done()
                if not answered:
                    waiting.cancel()
            if not answered:
                return await self._saved_turn(turn)  # or ShuttingDown if it is not finished
            try:
                result: dict[str, Any] = waiting.result()
                return result
            except TurnFailed as exc:
                raise TurnFailed(exc.message, turn_id=turn.turn_id,
                                 **await self._turn_rows(turn)) from None
            except (dbos_error.DBOSAwaitedWorkflowCancelledError,
                    dbos_error.DBOSWorkflowCancelledError):
                raise TurnCancelled("the turn was cancelled before its reply was finished",
                                    turn_id=turn.turn_id, **await self._turn_rows(turn)) from None
        # Started elsewhere (a turn worker, a repeated request): follow the reply to its end,
        # then read it.
        last: Snapshot | None = None
        async for last in self.watch_turn(turn.turn_id):
            if last.finished:
                break
        rows = await self._saved_turn(turn)
        if last is not None and last.status == ERROR and \
                (rows["assistant_message"] or {}).get("status") not in FINAL:
            # It failed before its last step, which would have saved the error.
            raise TurnFailed(last.error or "the turn failed", turn_id=turn.turn_id, **rows)
        return rows

    async def _saved_turn(self, turn: Turn) -> dict[str, Any]:
        """A finished turn as the database holds it (raising as wait_turn does)."""
        rows = await self._turn_rows(turn)
        reply = rows["assistant_message"] or {}
        if self.hub.closing and (not reply or reply.get("status") in IN_FLIGHT):
            raise self._shutting_down(turn.turn_id)
        if reply.get("status") == ERROR:
            raise TurnFailed(reply.get("error") or "the reply failed", turn_id=turn.turn_id,
                             **rows)
        if reply.get("status") == CANCELLED or not reply:
            raise TurnCancelled("the turn was cancelled before its reply was finished",
                                turn_id=turn.turn_id, **rows)
        return rows

    async def send_message(self, conversation_id: str | uuid.UUID, content: Any, *,
                           idempotency_key: str | None = None) -> dict[str, Any]:
        """The seed's POST /messages: accept, run the turn, return both messages."""
        turn = await self.start_turn(conversation_id, content, idempotency_key=idempotency_key)
        return await self.wait_turn(turn)

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
        await self.check_turn_visible(turn_id)
        reply_id = str(reply_id_for(turn_id))
        last: Snapshot | None = None
        polls = 0
        while True:
            # Once the process is stopping, only the database is read: a finished turn is still
            # answered, one in flight goes on in the next process.
            progress = None if self.hub.closing else self.hub.get(turn_id)
            if progress is not None:
                async for snap in progress.watch(min_interval):
                    yield snap
                    last = snap
                if last is not None and last.finished:
                    return
                continue
            row = await self._turn_rows_store().get_message(uuid.UUID(reply_id))
            if row is None:
                if self.hub.closing:
                    raise self._shutting_down(turn_id)
                status = await DBOS.get_workflow_status_async(turn_id)
                if status is None or status.status == WorkflowStatusString.SUCCESS.value:
                    # A finished turn without its reply: its conversation was deleted.
                    raise NotFound(f"turn {turn_id} does not exist")
                if status.status in WORKFLOW_FAILED:
                    yield Snapshot(turn_id, reply_id, ERROR, "", 0,
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
            if self.hub.closing:
                raise self._shutting_down(turn_id)
            polls += 1
            if polls % WORKFLOW_CHECK_POLLS == 0 and await self._ended_unsaved(turn_id):
                yield await self._unsaved_end(turn_id, snap)
                return
            await asyncio.sleep(poll_sec)

    async def _ended_unsaved(self, turn_id: str) -> bool:
        """The turn's workflow failed or was cancelled while its reply stays in flight (it
        failed before its last step): nothing will finish that reply now."""
        status = await DBOS.get_workflow_status_async(turn_id)
        return status is not None and status.status in WORKFLOW_FAILED

    async def _unsaved_end(self, turn_id: str, last: Snapshot) -> Snapshot:
        """The end of a turn whose workflow ended with its reply in flight: the row as it is
        now if it was closed meanwhile (a cancel closes it just after cancelling), else an
        error that says where to go on."""
        row = await self._turn_rows_store().get_message(uuid.UUID(last.reply_id))
        if row is not None and row["status"] in FINAL:
            return Snapshot(turn_id, last.reply_id, row["status"], row["content"], 0,
                            row["error"])
        return Snapshot(turn_id, last.reply_id, ERROR, last.text, 0, "the turn failed before "
                        "its reply was saved (the Workflows tab says why); Retry asks again")

    def _turn_rows_store(self) -> ChatStore:
        """The person's store with their blind comparisons' sides in view, for what the turn
        endpoints read of a reply (status, text, error: no model name; the error text of a
        blind side is masked when it is written): their own turns answer alike, sealed or not."""
        return self.store.scoped(dataclasses.replace(self.person, sees_sealed=True))

    async def stop_turn(self, turn_id: str) -> bool:
        """Stop generating; the text so far is kept as the reply, marked stopped. Returns False
        if the turn had already finished."""
        await self.check_turn_visible(turn_id)
        reply_id = reply_id_for(turn_id)
        progress = self.hub.get(turn_id)
        live = progress is not None and not progress.snapshot().finished
        if live:
            progress.request_stop()  # type: ignore[union-attr]
        # Also in the database: the turn may run in another process, or crash and resume.
        flagged = await self._turn_rows_store().request_stop(reply_id)
        if live and not flagged:
            # Its reply not saved yet (a turn worker may be starting it): told directly, and
            # again by the relay once the worker is heard from (turns/relay.py).
            await self.store.notify_stop(turn_id)
        return flagged or live

    async def check_turn_visible(self, turn_id: str) -> None:
        """NotFound unless the turn is this person's (or they see all): someone else's turn
        answers exactly like a missing one. Whether it exists at all is check_turn_exists."""
        check_turn_id(turn_id)
        if self.person.sees_all:
            return
        progress = self.hub.get(turn_id)
        if progress is not None and progress.owner == self.person.key:
            return
        if await self._turn_rows_store().get_message(reply_id_for(turn_id)) is not None:
            return
        # Accepted, its rows not written yet: whose conversation it is for.
        status = await DBOS.get_workflow_status_async(turn_id)
        args = (status.input or {}).get("args") if status and isinstance(status.input, dict) \
            else None
        request = args[0] if args and isinstance(args[0], dict) else {}
        if request.get("owner") == self.person.key:
            return
        raise NotFound(f"turn {turn_id} does not exist")

    async def check_turn_exists(self, turn_id: str) -> None:
        await self.check_turn_visible(turn_id)
        progress = self.hub.get(turn_id)
        if progress is not None and not progress.snapshot().finished:
            return  # in flight here (its rows may not be saved yet)
        if await self._turn_rows_store().get_message(reply_id_for(turn_id)) is not None:
            return
        status = await DBOS.get_workflow_status_async(turn_id)
        # A turn that ended without a reply row belonged to a deleted conversation (deleted
        # after the turn, or while it ran, which cancels it).
        if status is None or status.status not in WORKFLOW_ACTIVE:
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
        if self.turn_workers_running is not None:
            running = self.turn_workers_running()
            out["turn_workers"] = {"running": running,
                                   "configured": self.settings.turn_workers}
            if not running:
                out["status"] = "degraded"
                out["turn_workers_error"] = ("no turn worker is running: turns wait on the "
                                             "queue until one is back; see the app's log")
        # Every server's state; one that is down makes its models unavailable, not the app
        # (status follows the database and the default server alone).
        if self.servers is not None:
            out["servers"] = await self.servers.servers()
            if out["servers"] and out["servers"][0]["state"] == "down":
                # model_info() above answers from its cache once the default server has
                # answered once: the listing says whether it still does.
                out["status"] = "degraded"
                out.setdefault("llm_error", out["servers"][0]["error"])
        return out
