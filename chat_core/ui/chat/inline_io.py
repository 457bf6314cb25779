"""The steps that start a turn on the page, and its finish, convert their inputs and outputs
on the event loop, not on Gradio's worker threads.

Gradio hands each input of an event to a worker thread for its component's `preprocess`, and
each plain value it returns to one for `postprocess`: a thread hop each. A message's two steps
on the page (send, finish) carry about a dozen between them, and in a room's burst each hop
puts the step at the back of a busy event loop's queue once more. For their components (text,
Markdown, the chat pane already rendered, states) the conversions are quick, so these steps
run them here with the components' own methods, and are wired with INLINE: Gradio still
validates what comes in and checks files both ways, and the page and the handlers get what they
got before (tests/test_inline_io.py compares the two, hostile inputs included).

Only for steps whose property updates change nothing a conversion reads: Gradio converts an
updated value with the component as updated (a Dropdown's new choices, say), this module with
the page's own. The send and finish steps update a Textbox's interactivity, rows' classes and
visibility, and the Chatbot's thumbs (a retry or a continue the same); opening a conversation updates the model Dropdown's
choices, and stays with Gradio.

The cost moves onto the loop whole, where a thread shared it: the Chatbot's conversion grows
with the pane, which view.SHOWN_TURNS bounds (200 long messages: about 7 ms)."""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable, Sequence

from gradio.components import Component
from gradio.data_classes import GradioModel, GradioRootModel

Handler = Callable[..., Awaitable[Any]]


def page_value(component: Component, value: Any) -> Any:
    """`value` as Gradio's postprocessing would send it for `component`: a state stays in the
    session as it is, a property update gets its value converted, a plain value is converted."""
    if component.stateful:
        return value
    if isinstance(value, dict) and value.get("__type__") == "update":
        if "value" not in value:
            return value
        return {**value, "value": _converted(component, value["value"])}
    return _converted(component, value)


def _converted(component: Component, value: Any) -> Any:
    out = component.postprocess(value)
    return out.model_dump() if isinstance(out, (GradioModel, GradioRootModel)) else out


def handler_value(component: Component, value: Any) -> Any:
    """A page's `value` for `component` as Gradio's preprocessing would hand it to a handler
    (a state is the session's own, never from the page)."""
    return value if component.stateful else component.preprocess(value)


def converted(handler: Handler, inputs: Sequence[Component], outputs: Sequence[Component]
              ) -> Handler:
    """`handler`, its arguments and its answer (a dict of component -> value, or one value
    per output) converted as Gradio converts them: for an event wired with
    `preprocess=False, postprocess=False` (see INLINE)."""
    order, given = list(outputs), list(inputs)

    @functools.wraps(handler)
    async def run(*args: Any, **kwargs: Any) -> Any:
        args = tuple(handler_value(c, a) for c, a in zip(given, args)) + args[len(given):]
        answer = await handler(*args, **kwargs)
        if len(order) == 1:
            return page_value(order[0], answer)
        if not isinstance(answer, dict):
            return [page_value(c, v) for c, v in zip(order, answer)]
        if answer.get("__type__") == "update":  # gr.skip() for every output
            return answer
        return {c: page_value(c, v) for c, v in answer.items()}

    return run


# What an event converted by `converted` is wired with.
INLINE: dict[str, Any] = {"preprocess": False, "postprocess": False}
