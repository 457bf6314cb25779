"""The Compare tab's components, and nothing else: no handler, no event. `CompareLayout` names
every component a handler reads or changes; the element ids are what the browser test and the
CSS use.

The sides' settings show only while no comparison is open (a new one is being set up): an open
blind comparison must not show which model answers where, and the page cannot show what it
does not hold. The model pickers start empty and are filled when the tab is selected, so the
page's config carries no model name either."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from chat_core.states import (MAX_LABEL_CHARS, MAX_SYSTEM_PROMPT_CHARS, SETTING_LIMITS,
                              SETTING_STEP, SIDES, WINNERS)
from chat_core.ui.compare.view import VOTE_WORDS, heading

COMPARISON_KEY = "durable-chat-comparison"
INTRO = ("Send one prompt to two models (or one model with two settings) and judge the "
         "replies side by side. **Blind**: they are shown as *Model A* and *Model B*, in a "
         "random order, until you vote; the names show after the vote, and the votes make "
         "the leaderboard below.")
VOTE_IDS = {"a": "vote-a", "b": "vote-b", "tie": "vote-tie", "both_bad": "vote-both-bad"}


@dataclass(frozen=True)
class SideFields:
    """One side's settings, as a new comparison is set up."""
    model: gr.Dropdown
    label: gr.Textbox
    temperature: gr.Slider
    system_prompt: gr.Textbox

    @property
    def inputs(self) -> list[Any]:
        return [self.model, self.label, self.temperature, self.system_prompt]


@dataclass(frozen=True)
class CompareLayout:
    # What the page remembers: the open comparison (localStorage, so a reload reopens it and
    # follows its replies), the round being streamed and how it ended (States: the page
    # cannot write them).
    comparison: gr.BrowserState
    following: gr.State
    ended: gr.State
    history: gr.Dropdown
    new: gr.Button
    # Shown only while a new comparison is set up (module docstring).
    setup: gr.Column
    blind: gr.Checkbox
    sides: dict[str, SideFields]
    headings: dict[str, gr.Markdown]
    panes: dict[str, gr.Chatbot]
    status: gr.Markdown
    box: gr.Textbox
    votes: dict[str, gr.Button]
    board: gr.Dataframe
    plot: gr.Plot

    @property
    def side_inputs(self) -> list[Any]:
        return [self.blind, *self.sides["a"].inputs, *self.sides["b"].inputs]


def build_layout(max_message_chars: int, temperature: float) -> CompareLayout:
    """The components, placed in the current Blocks context."""
    parts: dict[str, Any] = {
        # A fixed key, as the Chat tab's: the value is only an id, checked by the service.
        "comparison": gr.BrowserState(None, storage_key=COMPARISON_KEY,
                                      secret="durable-chat/open-comparison"),
        "following": gr.State(None), "ended": gr.State(None)}
    with gr.Column(elem_id="compare-tab"):
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            parts["history"] = gr.Dropdown(choices=[], value=None, label="Past comparisons",
                                           elem_id="compare-list", scale=4, interactive=True)
            parts["new"] = gr.Button("+ New comparison", variant="primary", scale=0,
                                     min_width=180, elem_id="compare-new")
        with gr.Column(elem_id="compare-setup") as setup:
            parts["blind"] = gr.Checkbox(True, label="Blind (hide the names until the vote)",
                                         elem_id="compare-blind")
            with gr.Row(elem_id="compare-sides"):
                parts["sides"] = {side: _side_fields(side, temperature) for side in SIDES}
        parts["setup"] = setup
        parts.update(_panes())
        parts["status"] = gr.Markdown("", elem_id="compare-status")
        parts["box"] = gr.Textbox(placeholder="A prompt for both sides (Enter sends, "
                                  "Shift+Enter for a new line)", show_label=False, lines=1,
                                  max_lines=12, max_length=max_message_chars,
                                  elem_id="compare-box", submit_btn="Send")
        with gr.Row(elem_id="compare-votes"):
            parts["votes"] = {w: gr.Button(VOTE_WORDS[w], interactive=False,
                                           elem_id=VOTE_IDS[w], min_width=120) for w in WINNERS}
        parts.update(_leaderboard())
    return CompareLayout(**parts)


def _side_fields(side: str, temperature: float) -> SideFields:
    low, high = SETTING_LIMITS["temperature"]
    with gr.Column(min_width=280, elem_id=f"compare-side-{side}"):
        # Numbered, not lettered: a blind comparison shows its sides in a random order.
        gr.Markdown(f"**Contender {SIDES.index(side) + 1}**")
        # Filled when the tab is selected (handlers.pickers), from every server's models.
        model = gr.Dropdown(choices=[("Default", "")], value="", label="Model",
                            elem_id=f"compare-model-{side}", interactive=True)
        label = gr.Textbox(label="Label (optional: its name on the leaderboard)",
                           max_length=MAX_LABEL_CHARS, elem_id=f"compare-label-{side}")
        slider = gr.Slider(low, high, value=temperature, step=SETTING_STEP,
                           label="Temperature", elem_id=f"compare-temperature-{side}")
        prompt = gr.Textbox(label="System prompt", lines=2, max_lines=6,
                            max_length=MAX_SYSTEM_PROMPT_CHARS,
                            elem_id=f"compare-system-{side}")
    return SideFields(model, label, slider, prompt)


def _panes() -> dict[str, Any]:
    headings, panes = {}, {}
    # Side by side; stacked on a phone (compare_css).
    with gr.Row(elem_id="compare-panes", equal_height=False):
        for side in SIDES:
            with gr.Column(min_width=300):
                headings[side] = gr.Markdown(heading(None, side),
                                             elem_id=f"compare-heading-{side}")
                # Sanitized HTML from render.py, as in the Chat tab: no second Markdown pass,
                # no LaTeX, no copy buttons (they would copy the HTML).
                panes[side] = gr.Chatbot(label=f"Side {side.upper()}", height=440,
                                         elem_id=f"compare-pane-{side}", autoscroll=True,
                                         sanitize_html=True, buttons=[], render_markdown=False,
                                         latex_delimiters=[], show_label=False)
    return {"headings": headings, "panes": panes}


def _leaderboard() -> dict[str, Any]:
    with gr.Accordion("Leaderboard", open=True, elem_id="compare-leaderboard"):
        gr.Markdown("Ratings from your votes (Bradley-Terry on the Elo scale, mean 1000) with "
                    "95% bootstrap intervals; refreshed after each vote.")
        board = gr.Dataframe(interactive=False, elem_id="leaderboard", wrap=True)
        plot = gr.Plot(label="Head-to-head win rate", elem_id="leaderboard-plot")
    return {"board": board, "plot": plot}


def compare_css(phone_max_width_px: int) -> str:
    """The tab's rules, for the page's CSS: user messages keep their line breaks; on a phone
    the panes and the sides' settings stack, and the vote buttons are easy to tap."""
    return """
#compare-tab [data-testid="user"] { white-space: pre-wrap; }
#compare-tab button[aria-label="Clear"] { display: none; }
@media (max-width: %(max)dpx) {
  #compare-panes, #compare-sides { flex-direction: column; }
  #compare-panes > *, #compare-sides > * { width: 100%% !important; }
  #compare-votes button, #compare-new { min-height: 44px; }
}
""" % {"max": phone_max_width_px}
