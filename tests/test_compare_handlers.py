"""The Compare tab's handlers in share mode, called as Gradio calls them for any client that
joins the queue: someone else's comparison answers every step (open, send, vote, stream,
settle) exactly as an id nobody has, shows none of it, and changes nothing. The admin's
Compare tab is their own too (the leaderboard alone shows everyone's votes).

The real service and store on PostgreSQL (tests/ui_fakes.room); the comparison is made in the
store, its round as its turn workflows record it (no LLM needed: nothing may start)."""

from __future__ import annotations

import uuid
import warnings
from typing import Any, Iterator

import gradio as gr
import pytest

from chat_core.accounts.person import Person
from chat_core.store.comparisons import ComparisonStore, SideRow
from chat_core.ui.compare import CompareHandlers, build_compare_tab
from tests.ui_fakes import FakeService, Room, caller, room

SECRET = "albatross"  # in the owner's prompt, replies, title and labels only


@pytest.fixture(scope="module")
def layout() -> Iterator[Any]:
    with gr.Blocks():
        with gr.Tab("Compare") as tab:
            yield build_compare_tab(FakeService(), tab, share_mode=True).ui  # type: ignore[arg-type]


@pytest.fixture()
def people(migrated_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Room]:
    with room(migrated_database_url, monkeypatch) as r:
        yield r


def alices_comparison(r: Room, finished: bool = True) -> dict[str, str]:
    """Alice's blind comparison with one round, finished or still being written: the ids the
    others try."""
    cid = uuid.uuid4()
    sides = {s: SideRow(uuid.uuid4(), f"model-{s}", f"{SECRET}-{s}", {}) for s in "ab"}
    store = ComparisonStore(r.system.db, r.alice)
    assert r.run(store.create(cid, f"{SECRET} question", True, sides["a"], sides["b"]))
    ids = {"comparison": str(cid)}
    for s, side in sides.items():
        turn, _, _ = r.turn(r.alice, str(side.conversation_id), f"{SECRET} prompt",
                            f"{SECRET} reply {s}" if finished else None)
        ids[f"turn_{s}"], ids[f"conversation_{s}"] = turn, str(side.conversation_id)
    return ids


def nobodys() -> dict[str, str]:
    return {"comparison": str(uuid.uuid4()), "turn_a": f"turn-{uuid.uuid4()}",
            "turn_b": f"turn-{uuid.uuid4()}", "conversation_a": str(uuid.uuid4()),
            "conversation_b": str(uuid.uuid4())}


def following(ids: dict[str, str]) -> dict[str, Any]:
    """A stream step's input naming the comparison's round, as a hostile client would send
    it (the page only ever sends one its own handler made)."""
    return {"token": "t", "comparison": ids["comparison"],
            "turns": {s: ids[f"turn_{s}"] for s in "ab"},
            "conversations": {s: ids[f"conversation_{s}"] for s in "ab"},
            "shown": {"a": [], "b": []}}


def answered(r: Room, call: Any) -> str:
    """What the page would get: the answer and every warning shown, with names of components
    in place of the components."""
    async def drain() -> Any:
        out = call()
        if hasattr(out, "__aiter__"):
            return [item async for item in out]
        return await out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answer = r.run(drain())
    if isinstance(answer, dict):
        answer = sorted((getattr(k, "elem_id", None) or type(k).__name__, repr(v))
                        for k, v in answer.items())
    return repr((answer, [str(w.message) for w in caught]))


def masked(text: str, ids: dict[str, str]) -> str:
    for value in ids.values():
        text = text.replace(value, "<id>")
    return text


def steps(h: CompareHandlers, who: Person, ids: dict[str, str]) -> dict[str, Any]:
    req = caller(who)
    side = ("", "", 0.7, "")

    def stream() -> Any:
        # The round shown on the caller's page, as the page's own first step records it: a
        # stream of a round not shown draws nothing, whoever's it is.
        h.show_round(req, following(ids))
        return h.stream(following(ids), req)

    return {
        "open": lambda: h.open(ids["comparison"], req),
        "send": lambda: h.send("mine now", ids["comparison"], True, *side, *side, req),
        "vote": lambda: h.vote("a", ids["comparison"], req),
        "stream": stream,
        "settle": lambda: h.settle(following(ids), {"token": "t", "notice": None}, req),
    }


