"""scripts/export_dataset.py, fast: against the app's real REST routes and service (the World of
tests/test_ratings.py, reached through a transport that hands each request to its ASGI app),
and against stand-in answers for what a live server can do to it (a refusal, an answer cut
short, no server at all). What a researcher notices: the file holds what GET /api/dataset
holds, the options are passed on, and a failed export says why and leaves no file behind."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
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
    lines = [json.loads(line) for line in read_lines(out)]
    assert [x["conversations"][1]["value"] for x in lines] == ["a0", "a1", "a2"]
    [request] = transport.seen
    assert dict(request.url.params) == {"format": "sharegpt", "model": model,
                                        "min_rating": "0", "since": "2020-01-01",
                                        "pseudonyms": "false"}
    assert request.headers["authorization"] == "Bearer dct_x"
    assert not list(tmp_path.glob("*.partial"))


def read_lines(path: Path) -> list[str]:
    """The file's lines: JSON Lines end a line at "\n" only (not at U+2028 and the like)."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return text.split("\n")[:-1]


def test_text_with_unicode_line_separators_arrives_whole(world: World, tmp_path: Path
                                                         ) -> None:
    """U+2028, U+2029 and U+0085 in a message (pasted from a PDF or a Word file) are text,
    not line ends: every line of the file is one whole conversation."""
    model = f"m-{uuid.uuid4().hex[:6]}"
    text = "a\u2028b\u2029c\u0085d\r\ne"
    cid = world.conversation(world.bob, "separators")
    world.turn(cid, text, text, model)
    out = tmp_path / "sep.jsonl"
    assert export_dataset.main(["--model", model, "-o", str(out)],
                               transport=ToTheApp(world, world.bob)) == 0
    [line] = read_lines(out)
    assert [m["content"] for m in json.loads(line)["messages"]] == [text, text]
    # And however the server had written them, the script splits the bytes at "\n" only.
    raw = json.dumps({"messages": [{"role": "user", "content": text}]}, ensure_ascii=False)
    out.unlink()
    answer = lambda r: httpx.Response(200, content=(raw + "\n").encode())  # noqa: E731
    assert export_dataset.main(["-o", str(out)], transport=httpx.MockTransport(answer)) == 0
    assert [json.loads(x)["messages"][0]["content"] for x in read_lines(out)] == [text]


def answered(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b'{"messages": []}\n')


def test_the_file_is_the_callers_alone_and_never_written_through_a_link(tmp_path: Path
                                                                        ) -> None:
    """A dataset holds people's words: the file is created readable by its owner only, and
    a link planted where it is written (the .partial) is not followed."""
    old = os.umask(0o022)  # the usual umask: a plain open would make the file world-readable
    try:
        out = tmp_path / "d.jsonl"
        assert export_dataset.main(["-o", str(out)],
                                   transport=httpx.MockTransport(answered)) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        target = tmp_path / "elsewhere"
        target.write_text("kept")
        linked = tmp_path / "l.jsonl"
        (tmp_path / "l.jsonl.partial").symlink_to(target)
        assert export_dataset.main(["-o", str(linked)],
                                   transport=httpx.MockTransport(answered)) == 1
        assert target.read_text() == "kept" and not linked.exists()
        # A file left by an export that was killed is written over (a new file, 0600).
        stale = tmp_path / "s.jsonl"
        (tmp_path / "s.jsonl.partial").write_text("half")
        assert export_dataset.main(["-o", str(stale)],
                                   transport=httpx.MockTransport(answered)) == 0
        assert stale.read_text() == '{"messages": []}\n'
        assert stat.S_IMODE(stale.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_the_token_may_come_from_the_environment(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answered(request)

    monkeypatch.setenv("CHAT_API_TOKEN", "dct_from_env")
    assert export_dataset.main(["-o", str(tmp_path / "e.jsonl")],
                               transport=httpx.MockTransport(answer)) == 0
    assert seen[-1].headers["authorization"] == "Bearer dct_from_env"
    assert export_dataset.main(["--token", "dct_given", "-o", str(tmp_path / "f.jsonl")],
                               transport=httpx.MockTransport(answer)) == 0
    assert seen[-1].headers["authorization"] == "Bearer dct_given"


def test_an_unreachable_app_is_named_without_its_password(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}")

    rc = export_dataset.main(["--url", "http://reader:s3cret-pass@chat.example:8080",
                              "-o", str(tmp_path / "x.jsonl")],
                             transport=httpx.MockTransport(refused))
    err = capsys.readouterr().err
    assert rc == 1 and "cannot reach the app" in err and "chat.example" in err
    assert "s3cret-pass" not in err


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
