"""The Account tab: who you are, your API tokens, read-only links to your conversations, and
withdrawal (delete all your data and withdraw consent).

`build_account_tab(service, conversation)` lays the tab out (inside a `gr.Tab`) and wires its
buttons; `show_on` of what it returns refreshes it when a listener fires (the tab selected,
the page loaded), preselecting the Chat tab's open conversation when given its state.
`AccountHandlers` holds the handlers, each callable in a test with `request=None`.

Every handler works as the person calling (ui/people.py `service_for`), so a conversation,
link or token id of someone else's answers like a missing one. With accounts off (local mode)
the tab shows only the links, which need no account; tokens and withdrawal belong to an
account, so their components and events are not built at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from chat_core.errors import ChatError, InvalidInput
from chat_core.service import ChatService
from chat_core.sharing import list_links, publish_link, revoke_link
from chat_core.states import MAX_LINK_DAYS
from chat_core.ui.people import accounts_on, directory_of, own_only, service_for
from chat_core.ui.render import safe_markdown, warning

Caller = gr.Request | None  # None: a call from a test, never from Gradio
Changes = dict[Any, Any]
PRIVATE: dict[str, Any] = {"api_visibility": "private"}  # API clients have the REST routes
EXPIRY_CHOICES = [("never", 0), ("1 day", 1), ("7 days", 7), ("30 days", 30),
                  (f"{MAX_LINK_DAYS} days", MAX_LINK_DAYS)]
CONFIRM_WORD = "delete"
LINKS_INTRO = ("**Read-only links.** Publish a conversation as a page anyone with the link can "
               "read, without logging in: the messages and replies only, nothing else of the "
               "app. The link is shown once: copy it. Revoke it to close the page for good.")
WITHDRAW_INTRO = ("**Delete all my data and withdraw consent.** Deletes every conversation of "
                  "yours with its messages, replies, links and the records of its turns; the "
                  "host's notebooks and exports no longer hold any of it. Your account stays, "
                  "and the notice is shown again before you use the app again.")
# The link box shows a path; the browser knows the address it reached the app under.
ABSOLUTE_URL_JS = ("(path) => path && path.startsWith('/') ? "
                   "new URL(path, window.location.href).href : path")


@dataclass(frozen=True)
class AccountLayout:
    who: gr.Markdown
    conversation: gr.Dropdown
    expiry: gr.Dropdown
    publish: gr.Button
    new_link: gr.Textbox
    links: gr.Dropdown
    revoke_link: gr.Button
    links_notice: gr.Markdown
    accounts: "AccountsPart | None"  # None with accounts off


@dataclass(frozen=True)
class AccountsPart:
    """Only with accounts on: API tokens, and withdrawal with its confirmation step."""

    token_name: gr.Textbox
    create_token: gr.Button
    new_token: gr.Textbox
    tokens: gr.Dropdown
    revoke_token: gr.Button
    tokens_notice: gr.Markdown
    withdraw: gr.Button
    confirm_box: gr.Column
    confirm_text: gr.Textbox
    confirm: gr.Button
    cancel: gr.Button
    withdraw_notice: gr.Markdown


def _links_layout() -> dict[str, Any]:
    parts: dict[str, Any] = {}
    gr.Markdown(LINKS_INTRO)
    with gr.Row(equal_height=True):
        parts["conversation"] = gr.Dropdown([], label="Conversation", scale=3,
                                            elem_id="account-conversation")
        parts["expiry"] = gr.Dropdown(EXPIRY_CHOICES, value=30, label="Expires after",
                                      scale=1, min_width=120, elem_id="account-expiry")
        parts["publish"] = gr.Button("Publish link", scale=1, min_width=120,
                                     elem_id="account-publish")
    parts["new_link"] = gr.Textbox(label="New link (shown once: copy it now)",
                                   interactive=False, buttons=["copy"], visible=False,
                                   elem_id="account-new-link")
    with gr.Row(equal_height=True):
        parts["links"] = gr.Dropdown([], label="Live links of this conversation", scale=3,
                                     elem_id="account-links")
        parts["revoke_link"] = gr.Button("Revoke link", variant="stop", scale=1,
                                         min_width=120, elem_id="account-revoke-link")
    parts["links_notice"] = gr.Markdown("", elem_id="account-links-notice")
    return parts


def _accounts_layout() -> AccountsPart:
    parts: dict[str, Any] = {}
    gr.Markdown("**API tokens** for the REST API (`Authorization: Bearer <token>`). A new "
                "token is shown once: copy it.")
    with gr.Row(equal_height=True):
        parts["token_name"] = gr.Textbox(label="What the token is for", scale=3,
                                         elem_id="account-token-name")
        parts["create_token"] = gr.Button("Create token", scale=1, min_width=120,
                                          elem_id="account-create-token")
    parts["new_token"] = gr.Textbox(label="New token (shown once: copy it now)",
                                    interactive=False, buttons=["copy"], visible=False,
                                    elem_id="account-new-token")
    with gr.Row(equal_height=True):
        parts["tokens"] = gr.Dropdown([], label="Your tokens", scale=3, elem_id="account-tokens")
        parts["revoke_token"] = gr.Button("Revoke token", variant="stop", scale=1,
                                          min_width=120, elem_id="account-revoke-token")
    parts["tokens_notice"] = gr.Markdown("", elem_id="account-tokens-notice")
    gr.Markdown(WITHDRAW_INTRO)
    parts["withdraw"] = gr.Button("Delete all my data and withdraw consent", variant="stop",
                                  elem_id="account-withdraw")
    with gr.Column(visible=False, elem_id="account-confirm") as parts["confirm_box"]:
        parts["confirm_text"] = gr.Textbox(
            label=f'This cannot be undone. Type "{CONFIRM_WORD}" to confirm',
            elem_id="account-confirm-text")
        with gr.Row():
            parts["confirm"] = gr.Button("Delete everything", variant="stop",
                                         elem_id="account-confirm-button")
            parts["cancel"] = gr.Button("Cancel", elem_id="account-cancel")
    parts["withdraw_notice"] = gr.Markdown("", elem_id="account-withdraw-notice")
    return AccountsPart(**parts)


def build_layout(with_accounts: bool) -> AccountLayout:
    who = gr.Markdown("", elem_id="account-who")
    parts = _links_layout()
    accounts = _accounts_layout() if with_accounts else None
    return AccountLayout(who=who, accounts=accounts, **parts)


def _date(iso: str | None) -> str:
    return (iso or "")[:10] or "never"


def _conversation_choices(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f"{r['title'] or 'Untitled'} · {_date(r['updated_at'])}", r["id"]) for r in rows]


def _link_choices(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f"published {_date(r['created_at'])} · expires {_date(r['expires_at'])}", r["id"])
            for r in rows]


def _token_choices(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f"{r['name'] or 'unnamed'} · created {_date(r['created_at'])} · last used "
             f"{_date(r['last_used_at'])}", r["id"]) for r in rows]


def _choice(choices: list[tuple[str, str]], value: Any = None) -> Any:
    """A dropdown's new choices, keeping `value` when it is one of them, else the first."""
    ids = [v for _, v in choices]
    return gr.update(choices=choices, value=value if value in ids else (ids[0] if ids else None))


