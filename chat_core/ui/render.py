"""Turn stored messages into what the chat pane shows, safely.

Message text is stored verbatim; only its display is changed. A reply can be steered by a
prompt injection, so nothing it says may make the browser fetch anything by itself (an image,
a stylesheet, a frame, a form target: each would carry data to a server named in the reply).

Replies are Markdown, so they are parsed by a real Markdown parser (markdown-it-py: CommonMark
plus tables and strikethrough, raw HTML off, so every `<` the model writes stays text) and the
HTML it produces goes through an allow-list sanitizer (nh3) as a second, independent line:
only text-formatting tags survive, and the only URL-bearing attribute is an http(s) `href`.
Regex rewriting of Markdown, which this replaced, was bypassed by every construct its regexes
did not foresee (unclosed fences, nested brackets, reference definitions, ...).
- Images become the text `[image: alt]`.
- Links: locally an `<a>` only for absolute http(s) URLs (opening in a new tab, no referrer);
  any other target is spelled out after the label as text. In share mode there are no links
  at all: the label is followed by the target as text, so nothing is one click away from an
  address the user did not see.
User messages are shown as typed: HTML-escaped plain text (CSS keeps their line breaks).
The chat pane renders this HTML as it is (no second Markdown pass, no LaTeX).
"""

from __future__ import annotations

import html
import re
import threading
from collections import OrderedDict
from typing import Any, Protocol
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt

from chat_core.errors import ChatError
from chat_core.states import CANCELLED, COMPLETE, ERROR, IN_FLIGHT, STOPPED

_BLOCK_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
               "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td"}
_INLINE_TAGS = {"strong", "em", "del", "s", "code"}
REPLY_TAGS = frozenset(_BLOCK_TAGS | _INLINE_TAGS)   # share mode: these only
LINK_REL = "noopener noreferrer nofollow"
_ALIGN = {"align": {"left", "center", "right"}}


def _cleaner(links: bool) -> nh3.Cleaner:
    """The allow-list: nothing outside it survives, whatever the Markdown stage let through."""
    return nh3.Cleaner(
        tags=set(REPLY_TAGS | ({"a"} if links else set())),
        attributes={"ol": {"start"}, **({"a": {"href"}} if links else {})},
        tag_attribute_values={"th": _ALIGN, "td": _ALIGN},
        set_tag_attribute_values={"a": {"target": "_blank"}} if links else None,
        link_rel=LINK_REL, url_schemes={"http", "https"}, url_relative="deny",
        strip_comments=True)


_CLEAN_LOCAL = _cleaner(links=True)
_CLEAN_SHARED = _cleaner(links=False)


def _is_web_url(url: str) -> bool:
    """Absolute http(s) with a host: not relative, not `//host` (which inherits the page's
    scheme), not javascript:/data:/anything else."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _image(self: Any, tokens: list[Any], idx: int, options: Any, env: dict[str, Any]) -> str:
    alt = self.renderInlineAsText(tokens[idx].children or [], options, env)
    return html.escape(f"[image: {alt or 'untitled'}]")


def _link_open(self: Any, tokens: list[Any], idx: int, options: Any, env: dict[str, Any]
               ) -> str:
    """A live link, or nothing (the label then shows as text and link_close adds the target).
    Links cannot nest in CommonMark, so a stack of one is enough to pair open and close."""
    token = tokens[idx]
    href = token.attrGet("href") or ""
    live = not env["share"] and _is_web_url(href)
    target = "" if token.info == "auto" else _MD.normalizeLinkText(href)
    env["links"].append((live, target))
    return f'<a href="{html.escape(href)}">' if live else ""


def _link_close(self: Any, tokens: list[Any], idx: int, options: Any, env: dict[str, Any]
                ) -> str:
    live, target = env["links"].pop()
    if live:
        return "</a>"
    return html.escape(f" ({target})") if target else ""


def _cell_open(self: Any, tokens: list[Any], idx: int, options: Any, env: dict[str, Any]
               ) -> str:
    """Column alignment as `align=`: markdown-it writes a style attribute, which is not
    allowed (CSS can fetch)."""
    token = tokens[idx]
    align = (token.attrGet("style") or "").removeprefix("text-align:")
    return f'<{token.tag} align="{align}">' if align in _ALIGN["align"] else f"<{token.tag}>"


def _markdown(tables: bool = True) -> MarkdownIt:
    # breaks: a single newline is a line break, as the pane showed replies before (GFM style).
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False,
                                   "breaks": True})
    md.enable(["table", "strikethrough"] if tables else ["strikethrough"])
    for name, rule in (("image", _image), ("link_open", _link_open),
                       ("link_close", _link_close), ("th_open", _cell_open),
                       ("td_open", _cell_open)):
        md.add_render_rule(name, rule)
    return md


_MD = _markdown()
# The parser and renderer as configured here (ui/streamed_render.py renders with them too).
MARKDOWN = _MD
# A table's short rows are filled up to its head's columns: a reply of a dozen tables with
# 400-column heads over one-character rows (26,000 characters) took 15 s of CPU to render,
# into 8 MB of HTML, the event loop held all along (markdown-it bounds the cells it fills in one
# table, not in a reply). Past MAX_TABLE_CELLS in all, a reply's tables show as their text.
MAX_TABLE_CELLS = 10_000
_NO_TABLES = _markdown(tables=False)
# Line breaks as markdown-it reads them (it turns "\r\n" and "\r" into "\n" before parsing).
_LINE_BREAK = re.compile(r"\r\n?|\n")


def table_cells(text: str) -> int:
    """At least as many cells as the text's tables would have, in one pass without
    backtracking: for each line that could be a table's delimiter row (only pipes, dashes,
    colons and blanks once any indentation and quote marks are off, under a line that is not
    blank), its columns times the lines from its head to the next blank one (blank as
    markdown-it sees it: spaces and tabs only)."""
    if "|" not in text or "-" not in text:
        return 0
    lines = _LINE_BREAK.split(text)
    cells, rows_below = 0, 0
    for i in range(len(lines) - 1, 0, -1):
        if i + 1 < len(lines):
            rows_below = rows_below + 1 if lines[i + 1].strip(" \t") else 0
        body = lines[i].lstrip(" \t>")
        if "-" in body and not body.strip("|-: \t") and lines[i - 1].strip(" \t"):
            cells += (body.count("|") + 1) * (rows_below + 1)
    return cells


def markdown_for(text: str) -> MarkdownIt:
    """The parser for `text`: tables left as text past MAX_TABLE_CELLS."""
    return _MD if table_cells(text) <= MAX_TABLE_CELLS else _NO_TABLES


def valid_text(text: str) -> str:
    """Text that can be encoded: an unpaired surrogate (which the sanitizer and the JSON sent
    to the page cannot carry) becomes U+FFFD, as does NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text.replace("\x00", "\ufffd")


