"""scripts/export_dataset.py, fast: against the app's real REST routes and service (the World of
tests/test_ratings.py, reached through a transport that hands each request to its ASGI app),
and against stand-in answers for what a live server can do to it (a refusal, an answer cut
short, no server at all). What a researcher notices: the file holds what GET /api/dataset
holds, the options are passed on, and a failed export says why and leaves no file behind."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.test_ratings import World, world  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("export_dataset",
                                              ROOT / "scripts" / "export_dataset.py")
assert spec is not None and spec.loader is not None
export_dataset = importlib.util.module_from_spec(spec)
sys.modules["export_dataset"] = export_dataset
spec.loader.exec_module(export_dataset)


class ToTheApp(httpx.BaseTransport):
    """The script's (synchronous) requests, answered by the World's ASGI app on its loop, as
    `person`; the requests it saw are kept."""

    def __init__(self, world: World, person: Any) -> None:
        self.world, self.person = world, person
        self.seen: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.world.call(self.person, request.method, str(request.url.raw_path,
                                                                  "ascii"))
        return httpx.Response(answer.status_code, headers=answer.headers,
                              content=answer.content)


def test_the_file_holds_what_the_api_answers(world: World, tmp_path: Path) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    for i in range(3):
        cid = world.conversation(world.bob, f"script {i}")
        world.turn(cid, f"q{i}", f"a{i}", model)
    out = tmp_path / "sft.jsonl"
    transport = ToTheApp(world, world.bob)
    rc = export_dataset.main(["--format", "sharegpt", "--model", model, "--min-rating", "0",
                              "--since", "2020-01-01", "--names", "--token", "dct_x",
                              "-o", str(out)], transport=transport)
    assert rc == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [x["conversations"][1]["value"] for x in lines] == ["a0", "a1", "a2"]
    [request] = transport.seen
    assert dict(request.url.params) == {"format": "sharegpt", "model": model,
                                        "min_rating": "0", "since": "2020-01-01",
                                        "pseudonyms": "false"}
    assert request.headers["authorization"] == "Bearer dct_x"
    assert not list(tmp_path.glob("*.partial"))


def test_a_refused_export_says_why_and_writes_nothing(world: World, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    out = tmp_path / "x.jsonl"
    rc = export_dataset.main(["--since", "last week", "-o", str(out)],
                             transport=ToTheApp(world, world.bob))
    assert rc == 1 and not out.exists()
    err = capsys.readouterr().err
    assert "answered 400" in err and "since must be an ISO 8601 date" in err


def cut_short() -> Iterator[bytes]:
    yield b'{"messages": []}\n'
    raise httpx.ReadError("connection reset")


@pytest.mark.parametrize("answer,words", [
    (lambda r: httpx.Response(200, content=cut_short()), "cut short after 1 lines"),
    (lambda r: httpx.Response(401, json={"error": "x", "code": "unauthorized"}), "--token"),
    (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")), "cannot reach the app"),
])
def test_a_failed_export_leaves_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        answer: Any, words: str) -> None:
    out = tmp_path / "x.jsonl"
    rc = export_dataset.main(["-o", str(out)], transport=httpx.MockTransport(answer))
    assert rc == 1 and not out.exists() and not list(tmp_path.iterdir())
    assert words in capsys.readouterr().err