async def _who(service: ChatService) -> str:
    """Who the tab is for, and where their consent stands."""
    if not accounts_on(service):
        return ("**Local mode**: one person, no login (API tokens and withdrawal come with "
                "accounts: SHARE_AUTH). Read-only links work here too.")
    person = service.person
    directory = directory_of(service)
    accepted = await directory.consent_of(person) if directory is not None else None
    role = " (admin: the other tabs show everyone's data)" if person.is_admin else ""
    consent = f"You accepted the notice on {accepted:%Y-%m-%d}." if accepted is not None \
        else "You have not accepted the notice (or withdrew)."
    return f"Logged in as **{safe_markdown(person.name)}**{role}. {consent}"


class AccountHandlers:
    """The tab's handlers; each takes the caller's `gr.Request` and works as that person."""

    def __init__(self, service: ChatService, ui: AccountLayout) -> None:
        self.service = service  # the app's: each call works with the caller's (service_for)
        self.ui = ui

    async def show(self, open_id: str | None = None, request: Caller = None) -> Changes:
        """Everything the tab shows, for the caller; `open_id` (the Chat tab's open
        conversation) is preselected when it is theirs."""
        service = await service_for(self.service, request)
        ui = self.ui
        mine = await own_only(service).list_conversations(100)
        choices = _conversation_choices(mine)
        chosen = open_id if open_id in [v for _, v in choices] else \
            (choices[0][1] if choices else None)
        out: Changes = {ui.who: await _who(service), ui.conversation: _choice(choices, chosen),
                        **await self._links(service, chosen)}
        if ui.accounts is not None:
            out.update(await self._tokens(service))
            out.update({ui.accounts.confirm_box: gr.update(visible=False),
                        ui.accounts.withdraw_notice: ""})
        return out

    async def refresh(self, request: Caller = None) -> Changes:
        """`show` without a conversation to preselect (Gradio passes the request by its
        position among the inputs, so this one takes none)."""
        return await self.show(None, request)

    async def _links(self, service: ChatService, conversation_id: str | None,
                     notice: str = "", new_link: str = "") -> Changes:
        ui = self.ui
        rows = await list_links(service, conversation_id) if conversation_id else []
        return {ui.links: _choice(_link_choices(rows)), ui.links_notice: notice,
                ui.new_link: gr.update(value=new_link, visible=bool(new_link))}

    async def choose(self, conversation_id: str | None, request: Caller = None) -> Changes:
        service = await service_for(self.service, request)
        try:
            return await self._links(service, conversation_id)
        except ChatError as exc:
            return await self._links(service, None, warning(exc))

    async def publish(self, conversation_id: str | None, expiry: int | None,
                      request: Caller = None) -> Changes:
        service = await service_for(self.service, request)
        try:
            if not conversation_id:
                raise InvalidInput("choose a conversation to publish first")
            link = await publish_link(service, conversation_id, expiry or None)
            return await self._links(service, conversation_id, "Published: copy the link "
                                     "below now, it is not shown again.", link["url_path"])
        except ChatError as exc:
            return {self.ui.links_notice: warning(exc)}

    async def revoke(self, conversation_id: str | None, link_id: str | None,
                     request: Caller = None) -> Changes:
        service = await service_for(self.service, request)
        try:
            if not conversation_id or not link_id:
                raise InvalidInput("choose a conversation and one of its links to revoke")
            await revoke_link(service, conversation_id, link_id)
            return await self._links(service, conversation_id, "Revoked: the page is gone.")
        except ChatError as exc:
            return {self.ui.links_notice: warning(exc)}

    # -- accounts only -------------------------------------------------------------------------

    def _part(self) -> AccountsPart:
        if self.ui.accounts is None:  # never wired so; a hand-made call gets a clear answer
            raise gr.Error("API tokens and withdrawal need accounts (SHARE_AUTH)")
        return self.ui.accounts

    async def _tokens(self, service: ChatService, notice: str = "", new_token: str = ""
                      ) -> Changes:
        part = self._part()
        rows = await directory_of(service).list_tokens(service.person)
        return {part.tokens: _choice(_token_choices(rows)), part.tokens_notice: notice,
                part.new_token: gr.update(value=new_token, visible=bool(new_token))}

    async def create_token(self, name: str | None, request: Caller = None) -> Changes:
        service = await service_for(self.service, request)
        part = self._part()
        try:
            token = await directory_of(service).create_token(service.person, name or "")
        except ChatError as exc:
            return {part.tokens_notice: warning(exc)}
        return {part.token_name: "", **await self._tokens(
            service, "Created: copy the token below now, it is not shown again.",
            token["token"])}

    async def revoke_token(self, token_id: str | None, request: Caller = None) -> Changes:
        service = await service_for(self.service, request)
        part = self._part()
        if not token_id or not await directory_of(service).revoke_token(service.person,
                                                                        str(token_id)):
            return {part.tokens_notice: warning(InvalidInput("choose one of your tokens"))}
        return await self._tokens(service, "Revoked: the token no longer works.")

    def ask(self) -> Changes:
        """The confirmation step: nothing is deleted until the word is typed and confirmed."""
        part = self._part()
        return {part.confirm_box: gr.update(visible=True), part.withdraw_notice: ""}

    def cancel(self) -> Changes:
        part = self._part()
        return {part.confirm_box: gr.update(visible=False), part.confirm_text: ""}

    async def withdraw(self, confirm_text: str | None, request: Caller = None) -> Changes:
        """Delete everything of the caller's and withdraw their consent, once confirmed."""
        service = await service_for(self.service, request)
        part = self._part()
        if not isinstance(confirm_text, str) or confirm_text.strip().lower() != CONFIRM_WORD:
            return {part.withdraw_notice: warning(InvalidInput(
                f'type "{CONFIRM_WORD}" in the box to confirm; nothing was deleted'))}
        try:
            done = await service.withdraw()
        except ChatError as exc:
            return {part.withdraw_notice: warning(exc)}
        shown = await self.show(None, request)
        shown[part.withdraw_notice] = (
            f"Deleted {done['deleted_conversations']} conversation(s) and the records of "
            f"{done['deleted_turns']} turn(s); your consent is withdrawn. Reload the page to "
            "see the notice again before any further use.")
        shown[part.confirm_text] = ""
        return shown


