"""A streaming reply's watchers (the REST API's events, the chat pane) are woken at most every
WAKE_EVERY_SEC: tokens that come faster go out together, slower ones one by one, and the first
words and the end never wait (chat_core/turns/progress.py)."""

from __future__ import annotations

import asyncio

from chat_core.states import COMPLETE
from chat_core.turns.progress import WAKE_EVERY_SEC, Snapshot, TurnHub, TurnProgress


async def _settle() -> None:
    """Let every ready task run until it blocks again (no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


def _watching(progress: TurnProgress) -> tuple[list[Snapshot], asyncio.Task[None]]:
    seen: list[Snapshot] = []

    async def watch() -> None:
        async for snap in progress.watch():
            seen.append(snap)

    return seen, asyncio.create_task(watch())


def test_fast_tokens_go_out_together_the_first_words_and_the_end_at_once() -> None:
    async def run() -> None:
        progress = TurnProgress("turn-1", "reply-1")
        seen, watcher = _watching(progress)
        progress.start_attempt()
        await _settle()
        tokens = [f" w{i}" for i in range(60)]
        progress.append(tokens[0])
        await _settle()
        assert seen[-1].text == " w0"  # the first words without waiting
        for token in tokens[1:]:
            await asyncio.sleep(WAKE_EVERY_SEC / 20)
            progress.append(token)
        progress.finish(COMPLETE, "".join(tokens))
        await _settle()  # no time passes: the end is not held back
        assert watcher.done() and seen[-1].finished and seen[-1].text == "".join(tokens)
        texts = [s.text for s in seen if s.text]
        assert all("".join(tokens).startswith(t) for t in texts)
        # 59 tokens over about 3 wake-up intervals: a handful of updates, not one per token.
        assert len(texts) <= 15

    asyncio.run(run())


def test_tokens_slower_than_the_interval_go_out_one_by_one() -> None:
    async def run() -> None:
        progress = TurnProgress("turn-1", "reply-1")
        seen, watcher = _watching(progress)
        progress.start_attempt()
        for token in ("Hello", " there", ",", " friend"):
            progress.append(token)
            await asyncio.sleep(WAKE_EVERY_SEC * 2)
        progress.finish(COMPLETE, "Hello there, friend")
        await watcher
        assert [s.text for s in seen if s.text] == [
            "Hello", "Hello there", "Hello there,", "Hello there, friend",
            "Hello there, friend"]

    asyncio.run(run())


def test_a_new_attempt_starts_over_at_once() -> None:
    async def run() -> None:
        progress = TurnProgress("turn-1", "reply-1")
        seen, watcher = _watching(progress)
        progress.start_attempt()
        progress.append("first try")
        await _settle()
        assert seen[-1].text == "first try"
        progress.append(" goes on")  # its wake-up is due later...
        progress.start_attempt()  # ...a retry is shown without waiting for it
        await _settle()
        assert seen[-1].attempt == 1 and seen[-1].text == ""
        progress.finish(COMPLETE, "second")
        await watcher

    asyncio.run(run())


def test_many_turns_streaming_at_once_share_one_wake_up_timer() -> None:
    """Each streamed reply arming its own timer every interval was a twentieth of a token's
    CPU: the turns of one hub wait for one timer, and each watcher still sees every text
    within about an interval of its coming."""
    async def run() -> None:
        loop = asyncio.get_running_loop()
        timers = 0
        call_later = loop.call_later

        def counting(delay, callback, *args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal timers
            if getattr(callback, "__name__", "") != "_set_result_unless_cancelled":
                timers += 1  # a timer not of this test's own sleeps
            return call_later(delay, callback, *args, **kwargs)

        loop.call_later = counting  # type: ignore[method-assign]
        hub = TurnHub()
        turns = [hub.track(f"t{n}", f"r{n}") for n in range(40)]
        watched = [_watching(p) for p in turns]
        for p in turns:
            p.start_attempt()
        rounds = 30
        timers = 0
        started = loop.time()
        for i in range(rounds):
            for p in turns:
                p.append(f" {i}")
            await asyncio.sleep(WAKE_EVERY_SEC / 4)
        await asyncio.sleep(WAKE_EVERY_SEC * 2)
        intervals = (loop.time() - started) / WAKE_EVERY_SEC
        # One timer per interval for all 40 turns (each turn's own: about 40 per interval).
        assert timers <= intervals + 2, (timers, intervals)
        whole = "".join(f" {i}" for i in range(rounds))
        for seen, _ in watched:
            assert seen[-1].text == whole  # the last tokens shown without a further token
        for p in turns:
            hub.finish(p.turn_id, COMPLETE, whole)
        await asyncio.gather(*(task for _, task in watched))

    asyncio.run(run())


def test_a_hub_used_again_on_a_new_event_loop_still_wakes_its_watchers() -> None:
    """A wake-up timer left armed on a loop that has ended never fires: the next loop's turns
    must not wait for it (tests and scripts run one hub on several loops)."""
    hub = TurnHub()

    async def stream(turn_id: str) -> list[Snapshot]:
        progress = hub.track(turn_id, f"reply-{turn_id}")
        seen, watcher = _watching(progress)
        progress.start_attempt()
        progress.append("a")
        await _settle()
        progress.append("b")  # within the interval: deferred to the shared timer
        await asyncio.sleep(WAKE_EVERY_SEC * 3)
        shown = list(seen)
        hub.finish(turn_id, COMPLETE, "ab")
        await watcher
        return shown

    first = asyncio.run(stream("one"))
    assert first[-1].text == "ab"

    async def end_with_a_timer_armed() -> None:
        progress = hub.track("two", "reply-two")
        progress.start_attempt()
        progress.append("a")
        progress.append("b")  # deferred; the loop ends before the timer fires

    asyncio.run(end_with_a_timer_armed())
    assert asyncio.run(stream("three"))[-1].text == "ab"


async def _two_streaming(first: str, second: str, text: str
                         ) -> tuple[TurnProgress, TurnProgress, list[Snapshot], asyncio.Task[None]]:
    """Two turns of one hub (one shared wake-up timer) that have shown `text`; the second one
    watched."""
    hub = TurnHub()
    one, two = hub.track(first, f"r-{first}"), hub.track(second, f"r-{second}")
    seen, watcher = _watching(two)
    for progress in (one, two):
        progress.start_attempt()
        progress.append(text)
    await _settle()
    return one, two, seen, watcher


def test_a_turn_whose_wake_up_fails_does_not_stall_the_others() -> None:
    """The turns deferred to one firing of the shared timer are woken one after another: one
    that fails (its observer raising) must not leave the others' new text unshown."""
    async def run() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        failing, fine, seen, watcher = await _two_streaming("bad", "good", "a")

        def observer(progress: TurnProgress) -> None:
            if progress is failing:
                raise RuntimeError("observer failed")

        failing.observer = fine.observer = observer
        failing.append("b")  # both deferred to the same firing, the failing one first
        fine.append("b")
        await asyncio.sleep(WAKE_EVERY_SEC * 3)
        assert seen[-1].text == "ab"
        assert [str(c.get("exception")) for c in reported] == ["observer failed"]
        fine.append("c")
        await asyncio.sleep(WAKE_EVERY_SEC * 3)
        assert seen[-1].text == "abc"  # it goes on streaming
        fine.finish(COMPLETE, "abc")
        await watcher

    asyncio.run(run())


def test_a_turn_is_woken_about_once_an_interval_though_the_timer_is_shared() -> None:
    """A turn woken at once (its interval had passed) is not woken again by the shared timer,
    armed by another turn, a moment later: its next text waits for the firing after."""
    async def run() -> None:
        other, turn, seen, watcher = await _two_streaming("other", "turn", "0")
        other.append("1")  # arms the shared timer now
        await asyncio.sleep(WAKE_EVERY_SEC * 0.9)
        turn.notified_at -= WAKE_EVERY_SEC  # its interval has passed: woken at once
        turn.append("1")
        await _settle()
        turn.append("2")  # deferred; the shared timer fires about 0.1 interval later
        await asyncio.sleep(WAKE_EVERY_SEC * 0.5)
        assert seen[-1].text == "01", "woken twice within half an interval"
        await asyncio.sleep(WAKE_EVERY_SEC * 2)
        assert seen[-1].text == "012"
        turn.finish(COMPLETE, "012")
        other.finish(COMPLETE, "01")
        await watcher

    asyncio.run(run())
