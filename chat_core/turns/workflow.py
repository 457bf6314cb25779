"""A chat turn as a DBOS workflow: the seed's four steps, each checkpointed in PostgreSQL.

    1. save_user_message  - the message takes the conversation's next position (seq), and its
                            reply placeholder is created, in one transaction
    2. read_history       - once every earlier turn of the conversation has finished, the newest
                            turns that fit the model's context window
    3. call_llm           - stream the reply, retried with backoff while the server is away
    4. save_reply         - the final text, tokens, latencies and parameters, or the error

The seed reads history before saving the message; here the message is saved first, because its
position is what defines "earlier turns" when two messages arrive at once. Rows are keyed by ids
derived from the workflow id, so a step that re-runs after a crash writes nothing twice, and a
request repeated with the same workflow id (Idempotency-Key) returns the first run's result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterator, cast

from dbos import DBOS, StepOptions
from dbos import error as dbos_error

from chat_core.store.chat_store import ChatStore, derive_id, public_message
from chat_core.config import Settings
from chat_core.llm.context_window import DEFAULT_CONTEXT_TOKENS, FittedPrompt, fit_prompt
from chat_core.turns.fault_injection import crash_point
from chat_core.comparisons.blind import blind_error
from chat_core.errors import ChatError, LLMRejected, LLMUnavailable, NotFound, TurnFailed
from chat_core.llm.client import Completion, LLMClient
from chat_core.llm.fair_gate import Place
from chat_core.llm.servers import LLMServers, ModelRoute
from chat_core.llm.slots import GlobalLLMSlots
from chat_core.llm.token_estimate import estimate_message_tokens, upper_bound_tokens
from chat_core.turns.payloads import (LLMOutput, Outcome, Prompt, SavedTurn, TurnParams,
                                      TurnRequest, TurnResult)
from chat_core.turns.head_start import Ask, HeadStart, HeadStarts
from chat_core.turns.progress import TurnHub, TurnProgress
from chat_core.turns.queued_order import wait_for_earlier_saves
from chat_core.turns.start_order import StartOrder
from chat_core.turns.wakeups import TurnWakeups, Waiter
from chat_core.states import CANCELLED, COMPLETE, ERROR, PENDING, STOPPED, WORKFLOW_ACTIVE

log = logging.getLogger(__name__)

WORKFLOW_NAME = "chat_turn"
STEP_NAMES = ("save_user_message", "read_history", "call_llm", "save_reply")


@dataclass
class TurnDeps:
    settings: Settings
    store: ChatStore
    llm: LLMClient
    hub: TurnHub
    slots: GlobalLLMSlots | None = None
    # Wakes turns waiting for an earlier turn of their conversation (None: they poll).
    wakeups: TurnWakeups | None = None
    # Lets turns through their steps before the LLM in arrival order (None: all at once).
    start_order: StartOrder | None = None
    # Every LLM server (VLLM_BASE_URL's list; `llm` is the first): a turn whose params name a
    # model goes to the server that lists it (None: every turn goes to `llm`).
    servers: LLMServers | None = None
    # LLM requests sent as turns are accepted (TURN_HEAD_START; None: off).
    head_starts: HeadStarts | None = None


_deps: TurnDeps | None = None
# The turns running in this process, so that a shutdown can end them quietly (abandon_running).
_running: set[asyncio.Task[Any]] = set()
_abandoning = False


def bind(deps: TurnDeps | None) -> None:
    """Workflows are module-level functions (DBOS registers them by name), so the objects they
    use are bound here once at start-up, before DBOS.launch() recovers any turn."""
    global _deps
    _deps = deps


def _d() -> TurnDeps:
    if _deps is None:
        raise RuntimeError("turn workflow used before chat_core.runtime started")
    return _deps


async def _route(params: TurnParams) -> ModelRoute:
    """Where a turn's model is served: params["model"] (its conversation's setting) on the
    server that lists it; a turn without one (accepted before models could be chosen, too)
    goes to the default server's default model. An unknown model is an LLMRejected."""
    d = _d()
    model = cast(dict[str, Any], params).get("model")
    if not model:
        return ModelRoute(d.llm)
    if d.servers is None:
        return ModelRoute(d.llm, model)
    return await d.servers.route(model)


async def _route_for_fitting(params: TurnParams) -> ModelRoute | None:
    """The route while reading history, as last seen (no listing is waited for here: the turn
    holds a place in the start order); None when the model is not known now (the LLM step
    looks again and reports it; the history is fitted to the fallback window meanwhile)."""
    d = _d()
    model = cast(dict[str, Any], params).get("model")
    if not model or d.servers is None:
        return await _route(params)
    return d.servers.known_route(model)


