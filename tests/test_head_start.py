"""The head start (TURN_HEAD_START, on by default): a new message's LLM request leaves as the
turn is accepted, its tokens reach the person while the durable steps run, and the LLM step
adopts it; a head start that asked something else than the step would is dropped, and the
watchers are told the text starts over. Either way the reply is saved once, from the request
the step kept; a kill -9 costs the LLM one request more, nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from chat_core.errors import InvalidInput, TooManyTurns
from chat_core.testing.emulated_llm import EmulatedLLM
from chat_core import service as service_module
from chat_core.turns import workflow
from tests.helpers import AppProcess, InProcessApp, base_env, query, wait_until

pytestmark = pytest.mark.slow  # the real app on PostgreSQL


@pytest.fixture(scope="module")
def head_app(database_url: str, llm: EmulatedLLM, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[InProcessApp]:
    tmp: Path = tmp_path_factory.mktemp("head")
    server = InProcessApp(base_env(database_url, llm.base_url, tmp,
                                   TURN_HEAD_START="1")).start()
    yield server
    server.stop()


class HeldSaves:
    """Holds each turn's first step (saving its message) until its message is released."""

    def __init__(self, app: InProcessApp) -> None:
        self.app = app
        self.store = workflow._d().store
        self.original = self.store.save_user_turn
        self.released: dict[str, asyncio.Event] = {}

    def _event(self, content: str) -> asyncio.Event:
        return self.released.setdefault(content, asyncio.Event())

    def __enter__(self) -> "HeldSaves":
        async def held(conversation_id: Any, workflow_id: str, user_id: Any, reply_id: Any,
                       content: str) -> Any:
            await self._event(content).wait()
            return await self.original(conversation_id, workflow_id, user_id, reply_id,
                                       content)

        self.store.save_user_turn = held  # type: ignore[method-assign]
        return self

    def release(self, *contents: str) -> None:
        """Let these messages be saved (none named: every one, now and later)."""
        assert self.app.loop is not None

        def let_go() -> None:
            if contents:
                for content in contents:
                    self._event(content).set()
            else:
                self.store.save_user_turn = self.original  # type: ignore[method-assign]
                for event in self.released.values():
                    event.set()

        self.app.loop.call_soon_threadsafe(let_go)

    def __exit__(self, *exc: object) -> None:
        self.release()


class Stream:
    """POST .../messages?stream=true on a thread: the events as they come."""

    def __init__(self, app: InProcessApp, cid: str, text: str) -> None:
        self.events: list[tuple[str, Any]] = []
        self.thread = threading.Thread(target=self._read, args=(app.url, cid, text),
                                       daemon=True)
        self.thread.start()

    def _read(self, url: str, cid: str, text: str) -> None:
        event = ""
        with httpx.stream("POST", f"{url}/api/conversations/{cid}/messages?stream=true",
                          json={"content": text}, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    self.events.append((event, json.loads(line[6:])))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def text(self) -> str:
        """The reply as the events built it."""
        text = ""
        for name, data in self.events:
            if name == "reset":
                text = ""
            elif name == "delta":
                text += data["text"]
        return text


def conversation(app: InProcessApp) -> str:
    return str(httpx.post(f"{app.url}/api/conversations", timeout=10).json()["id"])


def _saved(app: InProcessApp, cid: str) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in query(  # type: ignore[misc]
        app.settings.database_url or "", "SELECT role, status, content FROM messages"
        " WHERE conversation_id = %s ORDER BY seq, role DESC", (cid,))]


