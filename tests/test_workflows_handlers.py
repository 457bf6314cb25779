"""The Workflows tab's handlers called alone, with a stand-in for the service's workflow admin:
what Cancel, Resume and Fork answer, and how the fork's text fields are read. Then share mode:
the real service on PostgreSQL with two people and an admin (ui_fakes.room): each sees and
steers their own turns; the admin everyone's, with an owner column, a filter and the load."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr
import pandas as pd
import pytest

from chat_core.errors import InvalidInput, NotFound
from chat_core.ui.people import EVERYONE
from chat_core.ui.workflows_tab import (LOAD_COLUMNS, OWNER_COLUMN, STEP_COLUMNS, TURN_COLUMNS,
                                        WorkflowHandlers, fork_overrides, whole_step)
from tests.ui_fakes import Room, caller, room

ROW = {"workflow_id": "turn-1", "conversation_title": "", "conversation_id": "c-1",
       "status": "SUCCESS", "reply_status": "complete", "started_at": "2026-11-25T19:49:52.094Z",
       "duration_ms": 1234.0, "recovery_attempts": 2, "error": None}


class FakeWorkflows:
    def __init__(self) -> None:
        self.forked: list[tuple[str, int, Any]] = []

    async def list_turns(self, status: str | None = None, limit: int = 50,
                         owner: Any = None) -> list[dict[str, Any]]:
        return [ROW] if status in (None, "SUCCESS") else []

    async def steps(self, workflow_id: str) -> list[dict[str, Any]]:
        if workflow_id != "turn-1":
            raise NotFound(f"workflow {workflow_id} does not exist")
        return [{"step": 1, "name": "save_user_message", "started_at": None,
                 "duration_ms": 3, "error": None}]

    async def cancel(self, workflow_id: str) -> dict[str, Any]:
        raise NotFound(f"workflow {workflow_id} does not exist")

    async def fork(self, workflow_id: str, step: int, overrides: Any) -> dict[str, Any]:
        self.forked.append((workflow_id, step, overrides))
        return {"workflow_id": "turn-2", "params": overrides or {}}


@pytest.fixture()
def handlers() -> WorkflowHandlers:
    service = SimpleNamespace(workflows=FakeWorkflows(),
                              settings=SimpleNamespace(accounts_enabled=False))
    return WorkflowHandlers(service)  # type: ignore[arg-type]


def test_the_table_and_the_steps(handlers: WorkflowHandlers) -> None:
    table, steps = asyncio.run(handlers.tick("all", " turn-1 "))
    assert list(table.columns) == TURN_COLUMNS and list(steps.columns) == STEP_COLUMNS
    assert table.iloc[0].tolist() == ["turn-1", "c-1", "SUCCESS", "complete",
                                      "2026-11-25 19:49:52", "1.23", 1, ""]
    assert steps.iloc[0]["name"] == "save_user_message"
    assert asyncio.run(handlers.table("ERROR")).empty
    assert asyncio.run(handlers.steps("turn-unknown")).empty  # not an error on the page


def test_fork_reads_its_fields_and_cancel_says_why_it_failed(
        handlers: WorkflowHandlers) -> None:
    message, table, _ = asyncio.run(handlers.fork("turn-1", 3.0, "all", "0.5", "", "", "Terse."))
    assert message.startswith("Forked `turn-1` from step 3.0 as `turn-2` with ")
    assert handlers.service.workflows.forked == [  # type: ignore[attr-defined]
        ("turn-1", 3, {"temperature": 0.5, "system_prompt": "Terse."})]
    assert not table.empty
    refused, _, _ = asyncio.run(handlers.fork("turn-1", None, "all", "", "", "", ""))
    assert refused.startswith("⚠️ pick the step to fork from")
    failed, _, _ = asyncio.run(handlers.cancel("turn-nope", 3, "all"))
    assert failed.startswith("⚠️") and "does not exist" in failed


def test_fork_fields_empty_mean_the_turns_own() -> None:
    assert fork_overrides("", " ", "", "") is None
    assert fork_overrides("1", "0.5", "64", "") == {"temperature": 1.0, "top_p": 0.5,
                                                    "max_tokens": 64.0}
    with pytest.raises(InvalidInput, match="temperature must be a number, got warm"):
        fork_overrides("warm", "", "", "")
    assert whole_step(2.0) == 2
    for bad in (None, True, 2.5, float("nan"), "2"):
        with pytest.raises(InvalidInput):
            whole_step(bad)


# -- share mode ---------------------------------------------------------------------------------

@pytest.fixture()
def people(migrated_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Room]:
    with room(migrated_database_url, monkeypatch) as r:
        yield r


def frame(answer: Any) -> pd.DataFrame:
    """The table of an answer: a DataFrame, or an admin's update carrying one."""
    return answer["value"] if isinstance(answer, dict) else answer


