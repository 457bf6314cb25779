"""The dataset export, fast: the pure functions of chat_core/data/dataset_export.py on rows made
here, then GET /api/dataset on the real service and a PostgreSQL database of this module's own
(the World of tests/test_ratings.py: accounts on, DBOS stood in for, the REST routes on an ASGI
transport).

What a researcher notices: every line parses; roles are right; only the replies that were shown
are in a conversation; preference pairs come from a liked and a disliked reply to one message
and from the alternative chosen; the filters select what they say, and a filter that is not a
date is a 400 that says so; a person gets their own, an admin everyone's who accepted the
notice, under pseudonyms; and the preference file loads with pandas and `datasets` with exactly
TRL's columns. A comparison's vote for a side is a pair (the winner's reply chosen), first in the
file; a tie, "both bad", a vote on a later round and an unvoted blind comparison are none."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_core.data import dataset_export as dx
from chat_core.errors import InvalidInput, MalformedRequest
from chat_core.store import dataset_rows
from chat_core.store.comparisons import ComparisonStore, SideRow
from chat_core.store.database import Database
from chat_core.store.dataset_rows import DatasetRows, DatasetSecret
from chat_core.store.migrations import apply_migrations
from tests.helpers import create_database, drop_database, query
from tests.test_ratings import World, world  # noqa: F401 (the fixture)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


# -- rows as the store reads them ----------------------------------------------------------------

def user(seq: int, text: str, at: datetime = T0) -> dict[str, Any]:
    return {"id": f"u{seq}", "role": "user", "seq": seq, "content": text, "created_at": at,
            "status": "complete", "parent_id": None, "active": False}


def reply(seq: int, key: str, text: str, *, active: bool = False, rating: int | None = None,
          model: str = "m", status: str = "complete", system: str = "",
          selected: bool = False) -> dict[str, Any]:
    """A reply row; `selected`: the person chose it among its alternatives (◀ ▶)."""
    return {"id": key, "role": "assistant", "seq": seq, "content": text, "parent_id": f"u{seq}",
            "status": status, "active": active, "model": model, "rating": rating,
            "selected_at": T0 if selected else None,
            "rating_tags": ["t"] if rating else None, "rating_comment": "",
            "params": {"temperature": 0.5, "top_p": 0.9, "max_tokens": 64,
                       "system_prompt": system}, "created_at": T0}


CONVERSATION = {"id": "c1", "title": "Herons", "created_at": T0, "owner_id": None}


def q(fmt: str = "openai", **kwargs: Any) -> dx.DatasetQuery:
    return dx.parse_query(fmt, **kwargs)


def sample() -> list[dict[str, Any]]:
    """Two turns: the first with three alternatives (the second shown, chosen by the person,
    the first disliked, the third liked), the second with one reply; a third turn whose reply
    failed."""
    return [
        user(1, "What is a heron?"),
        reply(1, "r1a", "A fish.", rating=-1, system="Be brief."),
        reply(1, "r1b", "A bird.", active=True, selected=True, system="Be brief."),
        reply(1, "r1c", "A wading bird.", rating=1, system="Be brief."),
        user(2, "Where do they live?"),
        reply(2, "r2", "Near water.", active=True, system="Be brief."),
        user(3, "And?"),
        reply(3, "r3", "", status="error"),
    ]


# -- the pure functions -----------------------------------------------------------------------

def test_an_openai_line_holds_the_shown_replies_in_order() -> None:
    line = dx.conversation_line(CONVERSATION, sample(), q())
    assert line is not None
    assert line["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is a heron?"},
        {"role": "assistant", "content": "A bird."},
        {"role": "user", "content": "Where do they live?"},
        {"role": "assistant", "content": "Near water."}]
    assert line["message_ids"] == [None, "u1", "r1b", "u2", "r2"]
    assert line["model"] == "m" and line["parameters"] == {"temperature": 0.5, "top_p": 0.9,
                                                           "max_tokens": 64}
    assert line["conversation_id"] == "c1" and line["created_at"] == "2026-11-30T12:00:00Z"
    assert "owner" not in line  # no accounts: nobody to name


def test_a_sharegpt_line_speaks_human_and_gpt() -> None:
    line = dx.conversation_line(CONVERSATION, sample(), q("sharegpt"))
    assert line is not None
    assert [m["from"] for m in line["conversations"]] == ["system", "human", "gpt", "human",
                                                          "gpt"]
    assert line["conversations"][2]["value"] == "A bird." and line["id"] == "c1"


def test_preference_pairs_from_ratings_and_the_chosen_alternative() -> None:
    pairs = list(dx.preference_pairs(sample(), q("preference")))
    got = {(p.chosen["id"], p.rejected["id"], p.source) for p in pairs}
    assert got == {("r1c", "r1a", "rating"),        # liked over disliked
                   ("r1b", "r1a", "alternative")}   # shown over the other, unless liked
    line = pairs[0].line()
    assert list(line) == list(dx.PREFERENCE_COLUMNS)
    assert line["prompt"] == [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "What is a heron?"}]
    assert line["chosen"] == [{"role": "assistant", "content": "A wading bird."}]
    # The second turn's prompt holds the first turn as it was shown.
    second = [user(1, "hi"), reply(1, "a", "hello", active=True), user(2, "again"),
              reply(2, "b", "one", rating=1), reply(2, "c", "two", rating=-1, active=True)]
    [pair] = dx.preference_pairs(second, q("preference"))
    assert [m["content"] for m in pair.line()["prompt"]] == ["hi", "hello", "again"]
    assert (pair.chosen["id"], pair.rejected["id"]) == ("b", "c")  # a disliked shown reply


def test_a_stronger_source_wins_the_same_two_replies() -> None:
    """A rating outranks the chosen alternative; a vote outranks both."""
    messages = [user(1, "q"), reply(1, "a", "one", active=True, selected=True, rating=-1),
                reply(1, "b", "two", rating=1)]
    [pair] = dx.preference_pairs(messages, q("preference"))
    assert (pair.chosen["id"], pair.source) == ("b", "rating")
    liked = [user(1, "q"), reply(1, "a", "one", active=True, selected=True, rating=1),
             reply(1, "b", "two", rating=-1)]
    [pair] = dx.preference_pairs(liked, q("preference"))  # the same pair from two sources
    assert (pair.chosen["id"], pair.source) == ("a", "rating")
    prompt = (("user", "q"),)
    rows = {r["id"]: r for r in messages if r["role"] == "assistant"}
    merged = dx.merge_pairs([dx.Pair(prompt, rows["a"], rows["b"], "vote"),
                             dx.Pair(prompt, rows["b"], rows["a"], "rating"),
                             dx.Pair(prompt, rows["b"], rows["a"], "alternative")])
    assert [(p.chosen["id"], p.source) for p in merged] == [("a", "vote")]
    with pytest.raises(ValueError, match="strongest first"):  # the order is the contract
        list(dx.merge_pairs([dx.Pair(prompt, rows["b"], rows["a"], "alternative"),
                             dx.Pair(prompt, rows["a"], rows["b"], "vote")]))


def test_an_alternative_is_chosen_only_when_the_person_chose_it() -> None:
    """The newest reply is shown on its own (regenerate): that is no judgement of the older
    ones. Only a reply the person selected (◀ ▶) is preferred to its alternatives."""
    unchosen = [user(1, "q"), reply(1, "a", "one"), reply(1, "b", "two", active=True)]
    assert list(dx.preference_pairs(unchosen, q("preference"))) == []
    chosen = [user(1, "q"), reply(1, "a", "one"), reply(1, "b", "two", active=True,
                                                        selected=True)]
    [pair] = dx.preference_pairs(chosen, q("preference"))
    assert (pair.chosen["id"], pair.rejected["id"], pair.source) == ("b", "a", "alternative")


def test_thousands_of_judged_replies_to_one_message_build_at_most_the_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 liked and 2,000 disliked replies to one message (an import can hold as many)
    would make 4 million pairs: no more than MAX_PAIRS_PER_MESSAGE are ever built."""
    cap = dx.MAX_PAIRS_PER_MESSAGE
    built: list[str] = []  # the message each pair built answers

    class Counted(dx.Pair):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self.prompt[-1][1])
            assert built.count(built[-1]) <= cap, f"more than {cap} pairs built for one message"

    monkeypatch.setattr(dx, "Pair", Counted)
    many = [user(1, "q"), *(reply(1, f"g{i}", f"good {i}", rating=1) for i in range(2000)),
            *(reply(1, f"b{i}", f"bad {i}", rating=-1) for i in range(2000)),
            reply(1, "s", "shown", active=True, selected=True),
            user(2, "next"), reply(2, "n1", "yes", rating=1), reply(2, "n2", "no", rating=-1)]
    pairs = list(dx.preference_pairs(many, q("preference")))
    assert len(pairs) == cap + 1 and built == ["q"] * cap + ["next"]  # no more were built
    assert {p.source for p in pairs[:cap]} == {"rating"}
    assert (pairs[-1].chosen["id"], pairs[-1].rejected["id"]) == ("n1", "n2")
    # Replies with the same text make one pair, not one per copy.
    built.clear()
    copies = [user(1, "q"), *(reply(1, f"g{i}", "same", rating=1) for i in range(2000)),
              *(reply(1, f"b{i}", "other", rating=-1) for i in range(2000))]
    assert len(list(dx.preference_pairs(copies, q("preference")))) == 1


