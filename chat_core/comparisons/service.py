"""The comparisons' service API: the Compare tab, the REST API and notebooks call this.

A comparison is two conversations (its sides) made together, each with its own model and
settings; a round sends one message to both, as two ordinary durable turns started by one
round workflow (turns/comparison_round.py). A blind comparison's sides are sealed until the
vote (migrations/009): the person's other views do not show them at all, and this service shows
them as "Model A" and "Model B" (blind.py), so no surface names a side's model before the vote.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator

from dbos import DBOS, SetWorkflowID

from chat_core.comparisons import blind
from chat_core.data.leaderboard import Battle, leaderboard
from chat_core.errors import ChatError, Conflict, InvalidInput, NotFound, TooManyTurns
from chat_core.states import (BLIND_NAMES, IN_FLIGHT, MAX_LABEL_CHARS, SIDES, WINNERS)
from chat_core.store.chat_store import public_message, title_from
from chat_core.store.comparisons import ComparisonStore, SideRow
from chat_core.store.turn_admissions import TurnAdmissions
from chat_core.turns.comparison_round import ROUND_ID_PREFIX, comparison_round
from chat_core.turns.payloads import TurnRequest
from chat_core.turns.progress import Snapshot
from chat_core.turns.workflow import reply_id_for, user_message_id_for
from chat_core.validation import check_settings, check_text, parse_id

if TYPE_CHECKING:
    from chat_core.service import ChatService, Turn

SIDE_KEYS = ("model", "settings", "label")


@dataclass(frozen=True)
class ComparisonRound:
    """A round just started: the comparison and each side's turn."""

    comparison_id: str
    turns: dict[str, "Turn"]

    def to_json(self) -> dict[str, Any]:
        return {"comparison_id": self.comparison_id,
                **{side: turn.to_json() for side, turn in self.turns.items()}}


