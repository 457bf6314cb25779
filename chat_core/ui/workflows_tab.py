"""The Workflows tab: every chat turn as the DBOS workflow it is, refreshed while the tab is
open, with its steps, and Cancel, Resume and Fork (optionally with other parameters).

`WorkflowsLayout` holds the components, `WorkflowHandlers` the handlers (each callable in a
test with any service), `wire` the events.

Each handler works as the person calling (the `gr.Request` Gradio passes; ui/people.py): a
person sees and steers only the turns of their own conversations, and someone else's turn id
answers like a missing one. An admin (share mode) sees everyone's, with an owner column, a
filter by owner, and the LLM's load by person, refreshed with the table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from chat_core.errors import ChatError, InvalidInput
from chat_core.service import ChatService
from chat_core.states import MAX_SYSTEM_PROMPT_CHARS, WORKFLOW_STATES
from chat_core.turns.workflow import STEP_NAMES
from chat_core.ui.people import EVERYONE, owner_names, sees_others, service_for
from chat_core.ui.render import safe_markdown, warning
from chat_core.web.api.admin import named_load, person_named
from chat_core.ui.step_timeline import TIMELINE_CSS, timeline_html

TURN_COLUMNS = ["workflow", "conversation", "status", "reply", "started", "seconds",
                "recoveries", "error"]
OWNER_COLUMN = "owner"  # an admin's table has it after the conversation
TURN_WIDTHS = ["25%", "23%", "10%", "9%", "11%", "8%", "6%", "8%"]
OWNER_WIDTHS = ["22%", "18%", "10%", "9%", "8%", "10%", "7%", "5%", "11%"]
STEP_COLUMNS = ["step", "name", "started", "ms", "error"]
LOAD_COLUMNS = ["person", "running", "waiting"]
REFRESH_SEC = 2.0
FORK_FIELD_CHARS = 20  # a number typed in a text field
INTRO = ("Every chat turn is a DBOS workflow, checkpointed step by step in PostgreSQL. The table "
         f"refreshes every {REFRESH_SEC:g} s while this tab is open. Select a row to see its "
         "steps. **Cancel** stops a running turn (its text so far is kept); **Resume** runs a "
         "cancelled or stuck turn again from its last finished step, on this process; **Fork** "
         "runs a turn again from a step, optionally with other parameters, and adds its reply "
         "as an alternative to the original's.")
Answer = tuple[str, Any, pd.DataFrame]  # the result line, the table, the steps
Caller = gr.Request | None  # None: a call from a test, never from Gradio


@dataclass(frozen=True)
class WorkflowsLayout:
    status: gr.Dropdown
    selected: gr.Textbox
    refresh: gr.Button
    table: gr.Dataframe
    cancel: gr.Button
    resume: gr.Button
    fork_step: gr.Dropdown
    fork: gr.Button
    fork_temperature: gr.Textbox
    fork_top_p: gr.Textbox
    fork_max_tokens: gr.Textbox
    fork_system: gr.Textbox
    result: gr.Markdown
    steps: gr.Dataframe
    timeline: gr.HTML
    timer: gr.Timer
    # An admin's (shown to admins only): the owner filter, the LLM's load by person.
    owner: gr.Dropdown
    load: gr.Dataframe

    @property
    def fork_overrides(self) -> list[Any]:
        return [self.fork_temperature, self.fork_top_p, self.fork_max_tokens, self.fork_system]


def build_layout() -> WorkflowsLayout:
    gr.Markdown(INTRO)
    parts: dict[str, Any] = {}
    with gr.Row(equal_height=True):
        parts["status"] = gr.Dropdown(["all", *WORKFLOW_STATES], value="all",
                                      label="Status filter", elem_id="wf-status", scale=1,
                                      min_width=160)
        parts["selected"] = gr.Textbox(label="Selected workflow", elem_id="wf-selected",
                                       scale=3,
                                       placeholder="select a row below, or paste a workflow id")
        parts["owner"] = gr.Dropdown([EVERYONE], value=EVERYONE, label="Owner",
                                     elem_id="wf-owner", scale=1, min_width=160,
                                     visible=False)
        parts["refresh"] = gr.Button("Refresh", scale=0, min_width=100)
    parts["table"] = gr.Dataframe(
        headers=TURN_COLUMNS, interactive=False, wrap=True, elem_id="wf-table", max_height=380,
        column_widths=TURN_WIDTHS)
    with gr.Row(equal_height=True):
        parts["cancel"] = gr.Button("Cancel", variant="stop", elem_id="wf-cancel", scale=1)
        parts["resume"] = gr.Button("Resume", elem_id="wf-resume", scale=1)
        parts["fork_step"] = gr.Dropdown(
            [(f"{i}. {name}", i) for i, name in enumerate(STEP_NAMES, 1)], value=3,
            show_label=False, scale=1, elem_id="wf-fork-step", min_width=160)
        parts["fork"] = gr.Button("Fork from step", elem_id="wf-fork", scale=1)
    with gr.Accordion("Fork with other parameters (empty: the turn's own)", open=False):
        parts.update(_fork_fields())
    parts["result"] = gr.Markdown("", elem_id="wf-result")
    parts["steps"] = gr.Dataframe(headers=STEP_COLUMNS, interactive=False, elem_id="wf-steps",
                                  label="Steps of the selected workflow")
    parts["timeline"] = gr.HTML("", elem_id="wf-timeline", css_template=TIMELINE_CSS,
                                js_on_load=None)
    parts["load"] = gr.Dataframe(headers=LOAD_COLUMNS, interactive=False, elem_id="wf-load",
                                 label="The LLM's load by person (this process)",
                                 visible=False)
    parts["timer"] = gr.Timer(REFRESH_SEC, active=False)
    return WorkflowsLayout(**parts)


def _fork_fields() -> dict[str, Any]:
    parts: dict[str, Any] = {}
    own: dict[str, Any] = {"placeholder": "the turn's own", "max_length": FORK_FIELD_CHARS}
    with gr.Row():
        # Text, not number fields: empty must mean "the turn's own", and 0 is a valid
        # temperature.
        parts["fork_temperature"] = gr.Textbox(label="Temperature (0-2)",
                                               elem_id="wf-temperature", **own)
        parts["fork_top_p"] = gr.Textbox(label="Top p (0-1]", elem_id="wf-top-p", **own)
        parts["fork_max_tokens"] = gr.Textbox(label="Max tokens", elem_id="wf-max-tokens",
                                              **own)
    parts["fork_system"] = gr.Textbox(
        label="System prompt (fork from step 2 to refit the history)",
        elem_id="wf-system-prompt", max_length=MAX_SYSTEM_PROMPT_CHARS)
    return parts


class WorkflowHandlers:
    def __init__(self, service: ChatService) -> None:
        self.service = service  # the app's: each call works with the caller's (service_for)

    async def table(self, status: str, owner: str | None = EVERYONE, request: Caller = None
                    ) -> Any:
        return await self.turns(await service_for(self.service, request), status, owner)

    async def turns(self, service: ChatService, status: str, owner: str | None) -> Any:
        """The turns the person may see; an admin's with their owner, narrowed to one
        person's when `owner` names one (a name nobody has: no rows)."""
        admin = sees_others(service)
        only = None
        if admin and isinstance(owner, str) and owner != EVERYONE:
            try:
                only = (await person_named(service, owner)).id
            except ChatError:
                return _turn_frame([], admin)
        rows = await service.workflows.list_turns(None if status == "all" else status,
                                                  limit=100, owner=only)
        frame = _turn_frame(rows, admin)
        return gr.update(value=frame, column_widths=OWNER_WIDTHS) if admin else frame

    async def steps(self, workflow_id: str | None, request: Caller = None) -> pd.DataFrame:
        return await self.steps_of(await service_for(self.service, request), workflow_id)

    @staticmethod
    async def steps_of(service: ChatService, workflow_id: str | None) -> pd.DataFrame:
        workflow_id = (workflow_id or "").strip()
        if not workflow_id:
            return pd.DataFrame(columns=STEP_COLUMNS)
        try:
            rows = await service.workflows.steps(workflow_id)
        except ChatError:
            return pd.DataFrame(columns=STEP_COLUMNS)
        return pd.DataFrame([[r["step"], r["name"], _clock(r["started_at"]), r["duration_ms"],
                              r["error"] or ""] for r in rows], columns=STEP_COLUMNS)

    async def timeline(self, workflow_id: str | None, request: Caller = None) -> str:
        """The selected turn's steps as a picture, drawn whenever its steps table changes."""
        service = await service_for(self.service, request)
        workflow_id = (workflow_id or "").strip() if isinstance(workflow_id, str) else ""
        if not workflow_id:
            return ""
        try:
            return timeline_html(await service.workflows.steps(workflow_id))
        except ChatError:
            return ""

    async def tick(self, status: str, workflow_id: str | None, owner: str | None = EVERYONE,
                   request: Caller = None) -> tuple[Any, pd.DataFrame]:
        service = await service_for(self.service, request)
        return await self.turns(service, status, owner), await self.steps_of(service,
                                                                             workflow_id)

    async def admin_view(self, request: Caller = None) -> tuple[Any, Any]:
        """The owner filter (everyone, then each person) and the load table: an admin's."""
        service = await service_for(self.service, request)
        if not sees_others(service):
            return gr.update(visible=False), gr.update(visible=False)
        names = await owner_names(service)
        if names is None:  # the owners of the turns shown
            rows = await service.workflows.list_turns(limit=100)
            names = sorted({r["owner"] for r in rows if r.get("owner")}, key=str.casefold)
        return (gr.update(choices=[EVERYONE, *names], visible=True),
                gr.update(value=await self.load_frame(service), visible=True))

    async def load(self, request: Caller = None) -> Any:
        """The LLM's load by person, for an admin; nothing changes for anyone else."""
        service = await service_for(self.service, request)
        return await self.load_frame(service) if sees_others(service) else gr.skip()

    @staticmethod
    async def load_frame(service: ChatService) -> pd.DataFrame:
        load = await named_load(service)
        return pd.DataFrame([[o["owner"], o["running"], o["waiting"]] for o in load["owners"]],
                            columns=LOAD_COLUMNS)

    @staticmethod
    def pick(frame: pd.DataFrame, evt: gr.SelectData) -> str:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return str(frame.iloc[row]["workflow"])

    async def cancel(self, workflow_id: str | None, step: Any, status: str,
                     request: Caller = None) -> Answer:
        service = await service_for(self.service, request)
        workflow_id = (workflow_id or "").strip()
        try:
            info = await service.workflows.cancel(workflow_id)
            message = f"Cancelled `{workflow_id}`: now {info['status']}."
        except ChatError as exc:
            message = warning(exc)
        return await self._answer(service, message, workflow_id, status)

    async def resume(self, workflow_id: str | None, step: Any, status: str,
                     request: Caller = None) -> Answer:
        service = await service_for(self.service, request)
        workflow_id = (workflow_id or "").strip()
        try:
            info = await service.workflows.resume(workflow_id)
            message = f"Resumed `{workflow_id}`: now {info['status']}."
        except ChatError as exc:
            message = warning(exc)
        return await self._answer(service, message, workflow_id, status)

    async def fork(self, workflow_id: str | None, step: Any, status: str, temperature: str,
                   top_p: str, max_tokens: str, system_prompt: str, request: Caller = None
                   ) -> Answer:
        service = await service_for(self.service, request)
        workflow_id = (workflow_id or "").strip()
        try:
            overrides = fork_overrides(temperature, top_p, max_tokens, system_prompt)
            info = await service.workflows.fork(workflow_id, whole_step(step), overrides)
            changed = ", ".join(f"{k}={v!r}" for k, v in info["params"].items())
            message = (f"Forked `{workflow_id}` from step {step} as `{info['workflow_id']}`"
                       + (f" with {safe_markdown(changed)}" if changed else "")
                       + "; its reply is added next to the original.")
        except ChatError as exc:
            message = warning(exc)
        return await self._answer(service, message, workflow_id, status)

    async def _answer(self, service: ChatService, message: str, workflow_id: str, status: str
                      ) -> Answer:
        """The table after an action: all of what the person may see (the owner filter is
        not an input of the actions, whose API keeps its inputs)."""
        return (message, await self.turns(service, status, EVERYONE),
                await self.steps_of(service, workflow_id))


