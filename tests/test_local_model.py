"""The default backend, for real: llama.cpp serving SmolLM2-135M on the CPU, started by the app,
no mocks. Also: the model server never outlives the app, even when the app is killed with -9."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from chat_core.llm.token_estimate import upper_bound_tokens
from tests.helpers import AppProcess, InProcessApp, base_env, query, wait_until

pytestmark = pytest.mark.slow  # the real local model (llama.cpp) behind the app


@pytest.fixture(scope="module")
def local_app(database_url: str, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[InProcessApp]:
    env: dict[str, str] = base_env(database_url, "unused", tmp_path_factory.mktemp("local"))
    del env["VLLM_BASE_URL"]
    app = InProcessApp(env).start(timeout=180)
    yield app
    app.stop()


def test_two_turns_with_the_real_local_model(local_app: InProcessApp) -> None:
    service = local_app.service
    assert service.backend["kind"] == "local"
    assert service.backend["model"] == "SmolLM2-135M-Instruct"
    cid = local_app.call(service.create_conversation())["id"]
    first = local_app.call(service.send_message(cid, "What is the capital of France?"), 120)
    second = local_app.call(service.send_message(cid, "And of Italy?"), 120)
    for result in (first, second):
        reply = result["assistant_message"]
        assert reply["status"] == "complete"
        assert reply["content"].strip()
        assert reply["model"] == "SmolLM2-135M-Instruct"
    rows = query(local_app.settings.database_url or "",
                 "SELECT prompt_tokens, completion_tokens, ttft_ms, latency_ms FROM messages"
                 " WHERE conversation_id = %s AND role = 'assistant' ORDER BY seq", (cid,))
    assert len(rows) == 2
    for prompt_tokens, completion_tokens, ttft, latency in rows:
        assert prompt_tokens > 0 and completion_tokens > 0
        assert 0 < ttft <= latency
    assert rows[1][0] > rows[0][0]  # the second prompt carries the first turn as history


@pytest.mark.parametrize("text", [
    "The quick brown fox jumps over the lazy dog. " * 20,
    "数据库事务的持久性保证已提交的数据不会丢失。" * 10,
    "def f(x):\n    return {k: v ** 2 for k, v in x.items()}\n" * 10,
    "Émoji 🎉🚀 and accents: naïve café déjà vu. " * 10,
    "xQ7#zP9!kL2@ 1234567890 " * 10,
])
def test_token_counts_match_the_real_tokenizer(local_app: InProcessApp, text: str) -> None:
    """The byte bound never undercounts, and the client's count is the server's own."""
    base = local_app.service.backend["base_url"]
    real = len(httpx.post(f"{base}/extras/tokenize", json={"input": text}).json()["tokens"])
    assert upper_bound_tokens(text) >= real
    assert local_app.call(local_app.service.llm.count_tokens([text])) == [real]


def _alive(pid: int) -> bool:
    """Running: a zombie is not (an app's orphans are inherited by the test process, which
    waits only for the apps it starts: chat_core/testing/fork_server.py)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_model_server_dies_with_the_app(database_url: str, tmp_path: Path) -> None:
    env: dict[str, str | None] = {**base_env(database_url, "unused", tmp_path),
                                  "VLLM_BASE_URL": None}
    app = AppProcess(env, tmp_path / "app.log").start(timeout=180)
    try:
        base = httpx.get(f"{app.url}/healthz").json()["backend"]["base_url"]
        port = base.rsplit(":", 1)[1]
        out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True,
                             text=True).stdout
        pids = [int(line.split()[0]) for line in out.splitlines()
                if "chat_core.llm.local_server" in line and f"--port {port}" in line]
        assert len(pids) == 1
        app.kill9()
        wait_until(lambda: not _alive(pids[0]), timeout=10)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base}/v1/models", timeout=2)
    finally:
        app.stop()
