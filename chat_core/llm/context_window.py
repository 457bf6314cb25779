"""Fit a conversation into the model's context window before the request is sent.

Oldest turns go first; the system prompt and the newest user message are never dropped. The
caller gives each message's token count: exact, from the server's tokenizer, or the upper bound
of one token per byte (token_estimate), so the request never exceeds what the server accepts.
If even the system prompt and the newest message leave too little room for a reply, the reply's
max_tokens shrinks, down to MIN_REPLY_TOKENS; below that the turn fails with an error that says
the message is too long for the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from chat_core.errors import LLMRejected
from chat_core.llm.token_estimate import PER_MESSAGE_TOKENS, PROMPT_OVERHEAD_TOKENS

MIN_REPLY_TOKENS = 64
DEFAULT_CONTEXT_TOKENS = 4096


@dataclass
class FittedPrompt:
    messages: list[dict[str, str]]
    max_tokens: int
    prompt_tokens: int
    context_tokens: int
    dropped_messages: int
    exact_counts: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "prompt_tokens_bound": self.prompt_tokens,
            "context_tokens": self.context_tokens,
            "dropped_messages": self.dropped_messages,
            "exact_counts": self.exact_counts,
            # Room left for the reply: a fork with a larger max_tokens may use up to this.
            "reply_room": self.context_tokens - self.prompt_tokens,
        }


def fit_prompt(
    history: Sequence[dict[str, str]],
    counts: Sequence[int],
    *,
    system_prompt: str,
    system_count: int,
    context_tokens: int,
    max_tokens: int,
    exact_counts: bool,
) -> FittedPrompt:
    """`history` is in reading order and ends with the newest user message; `counts[i]` is the
    token count of `history[i]["content"]`, `system_count` that of the system prompt."""
    if not history or history[-1]["role"] != "user":
        raise ValueError("history must end with the user message being answered")
    if len(counts) != len(history):
        raise ValueError("one count per message")
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    fixed = PROMPT_OVERHEAD_TOKENS + PER_MESSAGE_TOKENS + counts[-1]
    if system:
        fixed += PER_MESSAGE_TOKENS + system_count

    reply_room = min(max_tokens, context_tokens - fixed)
    if reply_room < min(MIN_REPLY_TOKENS, max_tokens):
        raise LLMRejected(
            f"the message is too long for the model's context window: about {fixed} tokens "
            f"with the system prompt, and the model takes {context_tokens} in all, with room "
            "for a reply; shorten the message (or the system prompt)"
        )
    budget = context_tokens - reply_room - fixed

    # Walk back from the newest earlier message, keeping whole messages while they fit.
    keep_from = len(history) - 1
    used = 0
    for i in range(len(history) - 2, -1, -1):
        cost = PER_MESSAGE_TOKENS + counts[i]
        if used + cost > budget:
            break
        used += cost
        keep_from = i
    # A history that starts with a reply cut from its question confuses models: drop it.
    while keep_from < len(history) - 1 and history[keep_from]["role"] == "assistant" \
            and keep_from > 0:
        used -= PER_MESSAGE_TOKENS + counts[keep_from]
        keep_from += 1

    kept = [{"role": m["role"], "content": m["content"]} for m in history[keep_from:]]
    return FittedPrompt(
        messages=system + kept,
        max_tokens=reply_room,
        prompt_tokens=fixed + used,
        context_tokens=context_tokens,
        dropped_messages=keep_from,
        exact_counts=exact_counts,
    )
