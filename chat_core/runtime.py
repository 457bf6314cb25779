"""Start and stop everything one app process needs, in dependency order:

    database (embedded or DATABASE_URL) -> migrations -> pool -> accounts (with SHARE_AUTH)
    -> LLM (local or VLLM_BASE_URL) -> workflow bindings -> DBOS.launch() (recovers this
    executor's unfinished turns)

`start()` must run on the event loop that will serve requests: DBOS submits every workflow,
recovered ones included, to the loop that was running when it launched, and the pool and the
live-progress hub belong to that loop too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from dbos import DBOS
from dbos import error as dbos_error

from chat_core.accounts.directory import AccountDirectory
from chat_core.accounts.person import LOCAL
from chat_core.store.chat_store import STOP_CHANNEL, ChatStore
from chat_core.config import Settings
from chat_core.errors import LLMUnavailable, TurnFailed
from chat_core.store.database import (Database, ensure_database_exists, sqlalchemy_url,
                       treat_failed_connects_as_disconnects)
from chat_core.store.embedded_postgres import EmbeddedPostgres, start_embedded_postgres
from chat_core.llm.client import LLMClient
from chat_core.llm.servers import LLMServers
from chat_core.llm.slots import GlobalLLMSlots
from chat_core.llm.local_model import CONTEXT_TOKENS, MODEL_ALIAS, LocalLLMServer, start_local_llm
from chat_core.secrets_mask import mask_secrets, mask_url
from chat_core.store.migrations import apply_migrations
from chat_core.service import ChatService
from chat_core.turns.progress import TurnHub
from chat_core.turns.head_start import HeadStarts
from chat_core.turns.start_order import StartOrder
from chat_core.turns.wakeups import TurnWakeups
from chat_core.turns import turn_queue
from chat_core.turns.relay import PROGRESS_CHANNEL, ProgressPublisher, ProgressRelay, stop_heard
from chat_core.turns.worker_pool import TurnWorkers
from chat_core.turns import workflow as turn_workflow

log = logging.getLogger(__name__)
# DBOS's notifier thread wakes this often to send what workflow events and streams wrote
# (DBOS.set_event, write_stream): the app uses neither, and DBOS's default, 10 ms, cost about
# 5 ms of CPU a second on an idle app (docs/performance.md).
DBOS_NOTIFY_EVERY_SEC = 0.1

APP_NAME = "durable-chat"
# What a process of the app does: WEB serves people and runs the turns itself, or with
# TURN_WORKERS hands them to WORKER processes (turns/worker_pool.py).
WEB, WORKER = "web", "worker"


class _WorkflowsCutByShutdown(logging.Filter):
    """Drops DBOS's report of a workflow that went on while destroy() shut DBOS's thread pool
    down ("cannot schedule new futures after shutdown"): it recorded nothing, stays PENDING and
    resumes at the next start, so there is nothing to report. Anything else DBOS logs passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, RuntimeError) and "after shutdown" in str(exc):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


# DBOS 3.4's text for a step's retry (dbos/_core.py, on_exception): "attempt N" is the one that
# failed, and the next one starts after interval * backoff ** (N - 1) seconds.
_STEP_RETRY = re.compile(r"Step being automatically retried \(attempt (\d+) of (\d+)\)")
_WORKFLOW_FAILED = "Exception encountered in"


class _OneLinePerLLMAttempt(logging.Filter):
    """One log line per failed LLM attempt instead of DBOS's WARNING with the whole traceback
    (some 30 lines per attempt, for as long as the LLM server is down), and one line for a turn
    that gave up (TurnFailed, which DBOS logs as a failed workflow with another traceback).

    These errors are ours and their messages say what happened and what to do (errors.py), so
    the traceback adds nothing; the record keeps DBOS's logger, level and handlers and gets the
    turn, the attempt, the error and the wait before the next attempt. A retry that failed with
    anything else (a bug) keeps its traceback. A filter on DBOS's logger because DBOS offers
    no option for this: its log level alone would hide its other warnings too."""

    def __init__(self, interval_sec: float, backoff: float) -> None:
        super().__init__()
        self.interval_sec = interval_sec
        self.backoff = backoff

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, LLMUnavailable):
            retry = _STEP_RETRY.match(record.getMessage())
            if retry:
                attempt, attempts = int(retry[1]), int(retry[2])
                wait = min(self.interval_sec * self.backoff ** (attempt - 1), 3600.0)
                shown = f"{wait:.1f}" if wait >= 1 else f"{wait:.2g}"
                _one_line(record, f"turn {DBOS.workflow_id}: LLM attempt {attempt}/{attempts} "
                                  f"failed: {error.message}; retrying in {shown} s")
        elif isinstance(error, TurnFailed) and record.getMessage().startswith(_WORKFLOW_FAILED):
            _one_line(record, f"turn {DBOS.workflow_id} failed: {error.message}")
        return True


