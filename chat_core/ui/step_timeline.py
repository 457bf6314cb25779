"""The selected turn's steps as a timeline (Workflows tab): where a turn's time went, at a glance.

Each step is a bar placed where it started and as long as it ran, on one scale from the first
step's start to the last step's end; a step still running reaches to now. Built from the steps
DBOS records (`WorkflowAdmin.steps`), as plain HTML with inline widths: nothing is fetched and
nothing a visitor typed is in it (step names are the workflow's own, escaped all the same).
"""

from __future__ import annotations

import html
import time
from datetime import datetime
from typing import Any

# Bars thinner than this would vanish: a 2 ms checkpoint in a 12 s turn still shows.
MIN_BAR_PERCENT = 0.6


def _epoch_ms(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def spans(rows: list[dict[str, Any]], now_ms: float | None = None
          ) -> list[tuple[str, float, float]]:
    """(step name, start, end) in ms since the first step started; a running step ends now."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    timed = [(r, _epoch_ms(r.get("started_at"))) for r in rows]
    starts = [t for _, t in timed if t is not None]
    if not starts:
        return []
    origin = min(starts)
    out = []
    for row, start in timed:
        if start is None:
            continue
        duration = row.get("duration_ms")
        end = start + duration if isinstance(duration, (int, float)) else max(now_ms, start)
        out.append((str(row.get("name") or "?"), start - origin, end - origin))
    return out


def timeline_html(rows: list[dict[str, Any]], now_ms: float | None = None) -> str:
    """The timeline of a turn's steps ("" when there is nothing to draw)."""
    parts = spans(rows, now_ms)
    if not parts:
        return ""
    total = max(end for _, _, end in parts) or 1.0
    lines = [f'<div class="wf-timeline" role="img" aria-label="steps over '
             f'{total / 1000:.2f} s">']
    for name, start, end in parts:
        left = 100 * start / total
        width = max(MIN_BAR_PERCENT, 100 * (end - start) / total)
        left = min(left, 100 - width)
        lines.append(
            f'<div class="wf-step"><span class="wf-step-name">{html.escape(name)}</span>'
            f'<span class="wf-track"><span class="wf-bar" style="left:{left:.2f}%;'
            f'width:{width:.2f}%"></span></span>'
            f'<span class="wf-step-ms">{end - start:,.0f} ms</span></div>')
    lines.append(f'<div class="wf-scale"><span>0</span><span>{total / 1000:.2f} s</span></div>')
    lines.append("</div>")
    return "\n".join(lines)


TIMELINE_CSS = """
.wf-timeline { display: flex; flex-direction: column; gap: 4px; margin: 6px 0; }
.wf-step { display: grid; grid-template-columns: 11em 1fr 6em; gap: 8px;
  align-items: center; font-size: var(--text-sm); }
.wf-step-name { font-family: var(--font-mono); overflow-wrap: anywhere; }
.wf-track { position: relative; height: 14px; border-radius: 3px;
  background: var(--background-fill-secondary); }
.wf-bar { position: absolute; top: 0; bottom: 0; border-radius: 3px;
  background: var(--color-accent); }
.wf-step-ms { text-align: right; font-variant-numeric: tabular-nums; }
.wf-scale { display: flex; justify-content: space-between; margin-left: 11em;
  margin-right: 6em; padding: 0 8px; font-size: var(--text-xs); opacity: 0.7; }
"""