def _turn_frame(rows: list[dict[str, Any]], with_owner: bool) -> pd.DataFrame:
    columns = [*TURN_COLUMNS[:2], OWNER_COLUMN, *TURN_COLUMNS[2:]] if with_owner \
        else TURN_COLUMNS
    return pd.DataFrame([[r["workflow_id"], r["conversation_title"] or r["conversation_id"],
                          *([r.get("owner") or ""] if with_owner else []),
                          r["status"], r["reply_status"], _clock(r["started_at"]),
                          _seconds(r["duration_ms"]),
                          max(0, (r["recovery_attempts"] or 1) - 1), r["error"] or ""]
                         for r in rows], columns=columns)


def wire(ui: WorkflowsLayout, handlers: WorkflowHandlers, tab: gr.Tab) -> None:
    h = handlers
    # The owner filter comes last, so API clients that send status and workflow only get
    # everyone's (what they may see).
    refreshed: dict[str, Any] = {"inputs": [ui.status, ui.selected, ui.owner],
                                 "outputs": [ui.table, ui.steps]}
    private: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    # The public events first: a private one takes its handler's name, which a public one of
    # the same handler would then only get with a suffix.
    selected = tab.select(lambda: gr.Timer(active=True), outputs=[ui.timer], queue=False,
                          api_visibility="private")
    selected.then(h.tick, api_name="workflows", **refreshed)
    ui.timer.tick(h.tick, api_name="tick", concurrency_limit=None, show_progress="hidden",
                  **refreshed)
    selected.then(h.admin_view, outputs=[ui.owner, ui.load], queue=False, **private)
    ui.timer.tick(h.load, outputs=[ui.load], queue=False, **private)
    ui.owner.input(h.table, inputs=[ui.status, ui.owner], outputs=[ui.table], **private)
    ui.selected.submit(h.steps, inputs=[ui.selected], outputs=[ui.steps], api_name="steps")
    action: dict[str, Any] = {"inputs": [ui.selected, ui.fork_step, ui.status],
                              "outputs": [ui.result, ui.table, ui.steps]}
    ui.cancel.click(h.cancel, api_name="cancel_workflow", **action)
    ui.resume.click(h.resume, api_name="resume_workflow", **action)
    ui.fork.click(h.fork, inputs=[*action["inputs"], *ui.fork_overrides],
                  outputs=action["outputs"], api_name="fork_workflow")
    ui.refresh.click(h.tick, api_visibility="private", **refreshed)
    ui.status.change(h.table, inputs=[ui.status, ui.owner], outputs=[ui.table],
                     api_visibility="private")
    ui.steps.change(h.timeline, inputs=[ui.selected], outputs=[ui.timeline], queue=False,
                    **private)
    ui.table.select(h.pick, inputs=[ui.table], outputs=[ui.selected],
                    api_visibility="private").then(
        h.steps, inputs=[ui.selected], outputs=[ui.steps], api_visibility="private")


