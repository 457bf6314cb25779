"""What a blind comparison shows before its vote: "Model A" and "Model B", never a model's
name, on every surface (the comparison's views, its events, a failed turn's error text, which
the Workflows tab and re-attached streams show too)."""

from __future__ import annotations

import re
from typing import Any, Iterable

from chat_core.states import BLIND_NAMES

HIDDEN_MODEL = "another model"


def mask_names(text: str | None, names: dict[str, str]) -> str | None:
    """`text` with every real name in `names` (any case) replaced by its blind name; longer
    names first, so a name that contains another is replaced whole."""
    if not text:
        return text
    for real in sorted((n for n in names if n), key=len, reverse=True):
        text = re.sub(re.escape(real), names[real].replace("\\", r"\\"), text,
                      flags=re.IGNORECASE)
    return text


def blind_error(error: str | None, model: str | None, blind_name: str,
                others: Iterable[str]) -> str | None:
    """A blind side's error text: its own model named by its blind name, any other model
    (an "available: ..." list) as "another model"."""
    names = {other: HIDDEN_MODEL for other in others}
    if model:
        names[model] = blind_name
    return mask_names(error, names)


def masked_message(message: dict[str, Any], side: str, names: dict[str, str]
                   ) -> dict[str, Any]:
    """A side's message as a blind comparison shows it: the model and the parameters' model
    are the side's blind name, error texts masked."""
    out = dict(message)
    if out.get("role") == "assistant":
        out["model"] = BLIND_NAMES[side]
        params = dict(out.get("params") or {})
        if "model" in params:
            params["model"] = BLIND_NAMES[side]
        out["params"] = params or None
        out["error"] = mask_names(out.get("error"), names)
    return out
