"""Property-based: whatever a message says, its rendering in the chat pane is inert. Kept apart
from the modules that run an app in the background: DBOS's queue thread draws from the global
`random` every second, which Hypothesis reports as a strategy using `random`."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from chat_core.ui_render import safe_markdown
from tests.test_property_inputs import HTMLISH, SQLISH, any_text

_CODE = re.compile(r"```.*?(?:```|$)|~~~.*?(?:~~~|$)|`[^`\n]*`", re.DOTALL)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(any_text, st.lists(st.sampled_from(HTMLISH + SQLISH + ["`", "```\n", "\n",
                                                                            " text "]),
                                         max_size=12).map("".join)),
       share=st.booleans())
def test_rendering_is_inert_for_any_text(text: str, share: bool) -> None:
    shown = _CODE.sub("", safe_markdown(text, share_mode=share))
    assert not re.search(r"<[A-Za-z/!?]", shown)      # no tag can start outside code
    assert not re.search(r"!\[[^\]]*\]\s*[(\[]", shown)  # no image can load
    if share:
        assert "http://" not in shown and "https://" not in shown