def test_the_request_leaves_and_streams_before_the_message_is_saved(
        head_app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 12
    llm.settings.tpot_ms = 20
    cid = conversation(head_app)
    with HeldSaves(head_app) as saves:
        stream = Stream(head_app, cid, "hurry, please")
        # The LLM has the request and the person has its first words, while the message
        # is not saved yet.
        wait_until(lambda: "delta" in stream.names(), timeout=20)
        assert [r["messages"][-1]["content"] for r in llm.requests] == ["hurry, please"]
        assert _saved(head_app, cid) == []
        saves.release()
        stream.thread.join(30)
    reply = stream.text()
    assert reply.startswith("Reply to [hurry, please]") and reply.endswith(" w10")
    assert "reset" not in stream.names() and stream.names()[-1] == "done"
    assert len(llm.requests) == 1  # adopted by the LLM step, not asked again
    assert _saved(head_app, cid) == [("user", "complete", "hurry, please"),
                                     ("assistant", "complete", reply)]


def test_a_new_chats_first_message_starts_from_the_conversation_as_made(
        head_app: InProcessApp, llm: EmulatedLLM) -> None:
    """The chat page's first message in a new chat (ChatService.start_conversation): one
    round trip makes the conversation and says where the message goes; the request leaves
    before the message is saved and is adopted; the message is the conversation's first."""
    llm.settings.reply_tokens = 6
    service = head_app.service
    with HeldSaves(head_app) as saves:
        made, turn = head_app.call(service.start_conversation("a new chat"))
        wait_until(lambda: len(llm.requests) == 1, timeout=20)
        assert _saved(head_app, made["id"]) == []
        saves.release()
    answer = head_app.call(service.wait_turn(turn))
    assert len(llm.requests) == 1  # adopted by the LLM step, not asked again
    assert answer["assistant_message"]["content"].startswith("Reply to [a new chat]")
    assert [tuple(r) for r in query(
        head_app.settings.database_url or "", "SELECT seq, role FROM messages"
        " WHERE conversation_id = %s ORDER BY seq, role DESC", (made["id"],))] == [
            (1, "user"), (1, "assistant")]


@pytest.mark.parametrize("text", ["   ", "x" * 300_000, 42])
def test_a_first_message_that_cannot_be_sent_makes_no_conversation(
        head_app: InProcessApp, text: Any) -> None:
    """Refused before anything is made: no empty conversation left in the list."""
    url = head_app.settings.database_url or ""
    before = query(url, "SELECT count(*) FROM conversations")[0][0]
    with pytest.raises(InvalidInput):
        head_app.call(head_app.service.start_conversation(text))
    assert query(url, "SELECT count(*) FROM conversations")[0][0] == before


def test_a_first_message_over_the_persons_limits_leaves_no_conversation(
        head_app: InProcessApp, llm: EmulatedLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """Share mode's limits are checked once the conversation exists (their count names it):
    refused, the conversation made for the message goes again, and a send after the limit
    clears starts as if nothing had happened."""
    url, service = head_app.settings.database_url or "", head_app.service

    async def over_the_limit(*args: Any, **kwargs: Any) -> None:
        raise TooManyTurns("you have sent 2 messages in the last minute; send again in 9 s",
                           retry_after_sec=9, limit=2)

    before = query(url, "SELECT count(*) FROM conversations")[0][0]
    monkeypatch.setattr(service, "admit_turn", over_the_limit)
    with pytest.raises(TooManyTurns, match="send again in 9 s"):
        head_app.call(service.start_conversation("one too many"))
    assert query(url, "SELECT count(*) FROM conversations")[0][0] == before
    assert llm.requests == []
    monkeypatch.undo()
    made, turn = head_app.call(service.start_conversation("later"))
    head_app.call(service.wait_turn(turn))
    assert query(url, "SELECT count(*) FROM conversations")[0][0] == before + 1


def test_a_head_start_that_asked_otherwise_is_dropped_and_the_text_starts_over(
        head_app: InProcessApp, llm: EmulatedLLM) -> None:
    """Two messages sent together: both head starts read the conversation empty. The second
    turn's step reads the first turn's exchange too, so it sends its own request."""
    llm.settings.reply_tokens = 20
    llm.settings.tpot_ms = 20
    cid = conversation(head_app)
    with HeldSaves(head_app) as saves:
        first = Stream(head_app, cid, "first")
        wait_until(lambda: len(llm.requests) == 1, timeout=20)
        second = Stream(head_app, cid, "second")
        wait_until(lambda: "delta" in second.names(), timeout=20)
        saves.release("first")  # saved first: the second message comes after it
        wait_until(lambda: _saved(head_app, cid)[:1] == [("user", "complete", "first")])
        saves.release("second")
        first.thread.join(30)
        second.thread.join(30)
    asked = [[m["content"] for m in r["messages"]] for r in llm.requests]
    first_reply = first.text()
    assert asked[:2] == [["first"], ["second"]]
    assert asked[2:] == [["first", first_reply, "second"]], asked  # the step's own request
    assert "reset" in second.names() and second.names()[-1] == "done"
    assert "reset" not in first.names()
    second_reply = second.text()
    assert second_reply.startswith("Reply to [second]")
    assert _saved(head_app, cid) == [
        ("user", "complete", "first"), ("assistant", "complete", first_reply),
        ("user", "complete", "second"), ("assistant", "complete", second_reply)]


def test_stop_during_a_head_start_keeps_the_words_shown(head_app: InProcessApp,
                                                        llm: EmulatedLLM) -> None:
    """Stopped before the message is even saved: the reply is the text the person saw,
    marked stopped, from the one request."""
    llm.settings.reply_tokens = 200
    llm.settings.tpot_ms = 20
    cid = conversation(head_app)
    with HeldSaves(head_app) as saves:
        stream = Stream(head_app, cid, "long story")
        wait_until(lambda: stream.names().count("delta") >= 3, timeout=20)
        turn_id = stream.events[0][1]["turn_id"]
        stopped = httpx.post(f"{head_app.url}/api/turns/{turn_id}/stop", timeout=10)
        assert stopped.status_code == 200, stopped.text
        saves.release()
        stream.thread.join(30)
    shown = stream.text()
    assert stream.names()[-1] == "done"
    assert shown.startswith("Reply to [long story]") and not shown.endswith(" w198")
    assert _saved(head_app, cid) == [("user", "complete", "long story"),
                                     ("assistant", "stopped", shown)]
    assert len(llm.requests) == 1


@pytest.fixture(scope="module")
def crashing_app(database_url: str, llm: EmulatedLLM, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[AppProcess]:
    tmp: Path = tmp_path_factory.mktemp("head-crash")
    app = AppProcess(base_env(database_url, llm.base_url, tmp, TURN_HEAD_START="1",
                              CHAT_FAULT_FILE=str(tmp / "fault")), tmp / "app.log").start()
    yield app
    app.stop()


@pytest.mark.parametrize("point", ["save_user_message:committed", "read_history:done",
                                   "call_llm:streaming"])
def test_a_kill_9_during_a_head_start_leaves_one_answered_turn(
        crashing_app: AppProcess, llm: EmulatedLLM, database_url: str, point: str) -> None:
    """The head start's request dies with the process; the recovered turn sends its own,
    and the message and its reply are saved once."""
    llm.settings.reply_tokens = 40
    llm.settings.tpot_ms = 10  # still streaming when the steps reach the crash point
    app = crashing_app
    cid = httpx.post(f"{app.url}/api/conversations", timeout=10).json()["id"]
    Path(app.env["CHAT_FAULT_FILE"]).write_text(point)
    text = f"head start, then crash at {point}"

    def post() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the app dies under this request
            httpx.post(f"{app.url}/api/conversations/{cid}/messages", json={"content": text},
                       timeout=60)

    threading.Thread(target=post, daemon=True).start()
    assert app.wait_exit(30) == 137, app.log()
    app.start()
    wait_until(lambda: query(database_url, "SELECT count(*) FROM dbos.workflow_status"
                             " WHERE status IN ('PENDING', 'ENQUEUED')")[0][0] == 0, timeout=60)
    rows = query(database_url, "SELECT role, status, content FROM messages"
                 " WHERE conversation_id = %s ORDER BY seq, role DESC", (cid,))
    assert [(r[0], r[1]) for r in rows] == [("user", "complete"), ("assistant", "complete")]
    assert rows[0][2] == text and rows[1][2].startswith(f"Reply to [{text}]")
    # The recovered turn's own request, after the head start's if it had left before the
    # kill (a kill while streaming: it had).
    seen = llm.user_messages_seen()
    assert set(seen) == {text} and len(seen) in ((2,) if point == "call_llm:streaming"
                                                 else (1, 2)), seen


def test_after_a_failed_reply_the_head_start_asks_the_new_message(
        head_app: InProcessApp, llm: EmulatedLLM) -> None:
    """The last reply failed, so the history ends with the question it did not answer: the
    head start still asks the new message, as the step does, and is adopted."""
    cid = conversation(head_app)
    llm.script(*[{"action": "error", "status": 500}] * 3)  # every attempt of the first turn
    failed = httpx.post(f"{head_app.url}/api/conversations/{cid}/messages",
                        json={"content": "unanswered"}, timeout=30)
    assert failed.status_code >= 400
    llm.requests.clear()
    second = Stream(head_app, cid, "asked again")
    second.thread.join(30)
    assert second.names()[-1] == "done" and "reset" not in second.names()
    assert second.text().startswith("Reply to [asked again]")
    assert [[m["content"] for m in r["messages"]] for r in llm.requests] == \
        [["unanswered", "asked again"]]  # one request: the head start's, adopted


def test_a_turn_whose_workflow_cannot_start_takes_back_its_request(
        head_app: InProcessApp, llm: EmulatedLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """The head start leaves before the turn's workflow row is written. Should that write fail
    (the database away), the turn was never accepted: the person gets the error, the request
    already at the LLM is taken back, nothing is saved, and the conversation goes on."""
    llm.settings.reply_tokens = 3000  # a minute of tokens: only a taken-back request ends soon
    llm.settings.tpot_ms = 20
    llm.requests.clear()
    cid = conversation(head_app)
    original = service_module.DBOS.start_workflow_async

    async def refused(*args: Any, **kwargs: Any) -> Any:
        deadline = asyncio.get_running_loop().time() + 10
        while not llm.active_streams and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # until the head start's request is at the LLM
        raise RuntimeError("the database refused the workflow's row")

    monkeypatch.setattr(service_module.DBOS, "start_workflow_async", refused)
    answer = httpx.post(f"{head_app.url}/api/conversations/{cid}/messages",
                        json={"content": "never accepted"}, timeout=30)
    monkeypatch.setattr(service_module.DBOS, "start_workflow_async", original)
    assert answer.status_code == 500 and "refused" not in answer.text, answer.text
    assert [r["messages"][-1]["content"] for r in llm.requests] == ["never accepted"]
    wait_until(lambda: llm.active_streams == 0, timeout=10)  # the request was taken back
    assert len(workflow._d().head_starts) == 0  # type: ignore[arg-type]
    assert workflow._d().hub.in_flight() == []  # nobody waits for a turn that never started
    assert _saved(head_app, cid) == []
    llm.settings.reply_tokens = 5
    llm.requests.clear()
    after = Stream(head_app, cid, "and now?")
    after.thread.join(30)
    assert after.names()[-1] == "done" and "reset" not in after.names()
    assert [[m["content"] for m in r["messages"]] for r in llm.requests] == [["and now?"]]
    assert _saved(head_app, cid) == [("user", "complete", "and now?"),
                                     ("assistant", "complete", after.text())]


def test_a_conversation_deleted_before_its_turn_is_recorded_cancels_the_turn(
        head_app: InProcessApp, llm: EmulatedLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """The head start's request leaves before DBOS has written the turn's workflow row, and
    before the turn has any message saved. A delete of the conversation in that moment finds
    the turn all the same: it waits for the row, then cancels the turn; the request is taken
    back and the turn is gone, as for a turn deleted mid-reply."""
    llm.settings.reply_tokens = 3000  # a minute of tokens: only a taken-back request ends soon
    llm.settings.tpot_ms = 20
    llm.requests.clear()
    cid = conversation(head_app)
    store_class = type(workflow._d().store)
    original_start = service_module.DBOS.start_workflow_async
    original_replies = store_class.in_flight_replies
    looked: list[asyncio.Event] = []  # made on the app's loop, by whichever runs first

    def delete_looked() -> asyncio.Event:
        if not looked:
            looked.append(asyncio.Event())
        return looked[0]

    async def replies(self: Any, conversation_id: Any) -> Any:
        rows = await original_replies(self, conversation_id)
        delete_looked().set()  # the delete has read the replies in flight: none yet
        return rows

    async def held_start(*args: Any, **kwargs: Any) -> Any:
        await delete_looked().wait()
        return await original_start(*args, **kwargs)

    monkeypatch.setattr(store_class, "in_flight_replies", replies)
    monkeypatch.setattr(service_module.DBOS, "start_workflow_async", held_start)
    stream = Stream(head_app, cid, "deleted at once")
    wait_until(lambda: llm.active_streams == 1, timeout=10)  # the head start's request
    answer = httpx.delete(f"{head_app.url}/api/conversations/{cid}", timeout=30)
    assert answer.status_code == 200, answer.text
    stream.thread.join(30)
    turn_id = next(data["turn_id"] for name, data in stream.events if name == "turn")
    assert answer.json()["cancelled_turns"] == [turn_id]
    wait_until(lambda: llm.active_streams == 0, timeout=10)  # the request was taken back
    assert httpx.get(f"{head_app.url}/api/turns/{turn_id}/events",
                     timeout=10).status_code == 404
    assert _saved(head_app, cid) == []
    assert workflow._d().hub.in_flight() == []


def test_a_send_cancelled_while_its_turn_is_recorded_still_gets_its_reply(
        head_app: InProcessApp, llm: EmulatedLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """DBOS writes the workflow's row on a thread that a cancelled request cannot stop (a
    client gone, Gradio cancelling the event). The turn is then recorded all the same: it
    runs here at once, from its head start's request, and its reply is saved, rather than
    waiting for the next start's recovery with no request at the LLM."""
    llm.settings.reply_tokens = 8
    llm.settings.tpot_ms = 20
    llm.requests.clear()
    cid = conversation(head_app)
    original_start = service_module.DBOS.start_workflow_async
    go: list[asyncio.Event] = []

    async def held_start(*args: Any, **kwargs: Any) -> Any:
        go.append(asyncio.Event())
        await go[0].wait()
        return await original_start(*args, **kwargs)

    async def send_cancelled_then_let_go() -> None:
        assert head_app.service is not None
        sending = asyncio.ensure_future(head_app.service.start_turn(cid, "gone at once"))
        while not llm.active_streams or not go:  # the head start's request is at the LLM
            await asyncio.sleep(0.01)
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        go[0].set()

    monkeypatch.setattr(service_module.DBOS, "start_workflow_async", held_start)
    head_app.call(send_cancelled_then_let_go())
    monkeypatch.setattr(service_module.DBOS, "start_workflow_async", original_start)
    wait_until(lambda: len(_saved(head_app, cid)) == 2 and _saved(head_app, cid)[1][1]
               == "complete", timeout=20)
    assert _saved(head_app, cid)[0] == ("user", "complete", "gone at once")
    assert len(llm.requests) == 1  # the head start's, adopted


def test_a_keyed_send_deleted_before_its_message_is_saved_is_cancelled(
        head_app: InProcessApp, llm: EmulatedLLM) -> None:
    """A send with an Idempotency-Key has no head start, and its turn no rows until its first
    step: a delete of the conversation then finds it all the same."""
    llm.settings.reply_tokens = 8
    cid = conversation(head_app)
    with HeldSaves(head_app), httpx.stream(
            "POST", f"{head_app.url}/api/conversations/{cid}/messages?stream=true",
            json={"content": "keyed"}, headers={"Idempotency-Key": "k-1"},
            timeout=30) as events:
        first = next(line for line in events.iter_lines() if line.startswith("data: "))
        turn_id = json.loads(first[6:])["turn_id"]
        deleted = httpx.delete(f"{head_app.url}/api/conversations/{cid}", timeout=30)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["cancelled_turns"] == [turn_id]
    assert _saved(head_app, cid) == []
