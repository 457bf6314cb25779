"""The HTML of the login, sign-up, notice and logout pages: small, plain, usable at 390 px.

No script and no external resource: one inline stylesheet, and a Content-Security-Policy that
allows nothing else (forms post only to this app). Every value shown is escaped.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Iterable

from fastapi.responses import HTMLResponse

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store",
           "Referrer-Policy": "same-origin"}

STYLE = """
:root { color-scheme: light dark; --fg: #1f2328; --bg: #fff; --muted: #59636e; --line: #d1d9e0;
        --accent: #2f6feb; --bad: #b42318; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #3d444d; --bad: #ff7b72; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 28rem; margin: 0 auto; padding: 1.5rem 1rem; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
label { display: block; margin: .8rem 0 .2rem; font-weight: 600; }
input { width: 100%; padding: .6rem; font: inherit; color: inherit; background: transparent;
        border: 1px solid var(--line); border-radius: 6px; }
button { margin-top: 1.2rem; width: 100%; padding: .7rem; font: inherit; font-weight: 600;
         color: #fff; background: var(--accent); border: 0; border-radius: 6px; }
.error { color: var(--bad); border-left: 3px solid var(--bad); padding-left: .6rem; }
.muted { color: var(--muted); font-size: .9rem; }
.notice { border: 1px solid var(--line); border-radius: 6px; padding: .2rem 1rem;
          max-height: 55vh; overflow: auto; overflow-wrap: anywhere; }
a { color: var(--accent); }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, status: int = 200,
         headers: dict[str, str] | None = None) -> HTMLResponse:
    text = ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            "<meta name=robots content=noindex>"
            f"<title>{esc(title)} · Durable chat</title><style>{STYLE}</style></head>"
            f"<body><main><h1>{esc(title)}</h1>{body}</main></body></html>")
    return HTMLResponse(text, status_code=status, headers={**HEADERS, **(headers or {})})


def _error(message: str) -> str:
    return f"<p class=error role=alert>{esc(message)}</p>" if message else ""


def _hidden(name: str, value: str) -> str:
    return f"<input type=hidden name={name} value='{esc(value)}'>"


def _field(label: str, name: str, kind: str = "text", value: str = "",
           autocomplete: str = "") -> str:
    filled = f" value='{esc(value)}'" if value else ""
    auto = f" autocomplete={autocomplete}" if autocomplete else ""
    return (f"<label for={name}>{esc(label)}</label>"
            f"<input id={name} name={name} type={kind}{filled}{auto} required>")


def login_page(name: str = "", error: str = "", next_path: str = "/",
               signup_open: bool = False, status: int = 200,
               headers: dict[str, str] | None = None) -> HTMLResponse:
    signup = ("<p class=muted>New here and given an invite code? "
              "<a href='/auth/signup'>Sign up</a></p>") if signup_open else ""
    body = (f"{_error(error)}<form method=post action='/auth/login'>"
            f"{_hidden('next', next_path)}"
            f"{_field('Name', 'username', value=name, autocomplete='username')}"
            f"{_field('Password', 'password', 'password', autocomplete='current-password')}"
            f"<button type=submit>Login</button></form>{signup}")
    return page("Log in", body, status, headers)


def signup_page(name: str = "", invite: str = "", error: str = "",
                status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    fields = [("Invite code", "invite", "password", invite, "off"),
              ("Name (letters, digits, spaces, . _ -)", "username", "text", name, "username"),
              ("Password (at least 8 characters)", "password", "password", "", "new-password"),
              ("The same password again", "password2", "password", "", "new-password")]
    body = (f"{_error(error)}<form method=post action='/auth/signup'>"
            f"{''.join(_field(*field) for field in fields)}"
            "<button type=submit>Sign up</button></form>"
            "<p class=muted>Have an account? <a href='/auth/login'>Log in</a></p>")
    return page("Sign up", body, status, headers)


def notice_page(text: str, next_path: str, accepted_at: datetime | None) -> HTMLResponse:
    paragraphs = "".join(f"<p>{esc(p).replace(chr(10), '<br>')}</p>"
                         for p in _paragraphs(text))
    if accepted_at is not None:
        when = accepted_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
        action = (f"<p class=muted>You accepted this on {esc(when)} UTC.</p>"
                  f"<p><a href='{esc(next_path)}'>Continue</a></p>")
    else:
        action = (f"<form method=post action='/auth/notice'>{_hidden('next', next_path)}"
                  "<button type=submit>Accept and continue</button></form>")
    return page("Before you start", f"<div class=notice>{paragraphs}</div>{action}")


def _paragraphs(text: str) -> Iterable[str]:
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n")]
    return [b for b in blocks if b]


def logout_page(name: str) -> HTMLResponse:
    body = (f"<p>Logged in as <strong>{esc(name)}</strong>.</p>"
            "<form method=post action='/auth/logout'><button type=submit>Log out</button></form>"
            "<p class=muted><a href='/'>Back to the chat</a></p>")
    return page("Log out", body)


def message_page(title: str, message: str, status: int,
                 headers: dict[str, str] | None = None) -> HTMLResponse:
    return page(title, f"{_error(message)}<p><a href='/auth/login'>Log in</a></p>", status,
                headers)
