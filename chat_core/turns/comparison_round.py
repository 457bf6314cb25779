"""A comparison's round: one message sent to both sides at once, as one small workflow that
starts both sides' turn workflows.

Durable like a turn: once the round's workflow is recorded, both turns start, even if the
process dies between the two (DBOS resumes the round and starts the one still missing; a child
started before the crash is not started twice, its id is fixed). Each turn is then an ordinary
`chat_turn`, in the Workflows tab like any other."""

from __future__ import annotations

from dbos import DBOS, SetWorkflowID

from chat_core.turns.fault_injection import crash_point
from chat_core.turns.payloads import TurnRequest
from chat_core.turns.workflow import chat_turn

ROUND_WORKFLOW_NAME = "comparison_round"
ROUND_ID_PREFIX = "round-"


@DBOS.workflow(name=ROUND_WORKFLOW_NAME)
async def comparison_round(turns: list[tuple[str, TurnRequest]]) -> list[str]:
    """Start each (turn id, request); the turn ids, once all are started."""
    for number, (turn_id, request) in enumerate(turns):
        if number == 1:
            crash_point("comparison_round:one_started")
        with SetWorkflowID(turn_id):
            await DBOS.start_workflow_async(chat_turn, request)
    return [turn_id for turn_id, _ in turns]