def test_each_sees_and_steers_only_their_own_turns(people: Room) -> None:
    r = people
    h = WorkflowHandlers(r.service)
    turns = {}
    for p in (r.alice, r.bob):
        conversation = r.conversation(p, f"{p.name}'s")
        turns[p.name] = r.turn(p, conversation, "hello", "hi")[0]
    for p, other in ((r.alice, r.bob), (r.bob, r.alice)):
        me = caller(p)
        table, _ = r.run(h.tick("all", None, EVERYONE, me))
        assert list(table.columns) == TURN_COLUMNS  # no owner column
        assert table["workflow"].tolist() == [turns[p.name]]
        assert not r.run(h.steps(turns[p.name], me)).empty
        assert "save_reply" in r.run(h.timeline(turns[p.name], me))  # the picture of its steps
        # The other's turn reads as a missing one, for every action.
        unknown = f"turn-{uuid.uuid4()}"
        assert r.run(h.steps(turns[other.name], me)).empty
        assert r.run(h.timeline(turns[other.name], me)) == ""
        for action in (h.cancel, h.resume):
            theirs = r.run(action(turns[other.name], 3, "all", me))[0].replace("\\", "")
            missing = r.run(action(unknown, 3, "all", me))[0].replace("\\", "")
            assert theirs.replace(turns[other.name], "<id>") == \
                missing.replace(unknown, "<id>")
        forked = r.run(h.fork(turns[other.name], 3, "all", "", "", "", "", me))[0]
        assert "does not exist" in forked
    # The owner filter means nothing to someone who sees only their own.
    alone = frame(r.run(h.table("all", r.alice.name, caller(r.bob))))
    assert alone["workflow"].tolist() == [turns[r.bob.name]]
    assert r.run(h.admin_view(caller(r.bob))) == (gr.update(visible=False),
                                                  gr.update(visible=False))
    assert r.run(h.load(caller(r.bob))) == gr.skip()


def test_the_admin_sees_everyones_turns_with_their_owner(people: Room) -> None:
    r = people
    h = WorkflowHandlers(r.service)
    admin = caller(r.admin)
    conversation = r.conversation(r.alice, "Alice's")
    hers = r.turn(r.alice, conversation, "hello", "hi")[0]
    his = r.turn(r.bob, r.conversation(r.bob, "Bob's"), "hey", "yo")[0]
    table = frame(r.run(h.table("all", EVERYONE, admin)))
    assert list(table.columns) == [*TURN_COLUMNS[:2], OWNER_COLUMN, *TURN_COLUMNS[2:]]
    owners = dict(zip(table["workflow"], table[OWNER_COLUMN]))
    assert owners[hers] == r.alice.name and owners[his] == r.bob.name
    only = frame(r.run(h.table("all", r.alice.name, admin)))
    assert only["workflow"].tolist() == [hers]
    assert frame(r.run(h.table("all", "nobody-by-this-name", admin))).empty
    # The admin steers anyone's: Alice's turn is found (and is finished, so not cancelled).
    assert "not running" in r.run(h.cancel(hers, 3, "all", admin))[0]
    assert len(r.run(h.steps(hers, admin))) == 4
    choices, load = r.run(h.admin_view(admin))
    assert choices["visible"] and choices["choices"][0] == EVERYONE
    assert {r.alice.name, r.bob.name, r.admin.name} <= set(choices["choices"])
    assert load["visible"] and list(load["value"].columns) == LOAD_COLUMNS


def test_the_load_names_people(people: Room) -> None:
    """The LLM gate's load (llm/fair_gate.py) by person, as the admin's table shows it."""
    r = people
    h = WorkflowHandlers(r.service)
    gate = r.service.llm.gate

    async def busy() -> pd.DataFrame:
        async with gate.turn(r.alice.key), gate.turn(r.alice.key):
            waiting = asyncio.ensure_future(_hold(gate, r.bob.key))
            await asyncio.sleep(0)
            try:
                return await h.load(caller(r.admin))
            finally:
                waiting.cancel()

    table = r.run(busy())
    assert table.values.tolist() == [[r.alice.name, 2, 0], [r.bob.name, 0, 1]]


async def _hold(gate: Any, owner: str) -> None:
    async with gate.turn(owner):
        await asyncio.sleep(60)