def test_a_continued_reply_is_not_preferred_to_its_own_beginning() -> None:
    messages = [user(1, "q"), reply(1, "a", "Once upon", status="stopped"),
                reply(1, "b", "Once upon a time", active=True, selected=True)]
    assert list(dx.preference_pairs(messages, q("preference"))) == []


def test_the_filters_select_what_they_say() -> None:
    rows = sample()
    assert dx.conversation_line(CONVERSATION, rows, q(model="m")) is not None
    assert dx.conversation_line(CONVERSATION, rows, q(model="other")) is None
    # min_rating: a conversation is as good as its worst shown reply (unrated counts 0).
    assert dx.conversation_line(CONVERSATION, rows, q(min_rating="0")) is not None
    assert dx.conversation_line(CONVERSATION, rows, q(min_rating=1)) is None
    assert dx.conversation_line(CONVERSATION, rows, q(since="2026-11-30")) is not None
    assert dx.conversation_line(CONVERSATION, rows, q(since="2026-11-30T12:00:01Z")) is None
    assert dx.conversation_line(CONVERSATION, rows, q(until="2026-11-30T13:00+01:00")) is None
    assert dx.conversation_line(CONVERSATION, rows, q(until="2026-12-01")) is not None
    prefs = list(dx.preference_pairs(rows, q("preference", min_rating=1)))
    assert [(p.chosen["id"], p.source) for p in prefs] == [("r1c", "rating")]
    assert list(dx.preference_pairs(rows, q("preference", since="2026-12-01"))) == []


