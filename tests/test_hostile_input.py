"""Every endpoint against malformed and hostile input: a 4xx with a JSON error that says what
is wrong, never a 500, and nothing stored."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import pytest

from tests.helpers import InProcessApp, query

pytestmark = pytest.mark.slow  # the real app on PostgreSQL

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def conv(app: InProcessApp) -> str:
    with app.client() as http:
        return str(http.post("/api/conversations").json()["id"])


def _message_count(app: InProcessApp) -> int:
    return query(app.settings.database_url or "", "SELECT count(*) FROM messages")[0][0]


BAD_MESSAGE_BODIES = [
    # (raw body, headers, expected status, words the error must contain)
    (b"", JSON, 400, "empty"),
    (b"{", JSON, 400, "not valid JSON"),
    (b"[1, 2]", JSON, 422, "JSON object"),
    (b'"just a string"', JSON, 422, "JSON object"),
    (b"{}", JSON, 422, '"content"'),
    (b'{"content": ""}', JSON, 422, "empty"),
    (b'{"content": "   \\n\\t "}', JSON, 422, "whitespace"),
    (b'{"content": null}', JSON, 422, "string"),
    (b'{"content": 42}', JSON, 422, "string"),
    (b'{"content": ["a"]}', JSON, 422, "string"),
    (b'{"content": {"text": "hi"}}', JSON, 422, "string"),
    (b'{"content": "a\\u0000b"}', JSON, 422, "NUL"),
    (b'{"content": "\\ud800 lone surrogate"}', JSON, 422, "surrogate"),
    (b'{"content": "hi", "role": "system"}', JSON, 422, "unknown field"),
    # Content types a cross-site HTML form can send: refused as cross-site (403) by the request
    # guards where they are installed (tests/test_request_guards.py), else by the body parser.
    (b'{"content": "hi"}', {"content-type": "text/plain"}, (400, 403), "content-type"),
    (b'{"content": "hi"}', {"content-type": "application/x-www-form-urlencoded"}, (400, 403),
     "content-type"),
    (b"\xff\xfe\x00garbage", JSON, 400, "UTF-8"),
    (("[" * 100_000 + "]" * 100_000).encode(), JSON, 400, "nested"),
    (json.dumps({"content": "x" * 32_001}).encode(), JSON, 422, "limit"),
    (json.dumps({"content": "x" * 2_000_000}).encode(), JSON, 413, "limit"),
]


@pytest.mark.parametrize("body,headers,status,words", BAD_MESSAGE_BODIES,
                         ids=[f"case{i}" for i in range(len(BAD_MESSAGE_BODIES))])
def test_bad_message_bodies_are_rejected_clearly(app: InProcessApp, conv: str, body: bytes,
                                                 headers: dict, status: int | tuple[int, ...],
                                                 words: str) -> None:
    before = _message_count(app)
    with app.client() as http:
        response = http.post(f"/api/conversations/{conv}/messages", content=body, headers=headers)
    assert response.status_code in (status if isinstance(status, tuple) else (status,)), \
        response.text
    error = response.json()
    assert words.lower() in error["error"].lower(), error
    assert error["code"]
    assert _message_count(app) == before


@pytest.mark.parametrize("cid", ["not-a-uuid", str(uuid.uuid4()), "1 OR 1=1", "%00", "' ;--",
                                 "a" * 5000])
def test_unknown_or_malformed_conversation_ids_are_404(app: InProcessApp, cid: str) -> None:
    with app.client() as http:
        for method, path in (("GET", f"/api/conversations/{cid}"),
                             ("GET", f"/api/conversations/{cid}/messages"),
                             ("POST", f"/api/conversations/{cid}/messages")):
            response = http.request(method, path, json={"content": "hello"})
            assert response.status_code == 404, (method, path, response.text)
            assert "does not exist" in response.json()["error"]


def test_stored_verbatim_sql_and_html_like_content(app: InProcessApp, conv: str) -> None:
    tricky = "'); DROP TABLE messages; -- <script>alert(1)</script> ☃ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u202e"
    with app.client() as http:
        sent = http.post(f"/api/conversations/{conv}/messages", json={"content": tricky})
        assert sent.status_code == 200
        listed = http.get(f"/api/conversations/{conv}/messages").json()
    assert tricky in [m["content"] for m in listed]


@pytest.mark.parametrize("body,status", [
    (b'{"title": 5}', 422), (b'{"title": "a\\u0000"}', 422), (b'{"nope": 1}', 422),
    (b"[]", 422), (b"{bad", 400), (b'{"title": "' + b"t" * 300 + b'"}', 422),
])
def test_bad_conversation_bodies(app: InProcessApp, body: bytes, status: int) -> None:
    before = query(app.settings.database_url or "", "SELECT count(*) FROM conversations")[0][0]
    with app.client() as http:
        response = http.post("/api/conversations", content=body, headers=JSON)
    assert response.status_code == status, response.text
    assert response.json()["error"]
    assert query(app.settings.database_url or "", "SELECT count(*) FROM conversations")[0][0] \
        == before


HUGE = "100000000000000000000000"  # 1e23 written out: a whole number past PostgreSQL's bigint


@pytest.mark.parametrize("path,params", [
    ("/api/conversations", "limit=abc"), ("/api/conversations", "limit=0"),
    ("/api/conversations", "limit=100000"), ("/api/conversations", "offset=-1"),
    ("/api/conversations", "offset=1e23"), ("/api/conversations", f"offset={HUGE}"),
    ("/api/conversations", "offset=9223372036854775808"),
    ("/api/conversations", f"limit={HUGE}"), ("/api/conversations", f"q=hello&limit={HUGE}"),
    ("/api/conversations", "offset=" + "9" * 5000),
    ("/api/workflows", f"limit={HUGE}"), ("/api/workflows", "limit=1e23"),
])
def test_bad_list_parameters(app: InProcessApp, path: str, params: str) -> None:
    with app.client() as http:
        response = http.get(f"{path}?{params}")
    assert response.status_code == 422, response.text
    name = params.rsplit("&", 1)[-1].split("=")[0]
    assert name in response.json()["error"]


def _export(created_at: str) -> dict:
    return {"format": "durable-chat/conversation", "version": 1,
            "conversation": {"title": "zones", "created_at": created_at},
            "messages": [{"role": "user", "content": "hi", "created_at": created_at},
                         {"role": "assistant", "content": "hello", "created_at": created_at,
                          "completed_at": created_at}]}


@pytest.mark.parametrize("stamp,instant", [
    # Valid ISO 8601 offsets that PostgreSQL's timestamptz cannot parse (it stops at +-15:59):
    # stored as the same instant in UTC.
    ("2024-05-01T10:00:00-23:59", "2024-05-02T09:59:00+00:00"),
    ("2024-05-01T10:00:00+23:59:30", "2024-04-30T10:00:30+00:00"),
])
def test_imported_timestamps_with_extreme_offsets_keep_their_instant(
        app: InProcessApp, stamp: str, instant: str) -> None:
    with app.client() as http:
        response = http.post("/api/conversations/import", json=_export(stamp))
        assert response.status_code == 201, response.text
        cid = response.json()["id"]
    created = query(app.settings.database_url or "",
                    "SELECT created_at FROM messages WHERE conversation_id = %s", (cid,))
    assert {row[0] for row in created} == {datetime.fromisoformat(instant)}


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_imported_timestamps_outside_the_calendar_are_422(app: InProcessApp, stamp: str
                                                          ) -> None:
    before = query(app.settings.database_url or "", "SELECT count(*) FROM conversations")[0][0]
    with app.client() as http:
        response = http.post("/api/conversations/import", json=_export(stamp))
    assert response.status_code == 422, response.text
    assert "created_at" in response.json()["error"]
    assert query(app.settings.database_url or "", "SELECT count(*) FROM conversations")[0][0] \
        == before


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_bad_idempotency_keys(app: InProcessApp, conv: str, key: str) -> None:
    with app.client() as http:
        response = http.post(f"/api/conversations/{conv}/messages", json={"content": "hi"},
                             headers={"Idempotency-Key": key})
    assert response.status_code in (400, 422), response.text
    assert "key" in response.json()["error"].lower()


@pytest.mark.parametrize("turn_id", ["nope", "turn-" + "x" * 200, f"turn-{uuid.uuid4()}"])
def test_unknown_turns_are_404(app: InProcessApp, turn_id: str) -> None:
    with app.client() as http:
        assert http.post(f"/api/turns/{turn_id}/stop").status_code == 404
        assert http.get(f"/api/turns/{turn_id}/events").status_code == 404


def test_retry_of_unknown_message_is_404(app: InProcessApp, conv: str) -> None:
    with app.client() as http:
        response = http.post(f"/api/conversations/{conv}/messages/{uuid.uuid4()}/retry")
    assert response.status_code == 404


def _answered(app: InProcessApp, conv: str) -> str:
    """A reply of the module's conversation, finished."""
    with app.client() as http:
        sent = http.post(f"/api/conversations/{conv}/messages", json={"content": "rate me"})
    assert sent.status_code == 200, sent.text
    return str(sent.json()["assistant_message"]["id"])