def render_reply(text: str, share_mode: bool = False) -> str:
    """A reply's Markdown as sanitized HTML (see the module docstring)."""
    text = valid_text(text)
    raw = markdown_for(text).render(text, {"share": share_mode, "links": []})
    return sanitize(raw, share_mode).strip()


def sanitize(raw: str, share_mode: bool = False) -> str:
    """The rendered Markdown's HTML through the allow-list (see the module docstring)."""
    return (_CLEAN_SHARED if share_mode else _CLEAN_LOCAL).clean(raw)


# A conversation is redrawn (opened, reloaded, a reply finished) from its stored replies, up to
# 100 of them: finished replies are rendered once, not at every redraw. Bounded in entries, in
# the length of a reply kept and in all that is kept, HTML included (a table's empty cells make
# HTML hundreds of times longer than its Markdown); replies being streamed change at every
# update and would only push finished ones out, so they are rendered afresh.
_CACHED_CHARS = 16_000
_CACHED_REPLIES = 512
_CACHED_TOTAL_CHARS = 32_000_000


class Renderer(Protocol):
    """How the one following a reply renders it (ui/streamed_render.py's StreamedRender)."""
    share_mode: bool

    def render(self, text: str) -> str: ...


class FinishedReplies:
    """The HTML of finished replies by (text, share mode), the most recently used kept. A reply
    that ends while a page follows it is entered as that page's renderer drew it (its finished
    blocks already rendered, ui/streamed_render.py, which equals a whole render:
    tests/test_streamed_render.py), so that its end costs the parse of its last block, not of
    all of it (a fifth of the chat tab's CPU per token with model-like replies,
    docs/performance.md); redraws while it is kept read it from here."""

    def __init__(self, size: int = _CACHED_REPLIES,
                 total_chars: int = _CACHED_TOTAL_CHARS) -> None:
        self._size, self._total_chars = size, total_chars
        self._html: OrderedDict[tuple[str, bool], str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()  # pages are drawn on the event loop, exports on threads

    def html(self, text: str, share_mode: bool, renderer: Renderer | None = None) -> str:
        """`text`'s HTML: kept, or made by `renderer` (a whole render without one) and kept."""
        if renderer is not None and renderer.share_mode != share_mode:
            raise ValueError("a reply rendered for one mode cannot be kept for the other")
        key = (text, share_mode)
        with self._lock:
            kept = self._html.get(key)
            if kept is not None:
                self._html.move_to_end(key)
                return kept
        made = renderer.render(text) if renderer is not None else render_reply(text, share_mode)
        with self._lock:
            if key not in self._html:
                self._html[key] = made
                self._chars += len(text) + len(made)
            while len(self._html) > 1 and (len(self._html) > self._size
                                           or self._chars > self._total_chars):
                (old, _), old_html = self._html.popitem(last=False)
                self._chars -= len(old) + len(old_html)
        return made


_FINISHED = FinishedReplies()


def user_html(text: str) -> str:
    """A user message as typed: plain text, HTML-escaped (the pane keeps its line breaks)."""
    return html.escape(valid_text(text), quote=False)


_MD_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAKS = re.compile(r"\s*[\r\n\u2028\u2029\x0b\x0c\x85]+\s*")


def safe_markdown(text: str) -> str:
    """Text to interpolate into a Markdown notice, made inert: every ASCII punctuation mark is
    backslash-escaped (no emphasis, link, image, HTML, entity or autolink can start) and line
    breaks become spaces (no heading, list, fence or reference definition can start)."""
    return _MD_PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", valid_text(text)))


def warning(exc: ChatError) -> str:
    """A refusal as a notice line shows it: the message made inert for Markdown."""
    return f"⚠️ {safe_markdown(exc.message)}"


STATUS_NOTES = {
    STOPPED: "<p><em>(stopped)</em></p>",
    CANCELLED: "<p><em>(cancelled)</em></p>",
}


def reply_markdown(reply: dict[str, Any], share_mode: bool = False,
                   streamed: Renderer | None = None) -> str:
    """What the pane shows for a reply (HTML, despite the name kept for its callers): its
    text, then its status (an error, a pending mark, or a stopped/cancelled note).
    `streamed`: how the one following a reply renders it as it is generated and as it ends
    (ui/streamed_render.py: its finished blocks once)."""
    status = reply.get("status")
    content = reply.get("content") or ""
    if status not in IN_FLIGHT and len(content) <= _CACHED_CHARS:
        text = _FINISHED.html(content, share_mode, streamed)
    elif streamed is not None:
        text = streamed.render(content)
    else:
        text = render_reply(content, share_mode)
    if status == ERROR:
        error = html.escape(valid_text(reply.get("error") or "the reply failed"), quote=False)
        return f"{text}\n<p>⚠️ <strong>Error:</strong> {error}</p>".strip()
    if status in IN_FLIGHT and not text:
        return "…"
    note = STATUS_NOTES.get(status or "")
    return f"{text}\n{note}".strip() if note else text


def reply_facts(reply: dict[str, Any]) -> str:
    """The small line under a finished reply: its model, how fast it came (tokens a second
    after the first) and its time to first token; "" when nothing was measured."""
    if reply.get("status") not in (COMPLETE, STOPPED) or not reply.get("model"):
        return ""
    facts = [html.escape(valid_text(str(reply["model"])[:120]), quote=False)]
    tokens, ttft, latency = (reply.get("completion_tokens"), reply.get("ttft_ms"),
                             reply.get("latency_ms"))
    if isinstance(tokens, int) and tokens > 1 and isinstance(ttft, (int, float)) and \
            isinstance(latency, (int, float)) and latency > ttft:
        approx = "~" if reply.get("tokens_estimated") else ""
        facts.append(f"{approx}{(tokens - 1) / ((latency - ttft) / 1000):.0f} tokens/s")
    if isinstance(ttft, (int, float)):
        facts.append(f"first token {ttft / 1000:.2f} s")
    return f'<p class="reply-facts"><small>{" · ".join(facts)}</small></p>'


def _shown_reply(replies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Which of a message's replies the pane shows: one being generated (the user is watching
    it), else the active one, else the newest."""
    for reply in reversed(replies):
        if reply["status"] in IN_FLIGHT:
            return reply
    active = [r for r in replies if r.get("active")]
    if active:
        return active[-1]
    return replies[-1] if replies else None


def conversation_view(messages: list[dict[str, Any]], share_mode: bool = False
                      ) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The chat pane's messages (each user message, then the reply shown for it), and what the
    actions need: the message id behind each entry, the newest turn's user message and reply,
    and that reply's alternatives (oldest first) with the position of the one shown."""
    replies: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        if m["role"] == "assistant":
            replies.setdefault(m["parent_id"], []).append(m)  # oldest first
    shown: list[dict[str, str]] = []
    ids: list[str] = []
    state: dict[str, Any] = {}
    for m in messages:
        if m["role"] != "user":
            continue
        shown.append({"role": "user", "content": user_html(m["content"])})
        ids.append(m["id"])
        alternatives = replies.get(m["id"], [])
        reply = _shown_reply(alternatives)
        state = {"last_user": m["id"], "last_reply": None, "alternatives": [], "alt_index": 0}
        if reply is not None:
            content = reply_markdown(reply, share_mode)
            facts = reply_facts(reply)
            shown.append({"role": "assistant",
                          "content": f"{content}\n{facts}" if facts else content})
            ids.append(reply["id"])
            finished = [r["id"] for r in alternatives
                        if r["status"] not in IN_FLIGHT]
            state.update(
                last_reply={"id": reply["id"], "status": reply["status"],
                            "finish_reason": reply.get("finish_reason")},
                alternatives=finished,
                alt_index=finished.index(reply["id"]) if reply["id"] in finished else 0)
    state["ids"] = ids
    return shown, state
