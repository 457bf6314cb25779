"""The one web server of a process: the REST API and the Gradio UI on the same port.

A FastAPI app carries the REST routes and mounts the Gradio Blocks at "/". We run uvicorn
ourselves (app.py) rather than through Blocks.launch(), so that the workflows, the database pool
and every request share one event loop, and DBOS is launched before the server accepts anything.

With accounts (SHARE_AUTH / SHARE_INVITE, with or without --share) every request needs a
person: our own login pages and database sessions (login_pages.py, auth.py) instead of
Gradio's in-memory login, HTTP Basic or an API token for the REST API. Share mode (a public
Gradio link) also closes Gradio's direct-call API so every call goes through the queue, turns
the monitoring page off and shows links in replies as text (chat_core/ui/render.py).

Requests meet, in order: HostGuard, CORS, CrossSiteGuard (request_guards.py), AccountAuth
(auth.py), GradioGuard (gradio_guard.py), then the routes or Gradio.
"""

from __future__ import annotations

import logging

import gradio as gr
from fastapi import FastAPI

from chat_core.accounts.config_accounts import parse_credentials
from chat_core.accounts.directory import AccountDirectory
from chat_core.accounts.expiring_cache import ExpiringCache
from chat_core.service import ChatService
from chat_core.ui.page import CSS
from chat_core.web import login_pages
from chat_core.web.api import install_rest_api
from chat_core.web.auth import BASIC_CACHE_SEC, AccountAuth, gradio_user
from chat_core.web.gradio_guard import GradioGuard
from chat_core.web.login_throttle import LoginThrottle
from chat_core.web.request_guards import allowed_hosts, install_request_guards

log = logging.getLogger(__name__)

# Re-exported: SHARE_AUTH's parsing lives with the accounts now.
__all__ = ["QUEUE_MAX_SIZE", "build_web_app", "mount_ui", "parse_credentials"]

# The most events Gradio's queue holds; beyond it a page is told the app is busy.
QUEUE_MAX_SIZE = 2048
# How often Gradio's queue looks for an event to start while none waits, and for progress to
# send (see _quiet_queue_polls).
QUEUE_POLL_SEC = 0.01
QUEUE_PROGRESS_POLL_SEC = 0.1


