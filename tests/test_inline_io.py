"""The page's per-turn steps convert their inputs and outputs on the event loop
(chat_core/ui/chat/inline_io.py): the page must receive exactly what Gradio's own processing
gave it, and the handlers the arguments it gave them, hostile values included."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import gradio as gr
import pytest
from gradio.helpers import special_args
from gradio.state_holder import SessionState

from chat_core.ui.chat.inline_io import converted
from chat_core.ui.page import build_ui
from tests.ui_fakes import FakeService

HOSTILE = ["text", "", None, 5, 2.5, True, ["a", 1], {"x": {"y": [1]}}, "\ud800 lone",
           "<img src=x onerror=alert(1)>",
           {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}]  # a server file


@pytest.fixture(scope="module")
def page() -> tuple[gr.Blocks, FakeService]:
    service = FakeService()
    return build_ui(service, share_mode=False), service  # type: ignore[arg-type]


# The page's steps: the first step of each chain by its (private) API name, finish by its
# handler's name among the chained steps (the API's own events skip postprocessing too).
PAGE_STEPS = {"send": "page_send", "retry": "page_retry", "continue_reply": "page_continue"}


def step(demo: gr.Blocks, name: str) -> Any:
    """The page's step `name` (its handler's name)."""
    if name in PAGE_STEPS:
        fns = [fn for fn in demo.fns.values() if fn.api_name == PAGE_STEPS[name]]
    else:
        fns = [fn for fn in demo.fns.values() if fn.name == name and fn.trigger_after is not None]
    assert fns, f"no page step {name}"
    assert fns[0].name == name, f"{PAGE_STEPS.get(name)} runs {fns[0].name}, not {name}"
    return fns[0]


def as_gradio_would(fn: Any) -> Any:
    """The same step as Gradio processes it by itself."""
    own = copy.copy(fn)
    own.preprocess = own.postprocess = True
    return own


def fresh(answer: Any) -> Any:
    """A copy of an answer for one use: Gradio's postprocessing pops from update dicts."""
    if isinstance(answer, dict) and "__type__" not in answer:
        return {c: copy.deepcopy(v) for c, v in answer.items()}
    return copy.deepcopy(answer)


def page_gets(demo: gr.Blocks, fn: Any, raw: Any) -> tuple[Any, Any]:
    """What the page receives for `raw`, the handler's answer: by Gradio's own processing, and
    through `converted` with the step's wiring."""
    async def answer(*_: Any, **__: Any) -> Any:
        return fresh(raw)

    async def both() -> tuple[Any, Any]:
        expected = await demo.postprocess_data(as_gradio_would(fn), fresh(raw), SessionState(demo))
        ours = await converted(answer, fn.inputs, fn.outputs)(*([None] * len(fn.inputs)))
        return expected, await demo.postprocess_data(fn, ours, SessionState(demo))
    return asyncio.run(both())


def handler_of(fn: Any) -> Any:
    return fn.fn.__wrapped__


def test_the_steps_every_turn_runs_are_wired_to_convert_in_line(page: Any) -> None:
    demo, _ = page
    for name in ("send", "retry", "continue_reply", "finish"):
        fn = step(demo, name)
        assert fn.preprocess is False and fn.postprocess is False


@pytest.mark.parametrize("name", ["send", "retry", "continue_reply", "finish"])
def test_gradio_still_hands_each_step_the_person_asking(page: Any, name: str) -> None:
    """The handlers find whose conversations they touch from the request Gradio passes them:
    the converting wrapper must show Gradio the same parameters and annotations, or with
    accounts on every message would be refused (or worse, anyone's)."""
    demo, _ = page
    fn = step(demo, name)
    asking = gr.Request(username="alice")
    given = [f"input {i}" for i in range(len(fn.inputs))]
    args, *_ = special_args(fn.fn, list(given), request=asking)
    assert args == [*given, asking]


@pytest.mark.parametrize("text", ["Hello there", "   ", "\ud800", "x" * 50])
def test_a_sent_message_reaches_the_page_as_gradio_would_send_it(page: Any, text: str) -> None:
    demo, service = page
    fn = step(demo, "send")
    for conversation in (None, asyncio.run(service.create_conversation())["id"]):
        raw = asyncio.run(handler_of(fn)(text, conversation, {}))
        expected, got = page_gets(demo, fn, raw)
        assert got == expected


def test_a_finished_turn_and_a_skipped_finish_reach_the_page_as_before(page: Any) -> None:
    demo, _ = page
    send, finish = step(demo, "send"), step(demo, "finish")
    started = asyncio.run(handler_of(send)("Hi", None, {}))
    turn = next(v for c, v in started.items() if c.stateful and isinstance(v, dict)
                and "id" in v)
    finished = asyncio.run(handler_of(finish)(turn, turn["id"]))
    panes = []
    for raw in (finished, asyncio.run(handler_of(finish)(None, "")), gr.skip()):
        expected, got = page_gets(demo, finish, raw)
        assert got == expected
        panes.append(got[0])
    # The pane as stored was among what was compared: the reply's text, in Gradio's format.
    pane = panes[0]["value"] if isinstance(panes[0], dict) else panes[0]
    assert pane[-1]["role"] == "assistant" and "Hello" in str(pane[-1]["content"])


@pytest.mark.parametrize("name", ["send", "retry", "continue_reply", "finish"])
def test_any_value_from_the_page_reaches_the_handler_as_gradio_would_hand_it(
        page: Any, name: str) -> None:
    demo, _ = page
    fn = step(demo, name)
    for value in HOSTILE:
        data = [value] * len(fn.inputs)

        async def both() -> tuple[Any, Any]:
            state = SessionState(demo)
            expected = await demo.preprocess_data(as_gradio_would(fn), list(data), state)
            seen: list[Any] = []

            async def handler(*args: Any, **_: Any) -> Any:
                seen.extend(args)
                return gr.skip()
            raw = await demo.preprocess_data(fn, list(data), state)
            await converted(handler, fn.inputs, fn.outputs)(*raw)
            return expected, seen
        expected, seen = asyncio.run(both())
        assert seen == expected, f"{name} given {value!r}"


def test_a_retry_and_a_continue_reach_the_page_as_before(page: Any) -> None:
    demo, _ = page
    send, finish = step(demo, "send"), step(demo, "finish")
    started = asyncio.run(handler_of(send)("Hi", None, {}))
    conversation = next(v for c, v in started.items() if type(c).__name__ == "BrowserState")
    turn = next(v for c, v in started.items() if c.stateful and isinstance(v, dict)
                and "id" in v)
    ended = asyncio.run(handler_of(finish)(turn, turn["id"]))
    view = next(v for c, v in ended.items() if c.stateful and isinstance(v, dict)
                and "ids" in v)
    retry, proceed = step(demo, "retry"), step(demo, "continue_reply")
    again = asyncio.run(handler_of(retry)(conversation, view))
    assert isinstance(again, dict) and "__type__" not in again  # a turn started again
    # (The fake service cannot continue a reply: the continue's answer here is its skip.)
    for fn, raw in ((retry, again), (retry, asyncio.run(handler_of(retry)(None, {}))),
                    (proceed, asyncio.run(handler_of(proceed)(None, {})))):
        expected, got = page_gets(demo, fn, raw)
        assert got == expected