def _ratings(app: InProcessApp) -> list[tuple]:
    return query(app.settings.database_url or "",
                 "SELECT message_id, value, tags, comment FROM ratings ORDER BY message_id")


@pytest.mark.parametrize("body,status,words", [
    (b'{"value": 1, "tags": ["<script>alert(1)</script>", "\'; DROP TABLE ratings; --"]}',
     200, ""),
    (b'{"value": 7}', 422, "thumbs up"), (b'{"value": "1"}', 422, "thumbs up"),
    (b'{"value": 1, "tags": {"a": 1}}', 422, "list"),
    (b'{"value": 1, "comment": "\ud800"}', 422, "surrogate"),
    (b'{"value": 1, "comment": "a\u0000"}', 422, "NUL"),
    (b'{"value": 1, "tags": [' + b'"t",' * 5000 + b'"t"]}', 422, "limit"),
    (("[" * 100_000 + "]" * 100_000).encode(), 400, "nested"),
    (b"{", 400, "not valid JSON"),
])
def test_hostile_rating_bodies(app: InProcessApp, conv: str, body: bytes, status: int,
                               words: str) -> None:
    reply = _answered(app, conv)
    before = _ratings(app)
    with app.client() as http:
        response = http.put(f"/api/conversations/{conv}/messages/{reply}/rating",
                            content=body, headers=JSON)
    assert response.status_code == status, response.text
    if status == 200:  # stored verbatim, SQL- and HTML-looking text and all
        assert response.json()["tags"][0] == "<script>alert(1)</script>"
        return
    assert words in response.json()["error"]
    assert _ratings(app) == before


