"""Fit a conversation into the model's context window before the request is sent.

Oldest turns go first; the system prompt and the newest user message are never dropped. Token
counts come from token_estimate (which over-counts), so the fitted request is never longer than
the server accepts. If even the system prompt and the newest message leave too little room for a
reply, the reply's max_tokens shrinks, down to MIN_REPLY_TOKENS; below that the turn fails with
an error that says the message is too long for the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import LLMRejected
from .token_estimate import PER_MESSAGE_TOKENS, REPLY_PRIMER_TOKENS, estimate_tokens

MIN_REPLY_TOKENS = 64
DEFAULT_CONTEXT_TOKENS = 4096


@dataclass
class FittedPrompt:
    messages: list[dict[str, str]]
    max_tokens: int
    prompt_tokens_estimate: int
    context_tokens: int
    dropped_messages: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "prompt_tokens_estimate": self.prompt_tokens_estimate,
            "context_tokens": self.context_tokens,
            "dropped_messages": self.dropped_messages,
        }


def _cost(message: dict[str, str]) -> int:
    return PER_MESSAGE_TOKENS + estimate_tokens(message["content"])


def fit_prompt(
    history: Sequence[dict[str, str]],
    *,
    system_prompt: str,
    context_tokens: int,
    max_tokens: int,
) -> FittedPrompt:
    """`history` is in reading order and ends with the newest user message."""
    if not history or history[-1]["role"] != "user":
        raise ValueError("history must end with the user message being answered")
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    newest = dict(history[-1])
    fixed = REPLY_PRIMER_TOKENS + sum(_cost(m) for m in system) + _cost(newest)

    reply_room = min(max_tokens, context_tokens - fixed)
    if reply_room < min(MIN_REPLY_TOKENS, max_tokens):
        raise LLMRejected(
            f"the message is too long for the model's context window: about {fixed} tokens "
            f"with the system prompt, and the model takes {context_tokens} in all, with room "
            f"for a reply; shorten the message (or the system prompt)"
        )
    budget = context_tokens - reply_room - fixed

    # Walk back from the newest earlier message, keeping whole messages while they fit.
    kept: list[dict[str, str]] = []
    used = 0
    earlier = history[:-1]
    for message in reversed(earlier):
        cost = _cost(message)
        if used + cost > budget:
            break
        kept.append({"role": message["role"], "content": message["content"]})
        used += cost
    kept.reverse()
    # A history that starts with a reply, cut from its question, confuses models: drop it.
    dropped = len(earlier) - len(kept)
    while kept and kept[0]["role"] == "assistant" and dropped > 0:
        used -= _cost(kept.pop(0))
        dropped += 1

    return FittedPrompt(
        messages=system + kept + [{"role": "user", "content": newest["content"]}],
        max_tokens=reply_room,
        prompt_tokens_estimate=fixed + used,
        context_tokens=context_tokens,
        dropped_messages=dropped,
    )
