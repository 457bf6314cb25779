"""Several LLM servers (VLLM_BASE_URL="http://a,http://user:key@b"): a conversation's model
picks the server, an unknown model is a 4xx naming the models there are, a server that is down
makes only its models unavailable, and the second server's key stays its own and hidden.

One in-process app on two emulated servers for the module; the test that stops the second
server runs last."""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Iterator

import gradio as gr
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM, EmulatorSettings
from chat_core.ui.chat import ChatTab
from chat_core.ui.page import backend_line
from tests.helpers import InProcessApp, app_on, emulated_servers

pytestmark = pytest.mark.slow

KEY_B = "b-secret-key-42"
SHARED_KEY = "shared-api-key-17"


@pytest.fixture(scope="module")
def servers() -> Iterator[list[EmulatedLLM]]:
    with emulated_servers(EmulatorSettings(model="model-a"),
                          EmulatorSettings(model="model-b", max_model_len=4096)) as started:
        yield started


@pytest.fixture(scope="module")
def two_server_app(database_url: str, servers: list[EmulatedLLM],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    a, b = servers
    url_b = b.base_url.replace("http://", f"http://proxy-user:{KEY_B}@")
    with app_on(database_url, [a.base_url, url_b], tmp_path_factory.mktemp("servers"),
                LLM_API_KEY=SHARED_KEY) as app:
        yield app


@pytest.fixture(autouse=True)
def _clear(servers: list[EmulatedLLM]) -> None:
    for server in servers:
        server.requests.clear()


def _conversation(app: InProcessApp, model: str | None) -> str:
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        if model is not None:
            answer = http.patch(f"/api/conversations/{cid}", json={"settings": {"model": model}})
            assert answer.status_code == 200, answer.text
            assert answer.json()["settings"]["model"] == model
    return cid


def test_a_conversation_on_the_second_servers_model_is_answered_by_that_server(
        two_server_app: InProcessApp, servers: list[EmulatedLLM]) -> None:
    a, b = servers
    on_b, on_default = _conversation(two_server_app, "model-b"), _conversation(two_server_app,
                                                                                None)
    with two_server_app.client() as http:
        reply_b = http.post(f"/api/conversations/{on_b}/messages", json={"content": "to b"})
        reply_a = http.post(f"/api/conversations/{on_default}/messages",
                            json={"content": "to a"})
    assert reply_b.status_code == 200, reply_b.text
    assert reply_a.status_code == 200, reply_a.text
    assert reply_b.json()["assistant_message"]["content"].startswith("Reply to [to b]")
    assert reply_b.json()["assistant_message"]["model"] == "model-b"
    assert reply_a.json()["assistant_message"]["model"] == "model-a"
    assert b.user_messages_seen() == ["to b"] and a.user_messages_seen() == ["to a"]
    # The key in the second server's URL is that server's (Basic auth); the first gets
    # LLM_API_KEY.
    basic = base64.b64encode(f"proxy-user:{KEY_B}".encode()).decode()
    assert b.requests[0]["authorization"] == f"Basic {basic}"
    assert a.requests[0]["authorization"] == f"Bearer {SHARED_KEY}"


def test_an_unknown_model_is_refused_with_the_models_there_are(
        two_server_app: InProcessApp) -> None:
    cid = _conversation(two_server_app, "model-a")
    with two_server_app.client() as http:
        answer = http.patch(f"/api/conversations/{cid}", json={"settings": {"model": "gpt-9"}})
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert "'gpt-9'" in error and "model-a" in error and "model-b" in error
        not_text = http.patch(f"/api/conversations/{cid}", json={"settings": {"model": 7}})
        assert not_text.status_code == 422 and "GET /api/models" in not_text.json()["error"]
        # Nothing changed.
        assert http.get(f"/api/conversations/{cid}").json()["settings"]["model"] == "model-a"
        # An import naming a model nobody lists is refused the same way, and creates nothing.
        assert http.post(f"/api/conversations/{cid}/messages",
                         json={"content": "something to export"}).status_code in (200, 201)
        exported = http.get(f"/api/conversations/{cid}/export").json()
        exported["conversation"]["settings"]["model"] = "gpt-9"
        before = len(http.get("/api/conversations").json())
        imported = http.post("/api/conversations/import", json=exported)
        assert imported.status_code == 422 and "'gpt-9'" in imported.json()["error"]
        assert len(http.get("/api/conversations").json()) == before
    # A model that is gone by the time a turn runs (an import, a server restarted with
    # another): the turn records the same clear error, without retrying.
    service = two_server_app.service
    assert service is not None
    two_server_app.call(service.store.update_conversation(uuid.UUID(cid),
                                                          settings={"model": "gone-model"}))
    with two_server_app.client() as http:
        failed = http.post(f"/api/conversations/{cid}/messages", json={"content": "hello?"})
    assert failed.status_code == 502
    assert "'gone-model' is not served by any configured LLM server; available: model-a, " \
        "model-b" in failed.json()["error"]


def test_the_models_of_every_server_are_listed_with_their_urls_masked(
        two_server_app: InProcessApp, servers: list[EmulatedLLM]) -> None:
    a, b = servers
    with two_server_app.client() as http:
        answer = http.get("/api/models")
        health = http.get("/healthz")
        page = http.get("/")
    assert answer.status_code == 200
    port_b = b.base_url.rsplit(":", 1)[1]
    assert answer.json() == [
        {"id": "model-a", "server": a.base_url, "max_context": 8192, "available": True},
        {"id": "model-b", "server": f"http://proxy-user:***@127.0.0.1:{port_b}",
         "max_context": 4096, "available": True}]
    assert health.status_code == 200
    states = health.json()["servers"]
    assert [(s["server"], s["state"], s["models"]) for s in states] == [
        (a.base_url, "up", ["model-a"]),
        (f"http://proxy-user:***@127.0.0.1:{port_b}", "up", ["model-b"])]
    assert two_server_app.service is not None
    top_line = backend_line(two_server_app.service)
    assert f"{a.base_url} (up): `model-a`" in top_line
    assert f"http://proxy-user:***@127.0.0.1:{port_b} (up): `model-b`" in top_line
    load = two_server_app.service.llm_load()
    assert [(x["server"], x["capacity"]) for x in load["servers"]] == [
        (a.base_url, 64), (f"http://proxy-user:***@127.0.0.1:{port_b}", 64)]
    assert load["capacity"] == 128 and load["running"] == 0
    for text in (answer.text, health.text, page.text, top_line):
        assert KEY_B not in text and SHARED_KEY not in text


def test_the_chat_tabs_model_picker_lists_every_model_and_saves_the_choice(
        two_server_app: InProcessApp) -> None:
    service = two_server_app.service
    assert service is not None
    with gr.Blocks():
        tab = ChatTab(service)
    chat, ui = tab.handlers, tab.ui
    cid = _conversation(two_server_app, None)
    picked = two_server_app.call(chat.choose_model(cid, "model-b"))
    assert picked.replace("\\", "").startswith("Model set to model-b")  # markdown escapes
    refused = two_server_app.call(chat.choose_model(cid, "gpt-9")).replace("\\", "")
    assert "model-a" in refused and "model-b" in refused
    conversation = two_server_app.call(service.get_conversation(cid))
    assert conversation["settings"]["model"] == "model-b"
    picker = chat.settings_of(conversation)[ui.model]
    assert picker["value"] == "model-b"
    assert picker["choices"] == [("Default (model-a)", ""), ("model-a", "model-a"),
                                 ("model-b", "model-b")]
    assert two_server_app.call(chat.choose_model(cid, "")).startswith("Model set to the default")
    conversation = two_server_app.call(service.get_conversation(cid))
    assert "model" not in conversation["settings"]


def test_a_server_that_is_down_makes_only_its_models_unavailable(
        two_server_app: InProcessApp, servers: list[EmulatedLLM],
        caplog: pytest.LogCaptureFixture) -> None:
    a, b = servers
    on_b, on_a = _conversation(two_server_app, "model-b"), _conversation(two_server_app,
                                                                          "model-a")
    b.stop()
    with caplog.at_level(logging.WARNING), two_server_app.client() as http:
        failed = http.post(f"/api/conversations/{on_b}/messages", json={"content": "lost"})
        served = http.post(f"/api/conversations/{on_a}/messages", json={"content": "fine"})
        health = http.get("/healthz")
        models = http.get("/api/models").json()
    assert failed.status_code == 502
    error = failed.json()["error"]
    assert "refused the connection" in error and "proxy-user:***@127.0.0.1" in error
    assert served.status_code == 200, served.text
    assert served.json()["assistant_message"]["content"].startswith("Reply to [fine]")
    # The default server answers: the app is up, the second server is shown down.
    assert health.status_code == 200
    down = health.json()["servers"][1]
    assert down["state"] == "down" and "refused" in down["error"]
    assert [(m["id"], m["available"]) for m in models] == [("model-a", True),
                                                           ("model-b", False)]
    assert "LLM server http://proxy-user:***@127.0.0.1" in caplog.text
    assert two_server_app.service is not None
    port_b = b.base_url.rsplit(":", 1)[1]
    assert f"proxy-user:***@127.0.0.1:{port_b} (down)" in backend_line(two_server_app.service)
    for text in (failed.text, health.text, caplog.text):
        assert KEY_B not in text and SHARED_KEY not in text
