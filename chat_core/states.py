"""The names every layer shares, defined once: a reply's states, a turn workflow's states, and
the limits on what a person can send. The SQL, the workflow, the live progress hub, export, the
UI and the Workflows admin all import them from here, so a new state or a changed limit is one
edit (plus a migration when the database checks it: tests/test_states.py compares the two)."""

from __future__ import annotations

from typing import Final, Literal

from dbos import WorkflowStatusString

# -- a reply (an assistant message row) ---------------------------------------------------------

PENDING: Final = "pending"        # saved, waiting for its turn or for the LLM
STREAMING: Final = "streaming"    # text arriving; partial text checkpointed
COMPLETE: Final = "complete"      # the model finished (or hit max_tokens: finish_reason=length)
STOPPED: Final = "stopped"        # someone pressed Stop; the text so far is kept
ERROR: Final = "error"            # the LLM failed after its retries; the message can be retried
CANCELLED: Final = "cancelled"    # the turn's workflow was cancelled, or ended without a reply

ReplyStatus = Literal["pending", "streaming", "complete", "stopped", "error", "cancelled"]
REPLY_STATES: Final = (PENDING, STREAMING, COMPLETE, STOPPED, ERROR, CANCELLED)
IN_FLIGHT: Final = (PENDING, STREAMING)
FINAL: Final = (COMPLETE, STOPPED, ERROR, CANCELLED)
# Replies with text a person accepted: sent to the model as history, shown as the answer,
# offered by Regenerate. Unchanged SQL spells them the same way (see sql_list).
ANSWERED: Final = (COMPLETE, STOPPED)
# Replies that produced nothing usable: offered Retry.
FAILED: Final = (ERROR, CANCELLED)


def sql_list(states: tuple[str, ...]) -> str:
    """`('pending', 'streaming')` for an SQL `IN`: a literal, not a parameter, so that the
    partial indexes defined with the same literal (migrations/001_init.sql) serve the query."""
    for state in states:
        if state not in REPLY_STATES:  # only our own constants ever reach SQL text
            raise ValueError(f"not a reply state: {state!r}")
    return "(" + ", ".join(f"'{s}'" for s in states) + ")"


# -- a turn's workflow (DBOS) --------------------------------------------------------------------

WORKFLOW_STATES: Final = tuple(s.value for s in WorkflowStatusString)
# Not yet ended (DBOS's own `workflow_is_active` is private; these are the states it names).
WORKFLOW_ACTIVE: Final = (WorkflowStatusString.PENDING.value,
                          WorkflowStatusString.ENQUEUED.value,
                          WorkflowStatusString.DELAYED.value)
WORKFLOW_ENDED: Final = tuple(s for s in WORKFLOW_STATES if s not in WORKFLOW_ACTIVE)
# Ended without a result: the turn's reply will not be written by its workflow.
WORKFLOW_FAILED: Final = tuple(s for s in WORKFLOW_ENDED
                               if s != WorkflowStatusString.SUCCESS.value)

# -- limits on input (the message length is a setting: MAX_MESSAGE_CHARS) ----------------------

MAX_TITLE_CHARS: Final = 200
MAX_SEARCH_CHARS: Final = 200
MAX_SYSTEM_PROMPT_CHARS: Final = 8_000
MAX_MODEL_NAME_CHARS: Final = 200
# Generation settings a conversation may override, with their inclusive bounds (top_p > 0).
SETTING_LIMITS: Final = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "max_tokens": (1, 32_768),
}
SETTING_STEP: Final = 0.05  # the sliders' step for temperature and top_p

# Read-only links (chat_core/sharing.py): the longest expiry a link may be given (or none at
# all), and live links per conversation (each one is a revocable door).
MAX_LINK_DAYS = 365
MAX_LIVE_LINKS = 20

# Ratings of replies (the chat's thumbs, PUT .../rating): up or down, with optional tags and a
# comment; 0 in a request removes the rating. migrations/007_ratings.sql checks the same limits
# (tests/test_ratings.py compares them).
RATING_UP: Final = 1
RATING_DOWN: Final = -1
RATING_VALUES: Final = (RATING_DOWN, RATING_UP)
MAX_RATING_TAGS: Final = 10
MAX_RATING_TAG_CHARS: Final = 40
MAX_RATING_COMMENT_CHARS: Final = 2_000

# Comparisons (the Compare tab, /api/comparisons): the vote's answers, and how a blind side is
# named until the vote. migrations/009_comparisons.sql checks the same values.
WINNER_A: Final = "a"
WINNER_B: Final = "b"
TIE: Final = "tie"
BOTH_BAD: Final = "both_bad"
WINNERS: Final = (WINNER_A, WINNER_B, TIE, BOTH_BAD)
SIDES: Final = (WINNER_A, WINNER_B)
BLIND_NAMES: Final = {WINNER_A: "Model A", WINNER_B: "Model B"}
MAX_LABEL_CHARS: Final = 80
