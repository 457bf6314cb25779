"""How the REST API answers errors, on a stand-in service (no database, no LLM: fast).

Every error is JSON {"error", "code"} with its status, answered by the route itself: an
unexpected exception must not reach Starlette's ServerErrorMiddleware, which re-raises after
answering (uvicorn logs a second traceback) and answers outside the request guards (no security
headers). TestClient re-raises what reaches that middleware, so these tests would see it."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any, AsyncIterator

import psycopg
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from chat_core.errors import NotFound
from chat_core.states import STREAMING
from chat_core.turns.progress import Snapshot
from chat_core.web.api import install_rest_api
from chat_core.web.request_guards import install_request_guards

DRIVER_TEXT = "connection to server at 10.0.0.7 failed: password authentication"


class StandIn:
    """The few service methods these tests call; each id picks a failure."""

    settings = SimpleNamespace(max_body_bytes=10_000)

    async def get_conversation(self, cid: str) -> dict[str, Any]:
        if cid == "bug":
            raise RuntimeError("SELECT secret FROM internals")
        if cid == "db-down":
            raise psycopg.OperationalError(DRIVER_TEXT)
        raise NotFound(f"conversation {cid} does not exist")

    async def create_conversation(self, title: str | None) -> dict[str, Any]:
        return {"id": "c1", "title": title or ""}

    async def check_turn_exists(self, turn_id: str) -> None:
        return None

    async def watch_turn(self, turn_id: str) -> AsyncIterator[Snapshot]:
        yield Snapshot(turn_id, "r1", STREAMING, "Hel", 0, None)
        raise RuntimeError("the stream broke")


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_rest_api(app, StandIn())  # type: ignore[arg-type]
    install_request_guards(app, ["testserver"])
    return TestClient(app)  # raise_server_exceptions: what reaches ServerErrorMiddleware raises


def test_a_chat_error_is_its_json_and_status(client: TestClient) -> None:
    answer = client.get("/api/conversations/nope")
    assert answer.status_code == 404
    assert answer.json() == {"error": "conversation nope does not exist", "code": "not_found"}


def test_a_bug_is_a_json_500_with_the_security_headers_and_one_traceback(
        client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        answer = client.get("/api/conversations/bug")
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error; see the server log",
                             "code": "internal_error"}
    assert answer.headers["x-content-type-options"] == "nosniff"  # the request guards ran
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1 and "get_conversation" in logged[0].getMessage()


def test_a_database_outage_is_a_503_that_names_no_server(
        client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        answer = client.get("/api/conversations/db-down")
    assert answer.status_code == 503
    assert answer.json()["code"] == "database_unavailable"
    assert "10.0.0.7" not in answer.text
    assert not any(r.exc_info for r in caplog.records)  # a warning, not a traceback


@pytest.mark.parametrize("ctype", ["text/xml", "application/octet-stream", None])
def test_a_body_that_is_not_json_is_415(client: TestClient, ctype: str | None) -> None:
    headers = {"content-type": ctype} if ctype else {}
    answer = client.post("/api/conversations", content=b'{"title": "t"}', headers=headers)
    assert answer.status_code == 415, answer.text
    assert answer.json()["code"] == "unsupported_media_type"
    assert "application/json" in answer.json()["error"]


def test_json_bodies_and_an_empty_optional_body_are_taken(client: TestClient) -> None:
    assert client.post("/api/conversations", json={"title": "T"}).json()["title"] == "T"
    assert client.post("/api/conversations", content=b'{"title": "U"}', headers={
        "content-type": "application/vnd.api+json"}).json()["title"] == "U"
    assert client.post("/api/conversations").status_code == 201


def test_a_json_null_is_not_an_object(client: TestClient) -> None:
    answer = client.patch("/api/conversations/c1", content=b"null",
                          headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert answer.json() == {"error": "the body must be a JSON object", "code": "invalid_input"}


def test_an_unknown_api_path_is_a_json_404(client: TestClient) -> None:
    answer = client.delete("/api/nothing/here")
    assert answer.status_code == 404
    assert answer.json() == {"error": "no endpoint DELETE /api/nothing/here; see /api/docs",
                             "code": "not_found"}


def test_a_bug_in_a_stream_ends_it_with_an_error_event(client: TestClient) -> None:
    with client.stream("GET", "/api/turns/turn-1/events") as answer:
        assert answer.status_code == 200
        body = answer.read().decode()
    events = [block.split("\n") for block in body.strip().split("\n\n")]
    assert [lines[0] for lines in events] == ["event: delta", "event: error"]
    error = json.loads(events[-1][1].removeprefix("data: "))
    assert error == {"error": "internal error; see the server log", "code": "internal_error",
                     "status": 500}


def test_a_bug_outside_the_routes_is_still_json(caplog: pytest.LogCaptureFixture) -> None:
    """A middleware's exception reaches the app-level handler (then Starlette re-raises it)."""
    app = FastAPI()
    install_rest_api(app, StandIn())  # type: ignore[arg-type]

    @app.middleware("http")
    async def broken(request: Any, call_next: Any) -> Any:
        raise RuntimeError("middleware bug")

    with caplog.at_level(logging.ERROR):
        answer = TestClient(app, raise_server_exceptions=False).get("/api/conversations/x")
    assert answer.status_code == 500
    assert answer.json()["code"] == "internal_error"


def test_the_interactive_docs_list_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    conv, msg = "/api/conversations/{conversation_id}", "/{message_id}"
    assert routes == {
        ("GET", "/healthz"), ("GET", "/api/models"), ("GET", "/api/conversations"), ("POST", "/api/conversations"),
        ("POST", "/api/conversations/import"), ("GET", conv), ("PATCH", conv), ("DELETE", conv),
        ("GET", f"{conv}/export"), ("GET", f"{conv}/messages"), ("POST", f"{conv}/messages"),
        *(("POST", f"{conv}/messages{msg}/{action}")
          for action in ("retry", "continue", "edit", "branch", "select")),
        ("PUT", f"{conv}/messages{msg}/rating"), ("GET", "/api/dataset"),
        ("GET", "/api/turns/{turn_id}/events"), ("POST", "/api/turns/{turn_id}/stop"),
        ("GET", "/api/workflows"), ("GET", "/api/workflows/{workflow_id}"),
        ("GET", "/api/workflows/{workflow_id}/steps"),
        *(("POST", f"/api/workflows/{{workflow_id}}/{action}")
          for action in ("cancel", "resume", "fork")),
        ("POST", f"{conv}/links"), ("GET", f"{conv}/links"),
        ("DELETE", f"{conv}/links/{{link_id}}"),
        ("GET", "/api/me"), ("DELETE", "/api/me/data"), ("GET", "/api/me/tokens"),
        ("POST", "/api/me/tokens"), ("DELETE", "/api/me/tokens/{token_id}"),
        ("GET", "/api/comparisons"), ("POST", "/api/comparisons"),
        ("GET", "/api/comparisons/{comparison_id}"),
        ("DELETE", "/api/comparisons/{comparison_id}"),
        ("POST", "/api/comparisons/{comparison_id}/messages"),
        ("POST", "/api/comparisons/{comparison_id}/vote"), ("GET", "/api/leaderboard"),
    }  # the admin's routes are left out: to anyone else they do not exist
    send = spec["paths"][f"{conv}/messages"]["post"]
    assert {p["name"] for p in send["parameters"]} >= {"idempotency-key", "stream"}
