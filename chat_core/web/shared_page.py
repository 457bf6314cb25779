"""The public page of a read-only link: GET /s/{token}, served without a login.

It shows the conversation and nothing else of the app: no scripts, no ids, no names, no links
back, one inline stylesheet. Replies go through the chat pane's own safe renderer in share mode
(chat_core/ui/render.py: sanitized HTML, images and links as text), and the Content-Security-
Policy forbids every fetch the page could make, as a second line should a renderer bug let a
tag through. Search engines are asked not to index it; browsers not to keep or refer it.
An unknown, expired and revoked link get the same 404 page.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from chat_core.errors import ChatError
from chat_core.service import ChatService
from chat_core.sharing import LINK_PATH, read_shared
from chat_core.ui.render import conversation_view
from chat_core.web.api.errors import as_chat_error

router = APIRouter(include_in_schema=False)

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
    # A revoked link must stop working at once: nothing may serve a kept copy.
    "Cache-Control": "no-store",
}
ROLE_LABELS = {"user": "User", "assistant": "Assistant"}

STYLE = """
:root { color-scheme: light dark; --fg: #1f2328; --bg: #ffffff; --muted: #59636e;
        --user: #eef3fb; --line: #d1d9e0; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --user: #172133; --line: #30363d; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 46rem; margin: 0 auto; padding: 1rem 0.9rem 3rem; }
h1 { font-size: 1.35rem; margin: 0.4rem 0 0.2rem; overflow-wrap: anywhere; }
.note { color: var(--muted); font-size: 0.9rem; margin: 0 0 1.2rem; }
.msg { padding: 0.6rem 0.8rem; margin: 0 0 0.8rem; border-radius: 0.6rem;
       border: 1px solid var(--line); overflow-wrap: anywhere; }
.msg.user { background: var(--user); }
.msg.user .text { white-space: pre-wrap; }
.role { font-size: 0.8rem; font-weight: 600; color: var(--muted); margin: 0 0 0.2rem; }
.text > :first-child { margin-top: 0; } .text > :last-child { margin-bottom: 0; }
pre { overflow-x: auto; padding: 0.6rem; border-radius: 0.4rem; border: 1px solid var(--line); }
code { font-size: 0.9em; }
table { display: block; overflow-x: auto; border-collapse: collapse; }
th, td { border: 1px solid var(--line); padding: 0.25rem 0.5rem; }
blockquote { margin: 0; padding-left: 0.8rem; border-left: 3px solid var(--line); }
"""


def _page(title: str, body: str) -> str:
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta name=\"robots\" content=\"noindex, nofollow\">"
            "<meta name=\"referrer\" content=\"no-referrer\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><main>{body}</main></body></html>\n")


def conversation_page(conversation: dict[str, str], messages: list[dict[str, str]]) -> str:
    """The whole page of a shared conversation: its title, then each user message and the
    reply shown for it, as the chat pane shows them in share mode."""
    title = conversation.get("title") or "Conversation"
    started = (conversation.get("created_at") or "")[:10]
    shown, _ = conversation_view(messages, share_mode=True)  # type: ignore[arg-type]
    entries = "".join(
        f"<section class=\"msg {m['role']}\"><p class=\"role\">{ROLE_LABELS[m['role']]}</p>"
        f"<div class=\"text\">{m['content']}</div></section>" for m in shown)
    note = "A read-only copy of a conversation, shared by its author" + (
        f"; started {html.escape(started)}." if started else ".")
    return _page(title, f"<h1>{html.escape(title)}</h1><p class=\"note\">{note}</p>{entries}")


def error_page(error: ChatError) -> HTMLResponse:
    """The 404 of every link that opens nothing (and the rare 5xx), in the same plain page."""
    text = error.message if error.status < 500 else \
        "this page cannot be shown right now; try again in a moment"
    return HTMLResponse(_page("Not available", f"<h1>Not available</h1><p>{html.escape(text)}"
                              "</p>"), status_code=error.status, headers=HEADERS)


@router.get(LINK_PATH + "{token}")
async def shared_conversation(token: str, request: Request) -> HTMLResponse:
    """The page a read-only link opens, for anyone who holds the link."""
    service: ChatService = request.app.state.chat_service
    try:
        conversation, messages = await read_shared(service.store.db, token)
    except Exception as exc:  # noqa: BLE001 - every failure is answered with the plain page
        return error_page(as_chat_error(exc, "shared_conversation"))
    return HTMLResponse(conversation_page(conversation, messages), headers=HEADERS)
