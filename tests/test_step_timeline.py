"""The Workflows tab's picture of a turn's steps (chat_core/ui/step_timeline.py): each bar where
its step started and as long as it ran, on one scale; a running step reaches to now."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from chat_core.ui.step_timeline import MIN_BAR_PERCENT, spans, timeline_html

STEPS = [
    {"name": "save_user_message", "started_at": "2026-11-30T10:00:00.000Z", "duration_ms": 10},
    {"name": "read_history", "started_at": "2026-11-30T10:00:00.020Z", "duration_ms": 30},
    {"name": "call_llm", "started_at": "2026-11-30T10:00:00.050Z", "duration_ms": 900},
    {"name": "save_reply", "started_at": "2026-11-30T10:00:00.960Z", "duration_ms": 40},
]


def bars(markup: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in re.findall(r"left:([\d.]+)%;width:([\d.]+)%", markup)]


def test_each_step_is_a_bar_where_it_started_as_long_as_it_ran() -> None:
    markup = timeline_html(STEPS)
    assert [b for b in bars(markup)] == [(0.0, 1.0), (2.0, 3.0), (5.0, 90.0), (96.0, 4.0)]
    assert markup.index("save_user_message") < markup.index("call_llm") < \
        markup.index("save_reply")
    assert "900 ms" in markup and "1.00 s" in markup  # the call's length, the whole turn's


def test_a_running_step_reaches_to_now_and_a_tiny_one_still_shows() -> None:
    running = [*STEPS[:2], {"name": "call_llm", "started_at": "2026-11-30T10:00:00.050Z",
                            "duration_ms": None}]
    origin_ms = datetime(2026, 11, 30, 10, tzinfo=timezone.utc).timestamp() * 1000
    drawn = spans(running, now_ms=origin_ms + 2050)
    assert drawn[-1] == ("call_llm", 50.0, 2050.0)
    assert bars(timeline_html(running, now_ms=origin_ms + 2050))[0][1] >= MIN_BAR_PERCENT


def test_nothing_to_draw_and_names_are_escaped() -> None:
    assert timeline_html([]) == ""
    assert timeline_html([{"name": "x", "started_at": None, "duration_ms": 3}]) == ""
    hostile = [{"name": "<img src=x onerror=alert(1)>", "started_at": STEPS[0]["started_at"],
                "duration_ms": 5}]
    assert "<img" not in timeline_html(hostile) and "&lt;img" in timeline_html(hostile)
