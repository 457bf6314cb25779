"""Property-based hostile input (hypothesis) over every REST endpoint and the Gradio chat
endpoint: whatever arrives, the answer is a 4xx with a JSON error that says what is wrong, or
the text is stored verbatim and rendered inert; the server stays up; no partial rows."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from gradio_client import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import InProcessApp, close_soon, query

pytestmark = pytest.mark.slow  # Hypothesis against the real app

SQLISH = ["'; DROP TABLE messages; --", "1 OR 1=1", "\" OR \"\"=\"", "$$; SELECT pg_sleep(5); $$",
          "%s %(x)s {0} {}", "\\x00\\\\"]
HTMLISH = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
           "![x](http://evil.example/x.png)", "<iframe src=//evil.example>", "&lt;b&gt;",
           "<svg onload=alert(1)>", "[a](javascript:alert(1))"]

any_text = st.one_of(
    st.text(st.characters(), max_size=300),                      # any code point but surrogates
    st.text(st.characters(categories=["Cs", "Cc", "Zs", "Lo", "So"]), max_size=50),
    st.sampled_from(SQLISH + HTMLISH),
    st.builds(lambda a, b: a + "\x00" + b, st.text(max_size=10), st.text(max_size=10)),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8",
                                 "text/plain", "", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/vnd.api+json"])


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: lone surrogates travel as \\ud800


def _check_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["error"], str) and body["error"], body


def _no_partial_rows(app: InProcessApp) -> None:
    rows = query(app.settings.database_url or "",
                 "SELECT count(*) FROM messages u WHERE u.role = 'user' AND NOT EXISTS"
                 " (SELECT 1 FROM messages r WHERE r.parent_id = u.id)")
    assert rows[0][0] == 0


@pytest.fixture(scope="module")
def conv(app: InProcessApp) -> str:
    return str(httpx.post(f"{app.url}/api/conversations").json()["id"])


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(json_values.map(_encode),
                      st.dictionaries(st.just("content"), json_values, min_size=1).map(_encode),
                      st.binary(max_size=400)),
       ctype=content_types)
@example(body=b"[" * 50_000 + b"]" * 50_000, ctype="application/json")
@example(body=_encode({"content": "x" * 10_000_000}), ctype="application/json")
@example(body=_encode({"content": "\ud800\udc00 pair and \udfff lone"}), ctype="application/json")
def test_post_message_with_any_body(app: InProcessApp, conv: str, body: bytes,
                                    ctype: str) -> None:
    headers = {"content-type": ctype} if ctype else {}
    response = httpx.post(f"{app.url}/api/conversations/{conv}/messages", content=body,
                          headers=headers, timeout=60)
    _check_answer(response)
    if response.status_code == 200:
        sent = json.loads(body)["content"]
        stored = response.json()["user_message"]["content"]
        assert stored == sent  # verbatim
        assert query(app.settings.database_url or "", "SELECT content FROM messages WHERE id"
                     " = %s", (response.json()["user_message"]["id"],))[0][0] == sent
    _no_partial_rows(app)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(json_values.map(_encode), st.binary(max_size=200)), ctype=content_types)
def test_create_conversation_with_any_body(app: InProcessApp, body: bytes, ctype: str) -> None:
    headers = {"content-type": ctype} if ctype else {}
    response = httpx.post(f"{app.url}/api/conversations", content=body, headers=headers)
    _check_answer(response)
    if response.status_code == 201:
        title = json.loads(body)["title"] if body.strip() and json.loads(body) else ""
        assert response.json()["title"] == (title or "").strip()


def _whole_comparisons(app: InProcessApp) -> None:
    """Every comparison has both its sides, and a side is never without its comparison."""
    rows = query(app.settings.database_url or "",
                 "SELECT (SELECT count(*) FROM comparisons k WHERE (SELECT count(*) FROM"
                 " conversations c WHERE c.comparison_id = k.id) <> 2),"
                 " (SELECT count(*) FROM conversations WHERE sealed AND comparison_id IS NULL)")
    assert rows[0] == (0, 0)


sides = st.one_of(json_values, st.fixed_dictionaries(
    {}, optional={"model": json_values, "label": json_values,
                  "settings": st.one_of(json_values, st.fixed_dictionaries(
                      {}, optional={"temperature": json_values, "system_prompt": json_values,
                                    "model": json_values}))}))


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(
    json_values.map(_encode), st.binary(max_size=200),
    st.fixed_dictionaries({"content": json_values}, optional={
        "a": sides, "b": sides, "blind": json_values}).map(_encode)))
@example(body=_encode({"content": "<img src=x onerror=alert(1)>",
                       "a": {"settings": {"temperature": 0.1}, "label": "<b>x</b>"},
                       "b": {"settings": {"temperature": 0.2}}}))
def test_post_comparison_with_any_body(app: InProcessApp, body: bytes) -> None:
    response = httpx.post(f"{app.url}/api/comparisons", content=body,
                          headers={"content-type": "application/json"}, timeout=60)
    _check_answer(response)
    if response.status_code == 200:
        sent = json.loads(body)["content"]
        sides = response.json()["comparison"]["sides"]
        assert [sides[s]["messages"][0]["content"] for s in "ab"] == [sent, sent]  # verbatim
    _whole_comparisons(app)
    _no_partial_rows(app)


path_segments = st.one_of(st.uuids().map(str), st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="/?#%"), min_size=1,
    max_size=80).filter(lambda s: s.strip(".") != ""),  # "." and ".." are path navigation
    st.sampled_from(["%00", "turn-x", "' OR 1=1 --", "a" * 3000]))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(segment=path_segments, body=json_values.map(_encode),
       route=st.sampled_from([
           ("GET", "/api/conversations/{}"), ("GET", "/api/conversations/{}/messages"),
           ("POST", "/api/conversations/{}/messages/{}/retry"), ("POST", "/api/turns/{}/stop"),
           ("GET", "/api/turns/{}/events"), ("GET", "/api/workflows/{}"),
           ("GET", "/api/workflows/{}/steps"), ("POST", "/api/workflows/{}/cancel"),
           ("POST", "/api/workflows/{}/resume"), ("POST", "/api/workflows/{}/fork"),
           ("GET", "/api/conversations?limit={}"), ("GET", "/api/workflows?status={}"),
           ("GET", "/api/comparisons/{}"), ("POST", "/api/comparisons/{}/vote"),
           ("POST", "/api/comparisons/{}/messages"), ("GET", "/api/comparisons?limit={}")]))
def test_any_id_or_parameter(app: InProcessApp, segment: str, body: bytes,
                             route: tuple[str, str]) -> None:
    method, template = route
    path = template.replace("{}", quote(segment, safe=""))
    response = httpx.request(method, f"{app.url}{path}", content=body,
                             headers={"content-type": "application/json"}, timeout=30)
    _check_answer(response)
    assert response.status_code in (400, 404, 405, 409, 413, 422), (path, response.text[:200])


@pytest.fixture(scope="module")
def gradio(app: InProcessApp) -> Any:
    client = Client(app.url, verbose=False)
    yield client
    close_soon(client)


def _finished_outputs(job: Any, text: str, timeout: float = 60) -> list[Any]:
    """Every update of a finished Gradio job. Iterating a Job waits forever when the job
    fails, so wait for it with a deadline and surface its error with the input."""
    deadline = time.monotonic() + timeout
    while not job.done():
        assert time.monotonic() < deadline, f"/send did not finish for {text!r}"
        time.sleep(0.02)
    error = job.exception()
    assert error is None, f"/send failed for {text!r}: {error!r}"
    return list(job.outputs())


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


# gradio_client cannot send a lone surrogate at all (it fails encoding the request, before
# anything reaches the app); browsers can, escaped in JSON: see the raw HTTP test below.
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=any_text.filter(_utf8_encodable))
@example(text="<script>window.__pwned=1</script> ![x](http://evil.example/p.png)")
def test_gradio_send_with_any_text(app: InProcessApp, gradio: Client, text: str) -> None:
    job = gradio.submit(text, None, api_name="/send")
    outputs = _finished_outputs(job, text)
    final = outputs[-1]
    notice = next((o[3] for o in reversed(outputs) if isinstance(o[3], str)), "")
    if notice.startswith("⚠️"):
        box = next(o[4] for o in reversed(outputs)
                   if not (isinstance(o[4], dict) and "value" not in o[4]))
        box = box["value"] if isinstance(box, dict) else box
        assert box == text  # refused, and nothing lost
    else:
        conv = next(o[0] for o in outputs if isinstance(o[0], str))
        stored = query(app.settings.database_url or "", "SELECT content FROM messages WHERE"
                       " conversation_id = %s AND role = 'user'", (conv,))
        assert stored == [(text,)]
    assert final is not None
    _no_partial_rows(app)


def _gradio_http_send(app: InProcessApp, text: str) -> list[Any]:
    """/send through Gradio's HTTP API the way a browser's JSON.stringify sends it (a lone
    surrogate escaped as \\udXXX); the final outputs."""
    body = json.dumps({"data": [text, None]})  # ensure_ascii escapes surrogates
    started = httpx.post(f"{app.url}/gradio_api/call/send", content=body,
                         headers={"content-type": "application/json"}, timeout=30)
    assert started.status_code == 200, started.text[:300]
    event, final = "", None
    with httpx.stream("GET", f"{app.url}/gradio_api/call/send/{started.json()['event_id']}",
                      timeout=30) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event in ("complete", "error"):
                final = (event, json.loads(line[6:]))
    assert final is not None and final[0] == "complete", final
    return list(final[1])


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.builds(lambda a, s, b: a + s + b, st.text(max_size=20),
                      st.characters(categories=["Cs"]), st.text(max_size=20)))
@example(text="\ud800\x00")  # found by CI: the NUL is named first
def test_gradio_http_send_with_lone_surrogates(app: InProcessApp, text: str) -> None:
    before = query(app.settings.database_url or "", "SELECT count(*) FROM messages")[0][0]
    outputs = _gradio_http_send(app, text)
    notice, box = outputs[3], outputs[4]
    assert isinstance(notice, str) and notice.startswith("⚠️")
    # The notice names the first problem found: a NUL in the same text may come first.
    assert "surrogate" in notice or ("\x00" in text and "NUL" in notice), notice
    # Kept for the user to fix: the box is left as it is (an update that sets no value). It is
    # not sent back: Gradio's queue stream cannot encode a lone surrogate
    # (sendable in chat_core/ui/chat/view.py).
    assert isinstance(box, dict) and "value" not in box, box
    assert query(app.settings.database_url or "", "SELECT count(*) FROM messages")[0][0] == before


def test_server_still_up(app: InProcessApp) -> None:
    assert httpx.get(f"{app.url}/healthz").status_code == 200
    assert uuid.UUID(httpx.post(f"{app.url}/api/conversations").json()["id"])
