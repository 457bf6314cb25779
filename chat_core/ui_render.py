"""Turn stored messages into what the chat pane shows, safely.

Message text is stored verbatim; only its display is changed. A reply can be steered by a
prompt injection, so what it says must not make the browser act on its own:
- HTML is shown as text, not interpreted (Gradio's sanitizer already removes scripts and event
  handlers, but it keeps <img src=...>, which the browser would fetch);
- markdown images become a text placeholder: a browser fetches an image without a click, which
  would carry data to any server named in its URL;
- in share mode, links are shown as text with their target spelled out, so nothing is one
  click away from an address the user did not see.
Code blocks and inline code are left as they are: markdown renders them as text.
"""

from __future__ import annotations

import re
from typing import Any

_CODE = re.compile(r"(```.*?(?:```|$)|~~~.*?(?:~~~|$)|`[^`\n]*`)", re.DOTALL)
_IMAGE = re.compile(r"!\[([^\]]*)\]\s*(\(([^)]*)\)|\[[^\]]*\])")
_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_REF_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*\S+.*$", re.MULTILINE)
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
_BARE_URL = re.compile(r"\b(https?)://")


def _safe_text(segment: str, share_mode: bool) -> str:
    segment = _IMAGE.sub(lambda m: f"[image: {m.group(1) or 'untitled'}]", segment)
    segment = _ENTITY.sub("&amp;", segment)  # "&lt;" typed by the user shows as typed
    segment = _TAG_START.sub("&lt;", segment)
    if share_mode:
        segment = _LINK.sub(lambda m: f"{m.group(1)} ({_defang(m.group(2))})", segment)
        segment = _REF_DEFINITION.sub(lambda m: _defang(m.group(0)), segment)
        segment = _BARE_URL.sub(lambda m: f"{m.group(1)}[:]//", segment)
    return segment


def _defang(url: str) -> str:
    return _BARE_URL.sub(lambda m: f"{m.group(1)}[:]//", url)


def safe_markdown(text: str, share_mode: bool = False) -> str:
    """The text with its active parts neutralised (see the module docstring)."""
    parts = _CODE.split(text)
    return "".join(part if i % 2 else _safe_text(part, share_mode)
                   for i, part in enumerate(parts))


STATUS_NOTES = {
    "stopped": "_(stopped)_",
    "cancelled": "_(cancelled)_",
}


def reply_markdown(reply: dict[str, Any], share_mode: bool = False) -> str:
    status = reply.get("status")
    text = safe_markdown(reply.get("content") or "", share_mode)
    if status == "error":
        error = safe_markdown(reply.get("error") or "the reply failed", share_mode)
        return f"{text}\n\n⚠️ **Error:** {error}".strip()
    if status in ("pending", "streaming") and not text:
        return "…"
    note = STATUS_NOTES.get(status or "")
    return f"{text}\n\n{note}".strip() if note else text


def _shown_reply(replies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Which of a message's replies the pane shows: one being generated (the user is watching
    it), else the active one, else the newest."""
    for reply in reversed(replies):
        if reply["status"] in ("pending", "streaming"):
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
        shown.append({"role": "user", "content": safe_markdown(m["content"], share_mode)})
        ids.append(m["id"])
        alternatives = replies.get(m["id"], [])
        reply = _shown_reply(alternatives)
        state = {"last_user": m["id"], "last_reply": None, "alternatives": [], "alt_index": 0}
        if reply is not None:
            shown.append({"role": "assistant", "content": reply_markdown(reply, share_mode)})
            ids.append(reply["id"])
            finished = [r["id"] for r in alternatives
                        if r["status"] not in ("pending", "streaming")]
            state.update(
                last_reply={"id": reply["id"], "status": reply["status"],
                            "finish_reason": reply.get("finish_reason")},
                alternatives=finished,
                alt_index=finished.index(reply["id"]) if reply["id"] in finished else 0)
    state["ids"] = ids
    return shown, state

