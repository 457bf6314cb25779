"""Conversation and workflow data as pandas DataFrames, for notebooks.

    from chat_core.data.analytics import Analytics
    data = Analytics.connect()                 # DATABASE_URL, or the embedded database
    replies = data.messages(role="assistant", since="2026-11-01")
    turns = data.turns()                       # one row per turn workflow, with its reply
    steps = data.steps()                       # one row per step of those workflows
    request = data.turn_request(turns.workflow_id[0])   # what was sent to the LLM
    Analytics.connect(consented_only=True)     # only people who accepted SHARE_NOTICE

Every frame of people's data carries an `owner` column: the account's name, or "local" for
rows without an owner. Those exist only in local mode (no accounts: the one person is the host
running the app, and the notebook), since switching accounts on gives them to the first admin;
so they count as the host's, and `consented_only` keeps them: a host consents to reading their
own data. A person's consent is `accounts.consent_at`, which withdrawing clears.

The app's tables are read with SQL; DBOS's records of workflows and steps through its client
(DBOSClient), so a DBOS upgrade that changes its tables does not break the notebooks. Reading
needs no running app: the embedded database is started (or attached to) if need be.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
from psycopg.rows import dict_row

from chat_core.accounts.person import LOCAL
from chat_core.config import load_settings
from chat_core.store.database import psycopg_url, sqlalchemy_url
from chat_core.states import ERROR

TimeBound = str | datetime | None

# Parameters a reply was produced with, flattened into columns of messages().
PARAM_COLUMNS = ("temperature", "top_p", "max_tokens", "system_prompt", "context_tokens",
                 "prompt_messages", "dropped_messages", "llm_attempts", "continued")
_REPLY_COLUMNS = ["workflow_id", "conversation_id", "owner", "reply_status", "model",
                  "completion_tokens", "ttft_ms", "latency_ms", "llm_attempts"]
# The owner of conversation `c` by name; rows without one (local mode) are the host's.
_OWNER = ("coalesce((SELECT a.name FROM accounts a WHERE a.id = c.owner_id), %(local)s)"
          " AS owner")
# The consent filter on conversation `c`: off, or the host's, or its owner accepted the notice.
# The conversations a frame holds: with consented_only, those of people who consented; and
# never a blind comparison's side before its vote (sealed, migrations/009): a frame would
# name the model a person has not judged yet.
_CONSENTED = ("(NOT %(consented_only)s OR c.owner_id IS NULL OR EXISTS (SELECT 1 FROM accounts a"
              " WHERE a.id = c.owner_id AND a.consent_at IS NOT NULL)) AND NOT c.sealed")


def _bound(value: TimeBound) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _ms(epoch_ms: Any) -> pd.Timestamp | None:
    return None if epoch_ms is None else pd.Timestamp(int(epoch_ms), unit="ms", tz="UTC")


@dataclass
class Analytics:
    """The app's data as DataFrames. With `consented_only`, every frame (and steps and
    turn_request) leaves out the people who have not accepted the notice, or withdrew."""

    database_url: str
    consented_only: bool = False
    _client: Any = field(default=None, repr=False)
    _embedded: Any = field(default=None, repr=False)

    @classmethod
    def connect(cls, database_url: str | None = None, data_dir: Path | None = None, *,
                consented_only: bool = False) -> "Analytics":
        """The app's database: the one given, else DATABASE_URL (environment or .env), else
        the embedded PostgreSQL in DATA_DIR (started if it is not running)."""
        if database_url is None:
            settings = load_settings()
            database_url = settings.database_url
            data_dir = data_dir or settings.data_dir
        if database_url is not None:
            return cls(psycopg_url(database_url), consented_only)._checked()
        from chat_core.store.embedded_postgres import start_embedded_postgres

        embedded = start_embedded_postgres(Path(data_dir or os.environ.get("DATA_DIR", "data")))
        return cls(embedded.url, consented_only, _embedded=embedded)._checked()

    def _checked(self) -> "Analytics":
        try:
            with psycopg.connect(self.database_url) as conn:
                found = conn.execute("SELECT to_regclass('public.messages') IS NOT NULL AND"
                                     " to_regclass('dbos.workflow_status') IS NOT NULL"
                                     ).fetchone()
        except psycopg.OperationalError as exc:
            self.close()
            raise RuntimeError(f"cannot read the app's database: {exc}; check DATABASE_URL")
        if not (found and found[0]):
            self.close()
            raise RuntimeError("this database has no chat data yet: run the app (python app.py)"
                               " or scripts/seed_demo_data.py first")
        return self

    def close(self) -> None:
        if self._client is not None:
            self._client.destroy()
            self._client = None
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    def __enter__(self) -> "Analytics":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQL helpers ---------------------------------------------------------------------------

    def _frame(self, sql: str, params: dict[str, Any]) -> pd.DataFrame:
        """The rows of `sql`, which may use _OWNER and _CONSENTED (their parameters are added)."""
        params = {**params, "local": LOCAL.name, "consented_only": self.consented_only}
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            rows = conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
        return pd.DataFrame(rows)

    def _consented_workflows(self, workflow_ids: list[str]) -> list[str]:
        """The given turns, less those of people the consent filter leaves out (and of turns
        whose conversation is gone, which nobody can be asked about)."""
        if not self.consented_only:
            return workflow_ids
        kept = self._frame(
            "SELECT DISTINCT m.workflow_id FROM messages m JOIN conversations c ON"
            f" c.id = m.conversation_id WHERE m.workflow_id = ANY(%(ids)s) AND {_CONSENTED}",
            {"ids": list(workflow_ids)})
        allowed = set(kept["workflow_id"]) if not kept.empty else set()
        return [w for w in workflow_ids if w in allowed]

    def _dbos(self) -> Any:
        if self._client is None:
            from dbos import DBOSClient

            self._client = DBOSClient(system_database_url=sqlalchemy_url(self.database_url))
        return self._client

    # -- the app's data ------------------------------------------------------------------------

    def conversations(self, since: TimeBound = None, until: TimeBound = None) -> pd.DataFrame:
        """One row per conversation created in the range, with its size and activity."""
        frame = self._frame(
            f"""
            SELECT c.id, c.title, {_OWNER}, c.created_at, c.updated_at, c.settings,
                   c.origin_conversation_id,
                   count(m.id) FILTER (WHERE m.role = 'user') AS user_messages,
                   count(m.id) FILTER (WHERE m.role = 'assistant') AS replies,
                   count(m.id) FILTER (WHERE m.role = 'assistant' AND m.status = %(error)s)
                       AS failed_replies,
                   coalesce(sum(m.completion_tokens), 0) AS completion_tokens,
                   max(m.created_at) AS last_message_at
            FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id
            WHERE (%(since)s::timestamptz IS NULL OR c.created_at >= %(since)s)
              AND (%(until)s::timestamptz IS NULL OR c.created_at < %(until)s)
              AND {_CONSENTED}
            GROUP BY c.id ORDER BY c.created_at
            """, {"since": _bound(since), "until": _bound(until), "error": ERROR})
        return frame

    def messages(self, since: TimeBound = None, until: TimeBound = None, *,
                 role: str | None = None, conversation_id: str | None = None) -> pd.DataFrame:
        """One row per message in the range; replies carry their metrics (tokens, time to
        first token, latency, tokens per second) and the parameters they were produced with."""
        frame = self._frame(
            f"""
            SELECT m.id, m.conversation_id, {_OWNER}, m.seq, m.role, m.content, m.created_at,
                   m.completed_at, m.parent_id, m.status, m.error, m.workflow_id, m.model,
                   m.prompt_tokens, m.completion_tokens, m.tokens_estimated, m.ttft_ms,
                   m.latency_ms, m.finish_reason, m.active, m.params,
                   length(m.content) AS chars
            FROM messages m JOIN conversations c ON c.id = m.conversation_id
            WHERE {_CONSENTED}
              AND (%(since)s::timestamptz IS NULL OR m.created_at >= %(since)s)
              AND (%(until)s::timestamptz IS NULL OR m.created_at < %(until)s)
              AND (%(role)s::text IS NULL OR m.role = %(role)s)
              AND (%(cid)s::uuid IS NULL OR m.conversation_id = %(cid)s)
            ORDER BY m.created_at, m.seq
            """, {"since": _bound(since), "until": _bound(until), "role": role,
                  "cid": conversation_id})
        if frame.empty:
            return frame
        params = frame.pop("params").apply(lambda p: p or {})
        for name in PARAM_COLUMNS:
            frame[name] = params.apply(lambda p, n=name: p.get(n))
        generating_ms = frame["latency_ms"] - frame["ttft_ms"]
        frame["tokens_per_sec"] = (frame["completion_tokens"] / (generating_ms / 1000.0)).where(
            generating_ms > 0)
        return frame

    # -- DBOS's records -------------------------------------------------------------------------

    def turns(self, since: TimeBound = None, until: TimeBound = None,
              limit: int = 10_000) -> pd.DataFrame:
        """One row per turn workflow started in the range: its DBOS status, duration,
        recoveries and error, with the conversation, its owner and the reply it produced.
        With `consented_only`, turns without a reply of a consenting person are left out."""
        workflows = self._dbos().list_workflows(
            name="chat_turn", start_time=_bound(since).isoformat() if since else None,
            end_time=_bound(until).isoformat() if until else None, limit=limit,
            load_input=False, load_output=False)
        rows = [{
            "workflow_id": w.workflow_id, "status": w.status,
            "created_at": _ms(w.created_at), "updated_at": _ms(w.updated_at),
            "duration_ms": (w.updated_at - w.created_at) if w.updated_at else None,
            # DBOS counts every start of the workflow; the first one is not a recovery.
            "recoveries": max(0, (w.recovery_attempts or 1) - 1),
            "executor_id": w.executor_id, "forked_from": w.forked_from,
            "error": None if w.error is None else str(w.error)[:500],
        } for w in workflows]
        frame = pd.DataFrame(rows, columns=["workflow_id", "status", "created_at", "updated_at",
                                            "duration_ms", "recoveries", "executor_id",
                                            "forked_from", "error"])
        if frame.empty:
            return frame
        replies = self._frame(
            f"SELECT m.workflow_id, m.conversation_id, {_OWNER}, m.status AS reply_status,"
            " m.model, m.completion_tokens, m.ttft_ms, m.latency_ms,"
            " (m.params->>'llm_attempts')::int AS llm_attempts"
            " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            f" WHERE m.role = 'assistant' AND m.workflow_id = ANY(%(ids)s) AND {_CONSENTED}",
            {"ids": list(frame["workflow_id"])})
        if replies.empty:
            replies = pd.DataFrame(columns=_REPLY_COLUMNS)
        return frame.merge(replies, on="workflow_id",
                           how="inner" if self.consented_only else "left")

    def steps(self, workflow_ids: list[str] | None = None, since: TimeBound = None,
              until: TimeBound = None) -> pd.DataFrame:
        """One row per step of the given turns (default: the turns in the range)."""
        if workflow_ids is None:
            workflow_ids = list(self.turns(since, until).get("workflow_id", []))
        workflow_ids = self._consented_workflows(list(workflow_ids))
        client = self._dbos()
        rows = []
        for workflow_id in workflow_ids:
            for s in client.list_workflow_steps(workflow_id, load_output=False):
                started, completed = s.get("started_at_epoch_ms"), s.get("completed_at_epoch_ms")
                rows.append({"workflow_id": workflow_id, "step": s["function_id"],
                             "name": s["function_name"], "started_at": _ms(started),
                             "completed_at": _ms(completed),
                             "duration_ms": (completed - started) if started and completed
                             else None,
                             "error": None if s.get("error") is None else str(s["error"])[:500]})
        return pd.DataFrame(rows, columns=["workflow_id", "step", "name", "started_at",
                                           "completed_at", "duration_ms", "error"])

    def turn_request(self, workflow_id: str) -> dict[str, Any]:
        """The exact request the turn sent to the LLM: the fitted messages (what read_history
        checkpointed) and the parameters the reply records."""
        steps = self._dbos().list_workflow_steps(workflow_id, load_output=True) \
            if self._consented_workflows([workflow_id]) else []
        for s in steps:
            if s["function_name"] == "read_history" and isinstance(s.get("output"), dict):
                prompt = s["output"]
                reply = self._frame("SELECT params FROM messages WHERE workflow_id = %(w)s"
                                    " AND role = 'assistant'", {"w": workflow_id})
                params = reply["params"].iloc[0] if not reply.empty else {}
                return {"messages": prompt["messages"],
                        "max_tokens": (params or {}).get("max_tokens_sent",
                                                         prompt.get("max_tokens")),
                        "temperature": (params or {}).get("temperature"),
                        "top_p": (params or {}).get("top_p"),
                        "context_tokens": prompt.get("context_tokens"),
                        "dropped_messages": prompt.get("dropped_messages")}
        raise LookupError(f"turn {workflow_id} has no recorded history step (not started, or "
                          "not a chat turn)")
