"""What the chat pane shows for a message is inert: a hostile reply (a prompt injection can
write anything) renders to HTML holding only text-formatting tags, and the only URL in it is
the http(s) `href` of a link the user would have to click (none at all in share mode). Normal
Markdown still renders. HOSTILE is also what tests/test_render_browser.py shows in a browser."""

from __future__ import annotations

import html
import string
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from chat_core.ui.render import (MARKDOWN, MAX_TABLE_CELLS, conversation_view,
                                 render_reply, reply_markdown, safe_markdown, table_cells,
                                 user_html)

# Each of these made the browser fetch something, or could, through some renderer.
HOSTILE = {
    # Bypasses of the regex renderer that the probe found.
    "nested-brackets": "![a[b]c](//evil.example/x)",
    "fence-then-img": 'note ``` <img src="//evil.example/x">',
    "fence-then-image": "note ``` ![x](https://evil.example/x)",
    "backtick-run": "` ![x](https://evil.example/x) ``",
    "reference-image": "![x]\n\n[x]: //evil.example/x",
    "srcset-poster": 'mid ``` <img srcset="https://evil.example/x 1x"> '
                     '<video poster="https://evil.example/p"></video>',
    "bare-www": "visit www.evil.example/x or https://evil.example/y",
    "form": '<form action="//evil.example/x"><button>go</button></form>',
    # Raw HTML of every kind that loads, navigates or submits.
    "img-onerror": "<img src=x onerror=alert(1)>",
    "iframe": '<iframe src="https://evil.example/x"></iframe>',
    "svg-image": '<svg><image href="https://evil.example/x"/></svg>',
    "a-javascript": '<a href="javascript:alert(1)">x</a>',
    "style-import": "<style>@import url(https://evil.example/x.css);</style>",
    "link-stylesheet": '<link rel=stylesheet href="https://evil.example/x.css">',
    "meta-refresh": '<meta http-equiv="refresh" content="0;url=https://evil.example/x">',
    "base": '<base href="https://evil.example/">',
    "object-embed": '<object data="https://evil.example/x"></object>'
                    '<embed src="https://evil.example/y">',
    "input-formaction": '<input type=image src="https://evil.example/x" '
                        'formaction="https://evil.example/y">',
    "video-audio": '<video src="https://evil.example/v"></video>'
                   '<audio src="https://evil.example/a" autoplay></audio>',
    "html-block": "<div>\n<img src=https://evil.example/x>\n</div>",
    # Markdown links and images with hostile targets.
    "md-javascript": "[x](javascript:alert(1))",
    "md-data": "[x](data:text/html,<script>alert(1)</script>)",
    "md-protocol-relative": "[x](//evil.example/x) and [y](/relative/path)",
    "entity-scheme": "[x](jav&#x61;script:1) [y](&#x2F;&#x2F;evil.example/y)",
    "reference-styles": "![i][r1] [l][r2] [m][r3]\n\n[r1]: https://evil.example/i\n"
                        "[r2]: javascript:alert(1)\n[r3]: //evil.example/m",
    "autolinks": "<https://evil.example/x> <javascript:alert(1)> <someone@evil.example>",
    "image-in-link": "[![x](https://evil.example/x)](https://ok.example/)",
    "table-images": "| a | b |\n|:--|--:|\n| ![x](https://evil.example/x) | "
                    "<img src=https://evil.example/y> |",
    # Fences, closed, nested and unclosed.
    "nested-fences": "````\n```\n<img src=https://evil.example/x>\n```\n````\n"
                     "![y](https://evil.example/y)",
    "unclosed-fence": "```\n![x](https://evil.example/x)\n<img src=https://evil.example/y>",
    "unclosed-tilde": "~~~\n<img src=https://evil.example/x>",
    # What other renderers would act on: LaTeX, mermaid.
    "latex": "$$\\href{https://evil.example/x}{x}\\includegraphics{https://evil.example/y}$$",
    "mermaid": '```mermaid\ngraph TD; A-->B; click A "https://evil.example/x"\n```',
    # Text the sanitizer and the page's JSON cannot carry as is.
    "nul-surrogates": "a\x00![x](https://evil.example/x)\ud800 "
                      "<img src=https://evil.example/\udfff>",
}

NORMAL = ("Here is **bold** and `inline code`.\n\nline one\nline two\n\n"
          "```python\nprint('hi')\n```\n\n- one\n- two\n\n3. three\n4. four\n\n"
          "## Heading\n\n> quoted\n\n~~gone~~\n\n"
          "| col | num |\n|-----|----:|\n| a | 1 |\n\n[docs](https://example.com/docs)")