def _model_name(params: TurnParams) -> str:
    """The model a reply that got no text from the server is recorded with."""
    return cast(dict[str, Any], params).get("model") or _d().llm.current_model_id() or ""


def reply_id_for(workflow_id: str) -> uuid.UUID:
    return derive_id(workflow_id, "reply")


def user_message_id_for(workflow_id: str) -> uuid.UUID:
    return derive_id(workflow_id, "user")


# -- the workflow ------------------------------------------------------------------------------


@DBOS.workflow(name=WORKFLOW_NAME)
async def chat_turn(request: TurnRequest) -> TurnResult:
    """One turn: save the message, read the history, stream the reply, save it (payloads.py
    says what each step takes and returns)."""
    turn_id = DBOS.workflow_id
    assert turn_id is not None
    task = asyncio.current_task()
    if task is not None:
        _running.add(task)
    # A turn recovered at start (or resumed) is followed in memory like one started here:
    # whoever re-attaches to it waits on the hub instead of polling its row.
    progress = _d().hub.track(turn_id, str(reply_id_for(turn_id)), request.get("owner", ""))
    if "head_seq" in request:  # accepted by a web process, run here by a turn worker
        begin_head_start(turn_id, request, progress, request["head_seq"], recheck=True)
    try:
        if "after" in request:  # queued by a web process behind turns not saved yet
            await wait_for_earlier_saves(_d().store, request["after"], progress.reply_id,
                                         _d().settings.turn_order_wait_sec)
        return await _run_turn(turn_id, request)
    except dbos_error.DBOSWorkflowCancelledError:
        await _close_cancelled(turn_id)
        raise
    except ChatError as exc:
        # Ours, and final (an earlier turn that never finished, a database refusal): the
        # reply is closed with it, then this process's watchers are told.
        await _close_failed(turn_id, _message(exc))
        raise
    except BaseException as exc:
        # Watchers in this process must not wait for a reply that will not come (at shutdown
        # it will come, from the next process).
        if not (_abandoning and isinstance(exc, asyncio.CancelledError)):
            _d().hub.finish(turn_id, ERROR, "", _message(exc))
        raise
    finally:
        _running.discard(task)  # type: ignore[arg-type]
        if _d().head_starts is not None:
            await _d().head_starts.drop(turn_id)


async def _still_next(request: TurnRequest) -> bool:
    """The message still goes where it would have when accepted, with no turn of its
    conversation in flight: not so once this turn's first step ran (it is recovered or
    resumed), nor when another turn got there first."""
    try:
        row = await _d().store.conversation_for_turn(uuid.UUID(request["conversation_id"]))
    except ChatError:
        return False
    return row["next_seq"] == request.get("head_seq")


