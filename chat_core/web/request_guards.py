"""Request-level defences that hold for every route, the REST API's and Gradio's alike.

- Host allow-list: a page on another site cannot reach the app through DNS rebinding (its
  requests carry that site's name in `Host`), so only the names the app is served under pass.
- No cross-origin reads: the parent app's CORS policy allows no origin, and Gradio defers to it
  (without one, Gradio reflects any Origin with credentials for non-localhost hosts).
- No cross-site writes: a state-changing request is refused when the browser says it comes
  from another site (`Sec-Fetch-Site`), names another `Origin`, or (REST API) posts a form
  content type that a cross-site HTML form can send without a preflight. Clients that send
  none of these headers, like the seed's, are not browsers and keep working.
- Gradio's login cookie is sent `SameSite=Lax` instead of `None`: the app is never embedded
  in another site, so other sites' requests need not carry it; and no other site may frame it.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Iterable

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

SHARE_HOSTS = ("*.gradio.live",)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
_UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Content types an HTML form (or a no-cors fetch) can send cross-site without a preflight.
_FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
# GET routes that change state: Gradio's logout ends every session of the account.
_UNSAFE_GETS = ("/logout",)


def allowed_hosts(listen_host: str, extra: Iterable[str] = (), share_mode: bool = False
                  ) -> list[str]:
    """The `Host` names the app answers to: loopback, the address it listens on, the machine's
    own names when it listens on every interface, the share tunnel's, and ALLOWED_HOSTS."""
    hosts = list(LOCAL_HOSTS)
    if listen_host in ("0.0.0.0", "::", ""):
        hosts += _machine_names()
    else:
        hosts.append(listen_host)
    if share_mode:
        hosts += SHARE_HOSTS
    hosts += [h.strip().lower() for h in extra if h.strip()]
    return sorted(set(hosts))


def _machine_names() -> list[str]:
    names = {socket.gethostname(), socket.getfqdn()}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            names.add(str(info[4][0]))
    except OSError:  # a machine whose name does not resolve still has ALLOWED_HOSTS
        pass
    return sorted(n.lower() for n in names if n)


def install_request_guards(app: FastAPI, hosts: list[str]) -> None:
    """Add the middleware in the order requests meet it: host check first."""
    app.add_middleware(CrossSiteGuard)
    # No origin is allowed: the UI and the API are served from one origin, so no browser
    # needs CORS; Gradio sees this middleware and adds none of its own.
    app.add_middleware(CORSMiddleware, allow_origins=[], allow_credentials=False)
    app.add_middleware(HostGuard, allowed=hosts)


def host_allowed(host_header: str, allowed: list[str]) -> bool:
    """`Host` without its port against names and `*.suffix` patterns."""
    host = host_header.strip().lower()
    host = host[: host.rindex("]") + 1] if host.startswith("[") and "]" in host \
        else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return any(host == name or (name.startswith("*.") and host.endswith(name[1:]))
               for name in allowed)


class HostGuard:
    """Refuses a request whose `Host` is not one the app is served under (400), saying how
    to allow a name, and logs each refused name once: a LAN address, say, that the operator
    meant to serve belongs in ALLOWED_HOSTS."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = allowed
        self.logged: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host") or ""
        if host_allowed(host, self.allowed):
            await self.app(scope, receive, send)
            return
        name = host[:100]
        if name not in self.logged and len(self.logged) < 100:
            self.logged.add(name)
            log.warning("refused requests for Host %r; if the app is reached under that name, "
                        "add it to ALLOWED_HOSTS", name)
        if scope["type"] == "http":
            await refuse(send, 400, "unknown_host",
                         f"this app is not served under the name {name!r}; its operator can "
                         "add the name to ALLOWED_HOSTS")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def cross_site_reason(scope: Scope) -> str | None:
    """Why this request looks like another site's, or None. Gradio's routes are refused to
    other sites for every method: none of them is meant to be linked to or embedded, and one
    that serves a file (or fetched a URL) would open it in this app's origin."""
    method, path = scope["method"], scope["path"]
    fetch_site = (_header(scope, b"sec-fetch-site") or "").lower()
    foreign = fetch_site in ("cross-site", "same-site")
    if foreign and path.startswith("/gradio_api/"):
        return f"Sec-Fetch-Site: {fetch_site}"
    if method not in _UNSAFE_METHODS and not path.endswith(_UNSAFE_GETS):
        return None
    if foreign:
        return f"Sec-Fetch-Site: {fetch_site}"
    origin = _header(scope, b"origin")
    host = _header(scope, b"host") or ""
    if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
        return f"Origin {origin[:100]!r} is not this app's"
    ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if method in _UNSAFE_METHODS and path.startswith("/api/") and ctype in _FORM_TYPES:
        return f"Content-Type {ctype} (a form's) on the REST API"
    return None


class CrossSiteGuard:
    """Refuses cross-site state changes (403) and rewrites the login cookie to SameSite=Lax."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reason = cross_site_reason(scope)
        if reason is not None:
            await refuse(send, 403, "cross_site_request",
                          f"refused a cross-site request ({reason}); use the app's own page, "
                          "or call the API without browser credentials")
            return
        await self.app(scope, receive, _hardened(send))


# Every response: never framed by another site (clickjacking), never content-sniffed.
_HARDENING = [(b"x-frame-options", b"DENY"),
              (b"content-security-policy", b"frame-ancestors 'none'"),
              (b"x-content-type-options", b"nosniff")]


def _hardened(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, v.replace(b"SameSite=none", b"SameSite=lax").replace(b"SameSite=None",
                                                                         b"SameSite=lax"))
                if k.lower() == b"set-cookie" else (k, v)
                for k, v in message.get("headers", [])]
            present = {k.lower() for k, _ in headers}
            message["headers"] = headers + [h for h in _HARDENING if h[0] not in present]
        await send(message)
    return wrapped


async def refuse(send: Send, status: int, code: str, message: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error in the REST API's {"error", "code"} shape, from inside a middleware."""
    body = json.dumps({"error": message, "code": code}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands a middleware's buffered body to the app behind it."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as servers do

    return replay


__all__ = ["allowed_hosts", "install_request_guards", "host_allowed", "HostGuard",
           "cross_site_reason", "CrossSiteGuard", "SHARE_HOSTS", "refuse", "replay_body"]
