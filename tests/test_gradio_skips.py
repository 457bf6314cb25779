"""The Gradio fast path for skipped outputs gives the page exactly what Gradio gave it, without
rebuilding the components an event left alone."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import gradio as gr
import pytest
from gradio.blocks import Blocks
from gradio.state_holder import SessionState

from chat_core.ui import gradio_skips


def _demo() -> tuple[gr.Blocks, Any, list[Any]]:
    with gr.Blocks() as demo:
        box = gr.Textbox()
        stop = gr.Button(visible=False)
        note = gr.Markdown()
        memo = gr.State({})
        outputs = [box, stop, note, memo]
        box.submit(lambda: None, outputs=outputs)
    return demo, demo.fns[0], outputs


CASES = [
    lambda o: {o[2]: "only the note"},
    lambda o: {o[0]: gr.update(value="", interactive=False), o[1]: gr.update(visible=True)},
    lambda o: {o[1]: gr.update(visible=True), o[3]: {"kept": 1}},
    lambda o: {o[0]: "x", o[1]: gr.skip(), o[2]: "y", o[3]: {}},
    lambda o: {o[0]: "all", o[1]: gr.update(visible=True), o[2]: "of", o[3]: {"them": 1}},
    lambda o: ["a", gr.skip(), "b", {}],
    lambda o: gr.skip(),
]


@pytest.fixture()
def gradio_postprocess() -> Iterator[Any]:
    """Gradio's own postprocessing, put back after the test installs the fast path."""
    original = Blocks.postprocess_data
    if getattr(original, gradio_skips._MARK, False):
        original = original.__wrapped__
        Blocks.postprocess_data = original  # type: ignore[method-assign]
    try:
        yield original
    finally:
        Blocks.postprocess_data = original  # type: ignore[method-assign]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_same_outputs_as_gradio(case: int, gradio_postprocess: Any) -> None:
    demo, fn, outputs = _demo()
    expected = asyncio.run(gradio_postprocess(demo, fn, CASES[case](outputs),
                                              SessionState(demo)))
    assert gradio_skips.install()
    got = asyncio.run(Blocks.postprocess_data(demo, fn, CASES[case](outputs),
                                              SessionState(demo)))
    assert got == expected


def test_skipped_components_are_not_rebuilt(gradio_postprocess: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    demo, fn, outputs = _demo()
    built: list[str] = []
    for cls in (gr.Textbox, gr.Button, gr.Markdown):
        init = cls.__init__

        def counting(self: Any, *args: Any, _init: Any = init, _name: str = cls.__name__,
                     **kwargs: Any) -> None:
            built.append(_name)
            _init(self, *args, **kwargs)
        monkeypatch.setattr(cls, "__init__", counting)
    asyncio.run(gradio_postprocess(demo, fn, {outputs[2]: "text"}, SessionState(demo)))
    assert sorted(built) == ["Button", "Textbox"]  # what Gradio alone does
    built.clear()
    assert gradio_skips.install()
    asyncio.run(Blocks.postprocess_data(demo, fn, {outputs[2]: "text"}, SessionState(demo)))
    assert built == []
    session = SessionState(demo)
    asyncio.run(Blocks.postprocess_data(demo, fn, {outputs[1]: gr.update(visible=True)},
                                        session))
    assert built == ["Button"]  # a real property change still goes through Gradio
    # Setting what the session's component already shows sends and rebuilds nothing.
    again = asyncio.run(Blocks.postprocess_data(
        demo, fn, {outputs[1]: gr.update(visible=True), outputs[2]: "more"}, session))
    assert again[1] == gr.skip() and again[2] == "more" and built == ["Button"]
    hidden = asyncio.run(Blocks.postprocess_data(demo, fn, {outputs[1]: gr.update(visible=False)},
                                                 session))
    assert hidden[1] == {"__type__": "update", "visible": False} and built == ["Button"] * 2