def wire(handlers: AccountHandlers) -> None:
    """The tab's events; each names only the outputs its handler may change."""
    ui, h = handlers.ui, handlers
    links = [ui.links, ui.new_link, ui.links_notice]
    ui.conversation.input(h.choose, inputs=[ui.conversation], outputs=links, **PRIVATE)
    ui.publish.click(h.publish, inputs=[ui.conversation, ui.expiry], outputs=links,
                     **PRIVATE).success(None, inputs=[ui.new_link], outputs=[ui.new_link],
                                        js=ABSOLUTE_URL_JS)
    ui.revoke_link.click(h.revoke, inputs=[ui.conversation, ui.links], outputs=links,
                         **PRIVATE)
    part = ui.accounts
    if part is None:
        return
    tokens = [part.token_name, part.new_token, part.tokens, part.tokens_notice]
    part.create_token.click(h.create_token, inputs=[part.token_name], outputs=tokens,
                            **PRIVATE)
    part.revoke_token.click(h.revoke_token, inputs=[part.tokens], outputs=tokens, **PRIVATE)
    part.withdraw.click(h.ask, outputs=[part.confirm_box, part.withdraw_notice], queue=False,
                        **PRIVATE)
    part.cancel.click(h.cancel, outputs=[part.confirm_box, part.confirm_text], queue=False,
                      **PRIVATE)
    part.confirm.click(h.withdraw, inputs=[part.confirm_text], outputs=[
        ui.who, ui.conversation, *links, *tokens[1:], part.confirm_box, part.confirm_text,
        part.withdraw_notice], **PRIVATE)


