"""The reply as the chat page draws it: GET /api/turns/{id}/events?render=html, on a stand-in
service (no database, no LLM: fast). The page's script sets this HTML into the pane as it is
(ui/chat/live_reply.py), so what these events carry is what the browser renders: the server's
sanitized HTML, whole each time. tests/test_browser.py follows it in Chromium."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any, AsyncIterator

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from chat_core.errors import NotFound
from chat_core.states import COMPLETE, STREAMING
from chat_core.turns.progress import Snapshot
from chat_core.ui.chat.view import RESTARTING_NOTICE
from chat_core.web.api import install_rest_api
from chat_core.web.request_guards import install_request_guards

HOSTILE = ('<script>window.x = 1</script> ![leak](http://evil.example/l.png) '
           '<img src=x onerror="window.x = 2"> [site](http://evil.example/) **bold**')


class Replies:
    """A stand-in for the few service methods the stream calls: each turn id its own reply."""

    def __init__(self, texts: list[tuple[str, str]], end: Exception | None = None) -> None:
        self.texts, self.end = texts, end

    async def check_turn_exists(self, turn_id: str) -> None:
        if turn_id != "turn-1":
            raise NotFound(f"turn {turn_id} does not exist")

    async def watch_turn(self, turn_id: str, **_: Any) -> AsyncIterator[Snapshot]:
        for status, text in self.texts:
            yield Snapshot(turn_id, "r1", status, text, 0)
        if self.end is not None:
            raise self.end


class Elements(HTMLParser):
    """Every element and attribute a browser would build from some HTML."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def client_for(service: Replies, share_mode: bool = False) -> TestClient:
    app = FastAPI()
    install_rest_api(app, service)  # type: ignore[arg-type]
    install_request_guards(app, ["testserver"])
    app.state.share_mode = share_mode
    return TestClient(app)


def events(client: TestClient, url: str = "/api/turns/turn-1/events?render=html"
           ) -> list[tuple[str, Any]]:
    with client.stream("GET", url) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        body = answer.read().decode()
    parsed = []
    for block in body.strip().split("\n\n"):
        name, data = block.split("\n")
        parsed.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return parsed


def test_each_update_is_the_whole_reply_rendered_then_how_it_ended() -> None:
    got = events(client_for(Replies([(STREAMING, "Hel"), (STREAMING, "Hello *there*"),
                                     (COMPLETE, "Hello *there*.")])))
    assert got[0] == ("html", {"html": "<p>Hel</p>"})
    assert got[-2] == ("html", {"html": "<p>Hello <em>there</em>.</p>"})
    assert got[-1] == ("done", {"status": COMPLETE, "notice": None})


@pytest.mark.parametrize("share_mode", [False, True])
def test_hostile_text_arrives_inert(share_mode: bool) -> None:
    got = events(client_for(Replies([(STREAMING, HOSTILE)]), share_mode))
    html = got[0][1]["html"]
    assert "<strong>bold</strong>" in html and "[image: leak]" in html
    assert "&lt;script&gt;" in html  # what the model wrote, shown as text
    elements = Elements(html).found
    # Links: locally an <a> to an absolute http(s) address; in share mode text only.
    assert {tag for tag, _ in elements} == ({"p", "strong"} if share_mode else
                                            {"p", "strong", "a"})
    assert [attrs for tag, attrs in elements if tag == "a"] == ([] if share_mode else [[
        ("href", "http://evil.example/"), ("target", "_blank"),
        ("rel", "noopener noreferrer nofollow")]])


def test_the_page_is_told_when_the_app_stops_under_the_reply() -> None:
    from chat_core.errors import ShuttingDown
    got = events(client_for(Replies([(STREAMING, "partial")], ShuttingDown("stopping"))))
    assert got[0] == ("html", {"html": "<p>partial</p>"})
    assert got[-1] == ("done", {"status": "restarting", "notice": RESTARTING_NOTICE})


def test_a_bug_in_the_stream_ends_it_with_an_error_event() -> None:
    got = events(client_for(Replies([(STREAMING, "partial")], RuntimeError("SELECT secret"))))
    assert got[-1] == ("error", {"error": "internal error; see the server log",
                                 "code": "internal_error", "status": 500})


def test_an_unknown_turn_is_a_404_and_an_unknown_rendering_a_422() -> None:
    client = client_for(Replies([]))
    missing = client.get("/api/turns/turn-2/events?render=html")
    assert missing.status_code == 404
    assert missing.json() == {"error": "turn turn-2 does not exist", "code": "not_found"}
    for bad in ("HTML", "markdown", "html&render=x", ""):
        answer = client.get(f"/api/turns/turn-1/events?render={bad}")
        assert answer.status_code == 422, bad
        assert answer.json()["code"] == "invalid_input" and "html" in answer.json()["error"]
