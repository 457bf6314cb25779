"""A conversation's generation settings: what may be overridden, within which bounds, and how
the overrides combine with the configured defaults into the parameters a turn runs with."""

from __future__ import annotations

from typing import Any

import pytest

from chat_core.config import Settings
from chat_core.errors import InvalidInput
from chat_core.service import ChatService
from chat_core.states import MAX_SYSTEM_PROMPT_CHARS, SETTING_LIMITS
from chat_core.validation import check_settings


def test_every_setting_within_its_bounds_is_accepted_and_typed() -> None:
    assert check_settings({"temperature": 0, "top_p": 1, "max_tokens": 32_768.0,
                           "system_prompt": ""}) == {
        "temperature": 0.0, "top_p": 1.0, "max_tokens": 32_768, "system_prompt": ""}
    out = check_settings({"temperature": 1.25, "max_tokens": 1})
    assert out == {"temperature": 1.25, "max_tokens": 1}
    assert isinstance(out["max_tokens"], int) and isinstance(out["temperature"], float)


def test_null_removes_an_override() -> None:
    assert check_settings({"temperature": None, "system_prompt": None}) == {
        "temperature": None, "system_prompt": None}


@pytest.mark.parametrize("settings,words", [
    ({"temperature": 2.01}, "0.0 <= temperature <= 2.0, got 2.01"),
    ({"temperature": -0.1}, "0.0 <= temperature <= 2.0"),
    ({"top_p": 0}, "0 < top_p <= 1, got 0"),
    ({"top_p": 1.5}, "0 < top_p <= 1"),
    ({"max_tokens": 0}, "1 <= max_tokens <= 32768"),
    ({"max_tokens": 32_769}, "1 <= max_tokens <= 32768"),
    ({"max_tokens": 10.5}, "'max_tokens' must be a whole number"),
    ({"temperature": True}, "'temperature' must be a number, got a boolean"),
    ({"temperature": "hot"}, "'temperature' must be a number, got str"),
    ({"top_p": float("nan")}, "'top_p' must be a number"),
    ({"system_prompt": 3}, "'system_prompt' must be a string, got a number"),
    ({"system_prompt": "p" * (MAX_SYSTEM_PROMPT_CHARS + 1)},
     f"the limit is {MAX_SYSTEM_PROMPT_CHARS:,}"),
])
def test_a_value_out_of_bounds_names_the_setting_and_its_bounds(settings: dict[str, Any],
                                                                words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_settings(settings)
    assert words in caught.value.message
    assert caught.value.details.get("field") == next(iter(settings))


def test_unknown_settings_are_refused_with_the_allowed_list() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_settings({"temprature": 1, "seed": 3})
    assert caught.value.message == (
        "unknown setting(s) 'seed', 'temprature'; allowed: max_tokens, model, system_prompt, "
        "temperature, top_p")


@pytest.mark.parametrize("value,kind", [(None, "null"), ([], "an array"), ("x", "str")])
def test_settings_must_be_an_object(value: Any, kind: str) -> None:
    with pytest.raises(InvalidInput, match=f"'settings' must be an object, got {kind}"):
        check_settings(value)


def test_the_allowed_settings_are_the_bounded_ones_and_the_system_prompt() -> None:
    assert set(SETTING_LIMITS) == {"temperature", "top_p", "max_tokens"}


def test_a_conversation_overrides_the_configured_defaults() -> None:
    configured = Settings(default_temperature=0.3, default_max_tokens=99, default_top_p=0.9,
                          default_system_prompt="Be brief.")
    service = ChatService(configured, None, None, None)  # type: ignore[arg-type]
    assert service.params_for({"settings": {}}) == {
        "temperature": 0.3, "max_tokens": 99, "top_p": 0.9, "system_prompt": "Be brief."}
    params = service.params_for({"settings": {"temperature": 1.5, "system_prompt": "",
                                              "top_p": None}})
    # An empty system prompt is a choice (none at all); a null is "use the default".
    assert params == {"temperature": 1.5, "max_tokens": 99, "top_p": 0.9, "system_prompt": ""}
    assert service.params_for({"settings": None}) == service.default_params()