def build_web_app(service: ChatService, ui: gr.Blocks, *,
                  accounts: AccountDirectory | None = None,
                  share_mode: bool = False) -> FastAPI:
    """The app serving `service` and `ui`. `accounts`: the started AccountDirectory (by
    default the one the runtime hands the service as `people`); required when the settings
    turn accounts on."""
    settings = service.settings
    accounts = accounts or service.people
    if settings.accounts_enabled and accounts is None:
        raise ValueError("SHARE_AUTH/SHARE_INVITE turn accounts on, but no AccountDirectory "
                         "was given: start one (ChatRuntime.start does) and pass accounts=")
    if not settings.accounts_enabled:
        accounts = None
    app = FastAPI(title="Durable chat", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    trusted = frozenset(filter(None, (p.strip() for p in settings.trusted_proxies.split(","))))
    # app.state: what the login pages share with AccountAuth; tests move the throttle's clock.
    app.state.accounts = accounts
    app.state.trusted_proxies = trusted
    app.state.share_mode = share_mode  # how replies are rendered for the page (api/turns.py)
    throttle = app.state.login_throttle = LoginThrottle()
    basic_cache = app.state.basic_auth_cache = ExpiringCache[str](BASIC_CACHE_SEC)
    app.include_router(login_pages.router)
    install_rest_api(app, service)
    mount_ui(app, ui, share_mode=share_mode, with_accounts=accounts is not None)
    app.add_middleware(GradioGuard, blocks=ui)
    app.add_middleware(AccountAuth, accounts=accounts, throttle=throttle,
                       trusted_proxies=trusted, notice_required=bool(settings.share_notice),
                       basic_cache=basic_cache)
    install_request_guards(app, allowed_hosts(settings.host, settings.allowed_hosts.split(","),
                                              share_mode=share_mode))
    return app


def _quiet_queue_polls(ui: gr.Blocks) -> None:
    """Gradio's queue, on Linux, looks for an event to start every millisecond while it has
    none, and every 10 ms walks its QUEUE_MAX_SIZE job slots for progress to send: 53 ms of
    CPU a second with nobody using the app, a fifth of a streamed token's CPU in the
    benchmark (docs/performance.md). Gradio chooses 50 and 100 ms on Windows and takes no
    setting for them; these are its queue's own attributes, read at every poll. 10 ms adds
    at most that to a queued event's start (a chat message's send is not queued). Should an
    upgrade drop them the app still works, busier: a warning, and the idle test fails."""
    queue = ui._queue
    for name, every in (("sleep_when_free", QUEUE_POLL_SEC),
                        ("progress_update_sleep_when_free", QUEUE_PROGRESS_POLL_SEC)):
        if not hasattr(queue, name):  # a Gradio upgrade changed it: it still works, busier
            log.warning("Gradio's queue has no %s: it may poll more often than it needs to "
                        "(see _quiet_queue_polls in chat_core/web/app.py)", name)
            continue
        setattr(queue, name, max(getattr(queue, name), every))


def mount_ui(app: FastAPI, ui: gr.Blocks, *, share_mode: bool = False,
             with_accounts: bool = False) -> None:
    """Serve `ui` at "/" of `app` on Gradio's queue, sized so that every event it holds runs
    at once: a streamed reply keeps its event running for the whole reply."""
    # Gradio's queue runs at most `max_threads` events at once (40 unless launch() is told
    # otherwise), whatever each event's concurrency_limit says, and it reads the number when
    # queue() makes it. A streamed event (an API client's /send, the Compare tab's stream; the
    # Chat tab's page used to stream so too) holds one of them until its reply ends, so in a
    # room of 64 sending at once the 41st stream began only when a whole reply had ended: 24
    # people saw nothing for ~15 s, then the finished reply (docs/performance.md, issue 16). We never call launch(), so it is set here, to what the queue holds. The same
    # number sizes Gradio's own thread limiter (sync handlers, postprocessing hops); its pool
    # starts a thread only when no idle one is free, so it holds as many as run at once.
    ui.max_threads = QUEUE_MAX_SIZE
    # Many users stream at once: no per-event cap in Gradio (the LLM client caps LLM load);
    # a bounded queue answers "busy" instead of growing without limit. In share mode the
    # direct-call API is closed, so every call goes through the queue and its limits.
    ui.queue(default_concurrency_limit=None, max_size=QUEUE_MAX_SIZE, api_open=not share_mode)
    _quiet_queue_polls(ui)
    # Gradio resolves matplotlib's backend around every event (for gr.Plot); the first time, it
    # imports matplotlib and pyplot: about 0.19 s more on the first reply after a start
    # (measured). Done here, before the server accepts anyone.
    warm_matplotlib = getattr(gr.utils, "MatplotlibBackendMananger", None)
    if warm_matplotlib is not None:
        with warm_matplotlib():
            pass
    gr.mount_gradio_app(
        app, ui, path="/", css=CSS,
        # With accounts, AccountAuth has found the person before Gradio runs: Gradio asks
        # gradio_user for each request and hands the account id to events as username.
        auth_dependency=gradio_user if with_accounts else None,
        # show_error=False: an unexpected exception's text (psycopg's carries SQL) stays in the
        # log; handlers show ChatError messages as notices themselves, and gr.Error still shows.
        enable_monitoring=False if share_mode else None, show_error=False, max_file_size="10mb",
        footer_links=["api"] if not share_mode else [],
    )
    # Gradio checks the paths named in event inputs only once its Blocks has launched, which
    # mount_gradio_app never marks; GradioGuard refuses them before Gradio sees them anyway.
    ui.has_launched = True
