"""Who is asking, decided once for every request, before any route or Gradio sees it.

A pure ASGI middleware rather than a FastAPI dependency: the Gradio app is mounted, and its
routes (the page, /config, /gradio_api/queue/join, uploads, the heartbeat stream) never run
FastAPI dependencies of ours; one door in front of everything cannot be forgotten on a route.
Pure ASGI (not BaseHTTPMiddleware) so server-sent events pass through unbuffered.

With accounts on (settings.accounts_enabled):
- a browser session cookie (SESSION_COOKIE, made by login_pages.py) names a person anywhere;
- /api/* and /healthz also take `Authorization: Basic` (an account's name and password: the
  verified header is remembered by its SHA-256 for BASIC_CACHE_SEC, so a password hash is not
  computed per request, and failures are throttled before any hashing) or `Bearer <API token>`;
- anything else without a person: the entry page "/" shows the login form, another page a
  browser opens is sent to /auth/login, every other request (the API, Gradio's routes) gets a
  401 JSON {"error", "code"};
- with SHARE_NOTICE, a person who has not accepted it is sent to /auth/notice (pages) or gets
  403 `notice_not_accepted`, except on /auth/* and /api/me*.
The login pages, and read-only links (/s/...), are open to all.

The person goes to `scope["state"]["person"]` (request.state.person) for every request, LOCAL
with accounts off. Gradio reads it through `gradio_user` (mount_gradio_app's auth_dependency),
so each event's gr.Request.username is the account id, queued events included.
"""

from __future__ import annotations

import asyncio

import base64
import binascii
import hashlib
import ipaddress
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from chat_core.accounts.directory import AccountDirectory
from chat_core.accounts.expiring_cache import ExpiringCache
from chat_core.accounts.person import LOCAL, Person
from chat_core.sharing import LINK_PATH
from chat_core.web import auth_html
from chat_core.web.api.errors import as_chat_error
from chat_core.web.login_throttle import (TUNNEL_HOST_SUFFIX, LoginThrottle, account_key,
                                          client_address, too_many_attempts)

SESSION_COOKIE = "dc_session"
BASIC_CACHE_SEC = 60.0
LOGIN_PATH = "/auth/login"
NOTICE_PATH = "/auth/notice"
# Open to everyone: the login, sign-up and notice pages, the scripts' login, read-only links.
PUBLIC_PREFIXES = ("/auth/", LINK_PATH)
PUBLIC_PATHS = ("/login",)
# Reachable before the notice is accepted, besides the open pages: the person's own account
# (what they consented to, their tokens, withdrawing and deleting their data).
OWN_ACCOUNT = "/api/me"
REALM = 'realm="durable-chat"'


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return ""


def session_token(scope: Scope) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(_header(scope, b"cookie"))
    except Exception:  # a malformed Cookie header names no session
        return None
    morsel = jar.get(SESSION_COOKIE)
    return morsel.value if morsel is not None else None


def served_over_https(scope: Scope, trusted_proxies: frozenset[str] = frozenset()) -> bool:
    """Whether the browser reached the app over https: directly, through the share tunnel
    (always https), or through a trusted proxy that says so in X-Forwarded-Proto."""
    if scope.get("scheme") in ("https", "wss"):
        return True
    peer = (scope.get("client") or ("", 0))[0]
    host = _header(scope, b"host").rsplit(":", 1)[0].lower()
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        loopback = False
    if loopback and host.endswith(TUNNEL_HOST_SUFFIX):
        return True
    proto = _header(scope, b"x-forwarded-proto").split(",")[-1].strip().lower()
    return peer in trusted_proxies and proto == "https"


def is_api(path: str) -> bool:
    return path.startswith("/api/") or path == "/healthz"


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _before_notice(path: str) -> bool:
    return _is_public(path) or path == OWN_ACCOUNT or path.startswith(OWN_ACCOUNT + "/")


def basic_credentials(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) from an `Authorization: Basic` header, as bytes, or None when the
    header is missing or malformed. Bytes throughout: a header with non-ASCII characters, or
    credentials that decode to non-ASCII text, must be a 401, not a 500."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


def _navigation(scope: Scope) -> bool:
    """A browser opening a page (not a script's or the page's own fetch)."""
    if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
        return False
    mode = _header(scope, b"sec-fetch-mode").lower()
    return mode == "navigate" or (not mode and "text/html" in _header(scope, b"accept"))


def _here(scope: Scope) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    return scope["path"] + (f"?{query}" if query else "")


def unauthorized(path: str) -> Response:
    """The 401 of a request without a person: the API says how to authenticate."""
    if is_api(path):
        return JSONResponse({"error": "log in: HTTP Basic with your name and password, or "
                             "Authorization: Bearer <API token>", "code": "unauthorized"},
                            status_code=401,
                            headers={"WWW-Authenticate": f"Basic {REALM}, Bearer {REALM}"})
    return JSONResponse({"error": f"log in first at {LOGIN_PATH}", "code": "unauthorized"},
                        status_code=401, headers={"WWW-Authenticate": f"Session {REALM}"})


def _notice_first() -> Response:
    return JSONResponse({"error": f"accept the notice first: open {NOTICE_PATH} in a browser",
                         "code": "notice_not_accepted"}, status_code=403)


def to_page(path: str, scope: Scope) -> Response:
    """A redirect to a login or notice page that comes back here afterwards."""
    here = _here(scope)
    target = path if here == "/" else f"{path}?next={quote(here, safe='/')}"
    return RedirectResponse(target, status_code=303)


