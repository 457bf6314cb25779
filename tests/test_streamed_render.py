"""A streamed reply rendered block by block (chat_core/ui/streamed_render.py) shows exactly what
rendering it whole shows, at every length it passes through: the finished blocks kept from
earlier updates must never differ from what the whole text makes of them."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings, strategies as st

from chat_core.states import COMPLETE, STREAMING
from chat_core.testing.emulated_llm import markdown_reply
from chat_core.ui import render, streamed_render
from chat_core.ui.render import FinishedReplies, render_reply, reply_markdown
from chat_core.ui.streamed_render import StreamedRender

# Lines that exercise what could make a finished block depend on later text: lists (tight or
# loose), indented and fenced code (of several lengths, unclosed), block quotes and their lazy
# lines, tables, setext underlines, headings, breaks, links and images, and reference
# definitions (the one thing that reaches back).
LINES = [
    "", "", "", "plain words", "**bold** and `code`", "- item", "* star item", "1. first",
    "2) second", "   - indented item", "  continued", "    indented code", "```", "```python",
    "````", "~~~", "> quote", "> > nested", "lazy line", "| a | b |", "|---|---|", "| 1 | 2 |",
    "a | b", "--|--", "===", "---", "***", "# Heading", "## Sub", "[link](http://example.com)",
    "![img](http://example.com/x.png)", "[ref]", "[ref]: http://example.com", "<b>raw</b>",
    "text  ", "\\", "10. ten", "+ plus", "    ```", "  ~~~", "\tTab", "    ", "é ünïcode 東京",
    "| cmd |", "--verbose", "|-x", ":-:|", "- [ ] todo",
]


def _stream(text: str, step: int, share_mode: bool) -> None:
    renderer = StreamedRender(share_mode)
    for end in list(range(1, len(text), step)) + [len(text)]:
        assert renderer.render(text[:end]) == render_reply(text[:end], share_mode), \
            (text[:end], end)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(LINES), min_size=1, max_size=24), st.integers(1, 7),
       st.booleans())
def test_every_length_of_a_streamed_reply_renders_as_the_whole(lines: list[str], step: int,
                                                               share_mode: bool) -> None:
    _stream("\n".join(lines), step, share_mode)


def test_a_long_reply_of_many_blocks_keeps_its_finished_blocks() -> None:
    text = "\n\n".join(f"Paragraph {i} with a [link](http://example.com/{i})." if i % 3 else
                       f"- item {i}\n- item {i + 1}" for i in range(60))
    _stream(text, 5, False)
    renderer = StreamedRender()
    renderer.render(text)
    # What is rendered anew at the next update is the last two blocks only (the last one's
    # line is not finished: it may yet join the one before).
    last = text.rindex("\n\n")
    assert renderer._done_text == text[:text.rindex("\n\n", 0, last) + 2]


def test_a_new_attempt_starts_over() -> None:
    renderer = StreamedRender()
    renderer.render("First try.\n\nSecond paragraph")
    assert renderer.render("Another\n\nreply") == render_reply("Another\n\nreply")


def test_a_new_attempt_that_begins_as_the_last_one_did_is_rendered_afresh() -> None:
    """Where the last attempt's blocks ended depended on its own later text (a heading after
    "Intro"); the new one's "The" goes on the paragraph (found by a review)."""
    renderer = StreamedRender()
    renderer.render("Intro\n# Title\nmore\n")
    assert renderer.render("Intro\nThe") == render_reply("Intro\nThe")


def test_a_line_that_was_a_tables_delimiter_for_a_moment_splits_nothing() -> None:
    """"--" under "| cmd |" makes a table for as long as the line is that; "--verbose" is
    text again, and the paragraph above was never a block of its own (found by a review)."""
    _stream("text\n| cmd |\n--verbose and more\n\nnext", 1, False)