class ComparisonService:
    """Comparisons as one person sees them (ChatService.comparisons())."""

    def __init__(self, chat: "ChatService") -> None:
        # The person's service, with their sealed sides in view: only this class reads them,
        # and it masks the names.
        self.chat = chat.for_person(dataclasses.replace(chat.person, sees_sealed=True))
        self.store = ComparisonStore(chat.store.db, chat.person)

    # -- starting rounds -----------------------------------------------------------------------

    async def create(self, content: Any, a: Any, b: Any, blind: Any = True,
                     idempotency_key: str | None = None) -> ComparisonRound:
        """A new comparison and its first round. Blind: the sides are shown in a random
        order, so whoever chose the models cannot tell which is "Model A". The same
        Idempotency-Key again answers with the first request's comparison and turns (other
        sides, settings or text: a 422)."""
        text = self._text(content)
        if not isinstance(blind, bool):
            raise InvalidInput("'blind' must be true or false", field="blind")
        key = self._key(idempotency_key)
        sides = [await self._side(a, "a"), await self._side(b, "b")]
        self._check_different(*sides)
        await self._check_labels(sides)
        cid = uuid.uuid5(uuid.NAMESPACE_URL, f"comparison:{self.chat.person.key}:{key}")
        row = await self.store.get(cid)
        if row is not None:
            await self._check_same_request(row, sides, blind)
            return await self._round(row, text, key, check_reuse=True)
        if blind and _coin():
            sides.reverse()
        self.chat._refuse_if_closing()
        self._check_room_for_two()
        row = await self.store.create(cid, title_from(text), blind, *sides)
        if row is None:
            raise NotFound(f"comparison {cid} does not exist")
        try:
            requests = await self._admitted_requests(row, text, key)
        except ChatError:
            await self.store.delete(cid)  # refused before anything ran: nothing is left
            raise
        return await self._launch(row, requests, text, idempotency_key is not None)

    async def send(self, comparison_id: Any, content: Any,
                   idempotency_key: str | None = None) -> ComparisonRound:
        """The next round: the message goes to both sides, each answering from its own
        history."""
        own = self._owner_view()  # an admin goes on only in their own comparisons
        row = await own._row(comparison_id)
        text = own._text(content)
        key = own._key(idempotency_key)
        return await own._round(row, text, key, check_reuse=idempotency_key is not None)

    async def _round(self, row: dict[str, Any], text: str, key: str,
                     check_reuse: bool) -> ComparisonRound:
        """Both sides' turns, admitted together (both or neither count against the person's
        limits) and started by one round workflow."""
        return await self._launch(row, await self._admitted_requests(row, text, key), text,
                                  check_reuse)

    async def _admitted_requests(self, row: dict[str, Any], text: str, key: str
                                 ) -> list[tuple[str, TurnRequest]]:
        """Both sides' turns, admitted against the person's limits (both or neither)."""
        self.chat._refuse_if_closing()
        self._check_room_for_two()
        requests = [await self._request(row, side, text, key) for side in SIDES]
        await self._admit(requests)
        return requests

    async def _launch(self, row: dict[str, Any], requests: list[tuple[str, TurnRequest]],
                      text: str, check_reuse: bool) -> ComparisonRound:
        """Start the round's workflow; once it returns, both turns exist."""
        from chat_core.service import Turn
        chat = self.chat
        with SetWorkflowID(f"{ROUND_ID_PREFIX}{requests[0][0]}"):
            handle = await DBOS.start_workflow_async(comparison_round, requests)
        await handle.get_result()  # both turns exist once it returns
        if check_reuse:
            for turn_id, _ in requests:
                await chat._check_key_reuse(turn_id, text)
        return ComparisonRound(str(row["id"]), {
            side: Turn(turn_id, request["conversation_id"], request["user_message_id"],
                       str(reply_id_for(turn_id)))
            for side, (turn_id, request) in zip(SIDES, requests)})

    async def _request(self, row: dict[str, Any], side: str, text: str, key: str
                       ) -> tuple[str, TurnRequest]:
        """One side's turn: its id (from the side and the request's key) and its input."""
        from chat_core.service import turn_id_for
        chat = self.chat
        if row[f"conversation_{side}"] is None:
            raise Conflict(f"side {side} of this comparison was deleted; start a new "
                           "comparison")
        conversation = await chat.store.get_conversation(row[f"conversation_{side}"])
        turn_id = turn_id_for(conversation["id"], key)
        request: TurnRequest = {"conversation_id": str(conversation["id"]), "content": text,
                                "user_message_id": str(user_message_id_for(turn_id)),
                                "params": chat.params_for(conversation)}
        if _hidden(row):
            request["blind_as"] = BLIND_NAMES[side]
        if chat.person.id is not None:
            request["owner"] = chat.person.key
        return turn_id, request

    def _check_room_for_two(self) -> None:
        limit = self.chat.settings.share_max_in_flight
        if self.chat.person.id is not None and limit < 2:
            raise TooManyTurns(f"a comparison writes two replies at once, and each person may "
                               f"have {limit} being written (SHARE_MAX_IN_FLIGHT); ask the "
                               "host to raise it to 2 or more", retry_after_sec=60, limit=limit)

    async def _admit(self, requests: list[tuple[str, TurnRequest]]) -> None:
        """Both turns within the person's limits, or neither: a refusal takes back what was
        admitted for this round."""
        admitted: list[str] = []
        try:
            for turn_id, request in requests:
                await self.chat.admit_turn(turn_id, request["conversation_id"],
                                           str(reply_id_for(turn_id)))
                admitted.append(turn_id)
        except TooManyTurns:
            if admitted and self.chat.person.id is not None:
                await TurnAdmissions(self.chat.store.db).release(self.chat.person.id, admitted)
            raise

    # -- reading -------------------------------------------------------------------------------

    async def get(self, comparison_id: Any) -> dict[str, Any]:
        """The comparison with both sides' messages; a blind one before its vote names its
        sides "Model A" and "Model B" and shows neither model nor settings."""
        row = await self._row(comparison_id)
        hidden = _hidden(row)
        view = _summary(row)
        view["sides"], in_flight = {}, []
        for side in SIDES:
            conversation_id = row[f"conversation_{side}"]
            messages, settings = [], {}
            if conversation_id is not None:
                rows = await self.chat.store.list_messages(conversation_id)
                messages = [public_message(r) for r in rows]
                settings = (await self.chat.store.get_conversation(conversation_id))["settings"]
            if hidden:
                names = _blind_names(row, side)
                messages = [blind.masked_message(m, side, names) for m in messages]
            in_flight += [{"side": side, "turn_id": m["workflow_id"]} for m in messages
                          if m["role"] == "assistant" and m["status"] in IN_FLIGHT]
            view["sides"][side] = {
                "name": _side_name(row, side),
                "model": None if hidden else row[f"model_{side}"],
                "label": None if hidden else row[f"label_{side}"],
                "settings": None if hidden else {k: v for k, v in settings.items() if v is not None},
                "conversation_id": None if conversation_id is None else str(conversation_id),
                "messages": messages}
        view["in_flight"] = in_flight
        return view

    async def list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The person's comparisons, newest first (an admin's: everyone's)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
            raise InvalidInput("limit must be 1..500")
        return [_summary(row) for row in await self.store.list(limit)]

    async def watch_round(self, rnd: ComparisonRound) -> AsyncIterator[tuple[str, Snapshot]]:
        """Both sides' live snapshots as they come, (side, snapshot), until both have
        finished; a blind side's error text masked."""
        row = await self._row(rnd.comparison_id)
        hidden = _hidden(row)
        queue: asyncio.Queue[tuple[str, Snapshot | BaseException | None]] = asyncio.Queue()

        async def follow(side: str, turn_id: str) -> None:
            try:
                async for snap in self.chat.watch_turn(turn_id):
                    await queue.put((side, snap))
                await queue.put((side, None))
            except BaseException as exc:  # handed to the reader, which raises it
                await queue.put((side, exc))

        tasks = [asyncio.ensure_future(follow(side, turn.turn_id))
                 for side, turn in rnd.turns.items()]
        try:
            open_sides = len(tasks)
            while open_sides:
                side, item = await queue.get()
                if item is None:
                    open_sides -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    names = _blind_names(row, side) if hidden else {}
                    yield side, dataclasses.replace(
                        item, error=blind.mask_names(item.error, names))
        finally:
            for task in tasks:
                task.cancel()

    @staticmethod
    def round_of(comparison_id: str, turn_ids: dict[str, str],
                 conversations: dict[str, str]) -> ComparisonRound:
        """A round named by its turns' ids (a page re-attaching to a comparison's replies in
        flight, `get()`'s "in_flight"): each turn with the ids its rows have by
        construction. Following it is checked like any watch (`watch_round`)."""
        from chat_core.service import Turn
        return ComparisonRound(comparison_id, {
            side: Turn(turn_id, conversations.get(side) or "",
                       str(user_message_id_for(turn_id)), str(reply_id_for(turn_id)))
            for side, turn_id in turn_ids.items()})

    async def wait_round(self, rnd: ComparisonRound) -> dict[str, Any]:
        """The comparison once both sides' replies have finished (whatever their end)."""
        async for _ in self.watch_round(rnd):
            pass
        return await self.get(rnd.comparison_id)

    # -- judging -------------------------------------------------------------------------------

    async def vote(self, comparison_id: Any, winner: Any) -> dict[str, Any]:
        """The person's judgement of the latest round: a (A better), b, tie or both_bad; once
        per comparison, when both replies have finished. Reveals a blind comparison's names.
        Only the owner votes (an admin too votes only on their own)."""
        if winner not in WINNERS:
            raise InvalidInput(f"'winner' must be one of {', '.join(WINNERS)}", field="winner")
        own = self._owner_view()
        row = await own._row(comparison_id)
        if row["winner"] is not None:
            raise Conflict(f"comparison {row['id']} already has a vote ({row['winner']}); a "
                           "comparison is judged once")
        seq = await own._judgeable_round(row)
        if not await own.store.vote(row["id"], winner, seq):
            raise Conflict(f"comparison {row['id']} already has a vote; a comparison is judged "
                           "once")
        return await own.get(row["id"])

    async def _judgeable_round(self, row: dict[str, Any]) -> int:
        """The round a vote is cast on: the newest, once both its replies have finished."""
        seqs = []
        for side in SIDES:
            conversation_id = row[f"conversation_{side}"]
            if conversation_id is None:
                raise Conflict("a side of this comparison was deleted; it can no longer be "
                               "judged")
            messages = await self.chat.store.list_messages(conversation_id, 1)
            if any(m["status"] in IN_FLIGHT for m in messages if m["role"] == "assistant"):
                raise Conflict("a reply of this comparison is still being written; vote once "
                               "both have finished")
            seqs.append(max((m["seq"] for m in messages), default=0))
        if min(seqs) == 0:
            raise Conflict("this comparison has no reply yet to judge")
        if seqs[0] != seqs[1]:  # one side's newest message is not saved yet
            raise Conflict("a reply of this comparison is still being written; vote once "
                           "both have finished")
        return seqs[0]

    async def delete(self, comparison_id: Any) -> dict[str, Any]:
        """Delete a comparison with both sides (replies being written are cancelled first),
        voted or not; its vote leaves the leaderboard. Only the owner's (an admin's own)."""
        own = self._owner_view()
        row = await own._row(comparison_id)
        cancelled = []
        for side in SIDES:
            if row[f"conversation_{side}"] is not None:
                done = await own.chat.delete_conversation(row[f"conversation_{side}"])
                cancelled += done["cancelled_turns"]
        if not await own.store.delete(row["id"]):
            raise NotFound(f"comparison {row['id']} does not exist")
        return {"deleted": str(row["id"]), "cancelled_turns": cancelled}

    def _owner_view(self) -> "ComparisonService":
        """This service narrowed to the person's own comparisons (an admin's too): voting and
        deleting are the owner's alone."""
        person = self.chat.person
        if person.id is None or not person.sees_all:
            return self
        return ComparisonService(self.chat._own())

    async def leaderboard(self) -> dict[str, Any]:
        """Ratings of every model and named setting from the votes in view (the person's own;
        an admin's: everyone's), with bootstrap intervals and the win-rate matrix."""
        rows = await self.store.battles()
        battles = [Battle(r["a"], r["b"], r["winner"]) for r in rows]
        return await asyncio.to_thread(leaderboard, battles)

    async def delete_all_mine(self) -> tuple[int, set[str]]:
        """Withdrawal: the person's comparisons with their sides (turns in flight cancelled
        first); how many, and the ids of the sides' turns and of the rounds that started
        them (whose inputs hold the text too), whose DBOS records the caller deletes."""
        owner = self.chat.person.id
        if owner is None:
            raise InvalidInput("deleting a person's data needs accounts (SHARE_AUTH)")
        own = self.chat._own()
        turns: set[str] = set()
        for conversation_id in await self.store.own_side_conversations():
            turns.update(await own.store.workflow_ids_of_conversation(conversation_id))
            try:
                await own.delete_conversation(conversation_id)
            except NotFound:
                pass  # deleted meanwhile
        rounds = {f"{ROUND_ID_PREFIX}{turn}" for turn in turns}
        return await self.store.delete_own(), turns | rounds

    # -- checks --------------------------------------------------------------------------------

    async def _row(self, comparison_id: Any) -> dict[str, Any]:
        cid = parse_id(comparison_id, "comparison")
        row = await self.store.get(cid)
        if row is None:
            raise NotFound(f"comparison {cid} does not exist")
        return row

    def _text(self, content: Any) -> str:
        return check_text(content, "content", self.chat.settings.max_message_chars,
                          setting="MAX_MESSAGE_CHARS")

    def _key(self, idempotency_key: str | None) -> str:
        if idempotency_key is None:
            return str(uuid.uuid4())
        return self.chat.check_idempotency_key(idempotency_key)

    async def _side(self, spec: Any, side: str) -> SideRow:
        """A side's model, label and settings, checked; no model: the default server's."""
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise InvalidInput(f"side {side!r} must be an object with model, settings, label",
                               field=side)
        unknown = sorted(set(spec) - set(SIDE_KEYS))
        if unknown:
            raise InvalidInput(f"side {side!r}: unknown key(s) {', '.join(map(repr, unknown))[:200]}"
                               f"; allowed: {', '.join(SIDE_KEYS)}", field=side)
        settings = {k: v for k, v in check_settings(spec.get("settings") or {}).items()
                    if v is not None}
        model = spec.get("model") if spec.get("model") is not None else settings.get("model")
        if model is not None:
            model = check_settings({"model": model})["model"]
        if model:
            await self.chat.check_model(model)
        else:
            model = (await self.chat.llm.model_info()).id
        label = spec.get("label")
        if label is not None:
            label = check_text(label, "label", MAX_LABEL_CHARS, allow_empty=True).strip() or None
        return SideRow(uuid.uuid4(), model, label, {**settings, "model": model})

    async def _check_labels(self, sides: list[SideRow]) -> None:
        """A label names a setting on the leaderboard: not a model's name (it would count as
        that model) nor a blind name."""
        models = {m["id"].casefold() for m in await self.chat.list_models()}
        for side, row in zip(SIDES, sides):
            if row.label is None:
                continue
            taken = row.label.casefold() in models | {n.casefold() for n in BLIND_NAMES.values()}
            if taken and row.label != row.model:
                raise InvalidInput(f"side {side!r}: label {row.label[:80]!r} is the name of a "
                                   "model (or a blind side); choose another", field="label")

    async def _check_same_request(self, row: dict[str, Any], sides: list[SideRow],
                                  blind: bool) -> None:
        """A repeat of the request that made `row` (same Idempotency-Key): the same sides, in
        either order (a blind one's were shuffled), with the same settings, and `blind`."""
        stored = []
        for side in SIDES:
            conversation_id = row[f"conversation_{side}"]
            settings = (await self.chat.store.get_conversation(conversation_id))["settings"] \
                if conversation_id is not None else None
            stored.append((row[f"model_{side}"], row[f"label_{side}"], settings))
        asked = [(r.model, r.label, r.settings) for r in sides]
        if row["blind"] != blind or sorted(map(repr, stored)) != sorted(map(repr, asked)):
            raise InvalidInput("this Idempotency-Key was already used for a comparison of other "
                               "sides or settings; use a new key for a new comparison")

    def _check_different(self, a: SideRow, b: SideRow) -> None:
        if self.chat.params_for({"settings": a.settings}) == \
                self.chat.params_for({"settings": b.settings}):
            raise InvalidInput("the two sides are the same (same model and same settings); "
                               "change the model or a setting of one side")
        if a.label is not None and a.label == b.label:
            raise InvalidInput("the two sides have the same label; a label names one setting "
                               "on the leaderboard", field="label")


