"""A streaming reply's watchers (the REST API's events, the chat pane) are woken at most every
WAKE_EVERY_SEC: tokens that come faster go out together, slower ones one by one, and the first
words and the end never wait (chat_core/turns/progress.py)."""

from __future__ import annotations

import asyncio

from chat_core.states import COMPLETE
from chat_core.turns.progress import WAKE_EVERY_SEC, Snapshot, TurnProgress


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
