"""The REST API's server-sent events as a client parses them (chat_core/web/api/streaming.py):
UTF-8 text as it is, and what UTF-8 cannot carry as JSON's escapes rather than a broken stream."""

from __future__ import annotations

import json

from chat_core.web.api.streaming import sse_event


def _parse(raw: bytes) -> tuple[str, object]:
    text = raw.decode("utf-8")
    assert text.endswith("\n\n")
    head, data = text[:-2].split("\n")
    return head.removeprefix("event: "), json.loads(data.removeprefix("data: "))


def test_an_event_carries_any_text_as_utf8() -> None:
    text = "naïve 東京 🙂 \"quoted\"\nnew line </script>"
    raw = sse_event("delta", {"text": text})
    assert "東京 🙂".encode() in raw  # not escaped: a third of the bytes
    assert _parse(raw) == ("delta", {"text": text})


def test_a_lone_surrogate_goes_escaped_and_the_rest_of_the_event_with_it() -> None:
    raw = sse_event("done", {"text": "half \ud83d of a pair", "n": 1})
    assert _parse(raw) == ("done", {"text": "half \ud83d of a pair", "n": 1})
