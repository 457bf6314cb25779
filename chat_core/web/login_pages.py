"""Logging in, signing up, the notice and logging out: our own login in front of the app.

    GET/POST /auth/login      name and password -> a session cookie, then back where one was
    GET/POST /auth/signup     with SHARE_INVITE only: the code, a name and a password
    GET/POST /auth/logout     a page with the button / end the session (GET /logout: the page)
    GET/POST /auth/notice     SHARE_NOTICE, and the person's acceptance (recorded with its time)
    POST     /login           for scripts, as Gradio's login was: form fields username and
                              password; 200 {"success": true} with the cookie, or a 401

Sessions live in PostgreSQL (accounts/directory.py), so a restart of the app logs nobody out,
unlike Gradio's own login. The cookie is HttpOnly, SameSite=Lax (another site's form post does
not carry it) and Secure whenever the browser came over https. Cross-site posts (a login CSRF)
are refused by request_guards.CrossSiteGuard: another site's Origin or Sec-Fetch-Site is a 403
before these routes run. Every try is throttled (login_throttle.py) before any hashing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from chat_core.accounts.directory import AccountDirectory
from chat_core.accounts.person import Person
from chat_core.config import Settings
from chat_core.errors import ChatError, MalformedRequest, PayloadTooLarge, UnsupportedMediaType
from chat_core.web import auth_html
from chat_core.web.auth import SESSION_COOKIE, served_over_https, session_token
from chat_core.web.login_throttle import (LoginThrottle, account_key, client_address,
                                          too_many_attempts)
from chat_core.web.request_guards import replay_body

router = APIRouter(include_in_schema=False)

MAX_FORM_BYTES = 64 * 1024  # a 10 kB password fits; a bigger form is no login
MAX_NOTICE_BYTES = 200_000
MAX_NEXT_CHARS = 2000
SIGNUP_ACCOUNT = "(sign-up)"  # the throttle's account for invite-code tries
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


# -- what the routes share --------------------------------------------------------------------

def _accounts(request: Request) -> AccountDirectory | None:
    return getattr(request.app.state, "accounts", None)


def _throttle(request: Request) -> LoginThrottle:
    throttle: LoginThrottle = request.app.state.login_throttle
    return throttle


def _address(request: Request) -> str:
    return client_address(request.scope, request.app.state.trusted_proxies)


def _person(request: Request) -> Person | None:
    person = request.scope.get("state", {}).get("person")
    return person if isinstance(person, Person) and person.id is not None else None


def safe_next(value: Any) -> str:
    """Where to go after logging in: a path of this app only (no other site, no scheme)."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > MAX_NEXT_CHARS:
        return "/"
    if value.startswith(("//", "/\\", "/auth/logout")) or \
            any(ord(ch) < 0x20 or ch == "\\" for ch in value):
        return "/"
    return value


async def read_form(request: Request) -> dict[str, str]:
    """The posted form's fields (the last of repeated ones), at most MAX_FORM_BYTES; files and
    other content types are refused."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in _FORM_TYPES:
        raise UnsupportedMediaType(f"post the form (application/x-www-form-urlencoded), got "
                                   f"{ctype[:60] or 'no Content-Type'}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLarge(f"the form is larger than {MAX_FORM_BYTES // 1024} KiB")
    replayed = Request(request.scope, replay_body(bytes(body), request.receive))
    try:
        form = await replayed.form(max_files=0, max_fields=20)
    except Exception:  # malformed, or a file: either way not our form
        raise MalformedRequest("the form could not be read; post name=value fields") from None
    try:
        return {k: v for k, v in form.multi_items() if isinstance(v, str)}
    finally:
        await form.close()


def set_session_cookie(response: Response, request: Request, token: str,
                       settings: Settings) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=int(settings.share_session_days * 86400),
                        path="/", httponly=True, samesite="lax",
                        secure=served_over_https(request.scope, request.app.state.trusted_proxies))


def _no_accounts() -> Response:
    return auth_html.message_page("Not found", "this app has no accounts: no login needed", 404)


@lru_cache(maxsize=4)
def notice_text(value: str) -> str:
    """SHARE_NOTICE's text: the contents of the file it names, or the value itself."""
    try:
        path = Path(value).expanduser()
        if len(value) < 1024 and "\n" not in value and path.is_file():
            return path.read_bytes()[:MAX_NOTICE_BYTES].decode("utf-8", "replace")
    except OSError:
        pass
    return value


# -- log in -----------------------------------------------------------------------------------

@router.get("/auth/login")
async def login_form(request: Request) -> Response:
    accounts = _accounts(request)
    if accounts is None:
        return _no_accounts()
    next_path = safe_next(request.query_params.get("next"))
    if _person(request) is not None:
        return RedirectResponse(next_path, status_code=303)
    return auth_html.login_page(next_path=next_path,
                                signup_open=bool(accounts.settings.share_invite))


@router.post("/auth/login")
async def login(request: Request) -> Response:
    return await _login(request, for_script=False)


@router.post("/login")
async def script_login(request: Request) -> Response:
    """For scripts: form fields username and password, a JSON answer and the cookie."""
    return await _login(request, for_script=True)