@pytest.mark.parametrize("who", ["bob", "admin"])
def test_someone_elses_comparison_answers_like_a_missing_one(layout: Any, people: Room,
                                                             who: str) -> None:
    r = people
    handlers = CompareHandlers(r.service, layout, share_mode=True)
    theirs, unknown = alices_comparison(r), nobodys()
    visitor = getattr(r, who)
    for name, call in steps(handlers, visitor, theirs).items():
        seen = answered(r, call)
        missing = answered(r, steps(handlers, visitor, unknown)[name])
        assert masked(seen, theirs) == masked(missing, unknown), name
        assert SECRET not in seen and "model-" not in seen, name
    # Alice's comparison is as it was: unjudged, one round, blind, still hers.
    mine = r.run(r.service.for_person(r.alice).comparisons().get(theirs["comparison"]))
    assert mine["winner"] is None and mine["blind"] is True
    assert [len(mine["sides"][s]["messages"]) for s in "ab"] == [2, 2]


def test_the_owner_gets_it_through_the_same_steps(layout: Any, people: Room) -> None:
    """The checks above can fail: the owner's own calls show the comparison, stream its
    round's replies, settle it and judge it."""
    r = people
    handlers = CompareHandlers(r.service, layout, share_mode=True)
    ids = alices_comparison(r)
    mine = steps(handlers, r.alice, ids)
    for name in ("open", "stream", "settle"):
        shown = answered(r, mine[name])
        assert f"{SECRET} reply a" in shown and f"{SECRET} reply b" in shown, name
        assert "model-a" not in shown, name  # blind until the vote
    voted = answered(r, mine["vote"]).replace("\\", "")  # (Markdown escapes)
    assert f"A: {SECRET}-a 🏆" in voted  # the vote shows the sides' names



def test_a_round_opened_twice_at_once_is_followed_whichever_answer_gradio_keeps(
        layout: Any, people: Room) -> None:
    """A page can open the same comparison twice at once (a pick from the list can fire its
    event twice). Gradio keeps whichever call's state it stores last for the stream step, which
    need not be the call that marked its round shown last: either must be followed, or the
    replies being written never show (seen in a browser test, 1 run in 4)."""
    r = people
    handlers = CompareHandlers(r.service, layout, share_mode=True)
    ids = alices_comparison(r, finished=False)
    req = caller(r.alice)
    first, second = (r.run(handlers.open(ids["comparison"], req))[layout.following]
                     for _ in range(2))
    assert first["turns"] == second["turns"] == {s: ids[f"turn_{s}"] for s in "ab"}
    assert handlers.still_shown(req, first) and handlers.still_shown(req, second)
    # The comparison's next round is another: the earlier round's stream stops drawing once
    # the next is shown.
    for s in "ab":
        r.turn(r.alice, ids[f"conversation_{s}"], f"{SECRET} next prompt")
    later = r.run(handlers.open(ids["comparison"], req))[layout.following]
    assert later["turns"] != first["turns"]
    assert handlers.still_shown(req, later) and not handlers.still_shown(req, first)


def test_picking_the_open_comparison_again_leaves_the_page_as_it_is(layout: Any,
                                                                   people: Room) -> None:
    """The list fires its event again when closed on the same choice. A second read of the
    comparison, made just before a vote, could land after the vote's answer and draw it
    unjudged again (a browser test saw the names never show after the vote): the comparison
    already open is left as it is, and only another one is opened."""
    r = people
    handlers = CompareHandlers(r.service, layout, share_mode=True)
    shown, other = alices_comparison(r), alices_comparison(r)
    req = caller(r.alice)
    again = r.run(handlers.pick(shown["comparison"], shown["comparison"], req))
    assert again == gr.skip()  # nothing on the page changes
    opened = r.run(handlers.pick(other["comparison"], shown["comparison"], req))
    assert opened[layout.comparison] == other["comparison"]