def _coin() -> int:
    """Whether a blind comparison shows its sides the other way round (0 or 1, at random)."""
    return secrets.randbelow(2)


def _hidden(row: dict[str, Any]) -> bool:
    return bool(row["blind"]) and row["winner"] is None


def _blind_names(row: dict[str, Any], side_first: str | None = None) -> dict[str, str]:
    """Each real name of a hidden comparison and what it is shown as; a name both sides
    share (one model, two settings) as `side_first`'s."""
    names: dict[str, str] = {}
    for side in sorted(SIDES, key=lambda s: s == side_first):
        for real in (row[f"model_{side}"], row[f"label_{side}"]):
            if real:
                names[real] = BLIND_NAMES[side]
    return names


def _side_name(row: dict[str, Any], side: str) -> str:
    if _hidden(row):
        return BLIND_NAMES[side]
    return row[f"label_{side}"] or row[f"model_{side}"]


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    from chat_core.store.chat_store import iso
    out = {"id": str(row["id"]), "title": row["title"], "blind": row["blind"],
           "revealed": not _hidden(row), "winner": row["winner"],
           "voted_at": iso(row["voted_at"]), "created_at": iso(row["created_at"]),
           "names": {side: _side_name(row, side) for side in SIDES}}
    if row.get("owner_name") is not None:
        out["owner"] = row["owner_name"]
    return out
