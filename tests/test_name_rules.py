"""Names other people see (the admin's owner column and filter): one that could pass for
someone else's is refused, one in any single script is welcome."""

from __future__ import annotations

import pytest

from chat_core.accounts.passwords import check_name, name_key
from chat_core.errors import InvalidInput


@pytest.mark.parametrize("lookalike", [
    "\u0430lice",        # Cyrillic а among Latin letters
    "alice\u034f",       # combining grapheme joiner: invisible
    "bob\u180b",         # Mongolian free variation selector
    "carol\ufe0f",       # variation selector 16
    "\u3164alice",       # Hangul filler, drawn as nothing
    "b\u03bfb",          # Greek omicron between Latin letters
])
def test_a_name_that_could_pass_for_another_is_refused(lookalike: str) -> None:
    with pytest.raises(InvalidInput):
        check_name(lookalike)


@pytest.mark.parametrize("name", ["alice", "Jürgen", "Анна", "Ελένη", "山田 たろう", "ann 2",
                                  "o'neil".replace("'", "-")])
def test_a_name_in_one_script_is_welcome(name: str) -> None:
    assert check_name(name) == name


def test_names_differing_only_in_case_or_width_are_one() -> None:
    assert name_key("Ann") == name_key("ann") == name_key("ＡＮＮ")
