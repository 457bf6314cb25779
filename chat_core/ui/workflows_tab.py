"""The Workflows tab: every chat turn as the DBOS workflow it is, refreshed while the tab is
open, with its steps, and Cancel, Resume and Fork (optionally with other parameters)."""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
import pandas as pd

from chat_core.errors import ChatError, InvalidInput
from chat_core.service import ChatService
from chat_core.turns.workflow import STEP_NAMES
from chat_core.ui.render import safe_markdown
from chat_core.states import MAX_SYSTEM_PROMPT_CHARS, WORKFLOW_STATES

TURN_COLUMNS = ["workflow", "conversation", "status", "reply", "started", "seconds",
                "recoveries", "error"]
STEP_COLUMNS = ["step", "name", "started", "ms", "error"]


def _clock(stamp: str | None) -> str:
    """"2026-11-25T19:49:52.094Z" -> "2026-11-25 19:49:52" (UTC)."""
    return stamp[:19].replace("T", " ") if stamp else ""


def _seconds(ms: float | None) -> str:
    return "" if ms is None else f"{ms / 1000:.2f}"


def build_workflows_tab(service: ChatService, tab: gr.Tab) -> gr.Timer:
    gr.Markdown("Every chat turn is a DBOS workflow, checkpointed step by step in PostgreSQL. "
                "The table refreshes every 2 s while this tab is open. Select a row to see its "
                "steps. **Cancel** stops a running turn (its text so far is kept); **Resume** "
                "runs a cancelled or stuck turn again from its last finished step, on this "
                "process; **Fork** runs a turn again from a step, optionally with other "
                "parameters, and adds its reply as an alternative to the original's.")
    with gr.Row(equal_height=True):
        status = gr.Dropdown(["all", *WORKFLOW_STATES], value="all", label="Status filter",
                             elem_id="wf-status", scale=1, min_width=160)
        selected = gr.Textbox(label="Selected workflow", elem_id="wf-selected", scale=3,
                              placeholder="select a row below, or paste a workflow id")
        refresh = gr.Button("Refresh", scale=0, min_width=100)
    table = gr.Dataframe(headers=TURN_COLUMNS, interactive=False, wrap=True,
                         elem_id="wf-table", max_height=380,
                         column_widths=["25%", "23%", "10%", "9%", "11%", "8%", "6%", "8%"])
    with gr.Row(equal_height=True):
        cancel = gr.Button("Cancel", variant="stop", elem_id="wf-cancel", scale=1)
        resume = gr.Button("Resume", elem_id="wf-resume", scale=1)
        fork_step = gr.Dropdown([(f"{i}. {name}", i) for i, name in enumerate(STEP_NAMES, 1)],
                                value=3, show_label=False, scale=1, elem_id="wf-fork-step",
                                min_width=160)
        fork = gr.Button("Fork from step", elem_id="wf-fork", scale=1)
    with gr.Accordion("Fork with other parameters (empty: the turn's own)", open=False):
        with gr.Row():
            # Text, not number fields: empty must mean "the turn's own", and 0 is a valid
            # temperature.
            fork_temperature = gr.Textbox(label="Temperature (0-2)", elem_id="wf-temperature",
                                          placeholder="the turn's own", max_length=20)
            fork_top_p = gr.Textbox(label="Top p (0-1]", elem_id="wf-top-p",
                                    placeholder="the turn's own", max_length=20)
            fork_max_tokens = gr.Textbox(label="Max tokens", elem_id="wf-max-tokens",
                                         placeholder="the turn's own", max_length=20)
        fork_system = gr.Textbox(label="System prompt (fork from step 2 to refit the history)",
                                 elem_id="wf-system-prompt", max_length=MAX_SYSTEM_PROMPT_CHARS)
    result = gr.Markdown("", elem_id="wf-result")
    steps = gr.Dataframe(headers=STEP_COLUMNS, interactive=False, elem_id="wf-steps",
                         label="Steps of the selected workflow")
    timer = gr.Timer(2.0, active=False)

    async def load_table(state: str) -> pd.DataFrame:
        rows = await service.workflows.list_turns(None if state == "all" else state, limit=100)
        return pd.DataFrame([[r["workflow_id"], r["conversation_title"] or r["conversation_id"],
                              r["status"], r["reply_status"], _clock(r["started_at"]),
                              _seconds(r["duration_ms"]),
                              max(0, (r["recovery_attempts"] or 1) - 1), r["error"] or ""]
                             for r in rows], columns=TURN_COLUMNS)

    async def load_steps(workflow_id: str) -> pd.DataFrame:
        workflow_id = (workflow_id or "").strip()
        if not workflow_id:
            return pd.DataFrame(columns=STEP_COLUMNS)
        try:
            rows = await service.workflows.steps(workflow_id)
        except ChatError:
            return pd.DataFrame(columns=STEP_COLUMNS)
        return pd.DataFrame([[r["step"], r["name"], _clock(r["started_at"]), r["duration_ms"],
                              r["error"] or ""] for r in rows], columns=STEP_COLUMNS)

    async def tick(state: str, workflow_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        return await load_table(state), await load_steps(workflow_id)

    def pick(frame: pd.DataFrame, evt: gr.SelectData) -> str:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return str(frame.iloc[row]["workflow"])

    async def act(action: str, workflow_id: str, step: int, state: str,
                  overrides: dict[str, Any] | None = None
                  ) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        workflow_id = (workflow_id or "").strip()
        try:
            if action == "cancel":
                info = await service.workflows.cancel(workflow_id)
                message = f"Cancelled `{workflow_id}`: now {info['status']}."
            elif action == "resume":
                info = await service.workflows.resume(workflow_id)
                message = f"Resumed `{workflow_id}`: now {info['status']}."
            else:
                info = await service.workflows.fork(workflow_id, _whole(step), overrides)
                changed = ", ".join(f"{k}={v!r}" for k, v in info["params"].items())
                message = (f"Forked `{workflow_id}` from step {step} as `{info['workflow_id']}`"
                           + (f" with {safe_markdown(changed)}" if changed else "")
                           + "; its reply is added next to the original.")
        except ChatError as exc:
            message = f"⚠️ {safe_markdown(exc.message)}"
        return message, await load_table(state), await load_steps(workflow_id)

    async def do_cancel(w: str, s: int, st: str) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        return await act("cancel", w, s, st)

    async def do_resume(w: str, s: int, st: str) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        return await act("resume", w, s, st)

    async def do_fork(w: str, s: int, st: str, temp: str, p: str, tokens: str, system: str
                      ) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        overrides: dict[str, Any] = {}
        for name, text in (("temperature", temp), ("top_p", p), ("max_tokens", tokens)):
            text = (text or "").strip()
            if not text:
                continue
            try:
                overrides[name] = float(text)
            except ValueError:
                return (f"⚠️ {name} must be a number, got {safe_markdown(text)!s}",
                        await load_table(st), await load_steps(w))
        if system:
            overrides["system_prompt"] = system
        return await act("fork", w, s, st, overrides or None)

    tab.select(lambda: gr.Timer(active=True), outputs=[timer], queue=False,
               api_visibility="private").then(tick, inputs=[status, selected],
                                              outputs=[table, steps], api_name="workflows")
    timer.tick(tick, inputs=[status, selected], outputs=[table, steps], api_name="tick",
               concurrency_limit=None, show_progress="hidden")
    refresh.click(tick, inputs=[status, selected], outputs=[table, steps],
                  api_visibility="private")
    status.change(load_table, inputs=[status], outputs=[table], api_visibility="private")
    table.select(pick, inputs=[table], outputs=[selected], api_visibility="private").then(
        load_steps, inputs=[selected], outputs=[steps], api_visibility="private")
    selected.submit(load_steps, inputs=[selected], outputs=[steps], api_name="steps")
    action_io: dict[str, Any] = dict(inputs=[selected, fork_step, status],
                                     outputs=[result, table, steps])
    cancel.click(do_cancel, api_name="cancel_workflow", **action_io)
    resume.click(do_resume, api_name="resume_workflow", **action_io)
    fork.click(do_fork, inputs=[selected, fork_step, status, fork_temperature, fork_top_p,
                                fork_max_tokens, fork_system],
               outputs=[result, table, steps], api_name="fork_workflow")
    return timer


def _whole(step: Any) -> int:
    """The fork step as the dropdown sends it; an API caller may send 2.0 or null."""
    if isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step) \
            and step == int(step):
        return int(step)
    raise InvalidInput(f"pick the step to fork from (1–{len(STEP_NAMES)})")