async def _login(request: Request, for_script: bool) -> Response:
    accounts = _accounts(request)
    if accounts is None:
        return _no_accounts()
    try:
        form = await read_form(request)
    except ChatError as exc:
        return _form_error(exc, for_script)
    name, next_path = form.get("username", "").strip(), safe_next(form.get("next"))
    address, account = _address(request), account_key(name)
    wait = _throttle(request).check(account, address)  # before any hashing
    signup_open = bool(accounts.settings.share_invite)
    if wait > 0:
        refused = too_many_attempts(wait)
        if for_script:
            return refused
        seconds = refused.headers["retry-after"]
        return auth_html.login_page(name, f"too many failed logins; wait {seconds} s before "
                                    "trying again", next_path, signup_open, 429,
                                    {"Retry-After": seconds})
    person = await accounts.login(name, form.get("password", ""))
    if person is None:
        message = "wrong name or password"
        return JSONResponse({"error": message, "code": "unauthorized"}, 401) if for_script \
            else auth_html.login_page(name, message, next_path, signup_open, 401)
    _throttle(request).succeeded(account, address)
    answer: Response = JSONResponse({"success": True, "name": person.name}) if for_script \
        else RedirectResponse(next_path, status_code=303)
    set_session_cookie(answer, request, await accounts.create_session(person), accounts.settings)
    return answer


def _form_error(exc: ChatError, for_script: bool) -> Response:
    if for_script:
        return JSONResponse(exc.to_json(), status_code=exc.status)
    return auth_html.message_page("Log in", exc.message, exc.status)


# -- sign up ----------------------------------------------------------------------------------

@router.get("/auth/signup")
async def signup_form(request: Request) -> Response:
    accounts = _accounts(request)
    if accounts is None or not accounts.settings.share_invite:
        return auth_html.message_page("Sign up", "sign-up is off on this app; ask the host for "
                                      "an account", 404)
    return auth_html.signup_page()


@router.post("/auth/signup")
async def signup(request: Request) -> Response:
    accounts = _accounts(request)
    if accounts is None or not accounts.settings.share_invite:
        return await signup_form(request)
    try:
        form = await read_form(request)
    except ChatError as exc:
        return _form_error(exc, False)
    name, invite = form.get("username", ""), form.get("invite", "")
    address = _address(request)
    wait = _throttle(request).check(SIGNUP_ACCOUNT, address)  # before the code is compared
    if wait > 0:
        seconds = too_many_attempts(wait).headers["retry-after"]
        return auth_html.signup_page(name, error=f"too many wrong invite codes; wait {seconds} "
                                     "s before trying again", status=429,
                                     headers={"Retry-After": seconds})
    if not accounts.invite_matches(invite):
        return auth_html.signup_page(name, error="the invite code is missing or wrong; ask the "
                                     "host for it", status=422)
    _throttle(request).succeeded(SIGNUP_ACCOUNT, address)
    if form.get("password", "") != form.get("password2", ""):
        return auth_html.signup_page(name, invite, "the two passwords differ; type the same "
                                     "one twice", 422)
    try:
        person = await accounts.signup(invite, name, form.get("password", ""))
    except ChatError as exc:
        return auth_html.signup_page(name, invite, exc.message, exc.status)
    answer = RedirectResponse("/", status_code=303)
    set_session_cookie(answer, request, await accounts.create_session(person), accounts.settings)
    return answer


# -- log out ----------------------------------------------------------------------------------

@router.get("/auth/logout")
async def logout_form(request: Request) -> Response:
    person = _person(request)
    if person is None:
        return RedirectResponse("/auth/login", status_code=303)
    return auth_html.logout_page(person.name)


@router.get("/logout")
async def gradio_logout() -> Response:
    """Gradio's own logout path, which ended only Gradio's in-memory login: the page with
    the button that ends this app's session."""
    return RedirectResponse("/auth/logout", status_code=303)


@router.post("/auth/logout")
async def logout(request: Request) -> Response:
    accounts = _accounts(request)
    if accounts is not None:
        await accounts.end_session(session_token(request.scope))
    answer = RedirectResponse("/auth/login", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return answer


# -- the notice -------------------------------------------------------------------------------

@router.get("/auth/notice")
async def notice(request: Request) -> Response:
    accounts, person = _accounts(request), _person(request)
    next_path = safe_next(request.query_params.get("next"))
    if accounts is None or not accounts.settings.share_notice:
        return RedirectResponse(next_path, status_code=303)
    if person is None:
        return RedirectResponse("/auth/login?next=/auth/notice", status_code=303)
    return auth_html.notice_page(notice_text(accounts.settings.share_notice), next_path,
                                 await accounts.consent_of(person))


@router.post("/auth/notice")
async def accept_notice(request: Request) -> Response:
    accounts, person = _accounts(request), _person(request)
    if accounts is None or person is None:
        return RedirectResponse("/auth/login?next=/auth/notice", status_code=303)
    try:
        form = await read_form(request)
    except ChatError as exc:
        return _form_error(exc, False)
    if accounts.settings.share_notice:
        await accounts.accept_notice(person)
    return RedirectResponse(safe_next(form.get("next")), status_code=303)
