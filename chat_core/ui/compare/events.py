"""Which event runs which handler, with which inputs and outputs. Each event names only the
outputs its handler may change (Gradio rebuilds every output an event names).

A round is a chain, as in the Chat tab: the first step (`send`, or `open` finding replies still
being written) shows the prompt with pending replies, `stream` only redraws the two panes, and
`settle` draws the comparison as stored and opens the vote. The events are the page's own
(private): scripts use the REST API's /api/comparisons."""

from __future__ import annotations

from typing import Any

import gradio as gr

from chat_core.ui.compare.handlers import CompareHandlers

# Rounds wait on the service; the LLM client's semaphore is the real cap (as in the Chat tab).
UNCAPPED: dict[str, Any] = {"concurrency_limit": None}
PRIVATE: dict[str, Any] = {"api_visibility": "private"}
QUIET: dict[str, Any] = {"show_progress": "hidden", **PRIVATE}


class CompareEvents:
    def __init__(self, handlers: CompareHandlers) -> None:
        self.handlers = handlers
        ui = handlers.ui
        # What each kind of step may change: a comparison's face (panes, headings, vote, the
        # line under the panes); a comparison opened, started or put away; a round settled;
        # a vote cast.
        self.face = [*ui.panes.values(), *ui.headings.values(), *ui.votes.values(), ui.status]
        self.opened = [*self.face, ui.comparison, ui.following, ui.setup, ui.box, ui.history]
        self.settled = [*self.face, ui.box, ui.following]
        self.voted = [*self.face, ui.history]
        self.leaderboard = [ui.board, ui.plot]

    def wire(self, tab: gr.Tab) -> None:
        h, ui = self.handlers, self.handlers.ui
        # The tab selected (a reload lands on the Chat tab, so this is also where a reloaded
        # page re-attaches to replies being written): the open comparison, the models, the board.
        streams = [self._follow(tab.select(h.open, inputs=[ui.comparison],
                                           outputs=self.opened, **UNCAPPED, **QUIET)),
                   self._follow(ui.box.submit(h.send, inputs=[ui.box, ui.comparison,
                                                          *ui.side_inputs],
                                              outputs=self.opened, **UNCAPPED, **PRIVATE))]
        tab.select(h.pickers, outputs=[s.model for s in ui.sides.values()], queue=False,
                   **QUIET)
        tab.select(h.board, outputs=self.leaderboard, **QUIET)
        # Another comparison shown: the round streamed so far stops drawing into its panes.
        # (`input`: the person's choice, not the list's update by a handler.)
        self._follow(ui.history.input(h.pick, inputs=[ui.history, ui.comparison],
                                      outputs=self.opened,
                                      cancels=streams, **UNCAPPED, **PRIVATE))
        ui.new.click(h.new_comparison, outputs=self.opened, cancels=streams, **QUIET)
        for winner, button in ui.votes.items():
            button.click(h.voter(winner), inputs=[ui.comparison], outputs=self.voted,
                         **PRIVATE).then(h.board, outputs=self.leaderboard, **QUIET)

    def _follow(self, first: Any) -> Any:
        """Chain the stream and settle steps after a step that may have started a round; the
        stream step's event."""
        h, ui = self.handlers, self.handlers.ui
        stream = first.then(h.stream, inputs=[ui.following],
                            outputs=[*ui.panes.values(), ui.ended], api_name="compare_stream",
                            **UNCAPPED, **QUIET)
        stream.then(h.settle, inputs=[ui.following, ui.ended], outputs=self.settled,
                    api_name="compare_settle", **QUIET)
        return stream
