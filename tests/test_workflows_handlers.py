"""The Workflows tab's handlers called alone, with a stand-in for the service's workflow admin:
what Cancel, Resume and Fork answer, and how the fork's text fields are read."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from chat_core.errors import InvalidInput, NotFound
from chat_core.ui.workflows_tab import (STEP_COLUMNS, TURN_COLUMNS, WorkflowHandlers,
                                        fork_overrides, whole_step)

ROW = {"workflow_id": "turn-1", "conversation_title": "", "conversation_id": "c-1",
       "status": "SUCCESS", "reply_status": "complete", "started_at": "2026-11-25T19:49:52.094Z",
       "duration_ms": 1234.0, "recovery_attempts": 2, "error": None}


class FakeWorkflows:
    def __init__(self) -> None:
        self.forked: list[tuple[str, int, Any]] = []

    async def list_turns(self, status: str | None, limit: int) -> list[dict[str, Any]]:
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
    return WorkflowHandlers(SimpleNamespace(workflows=FakeWorkflows()))  # type: ignore[arg-type]


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
