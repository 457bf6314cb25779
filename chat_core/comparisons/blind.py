"""What a blind comparison shows before its vote: "Model A" and "Model B", never a model's
name, on every surface (the comparison's views, its events, a failed turn's error text, which
the Workflows tab and re-attached streams show too)."""

from __future__ import annotations

import re
from typing import Any

from chat_core.states import BLIND_NAMES


def mask_names(text: str | None, names: dict[str, str]) -> str | None:
    """`text` with every real name in `names` (any case, whole names only: a label "a" must
    not touch every "a") replaced by its blind name, in one pass (a blind name is never
    masked again); the longest name wins where names overlap."""
    real = sorted((n for n in names if n), key=len, reverse=True)
    if not text or not real:
        return text
    shown = {n.casefold(): names[n] for n in real}
    pattern = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, real)) + r")(?!\w)",
                         re.IGNORECASE)
    return pattern.sub(lambda m: shown.get(m.group(0).casefold(), m.group(0)), text)


def blind_error(blind_name: str) -> str:
    """A blind side's error text: that it failed, and what to do, never why (a server's
    error names its address, its model or its context window, each of which tells the model)."""
    return (f"{blind_name} could not answer this message. A blind comparison does not show "
            "why (the reason could tell the model); once you have voted, retrying the message "
            "in that side's conversation shows it")


# What a blind side's reply shows before the vote. Not its parameters, token counts or
# timings (not even when it ended): a context window, a temperature, a tokenizer's counts or a
# server's speed tell a model or a setting apart as surely as its name.
BLIND_REPLY_FIELDS = ("id", "role", "content", "created_at", "conversation_id", "seq", "status",
                      "parent_id", "active", "error", "workflow_id")


def masked_message(message: dict[str, Any], side: str, names: dict[str, str]
                   ) -> dict[str, Any]:
    """A side's message as a blind comparison shows it: a reply's allowed fields only, its
    model the side's blind name, its error text masked."""
    if message.get("role") != "assistant":
        return dict(message)
    out = {key: message.get(key) for key in BLIND_REPLY_FIELDS}
    out["model"] = BLIND_NAMES[side]
    out["error"] = mask_names(out.get("error"), names)
    return out