def build_workflows_tab(service: ChatService, tab: gr.Tab) -> gr.Timer:
    """The tab's components and events; its timer, which the page stops when the Chat tab is
    selected."""
    ui = build_layout()
    wire(ui, WorkflowHandlers(service), tab)
    return ui.timer


def fork_overrides(temperature: str, top_p: str, max_tokens: str, system_prompt: str
                   ) -> dict[str, Any] | None:
    """The parameters a fork changes, from the text fields (empty: the turn's own)."""
    overrides: dict[str, Any] = {}
    for name, text in (("temperature", temperature), ("top_p", top_p),
                       ("max_tokens", max_tokens)):
        text = (text or "").strip()
        if not text:
            continue
        try:
            overrides[name] = float(text)
        except ValueError:
            raise InvalidInput(f"{name} must be a number, got {text}") from None
    if system_prompt:
        overrides["system_prompt"] = system_prompt
    return overrides or None


def whole_step(step: Any) -> int:
    """The fork step as the dropdown sends it; an API caller may send 2.0 or null."""
    if isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step) \
            and step == int(step):
        return int(step)
    raise InvalidInput(f"pick the step to fork from (1–{len(STEP_NAMES)})")


def _clock(stamp: str | None) -> str:
    """"2026-11-25T19:49:52.094Z" -> "2026-11-25 19:49:52" (UTC)."""
    return stamp[:19].replace("T", " ") if stamp else ""


def _seconds(ms: float | None) -> str:
    return "" if ms is None else f"{ms / 1000:.2f}"