@pytest.mark.parametrize("params,status", [
    ("since=1 OR 1=1", 400), ("until=%00", 400), ("since=" + "9" * 5000, 400),
    ("format=../../etc/passwd", 422), ("min_rating=1e23", 422), ("model=%00", 422),
    ("model=' OR ''='", 200), ("since=2026-11-30T00:00:00%2B23:59", 200),
])
def test_hostile_dataset_filters(app: InProcessApp, params: str, status: int) -> None:
    with app.client() as http:
        response = http.get(f"/api/dataset?{params}")
    assert response.status_code == status, response.text
    if status == 200:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert response.text == "" or response.text.endswith("\n")
        for line in response.text.split("\n")[:-1]:  # JSON Lines end at "\n" only
            json.loads(line)
    else:
        assert response.json()["error"] and response.json()["code"]


def test_the_thumbs_through_gradios_queue_take_nothing_from_the_payload(
        app: InProcessApp, conv: str) -> None:
    """The one like event joined the way a browser (or a hostile client) joins it: the
    position is looked up in the pane the server drew for this session (the page's load
    shows the conversation first); a payload naming a message id, or a feedback value the
    page never sends, rates nothing, and neither does a session that was shown no pane."""
    from tests.test_gradio_events_hostile import body_for, join_queue

    reply = _answered(app, conv)
    with app.client() as http:
        listed = http.get(f"/api/conversations/{conv}/messages").json()
        position = len(listed) - 1  # the pane: each message, then its shown reply
        config = http.get("/config").json()
        kinds = {c["id"]: c.get("type") for c in config["components"]}
        dep = next(d for d in config["dependencies"] if d.get("api_name") == "page_rate")
        # The page's load: the conversation the browser remembers (a BrowserState) is shown.
        load = next(d for d in config["dependencies"]
                    if any(t[1] == "load" for t in d.get("targets") or [])
                    and [kinds.get(i) for i in d["inputs"]] == ["browserstate"])
        before = _ratings(app)
        data = [conv, None, None]  # the pane's view and the turn: States, the server's own
        forged = [conv, {"ids": [reply] * (position + 1)}, None]  # a State: not the page's
        for sent in (data, forged):
            elsewhere = join_queue(http, body_for(dep, sent, event_data={
                "index": position, "value": ["anything"], "liked": True}))
            assert elsewhere.completed is not None and "Traceback" not in elsewhere.text
        assert _ratings(app) == before  # a session shown no pane names no reply
        shown = body_for(load, [conv])
        session = shown["session_hash"]
        joined = join_queue(http, shown)
        assert joined.completed is not None and joined.completed["success"], joined.text[:500]

        def like(event_data: Any) -> Any:
            return join_queue(http, {**body_for(dep, data, event_data=event_data),
                                     "session_hash": session})

        for hostile in ({"index": reply, "value": "x", "liked": True},
                        {"index": position, "value": reply, "liked": "Like"},
                        {"index": [position, 0], "liked": False}):
            joined = like(hostile)
            assert joined.status == 200 and joined.completed is not None, joined.text[:500]
            assert "Traceback" not in joined.text
        assert _ratings(app) == before
        joined = like({"index": position, "value": ["anything"], "liked": False})
        assert joined.completed is not None and joined.completed["success"], joined.text[:500]
        rated = http.get(f"/api/conversations/{conv}/messages").json()
    assert [m["rating"]["value"] for m in rated if m["id"] == reply] == [-1]


def test_the_server_survives_all_of_the_above(app: InProcessApp) -> None:
    with app.client() as http:
        assert http.get("/healthz").status_code == 200
