"""The states are defined once in chat_core/states.py, and the database and DBOS each keep their
own copy: the CHECK on messages.status, the partial indexes and triggers on in-flight replies,
DBOS's WorkflowStatusString. These tests fail when one side changes without the other (a new
reply state needs a migration; a DBOS upgrade may add a workflow state)."""

from __future__ import annotations

import re

import pytest
from dbos import WorkflowStatusString

from chat_core.states import (ANSWERED, FAILED, FINAL, IN_FLIGHT, REPLY_STATES,
                              WORKFLOW_ACTIVE, WORKFLOW_ENDED, WORKFLOW_FAILED, WORKFLOW_STATES,
                              sql_list)
from tests.helpers import query

_LITERAL = re.compile(r"'([^']*)'")


def _literals(definition: str) -> set[str]:
    return set(_LITERAL.findall(definition))


def test_reply_states_are_the_ones_the_database_accepts(migrated_database_url: str) -> None:
    checks = [r[0] for r in query(
        migrated_database_url,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'messages'::regclass AND contype = 'c'")]
    status_checks = [c for c in checks if "status" in c]
    assert len(status_checks) == 1, checks
    assert _literals(status_checks[0]) == set(REPLY_STATES)


def test_the_in_flight_index_and_triggers_name_the_in_flight_states(
        migrated_database_url: str) -> None:
    (index,) = query(migrated_database_url,
                     "SELECT indexdef FROM pg_indexes WHERE indexname = 'messages_in_flight_idx'")
    assert _literals(index[0]) == set(IN_FLIGHT)
    triggers = query(migrated_database_url,
                     "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger"
                     " WHERE tgrelid = 'messages'::regclass AND NOT tgisinternal")
    assert {name for name, _ in triggers} == {"messages_reply_final", "messages_reply_deleted"}
    for _, definition in triggers:
        assert _literals(definition) == set(IN_FLIGHT), definition


def test_reply_states_split_into_in_flight_and_final() -> None:
    assert set(IN_FLIGHT) | set(FINAL) == set(REPLY_STATES)
    assert not set(IN_FLIGHT) & set(FINAL)
    assert set(ANSWERED) | set(FAILED) == set(FINAL) and not set(ANSWERED) & set(FAILED)
    assert len(set(REPLY_STATES)) == len(REPLY_STATES)


def test_sql_list_spells_states_as_the_migrations_do() -> None:
    assert sql_list(IN_FLIGHT) == "('pending', 'streaming')"
    assert sql_list(ANSWERED) == "('complete', 'stopped')"


@pytest.mark.parametrize("states", [
    ("pending", "x'); DROP TABLE messages; --"),
    ("Pending",),
    ("",),
    ("running",),
    ("SUCCESS",),  # a workflow state, not a reply state
])
def test_sql_list_refuses_anything_but_reply_states(states: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="not a reply state"):
        sql_list(states)


def test_workflow_states_are_dbos_states() -> None:
    assert set(WORKFLOW_STATES) == {s.value for s in WorkflowStatusString}
    assert set(WORKFLOW_ACTIVE) | set(WORKFLOW_ENDED) == set(WORKFLOW_STATES)
    assert not set(WORKFLOW_ACTIVE) & set(WORKFLOW_ENDED)
    assert WorkflowStatusString.PENDING.value in WORKFLOW_ACTIVE
    assert WorkflowStatusString.SUCCESS.value in WORKFLOW_ENDED
    assert set(WORKFLOW_FAILED) == set(WORKFLOW_ENDED) - {WorkflowStatusString.SUCCESS.value}
    assert {WorkflowStatusString.ERROR.value, WorkflowStatusString.CANCELLED.value} \
        <= set(WORKFLOW_FAILED)