_ATTRIBUTES = {**{tag: set() for tag in (
    "p br hr h1 h2 h3 h4 h5 h6 strong em del s code pre blockquote ul li table thead tbody "
    "tr").split()}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
_LINK_ATTRIBUTES = {"href", "target", "rel"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def assert_inert(shown: str, share_mode: bool) -> None:
    """Only allow-listed tags and attributes; a link only locally, only to an absolute
    http(s) URL, opening in a new tab without a referrer."""
    parser = _Tags()
    parser.feed(shown)
    parser.close()
    for tag, attrs in parser.tags:
        if tag == "a" and not share_mode:
            assert set(attrs) <= _LINK_ATTRIBUTES, (tag, attrs)
            href = urlsplit(attrs.get("href") or "")
            assert href.scheme in ("http", "https") and href.hostname, (tag, attrs)
            assert attrs.get("target") == "_blank", attrs
            assert {"noopener", "noreferrer"} <= set((attrs.get("rel") or "").split())
            continue
        assert tag in _ATTRIBUTES, f"tag <{tag}> in {shown!r}"
        assert set(attrs) <= _ATTRIBUTES[tag], f"<{tag} {attrs}> in {shown!r}"


@pytest.mark.parametrize("share_mode", [False, True], ids=["local", "share"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_replies_render_inert(name: str, share_mode: bool) -> None:
    text = HOSTILE[name]
    for shown in (render_reply(text, share_mode),
                  reply_markdown({"status": "complete", "content": text}, share_mode),
                  reply_markdown({"status": "error", "content": text, "error": text},
                                 share_mode)):
        assert_inert(shown, share_mode)
        if share_mode:
            assert "<a" not in shown
        assert "\x00" not in shown and "\ud800" not in shown


def test_images_become_text_and_hostile_links_stay_text() -> None:
    assert render_reply("![a[b]c](//evil.example/x)") == "<p>[image: a[b]c]</p>"
    assert render_reply("![](https://evil.example/x)") == "<p>[image: untitled]</p>"
    shown = render_reply(HOSTILE["md-protocol-relative"])
    assert "<a" not in shown and "x (//evil.example/x)" in shown
    assert "&lt;img" in render_reply(HOSTILE["fence-then-img"])  # raw HTML is shown as text


def test_local_links_open_in_a_new_tab_and_share_mode_spells_them_out() -> None:
    text = "see [docs](https://example.com/a?b=1&c=2) <https://example.com/auto>"
    assert render_reply(text) == (
        '<p>see <a href="https://example.com/a?b=1&amp;c=2" target="_blank" '
        'rel="noopener noreferrer nofollow">docs</a> <a href="https://example.com/auto" '
        'target="_blank" rel="noopener noreferrer nofollow">https://example.com/auto</a></p>')
    assert render_reply(text, share_mode=True) == (
        "<p>see docs (https://example.com/a?b=1&amp;c=2) https://example.com/auto</p>")


@pytest.mark.parametrize("share_mode", [False, True], ids=["local", "share"])
def test_normal_markdown_still_renders(share_mode: bool) -> None:
    shown = render_reply(NORMAL, share_mode)
    assert_inert(shown, share_mode)
    for part in ("<strong>bold</strong>", "<code>inline code</code>",
                 "<pre><code>print('hi')\n</code></pre>", "<ul>\n<li>one</li>",
                 '<ol start="3">\n<li>three</li>', "<h2>Heading</h2>", "<blockquote>",
                 "<s>gone</s>", "<table>", '<th align="right">num</th>', "<td>a</td>",
                 "line one<br>\nline two"):
        assert part in shown, (part, shown)
    link = ('<a href="https://example.com/docs" target="_blank" rel="noopener noreferrer '
            'nofollow">docs</a>')
    assert (link not in shown and "docs (https://example.com/docs)" in shown) if share_mode \
        else link in shown


def test_reply_status_notes_and_errors() -> None:
    assert reply_markdown({"status": "stopped", "content": "so far"}) == \
        "<p>so far</p>\n<p><em>(stopped)</em></p>"
    assert reply_markdown({"status": "streaming", "content": ""}) == "…"
    failed = reply_markdown({"status": "error", "content": "", "error": "<img src=x> **no**"})
    assert failed == "<p>⚠️ <strong>Error:</strong> &lt;img src=x&gt; **no**</p>"


def test_user_messages_are_plain_text() -> None:
    text = "<b>hi</b> & **not bold**\nsecond line ![x](https://evil.example/x)"
    assert user_html(text) == html.escape(text, quote=False)
    assert html.unescape(user_html(text)) == text  # what the edit handler gets back
    shown, state = conversation_view([
        {"id": "u1", "role": "user", "content": text, "parent_id": None},
        {"id": "a1", "role": "assistant", "content": "**yes**", "parent_id": "u1",
         "status": "complete", "active": True}])
    assert [m["content"] for m in shown] == [user_html(text), "<p><strong>yes</strong></p>"]
    assert state["ids"] == ["u1", "a1"]


def _unescaped_punctuation(text: str) -> list[str]:
    found, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in string.punctuation:
            i += 2
            continue
        if text[i] in string.punctuation:
            found.append(text[i])
        i += 1
    return found


def test_notice_text_is_inert_markdown() -> None:
    """Every ASCII punctuation mark escaped, no line break: nothing can start Markdown or
    HTML, and no autolink (www.x.y, https://) can form."""
    escaped = safe_markdown("![x](https://evil.example/x)\n# title <b> www.evil.example &amp;")
    assert "\n" not in escaped and _unescaped_punctuation(escaped) == []
    assert escaped.startswith(r"\!\[x\]\(https\:\/\/evil\.example\/x\) \# title \<b\>")


def test_a_finished_reply_says_its_model_speed_and_first_token_under_it() -> None:
    from chat_core.ui.render import conversation_view, reply_facts

    reply = {"id": "r", "role": "assistant", "parent_id": "u", "status": "complete",
             "content": "Hi", "model": "llama-3.1-8b", "completion_tokens": 41,
             "tokens_estimated": False, "ttft_ms": 180.0, "latency_ms": 2180.0,
             "active": True, "finish_reason": "stop"}
    line = reply_facts(reply)
    assert "llama-3.1-8b · 20 tokens/s · first token 0.18 s" in line
    pane, _ = conversation_view([{"id": "u", "role": "user", "content": "hello"}, reply])
    assert pane[-1]["content"].endswith(line)
    # Nothing measured, or not finished: no line; a model name is text, never markup.
    assert reply_facts({**reply, "status": "streaming"}) == ""
    assert reply_facts({**reply, "model": None}) == ""
    odd = reply_facts({**reply, "model": "<b onclick=x>m</b>", "ttft_ms": None})
    assert "<b" not in odd and "&lt;b" in odd and "tokens/s" not in odd
    assert "~20 tokens/s" in reply_facts({**reply, "tokens_estimated": True})


def _wide_table(columns: int, rows: int) -> str:
    """A head of `columns` over rows of one character: markdown-it fills each row's cells."""
    return ("|" + "|".join("h" * columns) + "|\n|" + "|".join("-" * columns) + "|\n"
            + "|x\n" * rows)


def test_a_reply_of_too_many_table_cells_shows_its_tables_as_text() -> None:
    """A dozen tables of 400 columns over 200 one-character rows (26,000 characters) would be
    about a million cells: 15 s of CPU on the event loop and 8 MB of HTML, for every page that
    draws the reply. Past MAX_TABLE_CELLS the reply's tables show as the text they are; an
    ordinary table is still a table."""
    text = "\n".join(_wide_table(400, 200) for _ in range(12))
    assert table_cells(text) > MAX_TABLE_CELLS
    shown = render_reply(text)
    assert "<table>" not in shown and "|x" in shown and len(shown) < 2 * len(text)
    ordinary = "| a | b |\n|---|:-:|\n| 1 | 2 |\n| 3 | 4 |"
    assert 0 < table_cells(ordinary) <= MAX_TABLE_CELLS
    assert "<table>" in render_reply(ordinary)
    assert table_cells("- one\n- two\n\n---\n\ntext | with a pipe") == 0


_HEAD, _DELIMITER = "|" * 21, "|" + "|".join("-" * 20) + "|"  # 20 columns


@pytest.mark.parametrize("text", [
    "\n".join([_HEAD, _DELIMITER] + ["x"] * 30),
    "\r".join([_HEAD, _DELIMITER] + ["x"] * 30),  # markdown-it reads "\r" as a line break
    "\r\n".join([_HEAD, _DELIMITER] + ["x"] * 30),
    "\n".join([_HEAD, _DELIMITER] + ["\x1c"] * 30),  # not blank to markdown-it
    "> " + _HEAD + "\n> " + _DELIMITER + "\n" + "> x\n" * 30,  # in a quote
    "- " + _HEAD + "\n\t" + _DELIMITER + "\n" + "\tx\n" * 30,  # in a list item
    "1.  " + _HEAD + "\n    " + _DELIMITER + "\n" + "    x\n" * 30,
    "- - " + _HEAD + "\n    " + _DELIMITER + "\n" + "    x\n" * 30,  # in a nested list
], ids=["lf", "cr", "crlf", "x1c-rows", "quote", "list-tab", "ordered", "nested-list"])
def test_table_cells_counts_at_least_the_cells_markdown_it_makes(text: str) -> None:
    """The count that keeps a reply's tables from holding the event loop must not miss a table
    markdown-it builds: line breaks as it reads them, rows it does not take for blank, tables
    in quotes and list items (review: each of these was counted as none)."""
    made = MARKDOWN.render(text)
    assert table_cells(text) >= made.count("<td") + made.count("<th") > 600
