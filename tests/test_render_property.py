"""Property-based: whatever a message says, its rendering in the chat pane is inert. Kept apart
from the modules that run an app in the background: DBOS's queue thread draws from the global
`random` every second, which Hypothesis reports as a strategy using `random`."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chat_core.ui.render import render_reply, safe_markdown, user_html
from tests.test_property_inputs import HTMLISH, SQLISH, any_text
from tests.test_render import HOSTILE, _unescaped_punctuation, assert_inert

_PIECES = HTMLISH + SQLISH + list(HOSTILE.values()) + [
    "`", "```\n", "~~~", "\n", "\n\n", " text ", "![", "](", ")", "[x]: ", "//evil.example/x",
    "https://evil.example/x", "<", ">", "&#x61;", "|---|\n", "> ", "- ", "\ud800"]
texts = st.one_of(any_text, st.lists(st.sampled_from(_PIECES), max_size=12).map("".join))


@settings(max_examples=400, deadline=None)
@given(text=texts, share=st.booleans())
def test_rendering_is_inert_for_any_text(text: str, share: bool) -> None:
    shown = render_reply(text, share_mode=share)
    assert_inert(shown, share)
    if share:
        assert "<a" not in shown
    assert "<" not in user_html(text)  # a user message is text: no tag at all


@settings(max_examples=200, deadline=None)
@given(text=texts)
def test_notice_text_is_inert_for_any_text(text: str) -> None:
    escaped = safe_markdown(text)
    assert "\n" not in escaped and "\r" not in escaped
    assert _unescaped_punctuation(escaped) == []
