"""Turns go through their steps before the LLM in arrival order (chat_core/turns/start_order.py):
a few at a time, the earliest first, a turn that stepped out to wait for an earlier turn of its
conversation coming back ahead of later arrivals. Fast: no app, no database."""

from __future__ import annotations

import asyncio

import pytest

from chat_core.turns.start_order import StartOrder
from tests.test_fair_gate import on_a_loop, settle


class Turn:
    def __init__(self, order: StartOrder, name: str, inside: list[str]) -> None:
        self.order, self.name = order, name
        self.task = asyncio.create_task(self._enter(inside))

    async def _enter(self, inside: list[str]) -> None:
        await self.order.enter(self.name)
        inside.append(self.name)


async def arrive(order: StartOrder, names: str, inside: list[str]) -> dict[str, Turn]:
    turns = {}
    for name in names.split():
        turns[name] = Turn(order, name, inside)
        await asyncio.sleep(0)  # arrival order is the order of entering
    await settle()
    return turns


@on_a_loop
async def test_the_earliest_arrivals_go_first_a_few_at_a_time() -> None:
    order, inside = StartOrder(2), []
    await arrive(order, "t0 t1 t2 t3 t4", inside)
    assert inside == ["t0", "t1"] and order.waiting == 3
    order.leave("t1")
    await settle()
    assert inside == ["t0", "t1", "t2"]
    for name in ("t0", "t2", "t3"):
        order.leave(name)
        await settle()
    assert inside == ["t0", "t1", "t2", "t3", "t4"] and order.inside == 1


@on_a_loop
async def test_a_turn_that_stepped_out_comes_back_ahead_of_later_arrivals() -> None:
    order, inside = StartOrder(2), []
    await arrive(order, "t0 t1 t2 t3", inside)
    assert order.step_out("t1")  # t1 waits for an earlier turn of its conversation
    await settle()
    assert inside == ["t0", "t1", "t2"]
    back = asyncio.create_task(order.enter("t1"))
    await settle()
    assert not back.done()
    order.leave("t0")
    await settle()
    assert back.done() and inside == ["t0", "t1", "t2"]  # t1 again, not t3
    order.leave("t1")
    await settle()
    assert inside[-1] == "t3"


@on_a_loop
async def test_a_turn_cancelled_while_waiting_takes_nothing_and_one_let_in_passes_it_on() -> None:
    order, inside = StartOrder(1), []
    turns = await arrive(order, "t0 t1 t2", inside)
    turns["t1"].task.cancel()
    await settle()
    assert order.waiting == 1
    order.leave("t0")  # t2 is let in, and cancelled before it runs
    turns["t2"].task.cancel()
    await settle()
    assert order.inside == 0 and order.waiting == 0
    await arrive(order, "t3", inside)
    assert inside == ["t0", "t3"]


@on_a_loop
async def test_capacity_zero_lets_everyone_through() -> None:
    order, inside = StartOrder(0), []
    await arrive(order, "t0 t1 t2", inside)
    assert inside == ["t0", "t1", "t2"]


def test_a_negative_capacity_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match="TURN_START_CONCURRENCY"):
        StartOrder(-1)