def test_the_page_stream_renders_a_growing_reply_from_its_last_block(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The chat page's stream of a reply (ui/chat/streaming.follow_reply) parses only its last
    blocks at each update, and shows at each what a whole render shows."""
    import asyncio

    from chat_core.states import COMPLETE, STREAMING
    from chat_core.turns.progress import Snapshot
    from chat_core.ui import render, streamed_render
    from chat_core.ui.chat import streaming
    from chat_core.ui.chat.view import following

    text = "\n\n".join(f"Paragraph {i} of a long reply, with **words**." for i in range(40))
    cuts = list(range(40, len(text), 97)) + [len(text)]

    class Service:
        async def watch_turn(self, turn_id: str, min_interval: float = 0.0):  # type: ignore[no-untyped-def]
            for end in cuts:
                yield Snapshot(turn_id, "reply-1", STREAMING, text[:end], 0)
            yield Snapshot(turn_id, "reply-1", COMPLETE, text, 0)

    parsed: list[int] = []
    parse = render.MARKDOWN.parse
    monkeypatch.setattr(render.MARKDOWN, "parse",
                        lambda src, env=None: parsed.append(len(src)) or parse(src, env))
    monkeypatch.setattr(streaming, "RENDER_BUDGET_FACTOR", 0)  # every update drawn

    async def follow() -> list[str]:
        state = following("turn-1", "conv-1", [])
        return [entry["content"] async for entry, _ in
                streaming.follow_reply(Service(), state, False) if entry]  # type: ignore[arg-type]

    shown = asyncio.run(follow())
    assert shown[:-1] == [render_reply(text[:end]) for end in cuts]
    assert shown[-1] == render_reply(text)
    # At the later updates only the last paragraphs were parsed, not the whole reply.
    late = parsed[len(cuts) // 2:len(cuts)]
    assert late and max(late) < 200, late


def test_the_benchmarks_model_like_reply_streams_as_it_renders_whole() -> None:
    """The emulator's Markdown replies (scripts/bench_burst.py --markdown), token by token as
    the page receives them: every block kind shows, and each update equals a whole render."""
    tokens = markdown_reply([{"role": "user", "content": "hi"}], 120)
    assert len(tokens) == 121
    text = "".join(tokens)
    whole = render_reply(text)
    for tag in ("<h2>", "<ol>", "<pre>", "<table>"):
        assert tag in whole, tag
    renderer, shown = StreamedRender(), ""
    for token in tokens:
        shown += token
        assert renderer.render(shown) == render_reply(shown), shown


def test_a_reply_that_ends_while_followed_is_not_rendered_whole_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its end shows as a whole render would, made from the blocks its page's renderer has
    already rendered; the pane's later redraws (the turn's finish, the conversation opened
    again) read that back instead of rendering the reply whole."""
    tokens = markdown_reply([{"role": "user", "content": uuid.uuid4().hex}], 150)
    text, renderer = "".join(tokens), StreamedRender()
    for end in range(1, len(tokens), 7):
        reply_markdown({"status": STREAMING, "content": "".join(tokens[:end])}, False, renderer)
    whole = render_reply(text)
    rendered_whole: list[str] = []

    def counted(t: str, share: bool = False) -> str:
        rendered_whole.append(t)
        return render_reply(t, share)

    monkeypatch.setattr(render, "render_reply", counted)
    monkeypatch.setattr(streamed_render, "render_reply", counted)
    assert reply_markdown({"status": COMPLETE, "content": text}, False, renderer) == whole
    assert reply_markdown({"status": COMPLETE, "content": text}) == whole
    assert rendered_whole == []


def test_a_renderer_of_one_mode_cannot_fill_the_other_modes_replies() -> None:
    """Share mode shows no links: a reply rendered for a local page must never be kept as a
    shared page's."""
    text = f"see [here](http://example.com/{uuid.uuid4().hex})"
    with pytest.raises(ValueError):
        reply_markdown({"status": COMPLETE, "content": text}, True, StreamedRender(False))
    assert "<a " not in reply_markdown({"status": COMPLETE, "content": text}, True)


class _Counted:
    share_mode = False

    def __init__(self) -> None:
        self.made: list[str] = []

    def render(self, text: str) -> str:
        self.made.append(text)
        return f"<p>{text}</p>"


def test_finished_replies_keep_the_most_recently_used() -> None:
    kept, renderer = FinishedReplies(size=2), _Counted()
    for text in ("a", "b", "a", "c", "a", "b"):
        assert kept.html(text, False, renderer) == f"<p>{text}</p>"
    assert renderer.made == ["a", "b", "c", "b"]  # "b" went when "c" came; "a" was used since
    assert kept.html("a", True) == "<p>a</p>"  # the other mode's own entry, rendered whole


def test_finished_replies_keep_no_more_than_their_total_length() -> None:
    """A reply whose HTML is huge (a table's empty cells) pushes the older ones out rather
    than growing the process: 9 characters each here (text and HTML), 20 kept at most."""
    kept, renderer = FinishedReplies(size=10, total_chars=20), _Counted()
    for text in ("a", "b", "c"):
        kept.html(text, False, renderer)
    kept.html("a", False, renderer)
    kept.html("b", False, renderer)
    assert renderer.made == ["a", "b", "c", "a", "b"]  # two fit: "a" went when "c" came
    kept.html("x" * 40, False, renderer)  # larger than all: kept alone
    kept.html("x" * 40, False, renderer)
    assert renderer.made[-1] == "x" * 40 and renderer.made.count("x" * 40) == 1


def test_a_reply_whose_tables_grow_past_the_cell_limit_streams_as_it_renders_whole(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its tables are tables until the reply's cells pass MAX_TABLE_CELLS (lowered here), then
    text (render.table_cells); at every length it shows what a whole render shows."""
    monkeypatch.setattr(render, "MAX_TABLE_CELLS", 60)
    monkeypatch.setattr(streamed_render, "MAX_TABLE_CELLS", 60)
    table = "| a | b | c | d |\n|---|---|---|---|\n" + "| 1 | 2 | 3 | 4 |\n" * 5
    text = "Intro.\n\n" + "\n".join([table] * 3) + "\nThe end."
    _stream(text, 9, False)
    assert "<table>" in render_reply(text[:len(table) + 10])
    assert "<table>" not in render_reply(text)
