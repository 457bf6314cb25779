"""Make the outputs an event leaves out cost nothing in Gradio.

A Gradio handler that returns a dict updates only the components it names; Gradio fills the
others with `gr.skip()`, and then, for each of those, builds the component anew from its
constructor arguments (about 5 ms of CPU here) only to find nothing changed. The chat events
have 15 outputs and a streaming reply yields only the chat pane, so Gradio spent a third of
its CPU on a turn rebuilding components nobody changed (py-spy, 64 conversations at once).
The same rebuild follows every property update, also one that sets what the component already
shows (enabling an input that is enabled, hiding a hidden button).

`install()` wraps `Blocks.postprocess_data`: from a dict return it drops the properties equal
to the session's current ones, hands Gradio's own code only the outputs with something left,
and puts the others back as `gr.skip()`: the page ends up as it would have. Only Gradio 6 with
the signature checked below is wrapped; anything else runs unchanged.
"""

from __future__ import annotations

import copy
import inspect
import logging
from typing import Any

import gradio as gr
from gradio.blocks import Block, Blocks

log = logging.getLogger(__name__)

_SKIP: dict[str, Any] = {"__type__": "update"}
_MARK = "_durable_chat_skips"


def install() -> bool:
    """Wrap Gradio's postprocessing once; False if this Gradio does not look as expected."""
    original = Blocks.postprocess_data
    if getattr(original, _MARK, False):
        return True
    params = list(inspect.signature(original).parameters)
    if not gr.__version__.startswith("6.") or params != ["self", "block_fn", "predictions",
                                                          "state"]:
        log.warning("Gradio %s: skipped outputs are left to Gradio (slower streaming)",
                    gr.__version__)
        return False

    async def postprocess_data(self: Blocks, block_fn: Any, predictions: Any,
                               state: Any) -> list[Any]:
        outputs = list(block_fn.outputs)
        if not (isinstance(predictions, dict) and predictions and len(outputs) > 1
                and not block_fn.batch and all(isinstance(k, Block) for k in predictions)):
            return await original(self, block_fn, predictions, state)
        given = {id(k): _changed(k, v, state) for k, v in predictions.items()}
        if not given.keys() <= {id(o) for o in outputs}:
            return await original(self, block_fn, predictions, state)
        named = [o for o in outputs if id(o) in given and given[id(o)] != _SKIP]
        if not named:
            return [_skipped(o) for o in outputs]
        narrowed = copy.copy(block_fn)
        narrowed.outputs = named
        # Gradio wraps the value of a single output itself; several go as a list.
        values: Any = given[id(named[0])] if len(named) == 1 else \
            [given[id(o)] for o in named]
        produced = iter(await original(self, narrowed, values, state))
        named_ids = {id(o) for o in named}
        return [next(produced) if id(o) in named_ids else _skipped(o) for o in outputs]

    setattr(postprocess_data, _MARK, True)
    postprocess_data.__wrapped__ = original  # type: ignore[attr-defined]
    Blocks.postprocess_data = postprocess_data  # type: ignore[method-assign]
    return True


def _changed(block: Block, value: Any, state: Any) -> Any:
    """A property update without the properties the session's copy of `block` already has
    (the value always stays: it may be edited on the page meanwhile)."""
    if not (isinstance(value, dict) and value.get("__type__") == "update") or len(value) == 1:
        return value
    current = (state.get(block._id, block) if state is not None else block).constructor_args
    return {k: v for k, v in value.items()
            if k in ("__type__", "value") or current.get(k, _SKIP) != v}


def _skipped(block: Block) -> Any:
    """What Gradio sends for an output left alone: nothing for a State, else `gr.skip()`."""
    return None if block.stateful else dict(_SKIP)
