"""The shapes of what a turn's workflow takes and what its steps return.

DBOS stores the workflow's input and each step's output (pickled) and hands them back on
recovery, to this code or to a later version of it. So they are plain dicts (TypedDicts add
names and types for readers and type checkers, and pickle exactly as dicts do): a turn left
in flight by one layout of the code finishes in another. Add keys as NotRequired; never rename
or remove one that a stored turn may hold.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from chat_core.states import ReplyStatus


class TurnParams(TypedDict):
    """Generation settings, fixed into the request when the turn is accepted."""

    temperature: float
    top_p: float
    max_tokens: int
    system_prompt: str


class TurnRequest(TypedDict):
    """The workflow's input: a new message (content) or an existing one answered again."""

    conversation_id: str
    content: str | None           # None: answer user_message_id again (retry, continue)
    user_message_id: str
    params: TurnParams
    continue_reply_id: NotRequired[str]  # go on from this stopped reply's text
    # The account id of the person whose turn it is (absent in local mode and in turns
    # accepted before accounts existed): their place in the LLM's round-robin.
    owner: NotRequired[str]
    # A blind comparison's side ("Model A"): what a failed reply's error text names its model
    # as, so the Workflows tab and re-attached streams never show which model it was.
    blind_as: NotRequired[str]
    # With turn workers: where the new message will go in a conversation with no turn in
    # flight when it was accepted, for the head start the worker gives it (head_start.py).
    head_seq: NotRequired[int]
    # With turn workers: the turns of the conversation queued before this one and not finished
    # then ([turn id, reply id] pairs), whose messages are saved before its (queued_order.py).
    after: NotRequired[list[list[str]]]


class SavedTurn(TypedDict):
    """Step 1's output: the user message as the API shows it (chat_store.public_message)."""

    user_message: dict[str, Any]


class Prompt(TypedDict):
    """Step 2's output: what is sent to the model (context_window.FittedPrompt.to_dict())."""

    messages: list[dict[str, str]]
    max_tokens: int
    prompt_tokens_bound: int
    context_tokens: int
    dropped_messages: int
    exact_counts: bool
    reply_room: int               # context left for the reply; a fork may raise max_tokens to it
    params: TurnParams            # the effective parameters the prompt was fitted with
    continue_text: str            # a continued reply's text so far ("" for a new reply)


class LLMOutput(TypedDict):
    """Step 3's output: llm.client.Completion.to_dict() plus what the step adds."""

    text: str
    finish_reason: str            # stop, length, or "stopped" (someone pressed Stop)
    model: str
    prompt_tokens: int
    completion_tokens: int
    tokens_estimated: bool
    ttft_ms: float | None
    latency_ms: float
    params: NotRequired[TurnParams]
    attempts: NotRequired[int]


class Answered(LLMOutput):
    """What save_reply records for a reply the model produced."""

    status: ReplyStatus           # COMPLETE, or STOPPED


class Failed(TypedDict):
    """What save_reply records for a reply the model could not produce."""

    status: ReplyStatus           # ERROR
    error: str
    attempts: int


Outcome = Answered | Failed


class TurnResult(TypedDict):
    """The workflow's result (step 4's output): both messages as the API shows them."""

    user_message: dict[str, Any]
    assistant_message: dict[str, Any]