async def wait_running(timeout: float) -> int:
    """Let the turns running here finish for up to `timeout` seconds (a shutdown's grace);
    the number still running then. Turns woken meanwhile (their earlier turn finished) are
    waited for too."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = [t for t in _running if not t.done()]
        left = deadline - time.monotonic()
        if not tasks or left <= 0:
            return len(tasks)
        await asyncio.wait(tasks, timeout=min(left, 0.5))


async def abandon_running() -> int:
    """End the turns still running here, before DBOS shuts its thread pool down: cancelled,
    a turn's workflow records nothing, stays PENDING in PostgreSQL and resumes at the next
    start. A turn left running would fail as the pool, the LLM client and DBOS's threads close
    under it, with a traceback each."""
    global _abandoning
    tasks = [t for t in _running if not t.done()]
    if not tasks:
        return 0
    _abandoning = True
    dbos_log = logging.getLogger("dbos")
    level = dbos_log.level
    # DBOS logs each as a failed workflow it could not record; that is the point here.
    dbos_log.setLevel(logging.CRITICAL)
    try:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        dbos_log.setLevel(level)
        _abandoning = False
    return len(tasks)


async def _run_turn(turn_id: str, request: TurnRequest) -> TurnResult:
    order = _d().start_order
    refused: ChatError | None = None
    try:
        if order is not None:
            await order.enter(turn_id)
        saved = await save_user_message(request)
        try:
            prompt = await read_history(saved, request)
        except (LLMRejected, LLMUnavailable) as exc:
            # Refused before the LLM (too long for the window; the server unknown or down):
            # the reply records it, as a failed LLM call does, rather than staying pending.
            refused, prompt = exc, cast(Prompt, {})
    finally:
        if order is not None:
            order.leave(turn_id)
    outcome = await _llm_outcome(turn_id, saved, prompt, request) if refused is None else \
        {"status": ERROR, "error": refused.message, "attempts": 0}
    if outcome["status"] == ERROR and request.get("blind_as"):
        outcome["error"] = _blind_error(request)
    result = await save_reply(saved, outcome, prompt, request["params"])
    if outcome["status"] == ERROR:
        raise TurnFailed(outcome["error"])
    return result


async def _llm_outcome(turn_id: str, saved: SavedTurn, prompt: Prompt,
                       request: TurnRequest) -> Outcome:
    """Step 3, with its retries: the reply, or why there is none."""
    try:
        completion: LLMOutput = await DBOS.run_step_async(
            _llm_step_options(), call_llm, turn_id, saved, prompt, request["params"]
        )
        status = STOPPED if completion["finish_reason"] == "stopped" else COMPLETE
        return {"status": status, **completion}
    except dbos_error.DBOSMaxStepRetriesExceeded as exc:
        last = exc.errors[-1] if exc.errors else exc
        return {"status": ERROR, "attempts": exc.max_retries,
                "error": f"{_message(last)} (gave up after {exc.max_retries} attempts; "
                         "retry the turn once the server is back)"}
    except ChatError as exc:
        return {"status": ERROR, "error": exc.message, "attempts": 1}


async def _close_failed(turn_id: str, message: str) -> None:
    """A turn that failed before its last step (which saves an error itself): its reply
    would stay in flight for ever, counted against the person's limits and followed by
    whoever re-attaches."""
    d = _d()
    try:
        await d.store.mark_interrupted([reply_id_for(turn_id)], ERROR, message)
    except Exception:  # the database away: a later turn of the conversation closes it
        log.warning("could not close the reply of failed turn %s", turn_id)
    d.hub.finish(turn_id, ERROR, "", message)


async def _close_cancelled(turn_id: str) -> None:
    """A cancelled turn (Workflows tab, DBOS CLI) gets no save_reply step: close its reply."""
    d = _d()
    message = "the turn was cancelled"
    d.hub.finish(turn_id, CANCELLED, (d.hub.get(turn_id) or _EMPTY).text, message)
    try:
        await d.store.mark_interrupted([reply_id_for(turn_id)], CANCELLED, message)
    except ChatError:
        log.warning("could not mark the reply of cancelled turn %s", turn_id)


class _Empty:
    text = ""


_EMPTY = _Empty()


def _blind_error(request: TurnRequest) -> str:
    """A blind comparison side's error text: the same for every failure, since the server's
    own text may name its model, its address or its context window, and any of them tells
    which model the side is (comparisons/blind.py)."""
    return blind_error(request.get("blind_as", ""))


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ChatError) else str(exc)


def _llm_step_options() -> StepOptions:
    s = _d().settings
    return {
        "name": "call_llm",
        "retries_allowed": True,
        "max_attempts": s.llm_max_attempts,
        "interval_seconds": s.llm_retry_interval_sec,
        "backoff_rate": s.llm_retry_backoff,
        # A refused request (bad model, too long) fails the same way every time.
        "should_retry": lambda exc: not isinstance(exc, LLMRejected),
        # Cancelling the workflow (Workflows tab, DBOS CLI) interrupts the stream at once.
        "preemptible": True,
    }


# -- step 1 ------------------------------------------------------------------------------------


@DBOS.step(name="save_user_message")
async def save_user_message(request: TurnRequest) -> SavedTurn:
    d = _d()
    turn_id = DBOS.workflow_id
    assert turn_id is not None
    conversation_id = uuid.UUID(request["conversation_id"])
    reply_id = reply_id_for(turn_id)
    if request.get("content") is not None:
        user, reply = await d.store.save_user_turn(
            conversation_id, turn_id, uuid.UUID(request["user_message_id"]), reply_id,
            request["content"],
        )
    else:
        user = await d.store.get_message(uuid.UUID(request["user_message_id"]))
        if user is None or user["role"] != "user":
            raise TurnFailed(f"message {request['user_message_id']} no longer exists")
        reply = await d.store.ensure_reply(user, reply_id, turn_id)
    crash_point("save_user_message:committed")
    d.hub.track(turn_id, str(reply["id"]))
    return {"user_message": public_message(user)}


# -- step 2 ------------------------------------------------------------------------------------


@DBOS.step(name="read_history")
async def read_history(saved: SavedTurn, request: TurnRequest) -> Prompt:
    d = _d()
    turn_id = DBOS.workflow_id or ""
    user = saved["user_message"]
    conversation_id = uuid.UUID(user["conversation_id"])
    await _wait_for_earlier_turns(conversation_id, user["seq"], turn_id)
    params = await effective_params(turn_id, request["params"])
    continue_text = ""
    if request.get("continue_reply_id"):
        reply = await d.store.get_message(uuid.UUID(request["continue_reply_id"]))
        continue_text = reply["content"] if reply else ""
    prompt = await _fitted_prompt(conversation_id, user["seq"], user["content"], params,
                                  continue_text)
    crash_point("read_history:done")
    return prompt


async def _fitted_prompt(conversation_id: uuid.UUID, seq: int, content: str,
                         params: TurnParams, continue_text: str = "", saved: bool = True
                         ) -> Prompt:
    """The newest turns up to the message at `seq` that fit the model's window. `saved`
    False: the message is not saved yet (a head start's), the turns before it are read and
    it is added."""
    route = await _route_for_fitting(params)
    context_tokens = await _context_tokens(route)
    # Enough text to fill the window even at 6 characters per token.
    # (Not saved: the rows before `seq`, its position; a first message has none.)
    rows = await _d().store.history(conversation_id, seq, max_chars=context_tokens * 6) \
        if saved or seq > 1 else []
    history = [{"role": r["role"], "content": r["content"]} for r in rows]
    if not saved or not history or history[-1]["role"] != "user":
        history.append({"role": "user", "content": content})
    # A continued reply's text is sent too: it takes its share of the window.
    reserve = upper_bound_tokens(continue_text) + 8 if continue_text else 0
    fitted = await _fit(history, params.get("system_prompt") or "", context_tokens - reserve,
                        int(params["max_tokens"]), route)
    prompt = cast(Prompt, {**fitted.to_dict(), "params": params, "continue_text": continue_text})
    if continue_text:
        prompt["messages"].append({"role": "assistant", "content": continue_text})
    return prompt


OVERRIDE_SUFFIX = "-o"


async def effective_params(turn_id: str, params: TurnParams) -> TurnParams:
    """A turn's parameters: those it was accepted with, and for a turn forked with other
    parameters (its id ends in -o), those. Only such turns pay for the lookup."""
    if not turn_id.endswith(OVERRIDE_SUFFIX):
        return params
    return {**params, **await _d().store.turn_overrides(turn_id)}


async def _fit(history: list[dict[str, str]], system_prompt: str, context_tokens: int,
               max_tokens: int, route: ModelRoute | None = None) -> FittedPrompt:
    """Fit with the 1-token-per-byte bound first: short conversations need nothing more. When
    that drops messages (or cannot fit at all), count exactly with the server's tokenizer."""
    texts = [m["content"] for m in history]

    def fit(counts: list[int], system_count: int, exact: bool) -> FittedPrompt:
        return fit_prompt(history, counts, system_prompt=system_prompt,
                          system_count=system_count, context_tokens=context_tokens,
                          max_tokens=max_tokens, exact_counts=exact)

    try:
        bounded: FittedPrompt | None = fit([upper_bound_tokens(t) for t in texts],
                                           upper_bound_tokens(system_prompt), False)
    except LLMRejected:
        bounded = None
    if bounded is not None and bounded.dropped_messages == 0:
        return bounded
    try:
        exact = await _count_newest(texts, system_prompt, context_tokens, route) \
            if route is not None else None
    except ChatError:
        exact = None
    if exact is None:
        if bounded is None:
            return fit([upper_bound_tokens(t) for t in texts], upper_bound_tokens(system_prompt),
                       False)  # raises the "too long" error
        return bounded
    return fit(exact[:-1], exact[-1], True)


_COUNT_BATCH = 64


async def _count_newest(texts: list[str], system_prompt: str, context_tokens: int,
                        route: ModelRoute) -> list[int] | None:
    """Exact counts for the system prompt and the newest messages, a batch at a time, until
    they alone fill the window; older messages get a count that cannot fit. So a long
    conversation costs tokenizer calls for what can be sent, not for everything read."""
    llm, model = route.client, route.model
    counts = [context_tokens + 1] * len(texts)
    head = await llm.count_tokens([system_prompt], model)
    if head is None:
        return None
    used = head[0]
    end = len(texts)
    while end > 0 and used <= context_tokens:
        start = max(0, end - _COUNT_BATCH)
        batch = await llm.count_tokens(texts[start:end], model)
        if batch is None:
            return None
        counts[start:end] = batch
        used += sum(batch)
        end = start
    return counts + head


async def _context_tokens(route: ModelRoute | None) -> int:
    d = _d()
    configured = d.settings.llm_context_tokens
    if route is not None and route.model is not None and route.max_model_len:
        # A model its server names a window for (another server's, maybe a smaller one):
        # that window, and never more than LLM_CONTEXT_TOKENS.
        return min(configured, route.max_model_len) if configured else route.max_model_len
    if configured:
        return configured
    if route is None:
        return DEFAULT_CONTEXT_TOKENS
    if route.model is not None:
        return route.max_model_len or DEFAULT_CONTEXT_TOKENS
    try:
        info = await route.client.model_info()
    except ChatError:
        # The LLM step will report the outage; fit to the fallback meanwhile.
        return DEFAULT_CONTEXT_TOKENS
    return info.max_model_len or DEFAULT_CONTEXT_TOKENS


async def _wait_for_earlier_turns(conversation_id: uuid.UUID, seq: int, turn_id: str) -> None:
    """Turns of one conversation answer in order: wait until every earlier reply is final.

    Waiting costs no queries (issue 13: hundreds of polling turns stalled a recovering app):
    the turn is woken when the replies it waits for become final, in this process or another
    (wakeups.py), and looks again only then. On its own it looks every
    SAFETY_RECHECK_SEC, and only then asks DBOS whether the turn at the head of the line is
    alive: a reply whose workflow ended without finishing it (cancelled from outside) is
    closed, so one dead turn cannot block the conversation."""
    d = _d()
    deadline = time.monotonic() + d.settings.turn_order_wait_sec
    woken = True
    stepped_out = False
    with _waiter(str(conversation_id)) as waiter:
        while True:
            waiter.checking()
            waiting = await d.store.earlier_in_flight(conversation_id, seq, turn_id)
            if not waiting:
                if stepped_out and d.start_order is not None:
                    await d.start_order.enter(turn_id)
                return
            if d.start_order is not None and not stepped_out:
                # The earlier turn may be waiting for this place: give it up meanwhile.
                stepped_out = d.start_order.step_out(turn_id)
            if not woken and await _closed_if_dead(waiting[0]):
                woken = True
                continue
            now = time.monotonic()
            if now >= deadline:
                raise TurnFailed(
                    f"an earlier turn of this conversation (workflow "
                    f"{waiting[0]['workflow_id']}) has not finished after "
                    f"{d.settings.turn_order_wait_sec:.0f} s; cancel or resume it in the "
                    "Workflows tab, then retry this turn")
            waiter.expect(str(row["id"]) for row in waiting)
            # Jittered: a backlog recovered at once should not look again all at once.
            recheck = SAFETY_RECHECK_SEC * random.uniform(0.8, 1.2)
            woken = await waiter.wait(min(deadline - now, recheck))


# How often a waiting turn looks at the database without being woken (a notification lost
# while the listener reconnected, a turn cancelled from outside whose reply stays open).
SAFETY_RECHECK_SEC = 30.0
# Without a listener (turn_wakeups not started), waiting turns poll this often.
_POLL_WITHOUT_WAKEUPS_SEC = 0.25
# Counted for tests and diagnostics: DBOS status reads made by waiting turns.
liveness_checks = 0


@contextlib.contextmanager
def _waiter(conversation_id: str) -> Iterator[Waiter]:
    wakeups = _d().wakeups
    if wakeups is not None:
        with wakeups.waiter(conversation_id) as waiter:
            yield waiter
    else:
        yield _PollingWaiter()


class _PollingWaiter(Waiter):
    async def wait(self, timeout: float) -> bool:
        await asyncio.sleep(min(timeout, _POLL_WITHOUT_WAKEUPS_SEC))
        return True


async def _closed_if_dead(row: dict[str, Any]) -> bool:
    """Close the reply of a turn whose workflow has ended; True if it was closed."""
    global liveness_checks
    liveness_checks += 1
    status = await DBOS.get_workflow_status_async(row["workflow_id"])
    if status is not None and status.status in WORKFLOW_ACTIVE:
        return False
    await _d().store.mark_interrupted(
        [row["id"]], CANCELLED, "the turn's workflow ended before its reply was finished")
    return True


# -- the head start (head_start.py) ------------------------------------------------------------


def begin_head_start(turn_id: str, request: TurnRequest, progress: TurnProgress,
                     next_seq: int | None, recheck: bool = False) -> bool:
    """Send the turn's LLM request now, ahead of its steps (TURN_HEAD_START): for a new
    message whose workflow runs here (or is about to start: turns/turn_start.py) and has not
    reached its LLM step, in a conversation whose next message goes to `next_seq` (None: a
    turn of it is in flight, no head start).
    `recheck`: read first whether it still does (a turn worker, which got the turn after a
    while, perhaps again after a crash); in the head start's own task, so that the turn's
    steps keep their place in the start order. True if begun."""
    d = _d()
    if d.head_starts is None or next_seq is None or request.get("content") is None or \
            request.get("continue_reply_id") or turn_id.endswith(OVERRIDE_SUFFIX) or \
            progress.status != PENDING:
        return False
    return d.head_starts.begin(
        turn_id, progress, lambda head: _head_start(head, request, next_seq, recheck)) \
        is not None


def discard_head_start(turn_id: str) -> None:
    """Cancel the turn's head start, if it has one (its workflow did not start here)."""
    if _d().head_starts is not None:
        _d().head_starts.discard(turn_id)


async def _head_start(head: HeadStart, request: TurnRequest, seq: int,
                      recheck: bool = False) -> Completion:
    """The request the LLM step would send if the conversation stays as it is: its history
    now (none to read for a first message), the message added. Without `ask` set (no longer
    the next message, on a recheck) the step never adopts it."""
    if recheck and not await _still_next(request):
        raise asyncio.CancelledError  # no head start: the step sends its own request
    params = request["params"]
    prompt = await _fitted_prompt(uuid.UUID(request["conversation_id"]), seq,
                                  request["content"] or "", params, saved=False)
    messages, room = _messages_for(prompt, params), _reply_room(prompt, params)
    route = await _route(params)
    head.ask = Ask.of(messages, params, room)
    async with route.client.gate.turn(head.progress.owner, head.progress.waiting,
                                      _claim(head.turn_id)) as place:
        head.let_in(place)
        head.progress.start_attempt()
        return await route.client.stream_chat(
            messages, temperature=float(params["temperature"]), max_tokens=room,
            top_p=float(params["top_p"]), on_delta=head.on_delta, model=route.model)


def _claim(turn_id: str) -> Any:
    """With LLM_GLOBAL_CONCURRENCY, what claims the turn's global slot once the gate lets it
    in (None without)."""
    slots = _d().slots
    return (lambda: slots.slot(turn_id)) if slots is not None else None


async def _cancel(head: HeadStart | None) -> None:
    if head is not None:
        await head.cancel()


# -- step 3 ------------------------------------------------------------------------------------


async def call_llm(turn_id: str, saved: SavedTurn, prompt: Prompt, params: TurnParams
                   ) -> LLMOutput:
    """Stream the reply into the live progress of this turn, checkpointing the partial text so
    other processes can show it and a stop survives a crash. Raises LLMUnavailable (retried) or
    LLMRejected (not retried)."""
    # From this workflow's id, not from step 1's output: a fork copies that output.
    reply_id = reply_id_for(turn_id)
    heads = _d().head_starts
    head = heads.take(turn_id) if heads is not None else None
    progress = _d().hub.track(turn_id, str(reply_id))
    try:
        state = await _reply_state(turn_id, reply_id, saved)
        if state["stop_requested"]:
            # Stopped before a crash (or during a head start): keep what was written, do not
            # generate again.
            text = state["content"] or (progress.text if head is not None else "")
            await _cancel(head)
            return _stopped(text, prompt, 0, None, 0.0, _model_name(params))
        params = await effective_params(turn_id, {**params, **prompt.get("params", {})})
    except BaseException:
        await _cancel(head)
        raise
    continue_text = prompt.get("continue_text") or ""
    messages, room = _messages_for(prompt, params), _reply_room(prompt, params)
    if head is not None and (continue_text or head.ask != Ask.of(messages, params, room)):
        await _cancel(head)  # asked something else: the watchers are told it starts over
        head = None
    if head is None:
        progress.start_attempt()
        if continue_text:
            progress.append(continue_text)
    stream = _ReplyStream(turn_id, reply_id, progress)
    generation = asyncio.ensure_future(stream.generate(messages, params, room, continue_text,
                                                       head))
    stop_watch = asyncio.ensure_future(progress.stop_event.wait())
    try:
        done, _ = await asyncio.wait({generation, stop_watch},
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_watch.cancel()
        if not generation.done():
            generation.cancel()
    step = DBOS.step_status
    attempts = (step.current_attempt or 0) + 1 if step else 1
    if generation in done:
        completion = generation.result()
        completion.text = continue_text + completion.text
        return cast(LLMOutput, {**completion.to_dict(), "params": params, "attempts": attempts})
    # Stopped while waiting for a token: the generation was cancelled, keep the text so far.
    try:
        await generation
    except (asyncio.CancelledError, ChatError):
        pass
    return {**_stopped(progress.text, prompt, progress.chunks, stream.ttft_ms(),
                       stream.elapsed_ms(), _model_name(params)), "params": params,
            "attempts": attempts}


async def _reply_state(turn_id: str, reply_id: uuid.UUID, saved: SavedTurn
                       ) -> dict[str, Any]:
    """The reply row's content and stop flag; a forked turn answers the message of its parent
    with a reply of its own, created here."""
    d = _d()
    state = await d.store.reply_state(reply_id)
    if state is None:
        user = await d.store.get_message(uuid.UUID(saved["user_message"]["id"]))
        if user is None:
            raise LLMRejected("the message this turn answers was deleted")
        state = await d.store.ensure_reply(user, reply_id, turn_id)
    return state


def _messages_for(prompt: Prompt, params: TurnParams) -> list[dict[str, str]]:
    """The fitted messages; a fork from step 3 with another system prompt gets it swapped in."""
    messages = prompt["messages"]
    fitted_with = prompt.get("params")
    if fitted_with is not None and \
            (params.get("system_prompt") or "") != (fitted_with.get("system_prompt") or ""):
        messages = [m for m in messages if m["role"] != "system"]
        if params["system_prompt"]:
            messages.insert(0, {"role": "system", "content": params["system_prompt"]})
    return messages


def _reply_room(prompt: Prompt, params: TurnParams) -> int:
    return min(int(params["max_tokens"]), int(prompt.get("reply_room") or prompt["max_tokens"]))


class _ReplyStream:
    """One attempt's stream: each delta goes to the live progress, the partial text to the
    database every STREAM_CHECKPOINT_SEC (where a stop from another process is seen)."""

    def __init__(self, turn_id: str, reply_id: uuid.UUID, progress: TurnProgress) -> None:
        self.turn_id, self.reply_id, self.progress = turn_id, reply_id, progress
        self.started = time.perf_counter()
        self.first_token: float | None = None
        self.last_checkpoint = time.monotonic()
        # The gate's place of the request in flight, and whether it was given up.
        self.place: Place | None = None
        self.yielded = False
        self.crash_checked = False
        # The server and model of this attempt (_route), once known.
        self.route = ModelRoute(_d().llm)

    async def generate(self, messages: list[dict[str, str]], params: TurnParams,
                       max_tokens: int, continue_text: str, head: HeadStart | None = None
                       ) -> Completion:
        """Wait for the LLM in the owner's queue (llm/fair_gate.py), telling the chat how many
        turns are ahead, then (with LLM_GLOBAL_CONCURRENCY) claim a global slot, then stream.
        A turn asked to give its place to someone holding fewer stops, queues again ahead of
        its owner's later turns, and goes on from its text so far when let in again: one
        reply, in several requests. `head`: the first request, sent as the turn was accepted
        (head_start.py), adopted."""
        d = _d()
        self.route = await _route(params)
        asked = messages[:-1] if continue_text else messages
        parts: list[Completion] = []
        seq: int | None = None
        room = max_tokens
        while True:
            if head is not None:
                try:
                    seq = await self._adopt(head)
                    parts.append(await head.result())
                except BaseException:  # stopped, cancelled: nothing may go on asking
                    await head.cancel()
                    raise
                head = None
            else:
                seq, refused = await self._request(asked, continue_text, parts, params, room,
                                                   seq)
                if refused:
                    return _joined(parts, "stopped", self.model_name())
            if parts and not (self.yielded and parts[-1].finish_reason == "stopped") or \
                    self.progress.stop_requested:
                return _joined(parts, None, self.model_name())
            room = max_tokens - await self._tokens_written(continue_text, parts)
            if room <= 0:
                return _joined(parts, "length", self.model_name())
            if await d.store.checkpoint_partial(self.reply_id, self.progress.text):
                self.progress.request_stop()  # stopped from another process meanwhile
                return _joined(parts, None, self.model_name())

    async def _request(self, asked: list[dict[str, str]], continue_text: str,
                       parts: list[Completion], params: TurnParams, room: int,
                       seq: int | None) -> tuple[int, bool]:
        """One request, once let in (added to `parts`); its place's arrival number, and True
        when going on after yielding was refused (what was written is kept, as a stopped
        reply the person can continue)."""
        llm = self.route.client
        so_far = continue_text + "".join(p.text for p in parts)
        async with llm.gate.turn(self.progress.owner, self.progress.waiting,
                                 _claim(self.turn_id), seq) as place:
            self.place, self.yielded = place, place.preempted
            if self.yielded:  # asked back while claiming: no request to waste
                return place.seq, False
            try:
                parts.append(await llm.stream_chat(
                    asked + [{"role": "assistant", "content": so_far}] if so_far else asked,
                    temperature=float(params["temperature"]), max_tokens=room,
                    top_p=float(params["top_p"]), on_delta=self.on_delta,
                    continue_final=bool(so_far), model=self.route.model))
            except LLMRejected as exc:
                if not parts:
                    raise
                log.warning("turn %s: going on after yielding was refused: %s",
                            self.turn_id, exc.message)
                return place.seq, True
        return place.seq, False

    async def _adopt(self, head: HeadStart) -> int | None:
        """Take a head start's request over (its later deltas come to on_delta, its place
        is this stream's); the place's arrival number, None if it ended before it got one."""
        place = await head.adopt(self.on_delta)
        if place is None:
            return None
        self.place, self.yielded = place, place.preempted
        return place.seq

    async def _tokens_written(self, continue_text: str, parts: list[Completion]) -> int:
        """What the reply's requests have written, in tokens: the next request may write the
        rest of max_tokens. Chunks are not tokens (several per chunk with speculative
        decoding), so the server's tokenizer counts when it has one; else the bound."""
        text = "".join(p.text for p in parts)
        counted = await self.route.client.count_tokens([text], self.route.model) \
            if text else [0]
        return counted[0] if counted else upper_bound_tokens(text)

    async def on_delta(self, delta: str) -> bool:
        """True asks the client to stop reading (the reply was stopped, or its place is
        wanted by someone holding fewer)."""
        progress = self.progress
        if self.first_token is None:
            self.first_token = time.perf_counter()
        progress.append(delta)
        if progress.chunks >= 2 and not self.crash_checked:  # adopted: maybe past 2 already
            self.crash_checked = True
            crash_point("call_llm:streaming")
        if progress.stop_requested:
            return True
        if self.place is not None and self.place.preempted and delta.strip() and \
                not delta[-1].isspace():
            # Not after whitespace: a chat template may trim the text it goes on from.
            self.yielded = True
            return True
        if time.monotonic() - self.last_checkpoint >= _d().settings.stream_checkpoint_sec:
            self.last_checkpoint = time.monotonic()
            if await _d().store.checkpoint_partial(self.reply_id, progress.text):
                progress.request_stop()
                return True
        return False

    def model_name(self) -> str:
        return self.route.model or self.route.client.current_model_id() or ""

    def ttft_ms(self) -> float | None:
        return (self.first_token - self.started) * 1000.0 if self.first_token else None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


def _joined(parts: list[Completion], finish_reason: str | None = None, model: str = ""
            ) -> Completion:
    """The requests of one reply as one completion: its text, tokens and time at the LLM."""
    if not parts:  # stopped before its first request
        return Completion("", "stopped", model, 0, 0, True, None, 0.0)
    if len(parts) == 1 and finish_reason is None:
        return parts[0]
    last = parts[-1]
    return Completion(
        text="".join(p.text for p in parts), finish_reason=finish_reason or last.finish_reason,
        model=last.model, prompt_tokens=parts[0].prompt_tokens,
        completion_tokens=sum(p.completion_tokens for p in parts),
        tokens_estimated=any(p.tokens_estimated for p in parts),
        ttft_ms=next((p.ttft_ms for p in parts if p.ttft_ms is not None), None),
        latency_ms=sum(p.latency_ms for p in parts))


def _stopped(text: str, prompt: Prompt, chunks: int, ttft_ms: float | None,
             latency_ms: float, model: str) -> LLMOutput:
    return cast(LLMOutput, Completion(
        text=text, finish_reason="stopped", model=model,
        prompt_tokens=estimate_message_tokens(prompt["messages"]), completion_tokens=chunks,
        tokens_estimated=True, ttft_ms=ttft_ms, latency_ms=latency_ms,
    ).to_dict())


# -- step 4 ------------------------------------------------------------------------------------


@DBOS.step(name="save_reply")
async def save_reply(
    saved: SavedTurn, outcome: Outcome, prompt: Prompt, params: TurnParams,
) -> TurnResult:
    d = _d()
    reply_id = reply_id_for(DBOS.workflow_id or "")
    recorded_params = {**params, **prompt.get("params", {}), **outcome.get("params", {}),
                       "max_tokens_sent": prompt.get("max_tokens"),
                       "context_tokens": prompt.get("context_tokens"),
                       "dropped_messages": prompt.get("dropped_messages"),
                       "prompt_messages": len(prompt.get("messages") or []),
                       "continued": bool(prompt.get("continue_text")),
                       "llm_attempts": outcome.get("attempts"),
                       "exact_token_counts": prompt.get("exact_counts")}
    if outcome["status"] == ERROR:
        values: dict[str, Any] = dict(status=ERROR, error=outcome["error"], content="",
                                      params=recorded_params)
    else:
        values = dict(
            status=outcome["status"], content=outcome["text"], error=None,
            model=outcome["model"], prompt_tokens=outcome["prompt_tokens"],
            completion_tokens=outcome["completion_tokens"],
            tokens_estimated=outcome["tokens_estimated"], ttft_ms=outcome["ttft_ms"],
            latency_ms=outcome["latency_ms"], finish_reason=outcome["finish_reason"],
            params=recorded_params)
    try:
        row = await d.store.finish_reply(reply_id, **values)
    except NotFound:
        # A turn forked from this step copied the LLM's output but has no reply row yet.
        user = await d.store.get_message(uuid.UUID(saved["user_message"]["id"]))
        if user is None:
            raise
        await d.store.ensure_reply(user, reply_id, DBOS.workflow_id or "")
        row = await d.store.finish_reply(reply_id, **values)
    crash_point("save_reply:committed")
    reply = public_message(row)
    d.hub.finish(DBOS.workflow_id or "", reply["status"], reply["content"], reply["error"])
    return {"user_message": saved["user_message"], "assistant_message": reply}


__all__ = ["chat_turn", "bind", "TurnDeps", "WORKFLOW_NAME", "STEP_NAMES", "reply_id_for",
           "user_message_id_for", "LLMUnavailable"]