# -- votes, as DatasetRows.votes reads them ------------------------------------------------------

def side_rows(comparison: str, side: str, text: str, *, winner: str = "a", seq: int = 1,
              model: str = "m", system: str = "", extra: list[dict[str, Any]] | None = None,
              rating: int | None = None) -> list[dict[str, Any]]:
    """One side of a voted comparison at its voted round: the user message and one reply
    (then `extra` replies), each row with the comparison's columns."""
    head = {"comparison_id": comparison, "winner": winner, "voted_seq": seq, "side": side,
            "voted_at": T0 + timedelta(minutes=5)}
    asked = {**user(seq, "Which bird?"), "id": f"{comparison}-{side}-u"}
    shown = {**reply(seq, f"{comparison}-{side}", text, active=True, model=model,
                     system=system, rating=rating), "parent_id": asked["id"]}
    return [{**head, **row} for row in [asked, shown, *(extra or [])]]


def test_a_vote_for_a_side_is_a_pair_with_the_winner_chosen() -> None:
    rows = side_rows("k1", "a", "A heron.", winner="b", system="Be brief.") + \
        side_rows("k1", "b", "A grey heron.", winner="b", system="Be brief.")
    [pair] = dx.vote_pairs(rows, q("preference"))
    assert pair.source == "vote"
    assert pair.line() == {
        "prompt": [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Which bird?"}],
        "chosen": [{"role": "assistant", "content": "A grey heron."}],
        "rejected": [{"role": "assistant", "content": "A heron."}]}
    # Two system prompts: neither is the prompt of both replies, so there is none.
    rows = side_rows("k2", "a", "One.", system="Be brief.") + \
        side_rows("k2", "b", "Two.", system="Be long.")
    [pair] = dx.vote_pairs(rows, q("preference"))
    assert pair.line()["prompt"] == [{"role": "user", "content": "Which bird?"}]


@pytest.mark.parametrize("winner", ["tie", "both_bad"])
def test_a_tie_or_both_bad_is_no_pair(winner: str) -> None:
    rows = side_rows("k", "a", "One.", winner=winner) + side_rows("k", "b", "Two.", winner=winner)
    assert list(dx.vote_pairs(rows, q("preference"))) == []


def test_a_vote_on_a_later_round_is_no_pair() -> None:
    """From the second round on each side answered its own history: no one prompt."""
    rows = side_rows("k", "a", "One.", seq=2) + side_rows("k", "b", "Two.", seq=2)
    assert list(dx.vote_pairs(rows, q("preference"))) == []


def test_a_vote_pair_is_filtered_like_the_others() -> None:
    rows = side_rows("k", "a", "One.", model="m") + side_rows("k", "b", "Two.", model="n")
    assert len(list(dx.vote_pairs(rows, q("preference")))) == 1
    assert list(dx.vote_pairs(rows, q("preference", model="m"))) == []  # both by the model
    assert list(dx.vote_pairs(rows, q("preference", since="2026-12-01"))) == []
    assert list(dx.vote_pairs(rows, q("preference", min_rating=1))) == []  # chosen unrated
    liked = side_rows("k", "a", "One.", rating=1) + side_rows("k", "b", "Two.", rating=-1)
    assert len(list(dx.vote_pairs(liked, q("preference", min_rating=1)))) == 1


def test_the_reply_judged_is_the_one_shown_at_the_vote() -> None:
    """A reply regenerated after the vote is not the one voted on; a reply the person chose
    back (◀ ▶) before the vote is; a failed judged reply makes no pair."""
    later = {**reply(1, "k-a-new", "Regenerated later.", active=True), "parent_id": "k-a-u",
             "created_at": T0 + timedelta(minutes=9)}
    rows = side_rows("k", "a", "One.", extra=[later]) + side_rows("k", "b", "Two.")
    [pair] = dx.vote_pairs(rows, q("preference"))
    assert pair.chosen["content"] == "One."
    newer = {**reply(1, "k-a-new", "Newer.", active=False), "parent_id": "k-a-u",
             "created_at": T0 + timedelta(minutes=1)}
    chosen_back = side_rows("k", "a", "Chosen back.", extra=[newer])
    chosen_back[1]["selected_at"] = T0 + timedelta(minutes=2)
    [pair] = dx.vote_pairs(chosen_back + side_rows("k", "b", "Two."), q("preference"))
    assert pair.chosen["content"] == "Chosen back."
    failed = side_rows("k", "a", "", extra=[])
    failed[1]["status"] = "error"
    assert list(dx.vote_pairs(failed + side_rows("k", "b", "Two."), q("preference"))) == []
    one_side = side_rows("k", "a", "One.")  # the other side's conversation was deleted
    assert list(dx.vote_pairs(one_side, q("preference"))) == []


@pytest.mark.parametrize("kwargs,error,words", [
    ({"fmt": "csv"}, InvalidInput, "openai, sharegpt, preference"),
    ({"fmt": "openai", "since": "yesterday"}, MalformedRequest, "ISO 8601 date"),
    ({"fmt": "openai", "until": "2026-13-40"}, MalformedRequest, "until must be"),
    ({"fmt": "openai", "since": "\ud800"}, MalformedRequest, "since must be"),
    ({"fmt": "openai", "since": "x" * 500}, MalformedRequest, "since must be"),
    ({"fmt": "openai", "since": "2026-12-01", "until": "2026-11-01"}, InvalidInput, "before"),
    ({"fmt": "openai", "min_rating": "2"}, InvalidInput, "-1, 0 or 1"),
    ({"fmt": "openai", "min_rating": True}, InvalidInput, "-1, 0 or 1"),
    ({"fmt": "openai", "model": "a\x00b"}, InvalidInput, "NUL"),
])
def test_bad_options_say_what_to_fix(kwargs: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error) as raised:
        dx.parse_query(**kwargs)
    assert words in raised.value.message


def test_a_pseudonym_is_keyed_stable_and_names_nobody() -> None:
    """HMAC of the account id under the deployment's secret: an id someone was shown (in
    /api/me, say) does not tell which lines are theirs without the secret."""
    owner = uuid.uuid4()
    secret, another = b"s" * 32, b"t" * 32
    conversation = {**CONVERSATION, "owner_id": owner, "owner_name": "alice"}
    line = dx.conversation_line(conversation, sample(), q(), accounts=True, secret=secret)
    assert line is not None and line["owner"] == dx.pseudonym(owner, secret) != "alice"
    assert line["owner"] == dx.pseudonym(str(owner), secret) and line["owner"].startswith("person-")
    assert dx.pseudonym(owner, another) != line["owner"]
    unkeyed = hashlib.sha256(b"durable-chat/dataset-owner:" + owner.bytes).hexdigest()[:12]
    assert line["owner"] != f"person-{unkeyed}"  # what the id alone computed before
    named = dx.conversation_line(conversation, sample(), q(pseudonyms=False), accounts=True)
    assert named is not None and named["owner"] == "alice"
    with pytest.raises(ValueError, match="secret"):
        dx.conversation_line(conversation, sample(), q(), accounts=True)


# -- GET /api/dataset ---------------------------------------------------------------------------

def lines(world: World, person: Any, **params: Any) -> list[dict[str, Any]]:
    answer = world.call(person, "GET", "/api/dataset", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    assert answer.text == "" or answer.text.endswith("\n")
    return [json.loads(line) for line in split_lines(answer.text)]


def split_lines(body: str) -> list[str]:
    """JSON Lines end each line with "\n", and only there: str.splitlines would also split
    at U+2028, U+2029 and U+0085, which JSON strings may hold."""
    assert body == "" or body.endswith("\n")
    return body.split("\n")[:-1]


def secret_of(world: World) -> bytes:
    return world.run(DatasetSecret(world.room.system.db).pseudonyms())


def rated_conversation(world: World, owner: Any, model: str) -> tuple[str, dict[str, str]]:
    """A conversation whose first message has three replies: one disliked, the shown one
    (selected), one liked; its second turn one reply; all by `model`."""
    cid = world.conversation(owner, f"about {model}")
    u1, bad = world.turn(cid, f"Q1 {model}", f"bad {model}", model, "Be brief.")
    shown = world.alternative(u1, f"shown {model}", model, "Be brief.")
    good = world.alternative(u1, f"good {model}", model, "Be brief.")
    assert world.run(world.service(owner).select_reply(cid, shown))["active"]
    _, second = world.turn(cid, f"Q2 {model}", f"second {model}", model, "Be brief.")
    service = world.service(owner)
    world.run(service.rate_reply(cid, bad, -1))
    world.run(service.rate_reply(cid, good, 1, ["helpful"], "best"))
    return cid, {"bad": bad, "shown": shown, "good": good, "second": second}


def test_the_openai_and_sharegpt_lines_of_a_person(world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    cid, ids = rated_conversation(world, world.bob, model)
    [line] = [x for x in lines(world, world.bob, format="openai", model=model)]
    assert line["conversation_id"] == cid and line["model"] == model
    assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant", "user",
                                                     "assistant"]
    assert [m["content"] for m in line["messages"][2::2]] == [f"shown {model}",
                                                              f"second {model}"]
    assert line["message_ids"][2] == ids["shown"] and line["owner"].startswith("person-")
    assert line["ratings"] == []  # the shown replies are unrated
    [share] = lines(world, world.bob, format="sharegpt", model=model)
    assert [m["from"] for m in share["conversations"]] == ["system", "human", "gpt", "human",
                                                          "gpt"]


def test_preference_pairs_load_with_pandas_and_datasets_as_trl_reads_them(
        world: World, tmp_path: Path) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    rated_conversation(world, world.bob, model)
    found = lines(world, world.bob, format="preference", model=model)
    pairs = {(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in found}
    assert pairs == {(f"good {model}", f"bad {model}"),    # from the ratings
                     (f"shown {model}", f"bad {model}")}   # the chosen alternative
    # (good over shown is no pair: a liked alternative is not rejected, nor preferred unrated)
    for p in found:
        assert list(p) == ["prompt", "chosen", "rejected"]
        assert [m["role"] for m in p["prompt"]] == ["system", "user"]
    path = tmp_path / "preference.jsonl"
    path.write_text(world.call(world.bob, "GET", "/api/dataset", params={
        "format": "preference", "model": model}).text, encoding="utf-8")
    frame = pd.read_json(path, lines=True)
    assert list(frame.columns) == ["prompt", "chosen", "rejected"] and len(frame) == 2
    assert frame["chosen"].map(lambda m: m[0]["role"]).eq("assistant").all()
    import datasets  # requirements.txt, "# Tests"
    loaded = datasets.load_dataset("json", data_files=str(path), split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert loaded.column_names == ["prompt", "chosen", "rejected"] and loaded.num_rows == 2
    assert loaded[0]["prompt"][-1]["role"] == "user"


def test_the_filters_over_the_api(world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    cid, _ = rated_conversation(world, world.bob, model)
    today = datetime.now(timezone.utc).date()

    def ids(**params: Any) -> list[str]:
        return [x["conversation_id"] for x in lines(world, world.bob, model=model, **params)]

    assert ids() == [cid]
    assert ids(since=str(today - timedelta(days=1))) == [cid]
    assert ids(since=str(today + timedelta(days=1))) == []
    assert ids(until=str(today)) == []
    assert ids(min_rating="0") == [cid] and ids(min_rating="1") == []
    assert lines(world, world.bob, format="preference", model=model,
                 since=str(today + timedelta(days=1))) == []
    assert lines(world, world.bob, model=model + "-other") == []


@pytest.mark.parametrize("params,status,words", [
    ({"since": "last tuesday"}, 400, "since must be an ISO 8601 date"),
    ({"until": "2026-02-30"}, 400, "until must be"),
    ({"format": "csv"}, 422, "format must be one of"),
    ({"min_rating": "5"}, 422, "min_rating must be"),
    ({"pseudonyms": "maybe"}, 422, "pseudonyms must be true or false"),
])
def test_a_bad_filter_is_a_clear_4xx_before_anything_is_sent(
        world: World, params: dict[str, str], status: int, words: str) -> None:
    answer = world.call(world.bob, "GET", "/api/dataset", params=params)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]


def test_whose_conversations_leave_and_under_what_name(world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    hers, _ = rated_conversation(world, world.alice, model)
    his, _ = rated_conversation(world, world.bob, model)
    own, _ = rated_conversation(world, world.admin, model)

    def exported(person: Any, **params: Any) -> dict[str, dict[str, Any]]:
        return {x["conversation_id"]: x for x in lines(world, person, model=model, **params)}

    consent = "UPDATE accounts SET consent_at = %s WHERE id = %s RETURNING id"
    query(world.url, consent, (None, world.alice.id))
    query(world.url, consent, (datetime.now(timezone.utc), world.bob.id))
    try:
        assert set(exported(world.alice)) == {hers}  # one's own, consent or not
        assert set(exported(world.bob)) == {his}
        # The admin: their own and those who accepted the notice; not Alice, who did not.
        everyone = exported(world.admin)
        assert set(everyone) == {his, own}
        assert everyone[his]["owner"] == dx.pseudonym(world.bob.id, secret_of(world))
        assert world.bob.name not in json.dumps(everyone)
        assert exported(world.admin, pseudonyms="false")[his]["owner"] == world.bob.name
        query(world.url, consent, (datetime.now(timezone.utc), world.alice.id))
        assert set(exported(world.admin)) == {hers, his, own}
    finally:
        query(world.url, consent, (None, world.alice.id))
        query(world.url, consent, (None, world.bob.id))


def test_a_large_export_streams_every_conversation_once(world: World) -> None:
    """More conversations than one page of the store (200): each once, oldest first. (Made
    in one statement: this test is about reading them.)"""
    model = f"m-{uuid.uuid4().hex[:6]}"
    query(world.url, """
        WITH c AS (INSERT INTO conversations (id, title, owner_id, last_seq, created_at)
                   SELECT gen_random_uuid(), 'bulk', %(owner)s, 1,
                          now() - make_interval(secs => 300 - i) FROM generate_series(1, 210) i
                   RETURNING id),
        u AS (INSERT INTO messages (id, conversation_id, seq, role, content, status)
              SELECT gen_random_uuid(), c.id, 1, 'user', 'q', 'complete' FROM c
              RETURNING id, conversation_id)
        INSERT INTO messages (id, conversation_id, seq, role, content, parent_id, status,
                              active, model)
        SELECT gen_random_uuid(), u.conversation_id, 1, 'assistant', 'a', u.id, 'complete',
               true, %(model)s FROM u RETURNING id""", {"owner": world.bob.id, "model": model})
    made = [str(r[0]) for r in query(
        world.url, "SELECT c.id FROM conversations c WHERE c.owner_id = %s AND EXISTS (SELECT 1"
        " FROM messages m WHERE m.conversation_id = c.id AND m.model = %s)"
        " ORDER BY c.created_at, c.id", (world.bob.id, model))]
    assert len(made) == 210
    got = [x["conversation_id"] for x in lines(world, world.bob, model=model)]
    assert got == made


def test_any_filter_is_lines_or_a_clear_4xx(world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    rated_conversation(world, world.bob, model)
    texts = st.one_of(st.text(max_size=30), st.sampled_from([
        "2026-11-30", "2026-11-30T10:00:00+23:59", "9999-12-31T23:59:59-23:59", "0001-01-01",
        "1 OR 1=1", "\x00", "-1", "1", "+1", "1e23", "preference", "sharegpt", model]))
    names = ("format", "model", "since", "until", "min_rating", "pseudonyms")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(params=st.dictionaries(st.sampled_from(names), texts, max_size=4))
    def check(params: dict[str, str]) -> None:
        answer = world.call(world.bob, "GET", "/api/dataset", params=params)
        assert answer.status_code in (200, 400, 422), answer.text
        if answer.status_code == 200:
            for line in split_lines(answer.text):
                assert isinstance(json.loads(line), dict)
        else:
            assert answer.json()["error"] and answer.json()["code"]

    check()


def test_the_pseudonym_secret_is_made_once_per_deployment(world: World) -> None:
    """Made on the first export and kept: the same person has the same pseudonym in every
    export of one deployment, and another under another deployment's secret."""
    secret = secret_of(world)
    assert len(secret) >= 32 and secret_of(world) == secret
    model = f"m-{uuid.uuid4().hex[:6]}"
    rated_conversation(world, world.bob, model)
    [first] = lines(world, world.bob, model=model)
    [again] = lines(world, world.bob, model=model)
    assert first["owner"] == again["owner"] == dx.pseudonym(world.bob.id, secret)
    url = create_database("pseudonyms")
    try:
        async def elsewhere() -> bytes:
            await apply_migrations(url)
            db = Database(url, max_size=1)
            await db.open()
            try:
                return await DatasetSecret(db).pseudonyms()
            finally:
                await db.close()
        other = asyncio.run(elsewhere())
    finally:
        drop_database(url)
    assert other != secret and dx.pseudonym(world.bob.id, other) != first["owner"]


def test_text_with_unicode_line_separators_stays_one_line(world: World) -> None:
    """U+2028, U+2029 and U+0085 are line ends to many readers (Python's splitlines,
    JavaScript before ES2019): the server escapes them, so a line ends only at "\n"."""
    model = f"m-{uuid.uuid4().hex[:6]}"
    text = "one\u2028two\u2029three\u0085four"
    cid = world.conversation(world.bob)
    world.turn(cid, text, text, model)
    answer = world.call(world.bob, "GET", "/api/dataset", params={"model": model})
    assert answer.status_code == 200
    for separator in ("\u2028", "\u2029", "\u0085"):
        assert separator not in answer.text
    [line] = answer.text.splitlines()
    assert [m["content"] for m in json.loads(line)["messages"]] == [text, text]


def test_an_admins_branch_of_someones_conversation_stays_theirs(world: World) -> None:
    """An admin branching (or editing, which branches) a conversation of someone who did not
    consent makes no copy of theirs that leaves in the admin's dataset; and the person's
    withdrawal takes the branch with it."""
    carol = world.person("carol", consent=False)
    model = f"m-{uuid.uuid4().hex[:6]}"
    cid = world.conversation(carol, "Carol's")
    user_id, _ = world.turn(cid, "carol's private question", "an answer", model)
    admin = world.service(world.admin)
    branch = world.run(admin.branch_conversation(cid, user_id))
    assert branch["owner"] == carol.name  # the admin sees it, as Carol's
    assert query(world.url, "SELECT owner_id FROM conversations WHERE id = %s",
                 (branch["id"],)) == [(carol.id,)]
    for fmt in ("openai", "preference"):
        assert "carol's private" not in world.call(world.admin, "GET", "/api/dataset", params={
            "format": fmt, "model": model}).text
    withdrawn = world.call(carol, "DELETE", "/api/me/data")
    assert withdrawn.status_code == 200 and withdrawn.json()["deleted_conversations"] == 2
    assert query(world.url, "SELECT count(*) FROM messages WHERE content LIKE %s",
                 ("carol's private%",)) == [(0,)]


def test_lines_are_made_off_the_event_loop(world: World, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    """Turning rows into lines is CPU work (a conversation of 20,000 messages, a message
    with many rated replies): it runs in a worker thread, so the app goes on serving."""
    on_loop: list[bool] = []
    made = dx.conversation_line

    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return made(*args, **kwargs)

    monkeypatch.setattr(dx, "conversation_line", watched)
    model = f"m-{uuid.uuid4().hex[:6]}"
    rated_conversation(world, world.bob, model)
    assert len(lines(world, world.bob, model=model)) == 1
    assert on_loop and not any(on_loop)


def test_messages_are_read_in_bounded_batches(world: World, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """A page of conversations is read a few at a time, so that their messages together stay
    under a budget (an imported conversation may hold 20,000): one read never holds more
    than the budget, unless one conversation alone is bigger, and then it is read alone."""
    monkeypatch.setattr(dataset_rows, "BATCH_MESSAGES", 10)
    reads: list[tuple[int, int]] = []
    read = DatasetRows.messages

    async def counted(self: DatasetRows, ids: list[Any], *args: Any, **kwargs: Any) -> Any:
        rows = await read(self, ids, *args, **kwargs)
        reads.append((len(ids), len(rows)))
        return rows

    monkeypatch.setattr(DatasetRows, "messages", counted)
    model = f"m-{uuid.uuid4().hex[:6]}"
    made = []
    for i in range(6):  # 2 messages each
        cid = world.conversation(world.bob, f"small {i}")
        world.turn(cid, f"q{i}", f"a{i}", model)
        made.append(cid)
    big = world.conversation(world.bob, "big")
    for i in range(8):  # 16 messages
        world.turn(big, f"big q{i}", f"big a{i}", model)
    made.append(big)
    got = [x["conversation_id"] for x in lines(world, world.bob, model=model)]
    assert got == made
    assert sum(n for n, _ in reads) == len(made) and len(reads) >= 3
    assert all(rows <= 10 or n == 1 for n, rows in reads), reads


# -- votes over the API ---------------------------------------------------------------------------

def compared(world: World, owner: Any, texts: tuple[str, str], winner: str | None,
             *, model: str, rounds: int = 1, blind: bool = True,
             systems: tuple[str, str] = ("", "")) -> dict[str, Any]:
    """A comparison made by its store (two settings of `model`, labelled), `rounds` rounds
    answered in each side (texts[side] then " (round n)"), and voted `winner` on the last
    round (None: not voted, so still sealed when blind)."""
    store = ComparisonStore(world.room.system.db, owner)
    sides = [SideRow(uuid.uuid4(), model, label, {"model": model, "temperature": t})
             for label, t in ((f"{model} cold", 0.2), (f"{model} hot", 1.2))]
    cid = uuid.uuid4()
    world.run(store.create(cid, texts[0][:20], blind, *sides))
    replies: dict[str, list[str]] = {"a": [], "b": []}
    for n in range(1, rounds + 1):
        for side, row, text, system in zip("ab", sides, texts, systems):
            suffix = "" if n == 1 else f" (round {n})"
            _, reply_id = world.turn(str(row.conversation_id), f"prompt {texts[0]}{suffix}",
                                     text + suffix, model, system)
            replies[side].append(reply_id)
    if winner is not None:
        assert world.run(store.vote(cid, winner, rounds))
    return {"id": cid, "replies": replies,
            "conversations": {s: str(r.conversation_id) for s, r in zip("ab", sides)}}


def pair_texts(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in found]


def test_a_vote_is_the_first_pair_of_the_file_and_loads_as_trl_reads_it(
        world: World, tmp_path: Path) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    rated_conversation(world, world.bob, model)  # its pairs come after the vote's
    compared(world, world.bob, (f"plain {model}", f"vivid {model}"), "b", model=model,
             systems=("Be brief.", "Be brief."))
    body = world.call(world.bob, "GET", "/api/dataset", params={
        "format": "preference", "model": model}).text
    found = [json.loads(line) for line in split_lines(body)]
    assert pair_texts(found)[0] == (f"vivid {model}", f"plain {model}")  # the winner chosen
    assert found[0]["prompt"] == [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": f"prompt plain {model}"}]
    assert set(pair_texts(found)[1:]) == {(f"good {model}", f"bad {model}"),
                                          (f"shown {model}", f"bad {model}")}
    path = tmp_path / "votes.jsonl"
    path.write_text(body, encoding="utf-8")
    import datasets
    loaded = datasets.load_dataset("json", data_files=str(path), split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert loaded.column_names == ["prompt", "chosen", "rejected"] and loaded.num_rows == 3
    assert loaded[0]["chosen"][0]["content"] == f"vivid {model}"


def test_a_tie_a_later_round_and_a_sealed_comparison_give_no_pair(world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    compared(world, world.bob, (f"tie-a {model}", f"tie-b {model}"), "tie", model=model)
    compared(world, world.bob, (f"bad-a {model}", f"bad-b {model}"), "both_bad", model=model)
    compared(world, world.bob, (f"late-a {model}", f"late-b {model}"), "a", model=model,
             rounds=2)
    compared(world, world.bob, (f"sealed-a {model}", f"sealed-b {model}"), None, model=model)
    compared(world, world.bob, (f"won-a {model}", f"won-b {model}"), "a", model=model)
    for person in (world.bob, world.admin):  # (not even an admin's export holds them)
        text = world.call(person, "GET", "/api/dataset", params={"format": "preference"}).text
        assert (f"won-a {model}" in text) == (person is world.bob)  # Bob did not consent
        for word in ("tie-", "bad-", "late-", "sealed-"):
            assert f"{word}a {model}" not in text and f"{word}b {model}" not in text
    found = lines(world, world.bob, format="preference", model=model)
    assert pair_texts(found) == [(f"won-a {model}", f"won-b {model}")]


def test_vote_pairs_leave_only_with_consent_and_within_the_filters(world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    hers = compared(world, world.alice, (f"hers-a {model}", f"hers-b {model}"), "a",
                    model=model)
    compared(world, world.bob, (f"his-a {model}", f"his-b {model}"), "b", model=model)
    consent = "UPDATE accounts SET consent_at = %s WHERE id = %s RETURNING id"
    query(world.url, consent, (None, world.alice.id))
    query(world.url, consent, (datetime.now(timezone.utc), world.bob.id))
    today = datetime.now(timezone.utc).date()

    def pairs(person: Any, **params: Any) -> list[tuple[str, str]]:
        return pair_texts(lines(world, person, **{"format": "preference", "model": model,
                                                  **params}))

    try:
        assert pairs(world.alice) == [(f"hers-a {model}", f"hers-b {model}")]  # her own
        assert pairs(world.bob) == [(f"his-b {model}", f"his-a {model}")]
        assert pairs(world.admin) == [(f"his-b {model}", f"his-a {model}")]  # not Alice's
        assert pairs(world.bob, since=str(today + timedelta(days=1))) == []
        assert pairs(world.bob, until=str(today)) == []
        assert pairs(world.bob, since=str(today)) == [(f"his-b {model}", f"his-a {model}")]
        assert pairs(world.bob, model=model + "-other") == []
        # min_rating: the chosen reply's rating (unrated counts 0).
        assert pairs(world.alice, min_rating="1") == []
        side_a, reply_a = hers["conversations"]["a"], hers["replies"]["a"][0]
        world.run(world.service(world.alice).rate_reply(side_a, reply_a, 1))
        assert pairs(world.alice, min_rating="1") == [(f"hers-a {model}", f"hers-b {model}")]
        query(world.url, consent, (datetime.now(timezone.utc), world.alice.id))
        assert len(pairs(world.admin)) == 2
    finally:
        query(world.url, consent, (None, world.alice.id))
        query(world.url, consent, (None, world.bob.id))


def test_votes_are_read_a_page_at_a_time(world: World) -> None:
    """More decided comparisons than one page: each pair once, oldest vote first."""
    model = f"m-{uuid.uuid4().hex[:6]}"
    made = [compared(world, world.bob, (f"p{i}-a {model}", f"p{i}-b {model}"), "a",
                     model=model) for i in range(5)]
    rows = DatasetRows(world.room.system.db, world.bob)

    async def pages() -> list[list[Any]]:
        return [page async for page in rows.vote_pages(page=2)]

    read = world.run(pages())
    ours = [[r for r in page if r["content"] and model in r["content"]] for page in read]
    assert sum(1 for page in ours if page) >= 3
    found = pair_texts(lines(world, world.bob, format="preference", model=model))
    assert found == [(f"p{i}-a {model}", f"p{i}-b {model}") for i in range(len(made))]