def _one_line(record: logging.LogRecord, message: str) -> None:
    # exc_text too: the secrets-masking record factory has already formatted the traceback.
    record.msg, record.args = message, None
    record.exc_info, record.exc_text = None, None


class ChatRuntime:
    def __init__(self, settings: Settings, *, role: str = WEB,
                 local_llm_url: str | None = None) -> None:
        self.settings = settings
        self.role = role
        # A turn worker uses the local model server its web process started.
        self.local_llm_url = local_llm_url
        self.workers: TurnWorkers | None = None
        self.publisher: ProgressPublisher | None = None
        self.relay: ProgressRelay | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.embedded: EmbeddedPostgres | None = None
        self.local_llm: LocalLLMServer | None = None
        self.db: Database | None = None
        self.llm: LLMClient | None = None
        # Every LLM server of VLLM_BASE_URL (the first is `llm`, the default).
        self.servers: LLMServers | None = None
        self.service: ChatService | None = None
        self.slots: GlobalLLMSlots | None = None
        self.wakeups: TurnWakeups | None = None
        # With accounts on (SHARE_AUTH / SHARE_INVITE): who is who; the service carries it as
        # `people`, the web app's login uses it.
        self.accounts: AccountDirectory | None = None
        self.database_url: str = ""
        self._dbos_launched = False
        self._attempt_lines = _OneLinePerLLMAttempt(settings.llm_retry_interval_sec,
                                                    settings.llm_retry_backoff)

    async def start(self) -> ChatService:
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> ChatService:
        s = self.settings
        if s.database_url is None:
            self.embedded = await asyncio.to_thread(start_embedded_postgres, s.data_dir)
            self.database_url = self.embedded.url
        else:
            self.database_url = s.database_url
        await ensure_database_exists(self.database_url)
        applied = await apply_migrations(self.database_url)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        self.db = Database(self.database_url, max_size=s.db_pool_max)
        await self.db.open()
        if s.accounts_enabled:
            # Before any turn is recovered: rows without an owner go to the first admin.
            self.accounts = AccountDirectory(self.db, s)
            await self.accounts.start()
        if self.role == WEB and s.turn_workers and not s.llm_global_concurrency:
            # LLM_MAX_CONCURRENCY (per server) is the whole app's: with workers, counted
            # across its processes, for all its servers together.
            s = self.settings = replace(s, llm_global_concurrency=s.llm_max_concurrency
                                        * max(1, len(s.vllm_base_urls)))
        if s.llm_global_concurrency > 0:
            self.slots = GlobalLLMSlots(self.db, s.llm_global_concurrency, s.executor_id)
            await self.slots.start()

        store = ChatStore(self.db)  # the workflows': SYSTEM, sealed sides too
        hub = TurnHub()
        # Listening before DBOS recovers turns, so that none of their wake-ups is missed.
        self.wakeups = TurnWakeups(self.db.url)
        self.wakeups.hear(STOP_CHANNEL, lambda turn_id: stop_heard(hub, turn_id))
        await self._start_relay(hub, store)
        await self.wakeups.start()

        self.llm, backend = await self._start_llm()
        s = self.settings
        start_order = StartOrder(s.turn_start_concurrency) if s.turn_start_concurrency else None
        turn_workflow.bind(turn_workflow.TurnDeps(settings=s, store=store, llm=self.llm, hub=hub,
                                                  slots=self.slots, wakeups=self.wakeups,
                                                  start_order=start_order,
                                                  servers=self.servers,
                                                  head_starts=HeadStarts()
                                                  if s.turn_head_start else None))
        self.service = ChatService(s, store.scoped(LOCAL), self.llm, hub, backend,
                                   people=self.accounts, servers=self.servers)

        treat_failed_connects_as_disconnects()
        logging.getLogger("dbos").addFilter(self._attempt_lines)
        self._launch_dbos()
        # DBOS 3.4 keeps the previous instance's executor as this loop's default after a
        # relaunch in one process (tests do that); any async DBOS call resets it.
        await DBOS.list_workflows_async(limit=1, load_input=False, load_output=False)
        await turn_queue.register()
        if self.role == WEB and await turn_queue.take_over_leftovers(s.executor_id,
                                                                     s.turn_workers):
            log.info("took over the turns left to turn workers this run does not have")
        if self.role == WEB and s.turn_workers:
            self.workers = TurnWorkers(self.settings, self.database_url, self.local_llm and
                                       self.local_llm.base_url, self._worker_exited)
            await self.workers.start()
            self.service.turn_workers_running = self.workers.running
        return self.service

    async def _start_relay(self, hub: TurnHub, store: ChatStore) -> None:
        """A worker publishes its turns' progress; a web process with workers follows it."""
        if self.role == WORKER:
            self.publisher = ProgressPublisher(self.db.url,  # type: ignore[union-attr]
                                               self.settings.executor_id)
            hub.observer = self.publisher.observe
            await self.publisher.start()
        elif self.settings.turn_workers:
            self.relay = ProgressRelay(hub, store)
            self.relay.resend_stop = store.notify_stop
            self.wakeups.hear(PROGRESS_CHANNEL, self.relay.heard)  # type: ignore[union-attr]
            self._watchdog = asyncio.create_task(self.relay.watch_silent(),
                                                 name="relay-watchdog")

    def _worker_exited(self, executor_id: str) -> None:
        if self.relay is not None:
            self.relay.worker_exited(executor_id)

    def _launch_dbos(self) -> None:
        s = self.settings
        DBOS(config={
            "name": APP_NAME,
            # One database for the app's tables (schema public) and DBOS's (schema dbos): one
            # thing to back up, and notebooks can join turns with their workflow records.
            "system_database_url": sqlalchemy_url(self.database_url),
            "application_version": s.app_version,
            "executor_id": s.executor_id,
            "log_level": s.dbos_log_level,
            # No "pre-ping" round trip on every connection checkout (DBOS's default): a
            # connection that died with a PostgreSQL restart fails once and DBOS retries it
            # (see treat_failed_connects_as_disconnects). Pool sized for many turns at once.
            "db_engine_kwargs": {"pool_pre_ping": False, "pool_size": s.db_pool_max * 2,
                                 "connect_args": {"application_name": "durable-chat-dbos"}},
            "notification_coalesce_sec": DBOS_NOTIFY_EVERY_SEC,
        })
        # DBOS's own queues (recovery, Resume, forks) everywhere; the turn queue in workers.
        try:
            DBOS.listen_queues([turn_queue.QUEUE_NAME] if self.role == WORKER else [])
        except dbos_error.DBOSException:
            # DBOS is one per process and launched already: a second runtime in one process
            # (tests run two apps so) shares it as it is.
            pass
        DBOS.launch()
        self._dbos_launched = True
        log.info("DBOS launched: executor %s, version %s, database %s", s.executor_id,
                 s.app_version, mask_url(self.database_url))

    async def _start_llm(self) -> tuple[LLMClient, dict[str, Any]]:
        """One client per LLM server (VLLM_BASE_URL's list, or the local model), in the
        registry `self.servers`; the first is the default, returned with what the page and
        /healthz show of it."""
        s = self.settings
        urls = s.vllm_base_urls
        if urls:
            # `backend` is shown to every visitor (/healthz, the UI's header): masked URLs only.
            backend: dict[str, Any] = {"kind": "vllm", "base_url": mask_url(urls[0])}
            if len(urls) > 1:
                backend["servers"] = [mask_url(u) for u in urls]
            hint = ("Start the server with scripts/start_vllm.sh, or unset VLLM_BASE_URL to use "
                    "the local CPU model")
            context = s.llm_context_tokens
        elif self.local_llm_url:
            urls = [self.local_llm_url]
            backend = {"kind": "local", "base_url": urls[0]}
            hint = "The local model server is not answering; see the app's log and restart it"
            context = s.llm_context_tokens or CONTEXT_TOKENS
        else:
            self.local_llm = await asyncio.to_thread(start_local_llm, s.data_dir)
            urls = [self.local_llm.base_url]
            backend = {"kind": "local", "base_url": urls[0], "log": str(self.local_llm.log_path)}
            hint = (f"The local model server is not answering; see {self.local_llm.log_path} and "
                    "restart the app")
            context = s.llm_context_tokens or CONTEXT_TOKENS
        if context != s.llm_context_tokens:
            self.settings = replace(s, llm_context_tokens=context)
        clients = [LLMClient(
            url, api_key=s.llm_api_key,
            # LLM_MODEL picks the default server's default model; the others' is the first
            # they list (a conversation names any model by its settings).
            model=(s.llm_model or (MODEL_ALIAS if backend["kind"] == "local" else None))
            if i == 0 else None,
            connect_timeout_sec=s.llm_connect_timeout_sec, read_timeout_sec=s.llm_read_timeout_sec,
            max_concurrency=s.llm_max_concurrency, fix_hint=hint, fair_share=s.llm_fair_share,
            preempt=s.llm_preempt and backend["kind"] == "vllm",
            backend="vLLM" if backend["kind"] == "vllm" else "local llama.cpp")
            for i, url in enumerate(urls)]
        self.servers = LLMServers(clients)
        client = clients[0]
        try:
            info = await client.model_info()
            backend["model"] = info.id
            log.info("LLM backend: %s at %s, model %s", backend["kind"], backend["base_url"],
                     info.id)
        except Exception as exc:  # the app still starts; turns retry and then record the error
            log.warning("LLM server not ready yet: %s",
                        mask_secrets(str(getattr(exc, "message", exc))))
        if len(clients) > 1:
            await self.servers.refresh(force=True)
            for state in self.servers.states:
                log.info("LLM server %s: %s", state.client.shown_url,
                         ", ".join(m.id for m in state.models) if state.up
                         else f"not answering ({state.error})")
        return client, backend

    async def _stop_turns(self, grace_sec: float) -> None:
        """Give running turns `grace_sec` to finish, end the rest (they stay PENDING and
        resume at the next start), then destroy DBOS. In that order: a turn that went on while
        DBOS shut its thread pool down failed with a traceback each (measured with hundreds
        of turns in flight), and a shutdown must log none, whatever the load."""
        await turn_workflow.wait_running(grace_sec)
        abandoned = await turn_workflow.abandon_running()
        # DBOS makes its own thread pool this loop's default executor and shuts it down in
        # destroy(): run destroy on a thread of our own, then give the loop a fresh pool.
        loop = asyncio.get_running_loop()
        quiet = _WorkflowsCutByShutdown()
        logging.getLogger("dbos").addFilter(quiet)
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="dbos-destroy") as pool:
                await loop.run_in_executor(
                    pool, lambda: DBOS.destroy(workflow_completion_timeout_sec=0))
            loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="chat-runtime"))
            # Turns DBOS's queue started after the first call (recovered ones, at start-up).
            abandoned += await turn_workflow.abandon_running()
        finally:
            logging.getLogger("dbos").removeFilter(quiet)
        if abandoned:
            log.warning("%d turn(s) still generating at shutdown stay pending in PostgreSQL;"
                        " they resume when the app starts again", abandoned)

    async def stop(self, grace_sec: float = 5.0) -> None:
        """Stop accepting work; turns still running stay PENDING in PostgreSQL and resume when
        the app starts again."""
        if self.workers is not None:
            await self.workers.stop()
            self.workers = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._dbos_launched:
            self._dbos_launched = False
            await self._stop_turns(grace_sec)
        if self.publisher is not None:
            await self.publisher.stop()
            self.publisher = None
        logging.getLogger("dbos").removeFilter(self._attempt_lines)
        turn_workflow.bind(None)
        if self.wakeups is not None:
            await self.wakeups.stop()
            self.wakeups = None
        if self.slots is not None:
            await self.slots.stop()
            self.slots = None
        if self.servers is not None:
            await self.servers.close()
            self.servers = None
            self.llm = None
        if self.llm is not None:
            await self.llm.close()
            self.llm = None
        self.accounts = None
        if self.db is not None:
            await self.db.close()
            self.db = None
        if self.local_llm is not None:
            await asyncio.to_thread(self.local_llm.stop)
            self.local_llm = None
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
            self.embedded = None
