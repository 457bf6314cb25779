"""Exported files do not pile up in the temp directory of a long-running app."""

from __future__ import annotations

import os
import time

from chat_core.ui.chat.files import export_path


def test_exports_older_than_ten_minutes_are_removed_at_the_next_export() -> None:
    first = export_path("conversation-a.json")
    first.write_text("{}")
    recent = export_path("conversation-a.json")  # same name, its own folder
    recent.write_text("{}")
    an_hour_ago = time.time() - 3600
    os.utime(first.parent, (an_hour_ago, an_hour_ago))

    export_path("conversation-b.md")

    assert not first.parent.exists()
    assert recent.read_text() == "{}"
    assert recent.name == "conversation-a.json"
