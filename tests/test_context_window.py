"""Fitting history into the context window: oldest turns go first, the system prompt and the
newest user message stay, and the prompt plus the reply room never exceed the window."""

from __future__ import annotations

import pytest

from chat_core.llm.context_window import MIN_REPLY_TOKENS, fit_prompt
from chat_core.errors import LLMRejected
from chat_core.llm.token_estimate import upper_bound_tokens


def _conversation(turns: int, size: int = 400) -> list[dict[str, str]]:
    history = []
    for n in range(turns):
        history.append({"role": "user", "content": f"q{n} " + "x" * size})
        history.append({"role": "assistant", "content": f"a{n} " + "y" * size})
    history.append({"role": "user", "content": "the newest question"})
    return history


def _fit(history: list[dict[str, str]], system: str = "", context: int = 2048,
         max_tokens: int = 256):
    return fit_prompt(history, [upper_bound_tokens(m["content"]) for m in history],
                      system_prompt=system, system_count=upper_bound_tokens(system),
                      context_tokens=context, max_tokens=max_tokens, exact_counts=False)


def test_long_history_keeps_the_newest_turns_and_the_system_prompt() -> None:
    history = _conversation(200)
    fitted = _fit(history, system="Be brief.", context=4096)
    msgs = fitted.messages
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[-1] == {"role": "user", "content": "the newest question"}
    assert msgs[1]["role"] == "user"  # never starts with a reply cut from its question
    kept = msgs[1:-1]
    assert len(kept) >= 2
    assert kept == history[-1 - len(kept):-1]  # a suffix: only the oldest were dropped
    assert fitted.dropped_messages == len(history) - 1 - len(kept)
    assert fitted.prompt_tokens + fitted.max_tokens <= 4096


def test_everything_fits_when_short() -> None:
    history = _conversation(3, size=10)
    fitted = _fit(history, context=8192, max_tokens=512)
    assert fitted.messages == history
    assert fitted.dropped_messages == 0
    assert fitted.max_tokens == 512


def test_reply_room_shrinks_before_the_message_is_refused() -> None:
    history = [{"role": "user", "content": "z" * 800}]
    fitted = _fit(history, context=1024, max_tokens=1024)
    assert MIN_REPLY_TOKENS <= fitted.max_tokens < 1024
    assert fitted.prompt_tokens + fitted.max_tokens <= 1024


def test_a_message_longer_than_the_window_is_refused_clearly() -> None:
    with pytest.raises(LLMRejected, match="too long for the model's context window"):
        _fit([{"role": "user", "content": "z" * 9000}])


def test_exact_counts_keep_more_history_than_the_bound() -> None:
    history = _conversation(100)
    bounded = _fit(history, context=4096)
    exact = fit_prompt(history, [upper_bound_tokens(m["content"]) // 4 for m in history],
                       system_prompt="", system_count=0, context_tokens=4096, max_tokens=256,
                       exact_counts=True)
    assert exact.dropped_messages < bounded.dropped_messages
    assert exact.messages[-1] == history[-1]
