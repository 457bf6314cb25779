"""A reply being generated, rendered as it grows: each finished block once, not at every update.

The page redraws a streamed reply whole about ten times a second (a redraw may change what
came before: a list closed, a table grown), and rendering all of it each time cost more as the
reply grew: 0.6 ms of CPU a render for 2,000 characters, about 40 renders a reply. In
CommonMark every top-level block but the last is final once the next one's first line and the
line after it are whole (text coming later can only extend or split the last block; no block
rule looks further ahead) with one exception, reference definitions, which apply to links
anywhere. So the blocks before the last are rendered once and kept, and each update parses
and renders only the text from the last block on. Same parser, same rules, same sanitizer as
render.render_reply (tests/test_streamed_render.py checks that the result equals a whole
render at every length of many replies); where the exception could apply (a "]:" anywhere)
or the text does not go on from the last update's (a new attempt), it is rendered whole. The
reply's last update, as it ends, is what the pane's later redraws show (render.FinishedReplies).
"""

from __future__ import annotations

from typing import Any

from chat_core.ui.render import (MARKDOWN, MAX_TABLE_CELLS, render_reply, sanitize,
                                 table_cells, valid_text)


class StreamedRender:
    """One reply followed by one watcher; `render(text)` with its text each time it grew."""

    def __init__(self, share_mode: bool = False) -> None:
        self.share_mode = share_mode
        self._done_text = ""  # the text of the finished blocks
        self._done_html = ""  # their HTML, sanitized
        self._previous = ""  # the text of the last update: one that does not go on from it
        # is a new attempt, whose blocks may end elsewhere even where its text is the same

    def render(self, text: str) -> str:
        text = valid_text(text)
        grew = text.startswith(self._previous)
        self._previous = text
        if "]:" in text or "\r" in text or not grew or table_cells(text) > MAX_TABLE_CELLS:
            self._done_text = self._done_html = ""
            return render_reply(text, self.share_mode)
        tail = text[len(self._done_text):]
        env: dict[str, Any] = {"share": self.share_mode, "links": []}
        tokens = MARKDOWN.parse(tail, env)
        # A block whose first line, or the line after it, is still being written may yet
        # belong to the one before ("*" begins a list item, "**" goes on the line above; a
        # table's head needs the line after it to be its delimiter row): not counted.
        whole_lines = tail.count("\n")
        starts = [i for i, t in enumerate(tokens) if t.level == 0 and t.nesting >= 0
                  and t.map is not None and t.map[0] + 1 < whole_lines]
        if len(starts) > 1:
            last = starts[-1]
            finished = sanitize(MARKDOWN.renderer.render(tokens[:last], MARKDOWN.options, env),
                                self.share_mode)
            lines = tail.split("\n", tokens[last].map[0])
            self._done_text += tail[:len(tail) - len(lines[-1])]
            self._done_html += finished
            tokens = tokens[last:]
        html = MARKDOWN.renderer.render(tokens, MARKDOWN.options, env)
        return (self._done_html + sanitize(html, self.share_mode)).strip()
