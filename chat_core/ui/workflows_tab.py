"""The Workflows tab: every chat turn as the DBOS workflow it is, refreshed while the tab is
open, with its steps, and Cancel, Resume and Fork (optionally with other parameters).

`WorkflowsLayout` holds the components, `WorkflowHandlers` the handlers (each callable in a
test with any service), `wire` the events."""

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
from chat_core.ui.render import safe_markdown, warning

TURN_COLUMNS = ["workflow", "conversation", "status", "reply", "started", "seconds",
                "recoveries", "error"]
STEP_COLUMNS = ["step", "name", "started", "ms", "error"]
REFRESH_SEC = 2.0
FORK_FIELD_CHARS = 20  # a number typed in a text field
INTRO = ("Every chat turn is a DBOS workflow, checkpointed step by step in PostgreSQL. The table "
         f"refreshes every {REFRESH_SEC:g} s while this tab is open. Select a row to see its "
         "steps. **Cancel** stops a running turn (its text so far is kept); **Resume** runs a "
         "cancelled or stuck turn again from its last finished step, on this process; **Fork** "
         "runs a turn again from a step, optionally with other parameters, and adds its reply "
         "as an alternative to the original's.")
Answer = tuple[str, pd.DataFrame, pd.DataFrame]  # the result line, the table, the steps


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
    timer: gr.Timer

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
        parts["refresh"] = gr.Button("Refresh", scale=0, min_width=100)
    parts["table"] = gr.Dataframe(
        headers=TURN_COLUMNS, interactive=False, wrap=True, elem_id="wf-table", max_height=380,
        column_widths=["25%", "23%", "10%", "9%", "11%", "8%", "6%", "8%"])
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
        self.service = service

    async def table(self, status: str) -> pd.DataFrame:
        rows = await self.service.workflows.list_turns(None if status == "all" else status,
                                                       limit=100)
        return pd.DataFrame([[r["workflow_id"], r["conversation_title"] or r["conversation_id"],
                              r["status"], r["reply_status"], _clock(r["started_at"]),
                              _seconds(r["duration_ms"]),
                              max(0, (r["recovery_attempts"] or 1) - 1), r["error"] or ""]
                             for r in rows], columns=TURN_COLUMNS)

    async def steps(self, workflow_id: str | None) -> pd.DataFrame:
        workflow_id = (workflow_id or "").strip()
        if not workflow_id:
            return pd.DataFrame(columns=STEP_COLUMNS)
        try:
            rows = await self.service.workflows.steps(workflow_id)
        except ChatError:
            return pd.DataFrame(columns=STEP_COLUMNS)
        return pd.DataFrame([[r["step"], r["name"], _clock(r["started_at"]), r["duration_ms"],
                              r["error"] or ""] for r in rows], columns=STEP_COLUMNS)

    async def tick(self, status: str, workflow_id: str | None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
        return await self.table(status), await self.steps(workflow_id)

    @staticmethod
    def pick(frame: pd.DataFrame, evt: gr.SelectData) -> str:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return str(frame.iloc[row]["workflow"])

    async def cancel(self, workflow_id: str | None, step: Any, status: str) -> Answer:
        workflow_id = (workflow_id or "").strip()
        try:
            info = await self.service.workflows.cancel(workflow_id)
            message = f"Cancelled `{workflow_id}`: now {info['status']}."
        except ChatError as exc:
            message = warning(exc)
        return await self._answer(message, workflow_id, status)

    async def resume(self, workflow_id: str | None, step: Any, status: str) -> Answer:
        workflow_id = (workflow_id or "").strip()
        try:
            info = await self.service.workflows.resume(workflow_id)
            message = f"Resumed `{workflow_id}`: now {info['status']}."
        except ChatError as exc:
            message = warning(exc)
        return await self._answer(message, workflow_id, status)

    async def fork(self, workflow_id: str | None, step: Any, status: str, temperature: str,
                   top_p: str, max_tokens: str, system_prompt: str) -> Answer:
        workflow_id = (workflow_id or "").strip()
        try:
            overrides = fork_overrides(temperature, top_p, max_tokens, system_prompt)
            info = await self.service.workflows.fork(workflow_id, whole_step(step), overrides)
            changed = ", ".join(f"{k}={v!r}" for k, v in info["params"].items())
            message = (f"Forked `{workflow_id}` from step {step} as `{info['workflow_id']}`"
                       + (f" with {safe_markdown(changed)}" if changed else "")
                       + "; its reply is added next to the original.")
        except ChatError as exc:
            message = warning(exc)
        return await self._answer(message, workflow_id, status)

    async def _answer(self, message: str, workflow_id: str, status: str) -> Answer:
        return message, await self.table(status), await self.steps(workflow_id)


def wire(ui: WorkflowsLayout, handlers: WorkflowHandlers, tab: gr.Tab) -> None:
    h = handlers
    refreshed: dict[str, Any] = {"inputs": [ui.status, ui.selected],
                                 "outputs": [ui.table, ui.steps]}
    # The public events first: a private one takes its handler's name, which a public one of
    # the same handler would then only get with a suffix.
    tab.select(lambda: gr.Timer(active=True), outputs=[ui.timer], queue=False,
               api_visibility="private").then(h.tick, api_name="workflows", **refreshed)
    ui.timer.tick(h.tick, api_name="tick", concurrency_limit=None, show_progress="hidden",
                  **refreshed)
    ui.selected.submit(h.steps, inputs=[ui.selected], outputs=[ui.steps], api_name="steps")
    action: dict[str, Any] = {"inputs": [ui.selected, ui.fork_step, ui.status],
                              "outputs": [ui.result, ui.table, ui.steps]}
    ui.cancel.click(h.cancel, api_name="cancel_workflow", **action)
    ui.resume.click(h.resume, api_name="resume_workflow", **action)
    ui.fork.click(h.fork, inputs=[*action["inputs"], *ui.fork_overrides],
                  outputs=action["outputs"], api_name="fork_workflow")
    ui.refresh.click(h.tick, api_visibility="private", **refreshed)
    ui.status.change(h.table, inputs=[ui.status], outputs=[ui.table], api_visibility="private")
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