class AccountAuth:
    """The middleware (see the module docstring). `accounts` None: accounts off."""

    def __init__(self, app: ASGIApp, accounts: AccountDirectory | None,
                 throttle: LoginThrottle | None = None,
                 trusted_proxies: frozenset[str] = frozenset(),
                 notice_required: bool = False,
                 basic_cache: ExpiringCache[str] | None = None) -> None:
        self.app = app
        self.accounts = accounts
        self.throttle = throttle or LoginThrottle()
        self.trusted_proxies = trusted_proxies
        self.notice_required = notice_required
        # Verified Basic headers (by SHA-256) -> account id.
        self.basic_cache = basic_cache if basic_cache is not None else \
            ExpiringCache(BASIC_CACHE_SEC)
        self._verifying: dict[bytes, asyncio.Lock] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        if self.accounts is None:
            state["person"] = LOCAL
            await self.app(scope, receive, send)
            return
        try:
            person, refusal = await self._decide(scope)
        except Exception as exc:  # the database away: the API's 503, never a traceback
            error = as_chat_error(exc, "login")
            person, refusal = None, JSONResponse(error.to_json(), status_code=error.status)
        if refusal is not None:
            await _refuse(refusal, scope, receive, send)
            return
        state["person"] = person
        await self.app(scope, receive, send)

    async def _decide(self, scope: Scope) -> tuple[Person | None, Response | None]:
        """The person, or the answer instead of the app's: a login, the notice, a 401/403."""
        assert self.accounts is not None
        person, refusal = await self._identify(scope)
        path = scope["path"]
        if refusal is None and person is None and not _is_public(path):
            refusal = self._login_first(scope)
        if refusal is None and person is not None and self.notice_required \
                and not _before_notice(path) and await self.accounts.consent_of(person) is None:
            refusal = to_page(NOTICE_PATH, scope) if _navigation(scope) else _notice_first()
        return person, refusal

    def _login_first(self, scope: Scope) -> Response:
        """The answer to a request without a person: the entry page shows the login form in
        place (as Gradio's login did), another page a browser opens goes to the login page,
        anything else is a 401."""
        assert self.accounts is not None
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and \
                scope["path"] == "/":
            return auth_html.login_page(next_path=_here(scope),
                                        signup_open=bool(self.accounts.settings.share_invite))
        return to_page(LOGIN_PATH, scope) if _navigation(scope) else unauthorized(scope["path"])

    async def _identify(self, scope: Scope) -> tuple[Person | None, Response | None]:
        """The person, or a refusal for credentials that are wrong or throttled."""
        assert self.accounts is not None
        authorization = _header(scope, b"authorization")
        if authorization and is_api(scope["path"]):
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                person = await self.accounts.person_for_token(value.strip())
                return person, None if person else unauthorized(scope["path"])
            if scheme.lower() == "basic":
                return await self._basic(scope, authorization)
            return None, unauthorized(scope["path"])
        return await self.accounts.person_for_session(session_token(scope)), None

    async def _basic(self, scope: Scope, header: str) -> tuple[Person | None, Response | None]:
        """Remembered by the credentials, not the header's text: spelling the same ones in
        another header (more spaces) must not force a hash per request. Requests arriving
        together with the same credentials wait for one verification."""
        given = basic_credentials(header)
        if given is None:
            return None, unauthorized(scope["path"])
        account = account_key(given[0].decode("utf-8", "replace"))
        digest = hashlib.sha256(account.encode() + b"\0" + given[1]).digest()
        lock = self._verifying.setdefault(digest, asyncio.Lock())
        try:
            async with lock:
                return await self._basic_once(scope, given, account, digest)
        finally:
            if not lock.locked() and self._verifying.get(digest) is lock:
                del self._verifying[digest]

    async def _basic_once(self, scope: Scope, given: tuple[bytes, bytes], account: str,
                          digest: bytes) -> tuple[Person | None, Response | None]:
        assert self.accounts is not None
        known = self.basic_cache.get(digest)
        if isinstance(known, str):
            person = await self.accounts.person_by_id(known)  # None once disabled
            return person, None if person else unauthorized(scope["path"])
        name = given[0].decode("utf-8", "replace")
        address = client_address(scope, self.trusted_proxies)
        wait = self.throttle.check(account, address)  # before any password hashing
        if wait > 0:
            return None, too_many_attempts(wait)
        try:
            password: str | None = given[1].decode("utf-8")
        except UnicodeDecodeError:
            password = None
        person = await self.accounts.login(name, password) if password is not None else None
        if person is None:
            return None, unauthorized(scope["path"])
        self.throttle.succeeded(account, address)
        self.basic_cache.put(digest, str(person.id))
        return person, None


async def _refuse(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await response(scope, receive, send)


def gradio_user(request: Request) -> str | None:
    """mount_gradio_app's auth_dependency (called synchronously by Gradio for each of its
    routes): the account id of the person AccountAuth found, which Gradio hands to every event
    as gr.Request.username. None (Gradio answers 401) cannot happen behind AccountAuth."""
    person = request.scope.get("state", {}).get("person")
    return person.key if isinstance(person, Person) and person.id is not None else None


__all__ = ["AccountAuth", "SESSION_COOKIE", "basic_credentials", "gradio_user", "served_over_https",
           "session_token", "unauthorized", "is_api"]