class AccountTab:
    """The Account tab, built inside the caller's `gr.Tab`."""

    def __init__(self, service: ChatService, conversation: gr.components.Component | None
                 ) -> None:
        self.ui = build_layout(accounts_on(service))
        self.handlers = AccountHandlers(service, self.ui)
        self.open_conversation = conversation
        wire(self.handlers)

    def show_on(self, listener: Callable[..., Any], **kwargs: Any) -> None:
        """Refresh the tab when `listener` fires (e.g. the tab's `select`, `demo.load`)."""
        ui = self.ui
        outputs = [ui.who, ui.conversation, ui.links, ui.new_link, ui.links_notice]
        if ui.accounts is not None:
            part = ui.accounts
            outputs += [part.new_token, part.tokens, part.tokens_notice, part.confirm_box,
                        part.withdraw_notice]
        if self.open_conversation is None:
            listener(self.handlers.refresh, outputs=outputs, **PRIVATE, **kwargs)
        else:
            listener(self.handlers.show, inputs=[self.open_conversation], outputs=outputs,
                     **PRIVATE, **kwargs)


def build_account_tab(service: ChatService,
                      conversation: gr.components.Component | None = None) -> AccountTab:
    """Lay out and wire the tab; `conversation` is the Chat tab's open-conversation state
    (ChatTab.conversation), preselected when the tab shows. Call `show_on` to refresh it."""
    return AccountTab(service, conversation)
