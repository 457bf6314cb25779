"""The registry of LLM servers (llm/servers.py) without any server: which client a model goes
to, what an unknown model is told, a server that is down or hangs, a model that moved."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chat_core.errors import InvalidInput, LLMRejected, LLMUnavailable
from chat_core.llm.client import ModelInfo
from chat_core.llm.servers import LLMServers
from chat_core.validation import check_settings


class FakeClient:
    """What the registry uses of an LLMClient: its masked URL, its models, its default."""

    def __init__(self, url: str, *models: str, configured: str | None = None) -> None:
        self.shown_url, self.backend, self.configured_model = url, "vLLM", configured
        self.models = list(models)
        self.down: str | None = None
        self.hang = False
        self.listed = 0
        self.on_model_gone: Any = None
        self.closed = False

    async def list_models(self) -> list[ModelInfo]:
        self.listed += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.down:
            raise LLMUnavailable(self.down)
        return [ModelInfo(m, 4096) for m in self.models]

    async def close(self) -> None:
        self.closed = True


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_model_goes_to_the_server_that_lists_it_and_none_to_the_default() -> None:
    a, b = FakeClient("http://a", "model-a"), FakeClient("http://u:***@b", "model-b")
    servers = LLMServers([a, b], forced_refresh_sec=0.0)  # type: ignore[list-item]

    async def go() -> None:
        assert (await servers.route(None)).client is a
        route = await servers.route("model-b")
        assert (route.client, route.model, route.max_model_len) == (b, "model-b", 4096)
        # Listed by both: the earlier server (the default first).
        b.models.append("model-a")
        await servers.refresh(force=True)
        assert (await servers.route("model-a")).client is a
        assert [m["server"] for m in await servers.models()] == ["http://a", "http://u:***@b",
                                                                 "http://u:***@b"]
        await servers.close()
        assert a.closed and b.closed

    run(go())


def test_an_unknown_model_is_refused_with_the_models_there_are_and_the_servers_down() -> None:
    a, b = FakeClient("http://a", "model-a"), FakeClient("http://b", "model-b")
    b.down = "vLLM server at http://b refused the connection."
    servers = LLMServers([a, b], forced_refresh_sec=0.0)  # type: ignore[list-item]
    # With a server down the model may be that server's: unavailable (the turn tries again),
    # not refused for good.
    with pytest.raises(LLMUnavailable) as waiting:
        run(servers.route("gpt-9"))
    assert waiting.value.message == (
        "model 'gpt-9' is not served by any configured LLM server; available: model-a; not "
        "answering: http://b (vLLM server at http://b refused the connection.)")
    b.down = None
    with pytest.raises(LLMRejected) as refused:  # every server answered: no such model
        run(servers.route("gpt-9"))
    assert refused.value.message == ("model 'gpt-9' is not served by any configured LLM "
                                     "server; available: model-a, model-b")


def test_a_server_down_at_start_has_its_turns_retried_until_it_answers() -> None:
    a, b = FakeClient("http://a", "model-a"), FakeClient("http://b", "model-b")
    b.down = "vLLM server at http://b refused the connection."
    servers = LLMServers([a, b], forced_refresh_sec=0.0)  # type: ignore[list-item]
    run(servers.refresh(force=True))
    with pytest.raises(LLMUnavailable):
        run(servers.route("model-b"))
    b.down = None
    assert run(servers.route("model-b")).client is b


def test_many_made_up_models_at_once_with_a_hung_server_make_one_listing() -> None:
    a, b = FakeClient("http://a", "model-a"), FakeClient("http://b", "model-b")
    servers = LLMServers([a, b], forced_refresh_sec=3600)  # type: ignore[list-item]

    async def go() -> None:
        await servers.refresh(force=True)
        b.hang = True
        servers._stale = True  # a server said a model is gone: the lists are looked at again
        asking = [asyncio.ensure_future(servers.route(f"made-up-{n}")) for n in range(8)]
        await asyncio.sleep(0.05)
        assert b.listed == 2  # the first listing, and one for all eight
        # Meanwhile /healthz and /api/models answer from what was seen last, at once.
        states = await asyncio.wait_for(servers.servers(), 2)
        assert [s["models"] for s in states] == [["model-a"], ["model-b"]]
        assert servers.known_route("model-b") is not None  # fitting never waits
        assert servers.known_route("made-up-0") is None
        for task in asking:
            task.cancel()
        await servers.close()

    run(go())


def test_a_new_model_is_found_by_looking_again_and_a_known_one_without_waiting() -> None:
    a = FakeClient("http://a", "model-a")
    servers = LLMServers([a], refresh_sec=0.0, forced_refresh_sec=0.0)  # type: ignore[list-item]

    async def go() -> None:
        await servers.refresh(force=True)
        a.models = ["model-a", "model-new"]  # the server restarted with another model
        assert (await servers.route("model-new")).client is a
        # A known model does not wait for the lists, even from a server that hangs.
        a.hang = True
        route = await asyncio.wait_for(servers.route("model-a"), 1)
        assert route.model == "model-a"
        await servers.close()

    run(go())


def test_a_server_that_goes_down_keeps_its_models_marked_unavailable() -> None:
    a, b = FakeClient("http://a", "model-a"), FakeClient("http://b", "model-b")
    servers = LLMServers([a, b])  # type: ignore[list-item]

    async def go() -> None:
        await servers.refresh(force=True)
        b.down = "vLLM server at http://b refused the connection."
        b.on_model_gone()  # what a failed request does
        states = await servers.servers()
        assert [(s["state"], s["models"]) for s in states] == [("up", ["model-a"]),
                                                               ("down", ["model-b"])]
        assert "refused" in states[1]["error"]
        assert [m["available"] for m in await servers.models()] == [True, False]
        # Its turns still go to it (and retry there until it is back or they give up).
        assert (await servers.route("model-b")).client is b

    run(go())


@pytest.mark.parametrize("value,words", [
    (7, "'model' must be a string"), ("", "'model'"), ("   ", "only whitespace"),
    ("a\x00b", "NUL"), ("m" * 300, "the limit is 256"),
])
def test_a_settings_model_must_be_a_model_id(value: Any, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_settings({"model": value})
    assert words in refused.value.message


def test_a_settings_model_is_kept_trimmed_and_null_resets_it() -> None:
    assert check_settings({"model": " model-b "}) == {"model": "model-b"}
    assert check_settings({"model": None}) == {"model": None}


def test_made_up_models_in_a_row_ask_the_servers_once() -> None:
    a = FakeClient("http://a", "model-a")
    servers = LLMServers([a])  # type: ignore[list-item]

    async def go() -> None:
        for n in range(20):
            with pytest.raises(LLMRejected):
                await servers.route(f"made-up-{n}")
        assert a.listed == 1

    run(go())


def test_a_model_on_another_server_is_fitted_to_its_own_window() -> None:
    """LLM_CONTEXT_TOKENS (the default server's window) is never more than a model's own."""
    from types import SimpleNamespace

    from chat_core.llm.servers import ModelRoute
    from chat_core.turns import workflow

    saved = workflow._deps
    workflow._deps = SimpleNamespace(settings=SimpleNamespace(llm_context_tokens=32_000))  # type: ignore[assignment]
    try:
        small = ModelRoute(FakeClient("http://b", "small"), "small", 4096)  # type: ignore[arg-type]
        assert run(workflow._context_tokens(small)) == 4096
        assert run(workflow._context_tokens(ModelRoute(small.client))) == 32_000  # the default
        big = ModelRoute(small.client, "big", 128_000)
        assert run(workflow._context_tokens(big)) == 32_000
    finally:
        workflow._deps = saved
